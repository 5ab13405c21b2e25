"""Standard attention (separate kernels through HBM) and its batched matmul.

Numerics against the float64 reference with FlashAttention's rule: error at most
2x the naive float32 error + 1e-6 (3x for gradients). The naive float32 error is
the larger of

* the measured error of one naive float32 evaluation (``naive_float32_attention``
  from the strategies; for gradients ``naive_float32_backward`` below, the
  reference's backward formulas in float32), and
* ``float32_error_estimate``: the first-order size of float32 rounding in the
  same computation (typical dot-product rounding, carried through softmax,
  dropout and the backward as sums of magnitudes).

Why both: both sides compute in float32, so each error is one sample of
rounding noise. On ill-conditioned rows (logits of 1e3-1e4 with near ties,
which the strategies generate on purpose) one sample is heavy-tailed: two
equally valid naive float32 evaluations (matmul vs einsum) differ by more than
2x in over 10% of such cases, and NumPy evaluates ``q @ swapaxes(k)`` about 1.7x
more accurately than a contiguous sgemm (the stand-in for a tensor-core MMA),
so one-sample comparisons flake. The estimate does not depend on lucky
cancellation. It is looser (median ~10x one sample) but still far below any
real bug (a wrong mask, scale or dropout factor gives errors of 1e-2 or more).

Also: counting mode == executing mode, per-kernel HBM bytes and FLOPs == the
closed forms (written out here, not taken from the kernels), the HBM ledger
(what the forward saves, 64K tokens running out of an A100's HBM) and errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import (ELEM_BYTES, attention_inputs, attention_options, attention_tolerance, block_sizes,
                        logical_dtypes, naive_float32_attention, seeds, tile_sram_bytes)
from tinyml.kernels import reference
from tinyml.kernels.attention._common import _window
from tinyml.kernels.matmul import bmm
from tinyml.kernels.attention.masks import visible_matrix
from tinyml.kernels.attention.rng import keep_mask
from tinyml.kernels.attention.standard import (standard_attention, standard_attention_backward,
                                               standard_expected_bytes)
from tinyml.sim import (DTypeError, HbmOutOfMemoryError, MetaTensor, NonFiniteError, Profile, ShapeError,
                        SramOverflowError, TileConfigError, TinymlError, load_device, meta)

# Every field of a kernel record that depends on the counters.
COUNTER_FIELDS = ("name", "grid", "n_blocks", "dtype", "time_s", "cycles", "bound", "limiter", "waves",
                  "blocks_per_sm", "sram_per_block_bytes", "hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes",
                  "sram_read_bytes", "sram_write_bytes", "flops_matmul", "flops_vector", "peak_hbm_bytes",
                  "resource_s", "stream")

# Vector FLOPs per element, written out by hand (tinyml.kernels.attention.flops).
SCALE, MASK, SOFTMAX, EXP, DROPOUT, DROPOUT_APPLY, SOFTMAX_BWD = 1, 1, 1 + 2 + 1 + 1, 2, 15 + 2, 2, 3
U = 2.0 ** -24          # float32 unit roundoff


@pytest.fixture(scope="module", autouse=True)
def warm():
    """Compile (or load) every kernel once, in both modes, outside the hypothesis examples."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 3, 4)).astype(np.float32) for _ in range(3))
    kw = dict(causal=True, dropout_p=0.5, key_padding_mask=np.ones((1, 3), bool))
    for blocks in ({}, {"block_cols": 2}):
        with Profile("a100-40gb"):
            for x in ((q, k, v), tuple(meta(a.shape) for a in (q, k, v))):
                o, saved = standard_attention(*x, return_saved=True, **kw, **blocks)
                standard_attention_backward(q if x[0] is q else meta(q.shape), saved)


def run(q, k, v, do, device="a100-40gb", **kw):
    """Forward + backward in one profile: (o, (dq, dk, dv), records, saved)."""
    with Profile(device) as prof:
        o, saved = standard_attention(q, k, v, return_saved=True, **kw)
        grads = standard_attention_backward(do, saved)
    return o, grads, prof.records, saved


def naive_float32_backward(q, k, v, do, causal=False, key_padding_mask=None, dropout_p=0.0, seed=0,
                           scale=None, window=None):
    """reference.attention_backward, computed in float32: the naive baseline for gradients."""
    f = np.float32
    b, h, nq, d = q.shape
    kvh, nk = k.shape[1], k.shape[2]
    g = h // kvh
    sc = f(1.0 / np.sqrt(d) if scale is None else scale)
    k32, v32 = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)                   # (B, H, Nk, d)
    s = sc * (q @ np.swapaxes(k32, -1, -2))                                      # (B, H, Nq, Nk)
    ok = np.broadcast_to(visible_matrix(nq, nk, causal, _window(window, causal)), s.shape)
    if key_padding_mask is not None:
        ok = ok & key_padding_mask[:, None, None, :]
    s = np.where(ok, s, f(-np.inf))
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, f(0))
    e = np.where(ok, np.exp(s - m), f(0))
    den = e.sum(axis=-1, keepdims=True)
    p = np.where(den > 0, e / np.where(den > 0, den, f(1)), f(0)).astype(f)
    keep = keep_mask(seed, b, h, nq, nk, dropout_p) if dropout_p > 0 else np.ones(p.shape, bool)
    inv = f(1.0 / (1.0 - dropout_p))
    pd = np.where(keep, p * inv, f(0))
    dv = np.swapaxes(pd, -1, -2) @ do                                            # (B, H, Nk, d)
    dp = np.where(keep, (do @ np.swapaxes(v32, -1, -2)) * inv, f(0))             # (B, H, Nq, Nk)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = sc * (ds @ k32)
    dk = sc * (np.swapaxes(ds, -1, -2) @ q)
    return dq, dk.reshape(b, kvh, g, nk, d).sum(axis=2), dv.reshape(b, kvh, g, nk, d).sum(axis=2)


def float32_error_estimate(q, k, v, do, causal=False, key_padding_mask=None, dropout_p=0.0, seed=0,
                           scale=None, window=None):
    """First-order size of the rounding error of float32 attention (o, dq, dk, dv), in float64.

    Each product of length n is charged sqrt(n) * U * sum|a||b| (the typical
    size of float32 dot-product rounding); the logits' error is carried
    through softmax, dropout and the backward at first order. Sums of
    magnitudes: it does not depend on lucky cancellation, which is what makes
    one sample of the naive float32 error a poor yardstick on ill-conditioned
    rows (near ties among logits of 1e4).
    """
    f = np.float64
    q, k, v, do = (np.asarray(x, f) for x in (q, k, v, do))
    b, h, nq, d = q.shape
    kvh, nk = k.shape[1], k.shape[2]
    g = h // kvh
    sc = 1.0 / np.sqrt(d) if scale is None else scale
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)                      # (B, H, Nk, d)
    T = lambda x: np.swapaxes(x, -1, -2)                                         # noqa: E731
    ok = np.broadcast_to(visible_matrix(nq, nk, causal, _window(window, causal)), (b, h, nq, nk))
    if key_padding_mask is not None:
        ok = ok & np.asarray(key_padding_mask, bool)[:, None, None, :]
    s = np.where(ok, sc * (q @ T(k)), -np.inf)
    m = s.max(-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.where(ok, np.exp(s - m), 0.0)
    den = e.sum(-1, keepdims=True)
    p = np.divide(e, den, out=np.zeros_like(e), where=den > 0)                   # (B, H, Nq, Nk)
    keep = keep_mask(seed, b, h, nq, nk, dropout_p) / (1 - dropout_p) if dropout_p > 0 else 1.0
    pd = p * keep
    es = np.sqrt(d) * U * np.abs(sc) * (np.abs(q) @ T(np.abs(k))) + U * np.abs(np.where(ok, s, 0))
    # |dP_ij| = p_ij |dS_ij - sum_l p_il dS_il| <= p_ij ((1 - p_ij) E_ij + sum_{l != j} p_il E_il)
    dpp = p * ((1 - p) * es + (p * es).sum(-1, keepdims=True) - p * es) + 2 * U * p
    dpd = dpp * keep
    av, ado = np.abs(v), np.abs(do)
    e_o = dpd @ av + np.sqrt(nk) * U * (pd @ av)
    dp = (do @ T(v)) * keep                                                      # dP (after dropout bwd)
    edp = (np.sqrt(d) * U * (ado @ T(av)) + U * np.abs(dp)) * keep
    D = (p * dp).sum(-1, keepdims=True)
    ds = p * (dp - D)
    eds = dpp * np.abs(dp - D) + p * (edp + (dpp * np.abs(dp) + p * edp).sum(-1, keepdims=True))
    e_dq = abs(sc) * (eds @ np.abs(k) + np.sqrt(nk) * U * (np.abs(ds) @ np.abs(k)))
    e_dk = abs(sc) * (T(eds) @ np.abs(q) + np.sqrt(nq) * U * (T(np.abs(ds)) @ np.abs(q)))
    e_dv = T(dpd) @ ado + np.sqrt(nq) * U * (T(pd) @ ado)
    grp = lambda x: x.reshape(b, kvh, g, nk, d).sum(axis=2)                      # noqa: E731
    return e_o.max(), e_dq.max(), grp(e_dk).max(), grp(e_dv).max()


def err(x, ref) -> float:
    return float(np.abs(np.asarray(x, np.float64) - ref).max())


@st.composite
def row_blocks(draw):
    """Sometimes explicit bmm tiles and row tiles (long rows then take two passes)."""
    if not draw(st.booleans()):
        return {}
    names = ("block_m", "block_n", "block_k", "block_rows", "block_cols")
    return {n: draw(block_sizes(24)) for n in names}


# ---- numerics -------------------------------------------------------------------------------

@given(inputs=attention_inputs(max_seq=24), data=st.data(), blocks=row_blocks())
def test_forward_and_backward_match_reference(inputs, data, blocks):
    q, k, v, do = inputs
    kw = data.draw(attention_options(k.shape[2], q.shape[0], allow_window=True))
    o, (dq, dk, dv), recs, saved = run(q, k, v, do, **kw, **blocks)
    ref_o, _ = reference.attention(q, k, v, **kw)
    assert o.shape == q.shape and o.dtype == np.float32
    est = float32_error_estimate(q, k, v, do, **kw)
    naive_o = err(naive_float32_attention(q, k, v, **kw), ref_o)
    assert err(o, ref_o) <= attention_tolerance(max(naive_o, est[0]))
    refs = reference.attention_backward(q, k, v, do, **kw)
    naive = naive_float32_backward(q, k, v, do, **kw)
    for name, got, ref, base, e in zip(("dq", "dk", "dv"), (dq, dk, dv), refs, naive, est[1:]):
        assert got.shape == ref.shape and np.isfinite(got).all(), name
        assert err(got, ref) <= attention_tolerance(max(err(base, ref), e), 3.0), name
    if kw.get("dropout_p", 0) > 0:   # the stored mask is rng.keep's, bit for bit
        np.testing.assert_array_equal(saved.keep, keep_mask(kw["seed"], *saved.p.shape, kw["dropout_p"]))
    masked = kw.get("causal") or "key_padding_mask" in kw or "window" in kw
    n_kernels = 3 + masked + 2 * (kw.get("dropout_p", 0) > 0) + 5 + masked
    assert len(recs) == n_kernels


def test_fully_masked_rows_give_zeros_not_nan():
    rng = np.random.default_rng(1)
    q, k, v, do = (rng.standard_normal((2, 2, 5, 4)).astype(np.float32) for _ in range(4))
    pad = np.ones((2, 5), bool)
    pad[1] = False                                           # batch 1: every key is padding
    o, (dq, dk, dv), _, saved = run(q, k, v, do, key_padding_mask=pad, dropout_p=0.3, block_cols=2)
    assert np.all(o[1] == 0) and np.all(dq[1] == 0) and np.all(dk[1] == 0) and np.all(dv[1] == 0)
    assert np.all(saved.p[1] == 0) and np.isfinite(saved.p).all()


def test_huge_logits_and_two_pass_softmax():
    """Logits of +-1e4 through the chunked (two-pass) softmax still match the reference."""
    rng = np.random.default_rng(2)
    q = (100 * rng.standard_normal((1, 2, 9, 8))).astype(np.float32)
    k = (100 * rng.standard_normal((1, 1, 33, 8))).astype(np.float32)
    v, do = rng.standard_normal((1, 1, 33, 8)).astype(np.float32), rng.standard_normal(q.shape).astype(np.float32)
    ref_o, _ = reference.attention(q, k, v, causal=True)
    naive = max(err(naive_float32_attention(q, k, v, causal=True), ref_o),
                float32_error_estimate(q, k, v, do, causal=True)[0])
    for cols in (None, 1, 4, 32):
        o, grads, recs, _ = run(q, k, v, do, causal=True, block_cols=cols)
        assert err(o, ref_o) <= attention_tolerance(naive)


# ---- counting mode == executing mode ---------------------------------------------------------

@given(inputs=attention_inputs(max_seq=20, big_logits=False), data=st.data(), dtype=logical_dtypes(),
       device=st.sampled_from(("a100-40gb", "h100-sxm", "toy")), blocks=row_blocks())
def test_counting_mode_equals_executing_mode(inputs, data, dtype, device, blocks):
    q, k, v, do = inputs
    kw = data.draw(attention_options(k.shape[2], q.shape[0], allow_window=True))
    if device == "toy":
        blocks = {}                    # its 2 KB of SRAM: let the kernels choose
    _, _, executed, _ = run(q, k, v, do, device=device, dtype=dtype, **kw, **blocks)
    o, grads, counted, _ = run(*(meta(x.shape, dtype) for x in (q, k, v, do)), device=device, **kw, **blocks)
    assert isinstance(o, MetaTensor) and o.shape == q.shape and o.dtype == dtype
    assert [g.shape for g in grads] == [q.shape, k.shape, v.shape]
    assert len(counted) == len(executed)
    for c, e in zip(counted, executed):
        for field in COUNTER_FIELDS:
            assert getattr(c, field) == getattr(e, field), (c.name, field)


# ---- bytes and FLOPs == the closed forms -----------------------------------------------------

def expected_kernels(B, H, KVH, Nq, Nk, d, s, bm, bn, bk, br, bc, masked, padded, dropout):
    """{kernel: (raw HBM reads, writes, matmul FLOPs, vector FLOPs, SRAM per block)}, by hand."""
    cd = lambda a, b: -(-a // b)  # noqa: E731
    X, Q, K_, KV = B * H * Nq * Nk * s, B * H * Nq * d * s, B * H * Nk * d * s, B * KVH * Nk * d * s
    E = B * H * Nq * Nk                                     # score elements (and mask bytes)
    pad = B * H * cd(Nq, br) * Nk if padded else 0
    mm = 2 * B * H * Nq * Nk * d
    tile = tile_sram_bytes(bm, bn, bk, {2: "fp16", 4: "fp32"}[s])
    two = bc < Nk
    rows = br * bc * s
    out = {"attn_std_qk": (Q * cd(Nk, bn) + K_ * cd(Nq, bm), X, mm, SCALE * E, tile)}
    if masked:
        out["attn_std_mask"] = (X + pad, X, 0, MASK * E, rows + (bc if padded else 0))
    out["attn_std_softmax"] = ((2 if two else 1) * X, X, 0, (SOFTMAX + (EXP if two else 0)) * E, rows)
    if dropout:
        out["attn_std_dropout"] = (X, X + E, 0, DROPOUT * E, rows + br * bc)
    out["attn_std_pv"] = (X * cd(d, bn) + K_ * cd(Nq, bm), Q, mm, 0, tile)
    out["attn_std_bwd_dv"] = (X * cd(d, bn) + Q * cd(Nk, bm), KV, mm, 0, tile)
    out["attn_std_bwd_dp"] = (Q * cd(Nk, bn) + K_ * cd(Nq, bm), X, mm, 0, tile)
    if dropout:
        out["attn_std_bwd_dropout"] = (X + E, X, 0, DROPOUT_APPLY * E, rows + br * bc)
    out["attn_std_bwd_softmax"] = ((4 if two else 2) * X, X, 0, SOFTMAX_BWD * E, 2 * rows)
    if masked:
        out["attn_std_bwd_mask"] = (X + pad, X, 0, MASK * E, rows + (bc if padded else 0))
    out["attn_std_bwd_dq"] = (X * cd(d, bn) + K_ * cd(Nq, bm), Q, mm, SCALE * B * H * Nq * d, tile)
    out["attn_std_bwd_dk"] = (X * cd(d, bn) + Q * cd(Nk, bm), KV, mm, SCALE * B * KVH * Nk * d, tile)
    return out


@given(B=st.integers(1, 3), kvh=st.sampled_from((1, 2)), group=st.sampled_from((1, 2, 4)),
       Nq=st.integers(1, 300), Nk=st.integers(1, 300), d=st.sampled_from((1, 7, 64, 128, 200)),
       dtype=st.sampled_from(("fp16", "fp32")), causal=st.booleans(), padded=st.booleans(),
       dropout=st.booleans(), mm=st.tuples(*[st.sampled_from((3, 7, 16, 32, 61, 64))] * 3),
       br=block_sizes(32), bc=st.integers(1, 320))
def test_bytes_and_flops_closed_form(B, kvh, group, Nq, Nk, d, dtype, causal, padded, dropout, mm, br, bc):
    H = kvh * group
    s = ELEM_BYTES[dtype]
    kw = dict(causal=causal, dropout_p=0.1 if dropout else 0.0, dtype=dtype)
    if padded:
        kw["key_padding_mask"] = np.ones((B, Nk), bool)
    bm, bn, bk = mm
    q, k, v = meta((B, H, Nq, d), dtype), meta((B, kvh, Nk, d), dtype), meta((B, kvh, Nk, d), dtype)
    _, _, recs, _ = run(q, k, v, meta((B, H, Nq, d), dtype), **kw, block_m=bm, block_n=bn, block_k=bk,
                        block_rows=br, block_cols=bc)
    want = expected_kernels(B, H, kvh, Nq, Nk, d, s, bm, bn, bk, br, bc, causal or padded, padded, dropout)
    assert [r.name for r in recs] == list(want)
    table = standard_expected_bytes(B, H, kvh, Nq, Nk, d, dtype=dtype, masked=causal or padded, padded=padded,
                                    dropout=dropout, device="a100-40gb", block_m=bm, block_n=bn, block_k=bk,
                                    block_rows=br, block_cols=bc)
    assert table == {name: w[:2] for name, w in want.items()}
    for r in recs:
        got = (r.hbm_read_bytes + r.l2_hit_bytes, r.hbm_write_bytes, r.flops_matmul, r.flops_vector,
               r.sram_per_block_bytes)
        assert got == want[r.name], r.name
        if not r.name.endswith("mask"):          # every load lands in SRAM (the padding mask goes to registers)
            assert r.sram_write_bytes == got[0], r.name


def test_figure2_config_is_quadratic_and_memory_bound():
    """FlashAttention Fig. 2 (B=64, H=16, N=1024, d=64, causal, dropout 0.1) in counting mode."""
    B, H, N, d = 64, 16, 1024, 64
    q = meta((B, H, N, d))
    _, _, recs, _ = run(q, q, q, q, causal=True, dropout_p=0.1)
    assert len(recs) == 12 and all(r.bound == "memory" for r in recs)
    X = B * H * N * N * 2
    raw = sum(r.hbm_read_bytes + r.l2_hit_bytes + r.hbm_write_bytes for r in recs)
    table = standard_expected_bytes(B, H, H, N, N, d, masked=True, dropout=True, device="a100-40gb")
    assert {r.name: (r.hbm_read_bytes + r.l2_hit_bytes, r.hbm_write_bytes) for r in recs} == table
    assert 20 * X <= raw <= 23 * X            # 8.5 X forward + 11.5 X backward + re-reads of N x d operands
    assert sum(r.flops_matmul for r in recs) == 12 * B * H * N * N * d


# ---- the HBM ledger ----------------------------------------------------------------------------

def test_saved_tensors_stay_in_hbm_and_the_rest_is_freed():
    B, H, N, d = 2, 4, 96, 16
    X = B * H * N * N * 2
    qkv = 3 * B * H * N * d * 2
    o_bytes = B * H * N * d * 2
    q, k, v = (meta((B, H, N, d)) for _ in range(3))
    with Profile("a100-40gb") as prof:
        o = standard_attention(q, k, v, causal=True, dropout_p=0.2)
        assert prof.hbm.used == qkv + o_bytes                   # S, P, P_drop, mask all freed
        peak_plain = prof.peak_hbm_bytes
        del o
        o, saved = standard_attention(q, k, v, causal=True, dropout_p=0.2, return_saved=True)
        assert prof.hbm.used == qkv + o_bytes + 2 * X + X // 2  # P, P_drop and a 1-byte mask
        standard_attention_backward(meta((B, H, N, d)), saved)
    assert peak_plain == qkv + 2 * X + X // 2 + o_bytes        # during PV: P, P_drop, mask, O


def test_64k_tokens_run_out_of_a100_hbm():
    q = meta((1, 16, 65536, 64))
    with Profile("a100-40gb"), pytest.raises(HbmOutOfMemoryError) as e:
        standard_attention(q, q, q, causal=True)
    msg = str(e.value)
    assert "(1, 16, 65536, 65536)" in msg and "137 GB" in msg
    assert "Live allocations" in msg and "q " in msg


# ---- the batched matmul on its own ---------------------------------------------------------------

@given(shape=st.tuples(st.integers(1, 2), st.sampled_from((1, 2)), st.sampled_from((1, 2, 3)),
                       st.integers(1, 30), st.integers(1, 30), st.integers(1, 30)),
       ta=st.booleans(), tb=st.booleans(), alpha=st.sampled_from((None, 0.5)), reduce=st.booleans(),
       tiles=st.tuples(block_sizes(16), block_sizes(16), block_sizes(16)), seed=seeds())
def test_bmm_matches_numpy_and_formula(shape, ta, tb, alpha, reduce, tiles, seed):
    B, hb, g, M, N, K = shape
    ha = hb * g
    if reduce:
        hb = ha                                   # reduce_group sums a's heads in groups of g
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((B, ha) + ((K, M) if ta else (M, K))).astype(np.float32)
    b = rng.standard_normal((B, hb) + ((N, K) if tb else (K, N))).astype(np.float32)
    bm, bn, bk = tiles
    kw = dict(trans_a=ta, trans_b=tb, alpha=alpha, reduce_group=g if reduce else 1, block_m=bm, block_n=bn,
              block_k=bk)
    with Profile("a100-40gb") as prof:
        c = bmm(a, b, **kw)
    with Profile("a100-40gb") as counting:
        cm = bmm(meta(a.shape), meta(b.shape), **kw)
    A = np.swapaxes(a, -1, -2) if ta else a
    Bm = np.swapaxes(b, -1, -2) if tb else b
    Bm = np.repeat(Bm, ha // hb, axis=1)
    want = (A.astype(np.float64) @ Bm) * (1.0 if alpha is None else alpha)        # (B, ha, M, N)
    if reduce:
        want = want.reshape(B, ha // g, g, M, N).sum(axis=2)
    assert c.shape == want.shape == cm.shape
    bound = 2 * K * g * np.finfo(np.float32).eps * (np.abs(A) @ np.abs(Bm)).max() + 1e-30
    assert err(c, want) <= bound
    (ex,), (co,) = prof.records, counting.records
    for field in COUNTER_FIELDS:
        assert getattr(ex, field) == getattr(co, field), field
    reads = B * ha * (M * K * math.ceil(N / bn) + K * N * math.ceil(M / bm)) * 2
    assert (ex.hbm_read_bytes + ex.l2_hit_bytes, ex.hbm_write_bytes) == (reads, c.size * 2)
    assert ex.flops_matmul == 2 * B * ha * M * N * K
    assert ex.flops_vector == (0 if alpha is None else c.size)


@pytest.mark.parametrize("a, b, kw, match", [
    ((1, 2, 3, 4), (1, 2, 5, 6), {}, "inner dimensions"),
    ((1, 2, 3, 4), (2, 2, 4, 6), {}, "batch"),
    ((1, 3, 3, 4), (1, 2, 4, 6), {}, "heads"),
    ((1, 4, 3, 4), (1, 2, 4, 6), {"reduce_group": 2}, "reduce_group"),
])
def test_bmm_shape_errors(a, b, kw, match):
    with Profile("toy"), pytest.raises(ShapeError, match=match):
        bmm(meta(a), meta(b), **kw)


def test_bmm_bad_arguments():
    with Profile("toy"):
        with pytest.raises(TileConfigError):
            bmm(meta((1, 1, 2, 2)), meta((1, 1, 2, 2)), reduce_group=0)
        with pytest.raises(TileConfigError):
            bmm(meta((1, 1, 2, 2)), meta((1, 1, 2, 2)), alpha=float("nan"))


# ---- errors ------------------------------------------------------------------------------------

def test_bad_inputs_raise_tinyml_errors():
    ones = lambda *s: np.ones(s, np.float32)  # noqa: E731
    q, k = ones(1, 4, 5, 8), ones(1, 2, 7, 8)
    with Profile("toy"):
        with pytest.raises(ShapeError, match="head_dim"):
            standard_attention(q, ones(1, 2, 7, 4), ones(1, 2, 7, 4))
        with pytest.raises(ShapeError, match="same shape"):
            standard_attention(q, k, ones(1, 2, 6, 8))
        with pytest.raises(ShapeError, match="kv_heads=3"):
            standard_attention(q, ones(1, 3, 7, 8), ones(1, 3, 7, 8))
        with pytest.raises(ShapeError, match="key_padding_mask"):
            standard_attention(q, k, k, key_padding_mask=np.ones((1, 6), bool))
        bad = q.copy()
        bad[0, 1, 2, 3] = np.nan
        with pytest.raises(NonFiniteError, match="NaN"):
            standard_attention(bad, k, k)
        with pytest.raises(DTypeError):
            standard_attention(q, meta(k.shape), k)
        with pytest.raises(TileConfigError):
            standard_attention(q, k, k, block_rows=0)
        o, saved = standard_attention(q, k, k, return_saved=True)
        with pytest.raises(ShapeError, match="dout"):
            standard_attention_backward(ones(1, 4, 5, 7), saved)
        with pytest.raises(DTypeError):
            standard_attention_backward(meta(q.shape), saved)


def test_tiles_that_do_not_fit_sram_name_device_and_budget():
    q = meta((1, 1, 64, 64))
    with Profile("toy"):
        with pytest.raises(SramOverflowError) as e:
            standard_attention(q, q, q, block_m=64, block_n=64, block_k=64)
        assert "toy" in str(e.value) and "2,048" in str(e.value) and "block_m=" in str(e.value)
        with pytest.raises(SramOverflowError) as e:
            standard_attention(q, q, q, block_rows=64, block_cols=64)
        assert "toy" in str(e.value) and "block_rows=" in str(e.value)
    tiny = load_device("toy").replace(sram_per_sm=512)
    with Profile(tiny), pytest.raises(SramOverflowError, match="smallest tiles"):
        standard_attention(q, q, q)


def test_head_dim_never_overflows_sram():
    """Every operand is tiled (d too), so any head dim runs; only HBM limits standard attention."""
    for device in ("toy", "a100-40gb"):
        q = meta((1, 1, 8, 4096))
        with Profile(device) as prof:
            if device == "toy":
                with pytest.raises(HbmOutOfMemoryError):       # 1 MB of HBM
                    standard_attention(meta((1, 1, 8, 65536)), meta((1, 1, 8, 65536)), meta((1, 1, 8, 65536)))
            o, saved = standard_attention(q, q, q, return_saved=True)
            standard_attention_backward(q, saved)
        assert all(r.sram_per_block_bytes <= prof.device.sram_per_sm for r in prof.records)


def test_errors_are_tinyml_errors():
    for cls in (ShapeError, DTypeError, NonFiniteError, SramOverflowError, HbmOutOfMemoryError, TileConfigError):
        assert issubclass(cls, TinymlError)


def test_runs_with_jit_disabled(tmp_path):
    """NUMBA_DISABLE_JIT=1 runs forward and backward as plain Python, with the jitted counters."""
    import json
    import os
    import subprocess
    import sys

    script = """
import json, numpy as np, warnings
warnings.simplefilter("ignore")
from tinyml.kernels.attention.standard import (standard_attention, standard_attention_backward,
                                               standard_expected_bytes)
from tinyml.sim import Profile
rng = np.random.default_rng(0)
shapes = [(1, 2, 5, 3), (1, 1, 6, 3), (1, 1, 6, 3), (1, 2, 5, 3)]
q, k, v, do = (rng.standard_normal(s).astype(np.float32) for s in shapes)
with Profile("toy") as p:
    o, saved = standard_attention(q, k, v, causal=True, dropout_p=0.3, return_saved=True, block_cols=4)
    grads = standard_attention_backward(do, saved)
print(json.dumps([o.tolist(), [g.tolist() for g in grads], [r.to_dict() for r in p.records]]))
"""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    o, grads, records = json.loads(proc.stdout)
    rng = np.random.default_rng(0)
    q, k, v, do = (rng.standard_normal(s).astype(np.float32)
                   for s in [(1, 2, 5, 3), (1, 1, 6, 3), (1, 1, 6, 3), (1, 2, 5, 3)])
    jo, jgrads, jrecs, _ = run(q, k, v, do, device="toy", causal=True, dropout_p=0.3, block_cols=4)
    np.testing.assert_allclose(o, jo, rtol=1e-5, atol=1e-6)
    for g, jg in zip(grads, jgrads):
        np.testing.assert_allclose(g, jg, rtol=1e-5, atol=1e-6)
    for rec, jrec in zip(records, jrecs):
        jd = jrec.to_dict()
        for field in COUNTER_FIELDS:
            assert rec[field] == (list(jd[field]) if field == "grid" else jd[field]), (rec["name"], field)
