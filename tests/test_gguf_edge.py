"""Q8_0 / Q4_0 edge cases that the quantizer never writes but a file from elsewhere may hold,
and the signed-zero and tie rules of ggml-quants.c (pinned by mutation testing, tools/mutate.py).

A GGUF file written by another tool can hold the Q8_0 code 0x80 (-128): llama.cpp decodes
every byte as int8, so it is -128 * d. tinyml's quantizer only writes -127..127, so only a
block built from raw bytes reaches that code.
"""

from __future__ import annotations

import struct

import numpy as np

from tinyml.kernels.quant import QuantizedTensor, get_scheme, quantize
from tinyml.sim import Profile

F32 = np.float32


def foreign_q8_0(d: float, codes: list[int], rows: int = 1) -> QuantizedTensor:
    """A Q8_0 matrix of ``rows`` identical one-block rows, built byte by byte as a file holds it."""
    block = struct.pack("<e", d) + bytes(c & 0xFF for c in codes)      # 2 + 32 bytes
    scheme = get_scheme("q8_0")
    data = np.frombuffer(block * rows, np.uint8).reshape(rows, 34).copy()
    return QuantizedTensor(scheme, (rows, 32), data, scheme.layout(32))


def test_q8_0_levels_are_the_twos_complement_bytes():
    lv = get_scheme("q8_0").levels()
    assert lv.shape == (256,)
    for code in range(256):                   # independent of the implementation: C's (int8_t)code
        assert lv[code] == (code - 256 if code >= 0x80 else code), code
    assert lv[0x7F] == 127 and lv[0x80] == -128 and lv[0x81] == -127 and lv[0xFF] == -1


def test_q8_0_decodes_code_0x80_as_minus_128():
    codes = [-128, -127, -1, 0, 1, 127] + [0] * 26
    q = foreign_q8_0(0.5, codes)
    np.testing.assert_array_equal(q.dequantize()[0, :6], F32(0.5) * np.array([-128, -127, -1, 0, 1, 127], F32))
    assert q.dequantize()[0, 0] == -64.0      # 0.5 * -128, exact in float32


def test_the_fused_gemv_decodes_code_0x80_like_dequantize():
    from tinyml.kernels.quant import quantized_gemv

    q = foreign_q8_0(0.25, [-128] * 16 + [127] * 16, rows=2)
    x = np.ones(32, F32)
    with Profile("a100-40gb"):
        y = quantized_gemv(x, q, dtype="fp32")
    # 16 * (-128 * 0.25) + 16 * (127 * 0.25) = -512 + 508 = -4, exact
    np.testing.assert_array_equal(np.asarray(y, np.float64), [-4.0, -4.0])


def test_q4_0_block_of_negative_zeros_stores_minus_zero_scale():
    # C: max starts at +0.0 and no |x| exceeds 0, so max stays +0.0 and d = 0.0f / -8 = -0.0
    # (fp16 0x8000), whatever the signs of the zeros in the block
    x = np.full((1, 32), -0.0, F32)
    q = quantize(x, "q4_0")
    assert q.data.tobytes()[:2] == bytes([0x00, 0x80])
    assert q.data.tobytes()[2:] == bytes([0x88] * 16)        # x * 0 + 8.5 -> code 8 (= 0)
    np.testing.assert_array_equal(q.dequantize(), np.zeros((1, 32), F32))


def test_q8_0_block_of_negative_zeros():
    x = np.full((1, 32), -0.0, F32)
    assert quantize(x, "q8_0").data.tobytes() == bytes(34)   # d = 0 / 127 = +0.0, codes 0


def test_q4_0_first_of_equal_magnitudes_sets_the_sign_of_d():
    x = np.zeros((1, 32), F32)
    x[0, 3], x[0, 20] = -2.0, 2.0          # equal |x|: the first (-2) is "max", d = -2 / -8 = 0.25
    q = quantize(x, "q4_0")
    assert q.data.tobytes()[:2] == struct.pack("<e", 0.25)
    codes = q.unpacked()[0][0, 0]
    assert codes[3] == 0 and codes[20] == 15                  # -2/0.25 + 8.5 = 0.5 -> 0; 16.5 -> 16 -> 15
    x[0, 3], x[0, 20] = 2.0, -2.0          # now the first is +2: d = -0.25
    q = quantize(x, "q4_0")
    assert q.data.tobytes()[:2] == struct.pack("<e", -0.25)
    assert q.unpacked()[0][0, 0][3] == 0
