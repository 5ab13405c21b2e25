"""Quantized weight formats: bit-exactness of q4_0/q8_0 against a scalar transcription of
llama.cpp's reference quantizers, the byte layout, round-trip error bounds derived from the
step size, bits per weight, padding, edge cases and errors."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import dims, seeds
from tinyml.kernels.quant import (SCHEMES, BlockAlignmentError, QuantizedTensor, ScaleOverflowError, Scheme,
                                  SchemeDefinitionError, UnknownFormatError, get_scheme, quantize, register)
from tinyml.sim import DTypeError, NonFiniteError, ShapeError, TinymlError

F32 = np.float32
BUILTIN = ("int8", "int4-g32", "int4-g64", "int4-g128", "q8_0", "q4_0", "int4-asym-g32", "int4-asym-g64")
#: (code bits, group size or None for one per row, header bytes, must K be a multiple of the group)
SPEC = {"int8": (8, None, 2, False), "int4-g32": (4, 32, 2, False), "int4-g64": (4, 64, 2, False),
        "int4-g128": (4, 128, 2, False), "q8_0": (8, 32, 2, True), "q4_0": (4, 32, 2, True),
        "int4-asym-g32": (4, 32, 4, False), "int4-asym-g64": (4, 64, 4, False)}


# ---- an independent scalar transcription of ggml-quants.c -------------------------------------

def fp16_bytes(value) -> bytes:
    """GGML_FP32_TO_FP16 (round to nearest even), via Python's own half-float packing."""
    return struct.pack("<e", float(value))


def c_int8(v) -> int:
    """(int8_t)v for a float: truncation toward zero; inf/NaN -> 0 (what x86 builds write)."""
    return int(v) if math.isfinite(v) else 0


def c_roundf(v) -> float:
    """roundf: half away from zero."""
    if not math.isfinite(v):
        return math.nan
    return math.copysign(math.floor(abs(v) + 0.5), v)


def ref_q8_0(x: np.ndarray) -> bytes:
    out = bytearray()
    for i in range(len(x) // 32):
        amax = F32(0.0)
        for j in range(32):
            v = F32(x[i * 32 + j])
            amax = amax if amax > abs(v) else F32(abs(v))       # MAX(amax, fabsf(v))
        d = F32(amax / F32(127))
        with np.errstate(over="ignore"):
            idv = F32(F32(1.0) / d) if d != 0 else F32(0.0)
        out += fp16_bytes(d)
        for j in range(32):
            with np.errstate(over="ignore", invalid="ignore"):
                x0 = F32(F32(x[i * 32 + j]) * idv)
            q = c_int8(c_roundf(float(x0)))
            out += struct.pack("<b", q)
    return bytes(out)


def ref_q4_0(x: np.ndarray) -> bytes:
    out = bytearray()
    for i in range(len(x) // 32):
        amax = F32(0.0)
        mx = F32(0.0)
        for j in range(32):
            v = F32(x[i * 32 + j])
            if amax < abs(v):
                amax = F32(abs(v))
                mx = v
        d = F32(mx / F32(-8))
        with np.errstate(over="ignore"):
            idv = F32(F32(1.0) / d) if d != 0 else F32(0.0)
        out += fp16_bytes(d)
        for j in range(16):
            with np.errstate(over="ignore", invalid="ignore"):
                x0 = F32(F32(x[i * 32 + j]) * idv)
                x1 = F32(F32(x[i * 32 + 16 + j]) * idv)
                xi0 = min(15, c_int8(float(F32(x0 + F32(8.5)))))
                xi1 = min(15, c_int8(float(F32(x1 + F32(8.5)))))
            out.append(xi0 | (xi1 << 4))
    return bytes(out)


REFERENCE = {"q8_0": ref_q8_0, "q4_0": ref_q4_0}


def reference_bytes(w: np.ndarray, fmt: str) -> bytes:
    return b"".join(REFERENCE[fmt](row) for row in w.astype(F32))


def adversarial_blocks() -> list[np.ndarray]:
    """Blocks of 32 that stress the rounding and the max search."""
    b = []
    z = np.zeros(32, F32)
    b.append(z.copy())                                            # all zero
    b.append(-z)                                                  # all -0.0
    t = z.copy(); t[0] = 127; t[1:9] = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5]; b.append(t)   # q8 ties
    t = z.copy(); t[0] = -8; t[1:10] = [0.5, -0.5, 1.5, -1.5, 7.0, 7.5, -7.5, 3.5, -3.5]; b.append(t)   # q4 ties
    t = z.copy(); t[3] = 3.0; t[7] = -3.0; b.append(t)            # +max first
    t = z.copy(); t[3] = -3.0; t[7] = 3.0; b.append(t)            # -max first
    t = z.copy(); t[31] = 1.0; b.append(t)                        # max in the high half
    t = np.full(32, 5.0, F32); t[::2] = -5.0; b.append(t)         # every element a max
    for tiny in (1e-8, 3e-8, 1e-20, 1e-30, 1e-38, 1e-39, 1e-45):  # fp16 d underflows; 1/d overflows at the end
        rng = np.random.default_rng(int(-math.log10(tiny)))
        b.append((rng.standard_normal(32) * tiny).astype(F32))
    t = np.linspace(-1, 1, 32).astype(F32); b.append(t)
    t = (np.arange(32) - 15.5).astype(F32) / F32(2); b.append(t)
    t = z.copy(); t[0] = 65504 * 8; b.append(t)                   # q4 d = -65504 exactly (largest fp16)
    # float32 rounding decides: 0.49999997 + 8.5 rounds to 9.0 in float32 (code 9), not 8.99999997 (code 8)
    t = z.copy(); t[0] = -8; t[1] = np.nextafter(F32(0.5), F32(0)); t[2] = -t[1]; b.append(t)
    b.append(float32_product_ties())
    return b


def float32_product_ties() -> np.ndarray:
    """A Q8_0 block whose x * id is a tie (k + 0.5) in float32 but not in exact arithmetic,
    so rounding the product in float64 would give another code."""
    amax = F32(100.0)
    idv = F32(F32(1.0) / F32(amax / F32(127)))
    found = [amax]
    for k in range(0, 127):
        guess = F32((k + 0.5) / float(idv))
        for x in (np.nextafter(guess, F32(0)), guess, np.nextafter(guess, F32(200))):
            if float(F32(x * idv)) == k + 0.5 and float(x) * float(idv) != k + 0.5:
                found.append(x)
        if len(found) == 32:
            break
    assert len(found) > 8, "no float32 ties found"
    return np.array((found * 32)[:32], F32)


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
def test_gguf_bit_exact_on_adversarial_blocks(fmt):
    for block in adversarial_blocks():
        if fmt == "q8_0" and np.abs(block).max() / 127 > 65504:
            continue
        w = block.reshape(1, 32)
        with np.errstate(all="ignore"):
            expected = reference_bytes(w, fmt)
        got = quantize(w, fmt, underflow="zero")          # llama.cpp stores an underflowing d as 0
        assert got.data.tobytes() == expected, block
        assert np.all(np.isfinite(got.dequantize()))


@pytest.mark.parametrize("fmt", ["q8_0", "q4_0"])
@given(rows=st.integers(1, 4), blocks=st.integers(1, 4), seed=seeds(),
       scale=st.sampled_from([1e-3, 1.0, 30.0, 1e3]))
def test_gguf_bit_exact_on_random_matrices(fmt, rows, blocks, seed, scale):
    rng = np.random.default_rng(seed)
    w = (rng.standard_t(3, size=(rows, 32 * blocks)) * scale).astype(F32)          # heavy tails
    w[rng.random(w.shape) < 0.1] = 0.0
    q = quantize(w, fmt)
    assert q.data.dtype == np.uint8 and q.data.tobytes() == reference_bytes(w, fmt)


def test_gguf_hand_computed_blocks():
    x = np.zeros((1, 32), F32)
    x[0, :3] = [127.0, -63.5, 0.5]          # d = 127/127 = 1 (fp16 0x3c00); -63.5 -> -64, 0.5 -> 1
    expected = bytes([0x00, 0x3C, 0x7F, 0xC0, 0x01] + [0] * 29)
    assert quantize(x, "q8_0").data.tobytes() == expected
    x = np.zeros((1, 32), F32)
    x[0, [0, 16, 1, 17]] = [-8.0, 7.0, 0.5, -0.5]   # max = -8, d = 1: codes 0, 15, 9, 8; zeros -> 8
    expected = bytes([0x00, 0x3C, 0xF0, 0x89] + [0x88] * 14)
    q = quantize(x, "q4_0")
    assert q.data.tobytes() == expected
    np.testing.assert_array_equal(q.dequantize()[0, [0, 16, 1, 17]], [-8.0, 7.0, 1.0, 0.0])
    # an all-zero block: d = 0.0 / -8 = -0.0, stored as fp16 0x8000, as the C code does
    assert quantize(np.zeros((1, 32)), "q4_0").data.tobytes()[:2] == bytes([0x00, 0x80])


def test_int4_layout_nibble_order_by_hand():
    x = np.zeros((1, 32), F32)
    x[0, :4] = [7.0, -7.0, 0.0, 1.0]       # scale 7/7 = 1: codes q + 8 = 15, 1, 8, 9
    data = quantize(x, "int4-g32").data.tobytes()
    assert data[:2] == bytes([0x00, 0x3C])
    assert data[2:4] == bytes([0x1F, 0x98])   # element 2i in the low nibble, 2i + 1 in the high
    assert data[4:] == bytes([0x88] * 14)


# ---- the layout, decoded by hand from the documented spec ---------------------------------------

def decode_by_spec(q: QuantizedTensor) -> np.ndarray:
    """Walk the bytes as the scheme docstring describes them, one element at a time."""
    s = q.scheme
    bits, g, hdr = q.layout.bits, q.layout.group, 2 * (1 + s.has_min)
    per = 8 // bits
    levels = s.levels()
    n, k = q.shape
    block = hdr + g * bits // 8
    out = np.zeros((n, k), np.float64)
    raw = q.data.tobytes()
    row_bytes = math.ceil(k / g) * block
    for r in range(n):
        for col in range(k):
            gi, e = divmod(col, g)
            base = r * row_bytes + gi * block
            scale = struct.unpack("<e", raw[base:base + 2])[0]
            mn = struct.unpack("<e", raw[base + 2:base + 4])[0] if s.has_min else 0.0
            if s.split_halves:
                byte, t = raw[base + hdr + e % (g // per)], e // (g // per)
            else:
                byte, t = raw[base + hdr + e // per], e % per
            code = (byte >> (bits * t)) & ((1 << bits) - 1)
            out[r, col] = scale * float(levels[code]) + mn
    return out


def format_and_shape():
    @st.composite
    def draw(draw):
        fmt = draw(st.sampled_from(BUILTIN + ("int4-g16", "int4-g2")))
        n = draw(dims(6))
        k = 32 * draw(st.integers(1, 3)) if SPEC.get(fmt, (0, 0, 0, False))[3] else draw(dims(140))
        return fmt, n, k
    return draw()


@given(case=format_and_shape(), seed=seeds())
def test_dequantize_matches_the_documented_layout(case, seed):
    fmt, n, k = case
    w = np.random.default_rng(seed).standard_normal((n, k)).astype(F32)
    q = quantize(w, fmt)
    d = q.dequantize()
    assert d.shape == (n, k) and d.dtype == np.float32
    np.testing.assert_array_equal(d, decode_by_spec(q).astype(F32))


# ---- sizes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt,bpw", [("q8_0", 8.5), ("q4_0", 4.5), ("int4-g32", 4 + 16 / 32),
                                     ("int4-g64", 4 + 16 / 64), ("int4-g128", 4 + 16 / 128)])
def test_bits_per_weight_for_aligned_shapes(fmt, bpw):
    w = np.random.default_rng(0).standard_normal((8, 256)).astype(F32)
    q = quantize(w, fmt)
    assert q.bits_per_weight == bpw == 8 * q.nbytes / w.size
    assert q.nbytes == q.data.nbytes == q.data.size
    assert get_scheme(fmt).bits_per_weight() == bpw


@pytest.mark.parametrize("k", [1, 13, 120, 4096])
def test_int8_bits_per_weight_is_8_plus_one_fp16_scale_per_row(k):
    q = quantize(np.ones((3, k)), "int8")
    assert q.nbytes == 3 * (k + 2)
    assert q.bits_per_weight == 8 + 16 / k == get_scheme("int8").bits_per_weight(k)


@pytest.mark.parametrize("fmt", ["int4-g32", "int4-g64", "int4-g128", "int8"])
@pytest.mark.parametrize("shape", [(2, 13), (16, 120), (1, 1), (3, 33), (5, 129)])
def test_odd_shapes_are_padded_and_dequantize_to_the_original_shape(fmt, shape):
    bits, g, hdr, _ = SPEC[fmt]
    n, k = shape
    w = np.random.default_rng(1).standard_normal(shape).astype(F32)
    q = quantize(w, fmt)
    g = k if g is None else g
    assert q.nbytes == n * math.ceil(k / g) * (hdr + g * bits // 8)
    d = q.dequantize()
    assert d.shape == shape
    assert_within_step_bound(w, d, fmt)


def test_meta_has_the_same_bytes_without_data():
    for fmt in BUILTIN:
        k = 96
        real = quantize(np.ones((7, k)), fmt)
        fake = QuantizedTensor.meta((7, k), fmt)
        assert fake.data is None and not fake.execute
        assert (fake.nbytes, fake.bits_per_weight, fake.shape, fake.fmt) == \
               (real.nbytes, real.bits_per_weight, real.shape, real.fmt)
        with pytest.raises(DTypeError, match="shape-only"):
            fake.dequantize()


# ---- round-trip error bounds from the step size -------------------------------------------------------

def step_bound(w: np.ndarray, fmt: str) -> np.ndarray:
    """Per-element bound on |w - dequantize(w)|, from each group's step and the fp16 scale rounding.

    Symmetric int: scale s = amax / qmax, stored s16 = fp16(s); |err| <= s16 / 2 (rounding) or, for
    the clipped max, qmax |s - s16|. Q8_0: |err| <= d / 2 + 127 |d - d16|. Q4_0: the step is
    |d| = amax / 8; the one code past +7 clamps, so |err| <= |d| + 8 |d - d16|.
    """
    bits, g, _, _ = SPEC[fmt]
    n, k = w.shape
    g = k if g is None else g
    kp = math.ceil(k / g) * g
    padded = np.zeros((n, kp)); padded[:, :k] = w
    amax = np.abs(padded.reshape(n, -1, g)).max(axis=2)          # (N, G)
    if fmt.startswith("int4-asym"):
        return asym_step_bound(padded.reshape(n, -1, g), g)[:, :k]
    qmax = {"int8": 127, "q8_0": 127, "q4_0": 8}.get(fmt, 7)
    s = amax / qmax
    s16 = np.abs(s.astype(np.float16).astype(np.float64))
    if fmt == "q4_0":
        bound = s + 8 * np.abs(s - s16)
    elif fmt == "q8_0":
        bound = s / 2 + 127 * np.abs(s - s16)
    else:
        bound = np.maximum(s16 / 2, qmax * np.abs(s - s16)) + 1e-7 * s
    bound = bound * (1 + 1e-6) + 1e-45
    return np.repeat(bound, g, axis=1)[:, :k]


def asym_step_bound(groups: np.ndarray, g: int) -> np.ndarray:
    """int4-asym (module doc of int4_asym): codes span [z - 8 s16, z + 7 s16] with s16 = fp16((hi - lo) / 15)
    and z = fp16(lo + 8 s16); inside, |err| <= s16 / 2; outside (s16 or z rounded), the distance to the span."""
    lo, hi = groups.min(axis=2).astype(np.float64), groups.max(axis=2).astype(np.float64)     # (N, G)
    s16 = ((hi - lo) / 15).astype(np.float32).astype(np.float16).astype(np.float64)
    z = (lo + 8 * s16).astype(np.float32).astype(np.float16).astype(np.float64)
    bound = np.maximum.reduce([s16 / 2, (z - 8 * s16) - lo, hi - (z + 7 * s16)])
    bound = bound * (1 + 1e-6) + 1e-7 * np.maximum(np.abs(lo), np.abs(hi)) + 1e-45
    return np.repeat(bound, g, axis=1)


def assert_within_step_bound(w, d, fmt):
    err = np.abs(w.astype(np.float64) - d)
    bound = step_bound(w, fmt)
    assert np.all(err <= bound), f"{fmt}: worst excess {np.max(err - bound)} at {np.argmax(err - bound)}"


def synthetic(n: int, k: int, offset: float) -> np.ndarray:
    """llama.cpp test-quantize-fns' signal: 0.1 + 2 cos(i + offset)."""
    return (0.1 + 2 * np.cos(np.arange(n * k) + offset)).reshape(n, k).astype(F32)


@pytest.mark.parametrize("fmt", BUILTIN)
def test_round_trip_error_within_step_bounds(fmt):
    for w in (synthetic(4, 256, 0.0), synthetic(3, 128, 0.5),
              np.random.default_rng(2).standard_t(3, size=(8, 256)).astype(F32)):
        d = quantize(w, fmt).dequantize()
        assert_within_step_bound(w, d, fmt)
        # rounding error is about uniform over a step: RMS ~ step / sqrt(12) ~ 0.29 step; allow 0.4
        bits, g, _, _ = SPEC[fmt]
        step = step_bound(w, fmt) * (2 if fmt not in ("q4_0",) else 1)
        rms = np.sqrt(np.mean((w.astype(np.float64) - d) ** 2))
        assert rms <= 0.4 * np.sqrt(np.mean(step ** 2)), (fmt, rms)


@given(case=format_and_shape(), seed=seeds(), scale=st.sampled_from([1e-6, 1e-2, 1.0, 1e3]))
def test_round_trip_bound_holds_for_random_matrices(case, seed, scale):
    fmt, n, k = case
    if fmt in ("int4-g16", "int4-g2"):
        fmt = "int4-g32"
    w = (np.random.default_rng(seed).standard_normal((n, k)) * scale).astype(F32)
    # at scale 1e-6 a group's scale may underflow fp16: the bound covers the zeros it then decodes to
    assert_within_step_bound(w, quantize(w, fmt, underflow="zero").dequantize(), fmt)


def test_finer_groups_give_smaller_error():
    w = np.random.default_rng(3).standard_t(4, size=(64, 512)).astype(F32)
    rms = [np.sqrt(np.mean((quantize(w, f).dequantize() - w) ** 2)) for f in ("int4-g32", "int4-g64", "int4-g128")]
    assert rms[0] < rms[1] < rms[2]
    assert np.sqrt(np.mean((quantize(w, "int8").dequantize() - w) ** 2)) < rms[0]


# ---- edge cases ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", BUILTIN)
def test_zero_group_has_scale_zero_and_decodes_to_zeros(fmt):
    w = np.zeros((2, 64), F32)
    w[1, :] = np.linspace(-1, 1, 64)
    q = quantize(w, fmt)
    d = q.dequantize()
    np.testing.assert_array_equal(d[0], 0.0)
    _, scales, _ = q.unpacked()
    assert np.all(scales[0] == 0)


@pytest.mark.parametrize("fmt", BUILTIN)
@pytest.mark.parametrize("tiny", [1e-6, 1e-9, 1e-20, 1e-39, 1e-45])
def test_tiny_weights_never_give_nan(fmt, tiny):
    w = (np.random.default_rng(4).standard_normal((2, 64)) * tiny).astype(F32)
    with np.errstate(divide="raise", invalid="raise"):     # no 0/0 or x/0 escapes
        q = quantize(w, fmt, underflow="zero")
    d = q.dequantize()
    assert np.all(np.isfinite(d))
    assert np.max(np.abs(d - w)) <= np.abs(w).max() + 1e-30   # at worst the group decodes to zeros
    if tiny <= 1e-9:      # the scale underflows fp16: zeros out, as documented
        np.testing.assert_array_equal(d, 0.0)


@pytest.mark.parametrize("fmt", BUILTIN)
@pytest.mark.parametrize("tiny", [1e-6, 1e-9, 1e-20, 1e-45])
def test_a_scale_that_underflows_fp16_is_refused_with_the_numbers(fmt, tiny):
    """std 1e-6 to int8 or q8_0 silently gave all zeros (relative error 1.0); overflow was refused."""
    from tinyml.kernels.quant import ScaleUnderflowError
    from tinyml.kernels.quant.scheme import to_fp16

    w = (np.random.default_rng(4).standard_normal((2, 64)) * tiny).astype(F32)
    lost = np.any(quantize(w, fmt, underflow="zero").unpacked()[1] == 0)    # a non-zero group stored as 0
    if not lost:                                                            # int4 at 1e-6: subnormal, kept
        assert np.all(quantize(w, fmt).unpacked()[1] != 0)
        return
    with pytest.raises(ScaleUnderflowError) as err:
        quantize(w, fmt)
    msg = str(err.value)
    decoded = "all decode to one value" if get_scheme(fmt).has_min else "decode to zeros"
    assert fmt in msg and "group 0 of row 0" in msg and decoded in msg and "underflow='zero'" in msg
    assert f"{float(to_fp16(np.float32(2 ** -24))):.3g}" in msg              # fp16's smallest positive value


@pytest.mark.parametrize("fmt", BUILTIN)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_with_position(fmt, bad):
    w = np.ones((3, 64), F32)
    w[2, 17] = bad
    with pytest.raises(NonFiniteError, match=r"\(2, 17\)"):
        quantize(w, fmt)


@pytest.mark.parametrize("fmt", ["q4_0", "q8_0"])
@pytest.mark.parametrize("k", [1, 31, 33, 120])
def test_gguf_refuses_rows_that_are_not_whole_blocks(fmt, k):
    with pytest.raises(BlockAlignmentError, match=rf"K={k}.*multiple of 32|multiple of 32.*K={k}"):
        quantize(np.ones((2, k)), fmt)
    with pytest.raises(BlockAlignmentError):
        QuantizedTensor.meta((2, k), fmt)


@pytest.mark.parametrize("fmt", ["int4-g32", "int8", "q4_0", "q8_0"])
def test_scale_overflowing_fp16_is_refused(fmt):
    w = np.ones((2, 64), F32)
    w[1, 40] = 1e9
    with pytest.raises(ScaleOverflowError, match="row 1"):
        quantize(w, fmt)


def test_bad_inputs():
    with pytest.raises(UnknownFormatError, match="q4_0"):
        quantize(np.ones((2, 32)), "q3_k")
    with pytest.raises(UnknownFormatError):
        quantize(np.ones((2, 32)), "int4-g7")
    with pytest.raises(ShapeError, match="2-D"):
        quantize(np.ones(32), "q4_0")
    with pytest.raises(ShapeError):
        quantize(np.ones((0, 32)), "q4_0")
    with pytest.raises(DTypeError):
        quantize(np.array([["a"]]), "q4_0")
    with pytest.raises(DTypeError, match="meta"):
        quantize(QuantizedTensor.meta((2, 32), "q4_0"), "q4_0")


def test_every_error_here_is_a_tinyml_error():
    for exc in (BlockAlignmentError, ScaleOverflowError, SchemeDefinitionError, UnknownFormatError):
        assert issubclass(exc, TinymlError)


def test_integer_weights_and_views_work():
    w = np.arange(-32, 32).reshape(2, 32)
    np.testing.assert_array_equal(quantize(w, "int8").dequantize(), quantize(w.astype(F32), "int8").dequantize())
    big = np.random.default_rng(5).standard_normal((4, 128))
    view = big[:, ::2]
    assert quantize(view, "q4_0").data.tobytes() == reference_bytes(view.astype(F32), "q4_0")


# ---- bring your own scheme -----------------------------------------------------------------------------

class Asym4(Scheme):
    """Asymmetric 4-bit with an fp16 min (like llama.cpp's Q4_1): w = scale * code + min."""

    name = "asym4-g32"
    bits = 4
    group_size = 32
    has_min = True

    def levels(self):
        return np.arange(16, dtype=F32)

    def quantize_groups(self, groups):
        lo, hi = groups.min(axis=1), groups.max(axis=1)
        scale = ((hi - lo) / 15).astype(np.float16).astype(F32)
        lo16 = lo.astype(np.float16).astype(F32)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(scale[:, None] > 0, np.rint((groups - lo16[:, None]) / scale[:, None]), 0)
        return np.clip(q, 0, 15).astype(np.uint8), scale, lo16


NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230850220947, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], F32)


class NF4Scheme(Scheme):
    """NormalFloat4 (QLoRA): absmax scale per 64 weights, codes index a 16-entry codebook."""

    name = "nf4-g64"
    bits = 4
    group_size = 64

    def levels(self):
        return NF4

    def quantize_groups(self, groups):
        scale = np.abs(groups).max(axis=1).astype(np.float16).astype(F32)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(scale[:, None] > 0, groups / scale[:, None], 0)
        return np.abs(u[:, :, None] - NF4).argmin(axis=2).astype(np.uint8), scale, None


def test_bring_your_own_schemes_round_trip():
    w = np.random.default_rng(6).standard_normal((5, 100)).astype(F32)
    q = quantize(w, Asym4())
    assert q.bits_per_weight == 8 * 5 * 4 * 20 / 500        # 4 groups of (4 + 16) bytes per row
    lo = np.pad(w, ((0, 0), (0, 28))).reshape(5, 4, 32)
    step = ((lo.max(2) - lo.min(2)) / 15).repeat(32, axis=1)[:, :100]
    assert np.all(np.abs(q.dequantize() - w) <= step * 0.51 + 2e-3 * np.abs(w).max())
    np.testing.assert_array_equal(q.dequantize(), decode_by_spec(q).astype(F32))
    q = quantize(w, NF4Scheme())
    gaps = np.diff(NF4).max() / 2 * np.abs(w).max()
    assert np.max(np.abs(q.dequantize() - w)) <= gaps * 1.01
    np.testing.assert_array_equal(q.dequantize(), decode_by_spec(q).astype(F32))


def test_register_and_scheme_errors():
    s = NF4Scheme()
    try:
        register(s)
        assert get_scheme("nf4-g64") is s and quantize(np.ones((1, 64)), "nf4-g64").fmt == "nf4-g64"
        with pytest.raises(SchemeDefinitionError, match="already registered"):
            register(NF4Scheme())
    finally:
        SCHEMES.pop("nf4-g64", None)

    class Bad(Scheme):
        name, bits, group_size = "bad", 3, 32
    with pytest.raises(SchemeDefinitionError, match="bits"):
        quantize(np.ones((1, 32)), Bad())

    class Odd(Scheme):
        name, bits, group_size = "odd", 4, 33
    with pytest.raises(SchemeDefinitionError, match="multiple of 2"):
        quantize(np.ones((1, 33)), Odd())

    class Wrong(Scheme):
        name, bits, group_size = "wrong", 4, 32

        def quantize_groups(self, groups):
            return np.full(groups.shape, 16), np.ones(len(groups)), None
    with pytest.raises(SchemeDefinitionError, match="outside"):
        quantize(np.ones((1, 32)), Wrong())
    with pytest.raises(SchemeDefinitionError, match="instance"):
        get_scheme(NF4Scheme)
