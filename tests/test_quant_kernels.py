"""Fused dequantize gemv/matmul and the unfused baseline: numerics against
dequantize-then-reference, counting mode == executing mode, HBM bytes == the closed forms
from the packed sizes, fused vs fp16 vs unfused traffic, and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import ELEM_BYTES, any_devices, dims, logical_dtypes, seeds
from test_quant_formats import NF4Scheme, Asym4
from tinyml.kernels.matmul import matmul
from tinyml.kernels.quant import (QuantizedTensor, Scheme, dequantize_kernel, quantize, quantized_gemv,
                                  quantized_matmul, to_fp16, unfused_quantized_matmul)
from tinyml.sim import DTypeError, MetaTensor, NonFiniteError, Profile, ShapeError, TileConfigError, meta

EPS32 = np.finfo(np.float32).eps
FORMATS = ("int8", "int4-g32", "int4-g64", "int4-g128", "q8_0", "q4_0", "asym4", "nf4", "int2s", "int4-row",
           "int4-asym-g32")
PER_ROW = ("int8", "int4-row")
GGUF = ("q8_0", "q4_0")
#: (code bits, group (None: whole row), header bytes), written out by hand
SPEC = {"int8": (8, None, 2), "int4-g32": (4, 32, 2), "int4-g64": (4, 64, 2), "int4-g128": (4, 128, 2),
        "q8_0": (8, 32, 2), "q4_0": (4, 32, 2), "asym4": (4, 32, 4), "nf4": (4, 64, 2), "int2s": (2, 16, 2), "int4-row": (4, None, 2),
        "int4-asym-g32": (4, 32, 4)}
COUNTER_FIELDS = ("grid", "n_blocks", "dtype", "time_s", "cycles", "bound", "limiter", "waves",
                  "blocks_per_sm", "sram_per_block_bytes", "hbm_read_bytes", "hbm_write_bytes",
                  "l2_hit_bytes", "sram_read_bytes", "sram_write_bytes", "flops_matmul", "flops_vector",
                  "peak_hbm_bytes", "resource_s")


class Int2Split(Scheme):
    """2-bit symmetric codes in groups of 16, four per byte in split order (exercises the generic decode)."""

    name, bits, group_size, split_halves = "int2s", 2, 16, True

    def quantize_groups(self, groups):
        scale = to_fp16(np.abs(groups).max(axis=1) / 2)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(scale[:, None] > 0, np.rint(groups / scale[:, None]), 0)
        return (np.clip(q, -2, 1) + 2).astype(np.uint8), scale, None


class Int4PerRow(Scheme):
    """4-bit with one scale per row: K tiles may split the row's one group (at whole bytes)."""

    name, bits, group_size = "int4-row", 4, None

    def quantize_groups(self, groups):
        scale = to_fp16(np.abs(groups).max(axis=1) / 7)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.where(scale[:, None] > 0, np.rint(groups / scale[:, None]), 0)
        return (np.clip(q, -7, 7) + 8).astype(np.uint8), scale, None


def scheme(fmt):
    return {"asym4": Asym4(), "nf4": NF4Scheme(), "int2s": Int2Split(), "int4-row": Int4PerRow()}.get(fmt, fmt)


def group(fmt, k) -> int:
    """Weights per group; per-row schemes: the row padded to whole bytes."""
    bits, g, _ = SPEC[fmt]
    per = 8 // bits
    return g if g is not None else math.ceil(k / per) * per


def packed_bytes(fmt, n, k) -> int:
    bits, _, hdr = SPEC[fmt]
    g = group(fmt, k)
    return n * math.ceil(k / g) * (hdr + g * bits // 8)


@pytest.fixture(scope="module", autouse=True)
def warm_quant(warm_kernels):
    """Compile the quantized kernels once, in both modes."""
    w = np.ones((3, 32), np.float32)
    with Profile("a100-40gb"):
        for fmt in ("q4_0", "int8", "asym4"):
            q = quantize(w, scheme(fmt))
            quantized_gemv(np.ones(32), q)
            quantized_matmul(np.ones((2, 32)), q)
            unfused_quantized_matmul(np.ones((2, 32)), q)
            quantized_gemv(meta((32,)), QuantizedTensor.meta((3, 32), scheme(fmt)))
            quantized_matmul(meta((2, 32)), QuantizedTensor.meta((3, 32), scheme(fmt)))
            unfused_quantized_matmul(meta((2, 32)), QuantizedTensor.meta((3, 32), scheme(fmt)))


@st.composite
def cases(draw, max_m=9, max_n=40, max_k=150):
    """(fmt, M, N, K, x, qweight): K a multiple of 32 for the gguf formats, anything otherwise."""
    fmt = draw(st.sampled_from(FORMATS))
    m, n = (draw(dims(max_m)) if max_m > 1 else 1), draw(dims(max_n))
    k = 32 * draw(st.integers(1, 4)) if fmt in GGUF else draw(dims(max_k))
    rng = np.random.default_rng(draw(seeds()))
    w = rng.standard_t(4, size=(n, k)).astype(np.float32)                     # (N, K)
    x = (rng.standard_normal((m, k)) * 10.0 ** rng.integers(-2, 3)).astype(np.float32)   # (M, K)
    return fmt, m, n, k, x, quantize(w, scheme(fmt))


@st.composite
def block_k_for(draw, fmt, k):
    """A valid K tile: whole groups, or for per-row schemes any whole number of code bytes."""
    g = group(fmt, k)
    if fmt in PER_ROW:
        per = 8 // SPEC[fmt][0]
        return per * draw(st.one_of(st.just(1), st.integers(1, k // per + 3)))
    return g * draw(st.integers(1, 3))


def abs_weights(q) -> np.ndarray:
    """|scale * level| + |min| per weight (N, K): what rounding errors scale with."""
    codes, scale, mn = q.unpacked()
    a = np.abs(q.levels()[codes] * scale[:, :, None]).astype(np.float64)
    if mn is not None:
        a = a + np.abs(mn)[:, :, None]
    return a.reshape(q.shape[0], -1)[:, :q.shape[1]]


def assert_close(y, x, q):
    """float32 accumulation bound vs float64 dequantize-then-matmul: 4 K eps |x| |W|^T."""
    wd = q.dequantize().astype(np.float64)
    ref = x.astype(np.float64) @ wd.T
    kp = q.layout.padded_k
    bound = 4 * kp * EPS32 * (np.abs(x).astype(np.float64) @ abs_weights(q).T) + 1e-30
    assert y.shape == ref.shape and y.dtype == np.float32
    err = np.abs(y - ref)
    assert np.all(err <= bound), f"max excess {np.max(err - bound)}"


def one(fn, *args, device="a100-40gb", **kw):
    with Profile(device) as prof:
        out = fn(*args, **kw)
    return out, prof.records


# ---- numerics -----------------------------------------------------------------------------------

@given(case=cases(), data=st.data())
def test_fused_matmul_matches_dequantize_then_reference(case, data):
    fmt, m, n, k, x, q = case
    kw = {}
    if data.draw(st.booleans()):
        kw = dict(block_m=data.draw(st.integers(1, 12)), block_n=data.draw(st.integers(1, 12)),
                  block_k=data.draw(block_k_for(fmt, k)))
    y, recs = one(quantized_matmul, x, q, **kw)
    assert_close(y, x, q)
    assert len(recs) == 1 and recs[0].name == "quantized_matmul"


@given(case=cases(max_m=1), data=st.data())
def test_fused_gemv_matches_dequantize_then_reference(case, data):
    fmt, _, n, k, x, q = case
    kw = {}
    if data.draw(st.booleans()):
        kw = dict(block_n=data.draw(st.integers(1, 12)), block_k=data.draw(block_k_for(fmt, k)))
    y, _ = one(quantized_gemv, x[0], q, **kw)                 # x (K,) -> y (N,)
    assert y.shape == (n,)
    assert_close(y[None, :], x, q)
    y2, _ = one(quantized_gemv, x, q, **kw)                   # x (1, K) -> y (1, N)
    np.testing.assert_array_equal(y2[0], y)


@given(case=cases(max_m=5, max_n=20))
def test_unfused_baseline_matches_and_dequantize_kernel_is_exact(case):
    fmt, m, n, k, x, q = case
    y, recs = one(unfused_quantized_matmul, x, q)
    assert [r.name for r in recs] == ["dequantize", "matmul_v3_mma"]
    assert_close(y, x, q)
    for transposed in (False, True):
        w, _ = one(dequantize_kernel, q, transposed=transposed, block_n=3)
        np.testing.assert_array_equal(w, q.dequantize().T if transposed else q.dequantize())


def test_quantized_gemv_is_close_to_fp32_gemv():
    """Output error of the 4-bit formats vs the unquantized fp32 product: a few percent."""
    rng = np.random.default_rng(8)
    w = rng.standard_normal((64, 512)).astype(np.float32)
    x = rng.standard_normal(512).astype(np.float32)
    exact = w.astype(np.float64) @ x
    for fmt, tol in (("int8", 0.01), ("q8_0", 0.01), ("int4-g32", 0.1), ("q4_0", 0.1), ("int4-g128", 0.15)):
        y, _ = one(quantized_gemv, x, quantize(w, fmt))
        rel = np.linalg.norm(y - exact) / np.linalg.norm(exact)
        assert rel < tol, (fmt, rel)


# ---- the fused epilogue ------------------------------------------------------------------------

EPILOGUES = st.tuples(st.booleans(), st.sampled_from([None, "gelu", "relu", "silu", "tanh"]), st.booleans())


def epilogue_inputs(m, n, has_bias, has_res, seed):
    rng = np.random.default_rng(seed)
    bias = rng.standard_normal(n).astype(np.float32) if has_bias else None              # (N,)
    res = rng.standard_normal((m, n)).astype(np.float32) if has_res else None          # (M, N)
    return bias, res


def epilogue_ref(y, bias, act, res):
    """act(y + bias) + res in float64, y the kernel's own output without an epilogue."""
    from tinyml.kernels.fusion.ops import OPS

    z = y.astype(np.float64) + (0.0 if bias is None else bias)
    z = z if act is None else OPS[act].ref(z)
    return z + (0.0 if res is None else res)


@given(case=cases(), epi=EPILOGUES, seed=seeds())
def test_matmul_epilogue_equals_the_plain_kernel_then_the_ops(case, epi, seed):
    """act(x W^T + b) + r in one kernel equals the plain kernel's output with the ops applied
    after it, to float32 rounding of the epilogue; one launch whatever the epilogue."""
    fmt, m, n, k, x, q = case
    has_bias, act, has_res = epi
    bias, res = epilogue_inputs(m, n, has_bias, has_res, seed)
    y, _ = one(quantized_matmul, x, q)
    got, recs = one(quantized_matmul, x, q, bias=bias, activation=act, residual=res)
    want = epilogue_ref(y, bias, act, res)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * (1 + np.abs(want).max()))
    assert [r.name for r in recs] == ["quantized_matmul"]
    g, _ = one(quantized_gemv, x[0], q, bias=bias, activation=act, residual=None if res is None else res[0])
    np.testing.assert_allclose(g, epilogue_ref(y[0], bias, act, None if res is None else res[0]),
                               rtol=1e-5, atol=1e-5 * (1 + np.abs(want).max()))


@given(fmt=st.sampled_from(FORMATS), m=dims(200), n=dims(200), kb=st.integers(1, 6), epi=EPILOGUES,
       dtype=logical_dtypes(), blocks=st.tuples(st.integers(1, 48), st.integers(1, 48)))
def test_epilogue_bytes_and_flops_closed_form(fmt, m, n, kb, epi, dtype, blocks):
    """The epilogue adds a bias once per block row of tiles (gemv: once), a residual once, and
    F FLOPs per output element (F from the op table); the rest is the plain kernel's."""
    from tinyml.kernels.fusion.ops import OPS

    has_bias, act, has_res = epi
    k, s = 32 * kb, ELEM_BYTES[dtype]
    q = QuantizedTensor.meta((n, k), scheme(fmt))
    bm, bn = blocks
    f = has_bias + (0 if act is None else OPS[act].flops) + has_res
    bias = meta((n,), dtype) if has_bias else None
    res = meta((m, n), dtype) if has_res else None
    _, (plain,) = one(quantized_matmul, meta((m, k), dtype), q, block_m=bm, block_n=bn)
    _, (rec,) = one(quantized_matmul, meta((m, k), dtype), q, bias=bias, activation=act, residual=res,
                    block_m=bm, block_n=bn, block_k=plain_bk(plain))
    assert raw_reads(rec) == raw_reads(plain) + (math.ceil(m / bm) * n * has_bias + m * n * has_res) * s
    assert rec.hbm_write_bytes == plain.hbm_write_bytes == m * n * s
    assert rec.flops_vector == plain.flops_vector + f * m * n
    _, (gplain,) = one(quantized_gemv, meta((k,), dtype), q, block_n=bn)
    _, (grec,) = one(quantized_gemv, meta((k,), dtype), q, bias=bias, activation=act, block_n=bn,
                     residual=meta((n,), dtype) if has_res else None)
    assert raw_reads(grec) == raw_reads(gplain) + n * (has_bias + has_res) * s
    assert grec.flops_vector == gplain.flops_vector + f * n


def plain_bk(rec) -> "int | None":
    """None: let the epilogue call choose its K tile (the byte formula does not depend on it)."""
    return None


def test_epilogue_inputs_are_checked():
    q = quantize(np.ones((8, 32), np.float32), "q4_0")
    x = np.ones((3, 32), np.float32)
    with pytest.raises(ShapeError, match=r"bias must have shape \(8,\)"):
        one(quantized_matmul, x, q, bias=np.ones(3, np.float32))
    with pytest.raises(ShapeError, match=r"residual must have shape \(3, 8\)"):
        one(quantized_matmul, x, q, residual=np.ones((8, 3), np.float32))
    with pytest.raises(ShapeError, match=r"residual must have shape \(1, 8\)"):
        one(quantized_gemv, x[0], q, residual=np.ones(7, np.float32))
    with pytest.raises(DTypeError, match="MetaTensor"):
        one(quantized_matmul, x, q, bias=meta((8,)))
    from tinyml.kernels.fusion import ProgramError

    with pytest.raises(ProgramError, match="unknown activation"):
        one(quantized_gemv, x[0], q, activation="softmax")


# ---- counting mode == executing mode ----------------------------------------------------------

@given(case=cases(), dev=any_devices(), dtype=logical_dtypes())
def test_counting_mode_equals_executing_mode(case, dev, dtype):
    fmt, m, n, k, x, q = case
    fake = QuantizedTensor.meta((n, k), scheme(fmt))
    for fn, xr, xm in ((quantized_matmul, x, meta((m, k), dtype)),
                       (quantized_gemv, x[0], meta((k,), dtype)),
                       (unfused_quantized_matmul, x, meta((m, k), dtype))):
        out, executed = one(fn, xr, q, device=dev, dtype=dtype)
        counted_out, counted = one(fn, xm, fake, device=dev)
        assert isinstance(counted_out, MetaTensor) and counted_out.shape == out.shape
        assert len(executed) == len(counted)
        for e, c in zip(executed, counted):
            assert e.name == c.name
            for field in COUNTER_FIELDS:
                assert getattr(c, field) == getattr(e, field), (fn.__name__, field)


@given(case=cases(max_m=2), data=st.data(), dtype=logical_dtypes(), transposed=st.booleans())
def test_dequantize_kernel_counting_equals_executing_for_any_tiles(case, data, dtype, transposed):
    """Counting walks one block per class (first, interior and last K tile x interior and last row
    tile); a per-row scheme's K tiles split its one group, whose header only tile 0 reads."""
    fmt, _, n, k, _, q = case
    blocks = {"block_n": data.draw(st.integers(1, n + 2)), "block_k": data.draw(block_k_for(fmt, k))}
    kw = dict(dtype=dtype, transposed=transposed, **blocks)
    w, (executed,) = one(dequantize_kernel, q, **kw)
    counted_out, (counted,) = one(dequantize_kernel, QuantizedTensor.meta((n, k), scheme(fmt)), **kw)
    assert isinstance(counted_out, MetaTensor) and counted_out.shape == w.shape
    for field in COUNTER_FIELDS:
        assert getattr(counted, field) == getattr(executed, field), field


# ---- bytes == closed forms from the packed sizes --------------------------------------------------

def raw_reads(rec):
    return rec.hbm_read_bytes + rec.l2_hit_bytes


@given(fmt=st.sampled_from(FORMATS), m=dims(300), n=dims(300), kb=st.integers(1, 12), extra=st.integers(0, 31),
       dtype=logical_dtypes(), blocks=st.tuples(st.integers(1, 64), st.integers(1, 64), st.integers(1, 3)))
def test_bytes_and_flops_closed_form(fmt, m, n, kb, extra, dtype, blocks):
    k = 32 * kb + (0 if fmt in GGUF else extra)
    s = ELEM_BYTES[dtype]
    q = QuantizedTensor.meta((n, k), scheme(fmt))
    qb = packed_bytes(fmt, n, k)
    assert q.nbytes == qb
    bm, bn, mult = blocks
    g = group(fmt, k)
    bk = g * mult if fmt not in PER_ROW else 16 * mult
    kp = math.ceil(k / g) * g
    has_min = fmt in ("asym4", "int4-asym-g32")
    _, (rec,) = one(quantized_matmul, meta((m, k), dtype), q, block_m=bm, block_n=bn, block_k=bk)
    assert raw_reads(rec) == math.ceil(n / bn) * m * k * s + math.ceil(m / bm) * qb
    assert rec.hbm_write_bytes == m * n * s
    assert rec.flops_matmul == 2 * m * n * kp
    assert rec.flops_vector == math.ceil(m / bm) * n * kp * (1 + has_min)
    _, (rec,) = one(quantized_gemv, meta((k,), dtype), q, block_n=bn, block_k=bk)
    assert raw_reads(rec) == qb + math.ceil(n / bn) * k * s
    assert rec.hbm_write_bytes == n * s
    pairs = kp // g if bk % g == 0 else math.ceil(kp / bk)       # (tile, group) pairs per row
    assert rec.flops_vector == n * (1 + has_min) * (2 * kp + 2 * pairs)
    _, (deq, mm) = one(unfused_quantized_matmul, meta((m, k), dtype), q)
    assert raw_reads(deq) == qb and deq.hbm_write_bytes == n * k * s
    assert raw_reads(mm) >= m * k * s + k * n * s        # reads x and the whole fp16 W back


@pytest.mark.parametrize("fmt", ["int4-g32", "q4_0"])
def test_fused_gemv_reads_under_030x_of_fp16_and_unfused_moves_more(fmt):
    n = k = 4096
    _, (fused,) = one(quantized_gemv, meta((k,)), QuantizedTensor.meta((n, k), fmt))
    _, (fp16,) = one(matmul, meta((1, k)), meta((k, n)))                        # the fp16 gemv
    fp16_weights = n * k * 2
    assert fused.hbm_read_bytes <= 0.30 * fp16.hbm_read_bytes
    assert fp16.hbm_read_bytes >= fp16_weights
    _, unfused = one(unfused_quantized_matmul, meta((1, k)), QuantizedTensor.meta((n, k), fmt))
    moved = sum(r.hbm_read_bytes + r.hbm_write_bytes for r in unfused)
    assert moved > fp16.hbm_read_bytes + fp16.hbm_write_bytes
    assert sum(r.time_s for r in unfused) > fp16.time_s > fused.time_s


def test_weights_are_registered_by_their_packed_bytes():
    q = QuantizedTensor.meta((4096, 4096), "q4_0")
    with Profile("a100-40gb") as prof:
        y = quantized_gemv(meta((4096,)), q)
        live = {a.name: a.nbytes for a in prof.hbm.live.values()}
    assert live["qweight"] == 4096 * 128 * 18 and live["y"] == 4096 * 2
    del y


# ---- errors ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [quantized_gemv, quantized_matmul, unfused_quantized_matmul])
def test_bad_inputs(fn):
    q = quantize(np.ones((4, 64)), "int4-g32")
    x = np.ones((1, 64), np.float32)
    with pytest.raises(DTypeError, match="QuantizedTensor"):
        fn(x, np.ones((4, 64)))
    with pytest.raises(ShapeError, match="K=48"):
        fn(np.ones((1, 48)), q)
    with pytest.raises(DTypeError, match="shape-only|MetaTensor"):
        fn(meta((1, 64)), q)
    if fn is not unfused_quantized_matmul:
        with pytest.raises(DTypeError):
            fn(x, QuantizedTensor.meta((4, 64), "int4-g32"))
        with pytest.raises(TileConfigError, match="multiple of 32"):
            fn(x, q, block_k=48)
        with pytest.raises(TileConfigError):
            fn(x, q, block_n=0)
    bad = x.copy()
    bad[0, 5] = np.nan
    with pytest.raises(NonFiniteError, match=r"\(0, 5\)"):
        fn(bad, q)


def test_gemv_refuses_a_batch():
    q = quantize(np.ones((4, 64)), "q8_0")
    with pytest.raises(ShapeError, match="quantized_matmul"):
        quantized_gemv(np.ones((2, 64)), q)


def test_tiles_too_big_for_sram_are_refused():
    q = quantize(np.ones((64, 4096)), "int4-g32")
    from tinyml.sim import SramOverflowError

    with pytest.raises(SramOverflowError, match="block_m"):
        quantized_matmul(np.ones((64, 4096)), q, block_m=256, block_n=256, block_k=4096)


def test_runs_with_jit_disabled():
    """NUMBA_DISABLE_JIT=1 runs the quantized kernels as plain Python, with the same counters."""
    import contextlib
    import io
    import os
    import subprocess
    import sys

    script = """
import numpy as np
from tinyml.kernels.quant import quantize, quantized_gemv, quantized_matmul, unfused_quantized_matmul
from tinyml.sim import Profile
rng = np.random.default_rng(0)
w = rng.standard_normal((5, 40)).astype(np.float32)
x = rng.standard_normal((3, 40)).astype(np.float32)
out = []
for fmt in ("int4-g32", "int8"):
    q = quantize(w, fmt)
    with Profile("a100-40gb") as prof:
        y = quantized_matmul(x, q); g = quantized_gemv(x[0], q); u = unfused_quantized_matmul(x, q)
    ref = x.astype(np.float64) @ q.dequantize().T
    assert np.allclose(y, ref, atol=1e-4) and np.allclose(g, ref[0], atol=1e-4) and np.allclose(u, ref, atol=1e-4)
    out.append([(r.hbm_read_bytes, r.l2_hit_bytes, r.flops_vector) for r in prof.records])
print(out)
"""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    jitted = io.StringIO()              # the jitted run in this process: its kernels are compiled or cached already
    with contextlib.redirect_stdout(jitted):
        exec(script, {})
    assert proc.stdout == jitted.getvalue()


# ---- the error report ------------------------------------------------------------------------------

def test_error_report_matches_an_independent_computation():
    from tinyml.kernels.quant import error_report, sample_weights

    for kind in ("gaussian", "realistic"):
        w = sample_weights(kind, shape=(32, 256), seed=3)
        assert w.shape == (32, 256) and w.dtype == np.float32
        np.testing.assert_array_equal(w, sample_weights(kind, shape=(32, 256), seed=3))    # seeded
        x = np.random.default_rng(9).standard_normal(256).astype(np.float32)
        rows = error_report(w, x=x)
        assert [r["format"] for r in rows] == ["int8", "q8_0", "int4-g32", "q4_0", "int4-g64", "int4-g128"]
        exact = w.astype(np.float64) @ x
        for r in rows:
            q = quantize(w, r["format"])
            err = q.dequantize().astype(np.float64) - w
            assert r["rmse"] == pytest.approx(np.sqrt(np.mean(err ** 2)), rel=1e-9)
            assert r["max_error"] == pytest.approx(np.abs(err).max(), rel=1e-9)
            assert r["bits_per_weight"] == 8 * packed_bytes(r["format"], 32, 256) / w.size
            y = q.dequantize().astype(np.float64) @ x
            rel = np.linalg.norm(y - exact) / np.linalg.norm(exact)
            assert r["gemv_rel_error"] == pytest.approx(rel, rel=1e-3, abs=1e-6)
        by = {r["format"]: r["rmse"] for r in rows}
        assert by["q8_0"] < by["int4-g32"] < by["int4-g64"] < by["int4-g128"]
    with pytest.raises(Exception, match="gaussian"):
        sample_weights("uniform")
