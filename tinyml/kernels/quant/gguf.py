"""llama.cpp's Q8_0 and Q4_0, bit-exact with its reference quantizers.

Both quantize blocks of 32 weights along a row; a block is the fp16 scale
``d`` (2 bytes, little-endian) followed by the codes. Arithmetic is float32,
step by step as ``quantize_row_q8_0_ref`` / ``quantize_row_q4_0_ref`` in
ggml-quants.c do it (each operation rounded to float32, no fused
multiply-add); ``d`` is rounded to fp16 (nearest, ties to even) only when
stored, after the codes' inverse scale ``id`` was taken from the float32 ``d``.

Q8_0 (34 bytes per block, 8.5 bits per weight)::

    amax = max |x|;  d = amax / 127;  id = d ? 1/d : 0
    q[j] = roundf(x[j] * id)                   # half away from zero, int8
    decode: w = fp16(d) * q

Q4_0 (18 bytes per block, 4.5 bits per weight)::

    max = the x of largest |x| (the first one on ties); d = max / -8; id = d ? 1/d : 0
    q[j] = min(15, (int8)(x[j] * id + 8.5))    # (int8) truncates toward zero
    byte j = q[j] | q[j + 16] << 4             # j = 0..15: low nibble = element j
    decode: w = fp16(d) * (q - 8)

Note ``d = max / -8``: the largest-magnitude weight maps to code 0 (-8), the
one code of the asymmetric range -8..7 that symmetric int4 leaves unused.

Edge cases: an all-zero block has ``d = 0`` (Q4_0 stores -0.0, as the C code
does: ``0.0f / -8``) and decodes to zeros. For tiny blocks the fp16 ``d``
underflows to 0 while the codes still come from the float32 ``id``: the block
decodes to zeros, as in llama.cpp (``quantize`` refuses that unless ``underflow="zero"``). Below about 1e-37, ``1/d`` overflows to inf
and the C code's float-to-int8 conversion of inf/NaN is undefined; we write
code 0 there, which is what x86 builds produce (the block decodes to zeros
either way). Rows must be a multiple of 32 long; llama.cpp refuses others.
"""

from __future__ import annotations

import numpy as np

from .scheme import Scheme

QK = 32
F32 = np.float32


def _inverse(d: np.ndarray) -> np.ndarray:
    """``id = d ? 1.0f/d : 0.0f`` in float32."""
    out = np.zeros_like(d)
    with np.errstate(over="ignore", divide="ignore"):
        np.divide(F32(1.0), d, out=out, where=d != 0)
    return out


def _int8_trunc(v: np.ndarray) -> np.ndarray:
    """C's ``(int8_t)v`` for v in int8 range; non-finite -> 0 (x86 behaviour of the undefined case)."""
    return np.trunc(np.where(np.isfinite(v), v, 0)).astype(np.int32)


def _roundf(v: np.ndarray) -> np.ndarray:
    """C's ``roundf``: half away from zero (exact in float64); non-finite -> 0 as above."""
    v64 = np.where(np.isfinite(v), v, 0).astype(np.float64)
    return np.trunc(v64 + np.copysign(0.5, v64)).astype(np.int32)


class Q8_0(Scheme):
    name = "q8_0"
    bits = 8
    group_size = QK
    pad_rows = False

    def levels(self):
        c = np.arange(256)
        return np.where(c < 128, c, c - 256).astype(np.float32)

    def quantize_groups(self, groups):
        x = groups.astype(F32)                                       # (n_blocks, 32)
        amax = np.abs(x).max(axis=1)
        d = amax / F32(127)                                          # float32
        idv = _inverse(d)
        with np.errstate(over="ignore", invalid="ignore"):
            q = _roundf(x * idv[:, None])                            # (n_blocks, 32) in -127..127
        return q.astype(np.int8).view(np.uint8), d, None


class Q4_0(Scheme):
    name = "q4_0"
    bits = 4
    group_size = QK
    split_halves = True
    pad_rows = False

    def quantize_groups(self, groups):
        x = groups.astype(F32)                                       # (n_blocks, 32)
        mag = np.abs(x)
        first = np.argmax(mag, axis=1)                               # first index of the largest |x|
        top = x[np.arange(len(x)), first]
        mx = np.where(mag.max(axis=1) > 0, top, F32(0.0)).astype(F32)   # C keeps max = +0.0 for zeros
        d = mx / F32(-8)
        idv = _inverse(d)
        with np.errstate(over="ignore", invalid="ignore"):
            v = x * idv[:, None] + F32(8.5)                          # float32, rounded after each op
        q = np.minimum(15, _int8_trunc(v))
        return q.astype(np.uint8), d, None
