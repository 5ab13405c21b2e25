"""FlashAttention-2 (forward, backward) and the public ``flash_attention`` dispatcher.

Numerics against the float64 reference with FlashAttention's rule: max error
<= 2x the naive float32 implementation's + 1e-6 (forward), 3x for gradients.
The naive float32 gradient (``naive_backward``) is the reference backward's
arithmetic untiled in float32, once with the reference's formulas and once
with FA2's (P = exp(S - lse) from an fp32 lse, D = rowsum(dO * O)), taking the
larger error: they agree in exact arithmetic but round differently. Each
tolerance also adds the float32 rounding floor of the terms involved
(``output_tolerance``: every score held in float32; ``gradient_tolerances``: 4
ulps of the sums of |products| behind each gradient, and the drift from the
backward recomputing S with other tiles than the forward), because two float32
implementations' max errors differ at random by up to ~6x and one of them is
sometimes exact by luck (dP - D cancelling when a row sees one key); a real
bug errs by O(1), far above these floors.

Also: counting mode == executing mode (every counter-derived record field);
HBM bytes and FLOPs == the docstring formulas, evaluated here from the dense
structural mask (``visible_matrix``), not from the kernels' tile-skipping
code; block sizes from SRAM; L2 reuse of K/V; errors; the dispatcher.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import (ELEM_BYTES, any_devices, attention_inputs, attention_options, attention_tolerance,
                        block_sizes, logical_dtypes, naive_float32_attention)
from tinyml.kernels import reference
from tinyml.kernels.attention._common import _window
from tinyml.kernels.attention.flash import flash_attention, flash_attention_backward
from tinyml.kernels.attention.flash2 import Flash2Saved, flash_attention_v2, flash_attention_v2_backward
from tinyml.kernels.attention.masks import visible_matrix
from tinyml.kernels.attention.rng import keep_mask
from tinyml.sim import (MetaTensor, NonFiniteError, Profile, ShapeError, SramOverflowError, TileConfigError,
                        TinymlError, meta)

COUNTER_FIELDS = ("name", "grid", "n_blocks", "dtype", "time_s", "cycles", "bound", "limiter", "waves",
                  "blocks_per_sm", "sram_per_block_bytes", "hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes",
                  "sram_read_bytes", "sram_write_bytes", "flops_matmul", "flops_vector", "peak_hbm_bytes",
                  "resource_s", "stream")
BWD_NAMES = ["flash2_bwd_preprocess", "flash2_bwd", "flash2_bwd_dq_convert"]

# Vector FLOPs per computed score, written out by hand (tinyml.kernels.attention.flops):
# scale 1, mask 1, row max 1, exp 2, row sum 1, dropout 15 (RNG) + 2; backward: scale, mask,
# exp, dropout + 1 (applied to P and to dP), softmax backward 3.
def fwd_per_score(masked, dropout):
    return 1 + masked + 1 + 2 + 1 + 17 * dropout


def bwd_per_score(masked, dropout):
    return 1 + masked + 2 + 18 * dropout + 3


@pytest.fixture(scope="module", autouse=True)
def warm():
    """Compile (or load) every FA2 body once, in both modes, outside the hypothesis examples."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    k, v = (rng.standard_normal((1, 1, 3, 4)).astype(np.float32) for _ in range(2))
    kw = dict(causal=True, dropout_p=0.5, key_padding_mask=np.ones((1, 3), bool))
    with Profile("a100-40gb"):
        for x in ((q, k, v), (meta(q.shape), meta(k.shape), meta(v.shape))):
            o, saved = flash_attention_v2(*x, return_saved=True, **kw)
            flash_attention_v2_backward(q if x[0] is q else meta(q.shape), saved)


def run(q, k, v, do, device="a100-40gb", **kw):
    """Forward + backward in one profile: (o, (dq, dk, dv), records, saved)."""
    with Profile(device) as prof:
        o, saved = flash_attention_v2(q, k, v, return_saved=True, **kw)
        grads = flash_attention_v2_backward(do, saved)
    return o, grads, prof.records, saved


def naive_backward(q, k, v, do, fa2_way=False, dtype=np.float32, **kw):
    """The reference backward's arithmetic (tinyml.kernels.reference), untiled, in ``dtype`` throughout.

    With ``fa2_way`` it uses FlashAttention-2's formulas instead: P recomputed as
    exp(S - lse) from the lse rounded to ``dtype``, and D = rowsum(dO * O) rather than
    rowsum(dP * P). Both are exact in exact arithmetic; float32 rounds them differently
    (the fp32 lse carries half an ulp of |lse| into P; rowsum(dP * P) cancels exactly
    when a row sees one key). Returns (dq, dk, dv) and the magnitudes of the terms each
    gradient sums: scale |dS|-terms @ |K|, scale |dS|-terms^T @ |Q|, |P_d|^T @ |dO|,
    where the |dS| terms are P (|dO| @ |V|^T + |dO| . |O|): float32 rounds a dot product
    relative to the sum of its |products|, not to its (possibly cancelled) value.
    """
    f = dtype
    b, h, nq, d = q.shape
    kvh, nk = k.shape[1], k.shape[2]
    g = h // kvh
    scale = f(1.0 / np.sqrt(d) if kw.get("scale") is None else kw["scale"])
    q, do = q.astype(f), do.astype(f)
    kh, vh = np.repeat(k, g, axis=1).astype(f), np.repeat(v, g, axis=1).astype(f)        # (B, H, Nk, d)
    s = scale * (q @ np.swapaxes(kh, -1, -2))                                             # (B, H, Nq, Nk)
    ok = np.broadcast_to(visible_matrix(nq, nk, kw.get("causal", False),
                                        _window(kw.get("window"), kw.get("causal", False))), s.shape)
    if kw.get("key_padding_mask") is not None:
        ok = ok & kw["key_padding_mask"][:, None, None, :]
    s = np.where(ok, s, f(-np.inf))
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, f(0))
    e = np.where(ok, np.exp(s - m), f(0))
    den = e.sum(axis=-1, keepdims=True)
    if fa2_way:
        with np.errstate(divide="ignore"):
            lse = (m + np.log(den)).astype(f)                                               # (B, H, Nq, 1)
        p = np.where(ok & (den > 0), np.exp(s - np.where(den > 0, lse, f(0))), f(0)).astype(f)
    else:
        p = np.where(den > 0, e / np.where(den > 0, den, 1), f(0)).astype(f)
    pd, dmask = p, np.ones_like(p)
    if kw.get("dropout_p", 0.0) > 0:
        dmask = (keep_mask(kw.get("seed", 0), b, h, nq, nk, kw["dropout_p"]) / f(1 - kw["dropout_p"])).astype(f)
        pd = p * dmask
    dv = np.swapaxes(pd, -1, -2) @ do                                                      # (B, H, Nk, d)
    dp = (do @ np.swapaxes(vh, -1, -2)) * dmask                                            # (B, H, Nq, Nk)
    D = (do * (pd @ vh)).sum(axis=-1)[..., None] if fa2_way else (dp * p).sum(axis=-1, keepdims=True)
    ds = p * (dp - D)
    dq = scale * (ds @ kh)
    dk = scale * (np.swapaxes(ds, -1, -2) @ q)
    # |dS| terms: P (|dO| @ |V|^T (dropout-scaled) + |dO| . |O|), the sums of |products| behind dP and D
    terms = np.abs(p) * ((np.abs(do) @ np.swapaxes(np.abs(vh), -1, -2)) * dmask
                         + (np.abs(do) * np.abs(pd @ vh)).sum(axis=-1)[..., None])
    mags = (np.abs(scale) * (terms @ np.abs(kh)), np.abs(scale) * (np.swapaxes(terms, -1, -2) @ np.abs(q)),
            np.swapaxes(np.abs(pd), -1, -2) @ np.abs(do))
    # Recomputation drift: the backward recomputes S with other tiles (other BLAS sub-products) than
    # the forward that produced lse, so the two float32 scores differ by up to the dot-product rounding
    # bound 2 d eps |scale| |q| . |k| (as on a GPU, where forward and backward tile S differently).
    # A relative error M_ij in P_ij moves dV, dS and through dS the others, to first order, by:
    eps = float(np.finfo(np.float32).eps)
    m_ij = 2 * d * eps * np.abs(scale) * (np.abs(q) @ np.swapaxes(np.abs(kh), -1, -2))     # (B, H, Nq, Nk)
    ds_drift = np.abs(p) * m_ij * np.abs(dp - D)
    drift = (np.abs(scale) * (ds_drift @ np.abs(kh)), np.abs(scale) * (np.swapaxes(ds_drift, -1, -2) @ np.abs(q)),
             np.swapaxes(np.abs(pd) * m_ij, -1, -2) @ np.abs(do))
    return (dq, dk.reshape(b, kvh, g, nk, d).sum(axis=2), dv.reshape(b, kvh, g, nk, d).sum(axis=2)), \
        tuple(float(x.max()) if x.size else 0.0 for x in mags), \
        tuple(float(np.nan_to_num(x).max()) if x.size else 0.0 for x in drift)


def output_tolerance(q, k, v, o_naive, ref_o, **kw):
    """2x the naive float32 error + 1e-6 + what rounding every score to float32 does to O.

    Any float32 implementation holds each score s_ij = scale q_i . k_j as a float32 (and
    rounds the scale product): about eps |s_ij| of error in each exponent, which moves
    o_i by up to eps (|P_d| |S| @ |V| + |o_i| rowsum(P |S|)). Two float32 implementations
    differ by that much at random (their max errors differ by up to ~6x at |s| ~ 100),
    so the baseline alone, luckily small for one of them, would make the rule flaky.
    """
    b, h, nq, d = q.shape
    g = h // k.shape[1]
    scale = 1.0 / np.sqrt(d) if kw.get("scale") is None else kw["scale"]
    k64, v64 = np.repeat(k, g, axis=1).astype(np.float64), np.repeat(v, g, axis=1).astype(np.float64)
    s = np.abs(scale * (q.astype(np.float64) @ np.swapaxes(k64, -1, -2)))           # (B, H, Nq, Nk)
    p, pd, _ = reference._attention_probs(q, k, kw.get("causal", False), kw.get("key_padding_mask"),
                                          kw.get("dropout_p", 0.0), kw.get("seed", 0), kw.get("scale"),
                                          _window(kw.get("window"), kw.get("causal", False)))
    drift = (np.abs(pd) * s) @ np.abs(v64) + np.abs(ref_o) * (p * s).sum(axis=-1, keepdims=True)
    eps = float(np.finfo(np.float32).eps)
    return attention_tolerance(max_err(o_naive, ref_o)) + eps * float(drift.max())


def gradient_tolerances(q, k, v, do, refs, **kw):
    """Per gradient: 3x the naive float32 error (the larger of the reference's formulas and FA2's)
    + 1e-6 + 4 float32 ulps of the magnitude of the terms summed (the float32 dot-product bound,
    as in test_matmul: when dP and D nearly cancel, float32 keeps only their ulps, which one
    naive formula sometimes cancels exactly by luck)."""
    (n1, _, _), (n2, _, _), (_, mags, drifts) = (naive_backward(q, k, v, do, **kw),
                                                 naive_backward(q, k, v, do, True, **kw),
                                                 naive_backward(q, k, v, do, dtype=np.float64, **kw))
    eps = float(np.finfo(np.float32).eps)
    return [attention_tolerance(max(max_err(a, r), max_err(b, r)), factor=3.0) + 4 * eps * mag + drift
            for a, b, r, mag, drift in zip(n1, n2, refs, mags, drifts)]


def max_err(x, ref):
    return float(np.abs(np.asarray(x, np.float64) - ref).max())


def maybe_blocks():
    return st.one_of(st.none(), block_sizes(20))


# ---- numerics --------------------------------------------------------------------------------

@given(data=st.data(), inputs=attention_inputs(), bq=maybe_blocks(), bk=maybe_blocks())
def test_forward_and_backward_match_reference(data, inputs, bq, bk):
    q, k, v, do = inputs
    kw = data.draw(attention_options(k.shape[2], q.shape[0], allow_window=True))
    o, grads, recs, saved = run(q, k, v, do, block_q=bq, block_k=bk, **kw)
    ref_o, ref_lse = reference.attention(q, k, v, **kw)
    assert o.shape == q.shape and o.dtype == np.float32
    assert max_err(o, ref_o) <= output_tolerance(q, k, v, naive_float32_attention(q, k, v, **kw), ref_o, **kw)
    # lse: -inf exactly where a row sees nothing, else close (relative to its magnitude)
    lse = saved.lse
    assert np.array_equal(np.isneginf(lse), np.isneginf(ref_lse))
    fin = np.isfinite(ref_lse)
    if fin.any():
        assert np.abs(lse[fin] - ref_lse[fin]).max() <= 1e-5 * max(1.0, np.abs(ref_lse[fin]).max())
    refs = reference.attention_backward(q, k, v, do, **kw)
    for name, g, r, tol in zip(("dq", "dk", "dv"), grads, refs, gradient_tolerances(q, k, v, do, refs, **kw)):
        assert g.shape == r.shape, name
        assert max_err(g, r) <= tol, name
    gqa = ["flash2_bwd_gqa_sum"] if saved.call.group > 1 else []
    assert [r.name for r in recs] == ["flash2_fwd"] + BWD_NAMES + gqa


def test_fully_masked_rows_give_zeros_not_nan():
    rng = np.random.default_rng(1)
    q, k, v, do = (rng.standard_normal(s).astype(np.float32) for s in [(2, 2, 9, 8), (2, 1, 5, 8), (2, 1, 5, 8),
                                                                      (2, 2, 9, 8)])
    mask = np.ones((2, 5), bool)
    mask[1] = False                                           # batch 1: every key is padding
    # causal with Nq > Nk: the first Nq - Nk queries of batch 0 see no key either
    o, (dq, dk, dv), _, saved = run(q, k, v, do, causal=True, key_padding_mask=mask, block_q=4, block_k=2)
    assert np.all(np.isfinite(o)) and np.all(o[1] == 0) and np.all(o[0, :, :4] == 0)
    assert np.all(np.isneginf(saved.lse[1])) and np.all(np.isneginf(saved.lse[0, :, :4]))
    assert np.all(dq[1] == 0) and np.all(dk[1] == 0) and np.all(dv[1] == 0) and np.all(dq[0, :, :4] == 0)


def test_big_logits_stay_finite():
    rng = np.random.default_rng(2)
    q = (1e3 * rng.standard_normal((1, 1, 40, 16))).astype(np.float32)
    k = (1e3 * rng.standard_normal((1, 1, 40, 16))).astype(np.float32)
    v, do = (rng.standard_normal((1, 1, 40, 16)).astype(np.float32) for _ in range(2))
    o, grads, _, _ = run(q, k, v, do, causal=True, block_q=16, block_k=16)
    ref_o, _ = reference.attention(q, k, v, causal=True)
    naive = naive_float32_attention(q, k, v, causal=True)
    assert max_err(o, ref_o) <= output_tolerance(q, k, v, naive, ref_o, causal=True)
    assert all(np.all(np.isfinite(g)) for g in grads)


# ---- counting mode == executing mode -----------------------------------------------------------

@given(data=st.data(), dev=any_devices(), inputs=attention_inputs(head_dims=(1, 3, 8, 16)),
       bq=maybe_blocks(), bk=maybe_blocks(), dtype=logical_dtypes())
def test_counting_mode_equals_executing_mode(data, dev, inputs, bq, bk, dtype):
    q, k, v, do = inputs
    kw = data.draw(attention_options(k.shape[2], q.shape[0], allow_window=True))
    kw.update(block_q=bq, block_k=bk, dtype=dtype)
    try:
        _, _, executed, _ = run(q, k, v, do, device=dev, **kw)
    except SramOverflowError:
        with pytest.raises(SramOverflowError):
            run(meta(q.shape, dtype), meta(k.shape, dtype), meta(v.shape, dtype), meta(do.shape, dtype),
                device=dev, **kw)
        return
    o, grads, counted, _ = run(meta(q.shape, dtype), meta(k.shape, dtype), meta(v.shape, dtype),
                               meta(do.shape, dtype), device=dev, **kw)
    assert isinstance(o, MetaTensor) and o.shape == q.shape and o.dtype == dtype
    assert [g.shape for g in grads] == [q.shape, k.shape, v.shape]
    assert len(counted) == len(executed)
    for c, e in zip(counted, executed):
        for field in COUNTER_FIELDS:
            assert getattr(c, field) == getattr(e, field), (c.name, field)


# ---- HBM bytes and FLOPs == the docstring formulas ----------------------------------------------

def tile_structure(nq, nk, br, bc, causal, window):
    """(computed (nqb, nkb) bool, valid rows (nqb,), valid cols (nkb,)): a tile is computed iff the
    dense structural mask has a visible (query, key) pair inside it."""
    vis = visible_matrix(nq, nk, causal, _window(window, causal))
    tiles = np.logical_or.reduceat(np.logical_or.reduceat(vis, np.arange(0, nq, br), axis=0),
                                   np.arange(0, nk, bc), axis=1)
    rows = np.minimum(br, nq - np.arange(0, nq, br))
    cols = np.minimum(bc, nk - np.arange(0, nk, bc))
    return tiles, rows, cols


def is_masked(causal, mask, window):
    return int(causal or mask or _window(window, causal) != (-1, -1))


def expected_forward(b, h, nq, nk, d, s, br, bc, causal, window, mask, dropout):
    """(reads before L2, writes, matmul FLOPs, vector FLOPs) of flash2_fwd (flash2_fwd's docstring)."""
    tiles, rows, cols = tile_structure(nq, nk, br, bc, causal, window)
    qrows = int(rows[tiles.any(axis=1)].sum())          # rows of q blocks with any computed tile
    tile_rows = int((tiles * rows[:, None]).sum())      # sum over computed tiles of r_i
    tile_cols = int((tiles * cols[None, :]).sum())      # ... of c_j
    area = int((tiles * np.outer(rows, cols)).sum())    # ... of r_i c_j
    reads = b * h * (d * s * qrows + (2 * d * s + mask) * tile_cols)
    writes = b * h * (nq * d * s + 4 * nq)
    vector = b * h * (fwd_per_score(is_masked(causal, mask, window), dropout) * area + tile_rows * (d + 3)
                      + qrows * (d + 2))
    return reads, writes, b * h * 4 * d * area, vector


def expected_backward(b, h, kvh, nq, nk, d, s, br, bc, causal, window, mask, dropout):
    """[(reads, writes, matmul FLOPs, vector FLOPs)] of preprocess, main, dq convert (, gqa sum)."""
    tiles, rows, cols = tile_structure(nq, nk, br, bc, causal, window)
    kcols = int(cols[tiles.any(axis=0)].sum())          # keys of K/V blocks with any computed tile
    tile_rows = int((tiles * rows[:, None]).sum())
    area = int((tiles * np.outer(rows, cols)).sum())
    bh = b * h
    out = [
        (2 * bh * nq * d * s, bh * nq * (4 + 4 * d), 0, 2 * bh * nq * d),
        (bh * ((2 * d * s + mask) * kcols + tile_rows * (2 * d * s + 8 + 4 * d)),
         bh * (2 * nk * d * s + tile_rows * 4 * d), bh * 10 * d * area,
         bh * (bwd_per_score(is_masked(causal, mask, window), dropout) * area + tile_rows * d + kcols * d)),
        (bh * nq * d * 4, bh * nq * d * s, 0, bh * nq * d),
    ]
    if h > kvh:
        out.append((2 * bh * nk * d * s, 2 * b * kvh * nk * d * s, 0, 2 * (h // kvh - 1) * b * kvh * nk * d))
    return out


def raw(rec):
    """(HBM reads before L2 reuse, writes, matmul FLOPs, vector FLOPs) of a record."""
    return rec.hbm_read_bytes + rec.l2_hit_bytes, rec.hbm_write_bytes, rec.flops_matmul, rec.flops_vector


@given(b=st.integers(1, 2), kvh=st.sampled_from((1, 2)), g=st.sampled_from((1, 3)), nq=st.integers(1, 300),
       nk=st.integers(1, 300), d=st.sampled_from((1, 16, 64, 80)), br=block_sizes(64), bc=block_sizes(64),
       dtype=logical_dtypes(), causal=st.booleans(), mask=st.booleans(), dropout=st.booleans(),
       window=st.sampled_from((None, 0, 7, (3, 40), (50, -1))))
def test_bytes_and_flops_equal_the_formulas(b, kvh, g, nq, nk, d, br, bc, dtype, causal, mask, dropout, window):
    h, s = kvh * g, ELEM_BYTES[dtype]
    kw = dict(causal=causal, window=window, block_q=br, block_k=bc, dtype=dtype,
              key_padding_mask=np.ones((b, nk), bool) if mask else None, dropout_p=0.1 if dropout else 0.0)
    _, _, recs, _ = run(meta((b, h, nq, d), dtype), meta((b, kvh, nk, d), dtype), meta((b, kvh, nk, d), dtype),
                        meta((b, h, nq, d), dtype), **kw)
    assert raw(recs[0]) == expected_forward(b, h, nq, nk, d, s, br, bc, causal, window, mask, dropout)
    bwd = expected_backward(b, h, kvh, nq, nk, d, s, br, bc, causal, window, mask, dropout)
    assert [raw(r) for r in recs[1:]] == bwd
    assert recs[0].grid == (b, h, math.ceil(nq / br)) and recs[2].grid == (b, h, math.ceil(nk / bc))


@pytest.mark.parametrize("shape", [(2, 4, 2, 1024, 1024, 64), (1, 3, 1, 300, 77, 16), (3, 2, 2, 5, 900, 128)])
def test_fa2_reads_q_k_v_and_writes_o_exactly_as_the_formula_says(shape):
    """Q read once, K and V once per q block, O and lse written once (non-causal, no mask)."""
    b, h, kvh, nq, nk, d = shape
    s, br, bc = 2, 64, 32
    _, _, recs, _ = run(meta((b, h, nq, d)), meta((b, kvh, nk, d)), meta((b, kvh, nk, d)), meta((b, h, nq, d)),
                        block_q=br, block_k=bc)
    fwd = recs[0]
    q_bytes = b * h * nq * d * s
    kv_bytes = 2 * b * h * math.ceil(nq / br) * nk * d * s
    assert fwd.hbm_read_bytes + fwd.l2_hit_bytes == q_bytes + kv_bytes
    assert fwd.hbm_write_bytes == b * h * nq * d * s + 4 * b * h * nq
    assert fwd.flops_matmul == 4 * b * h * nq * nk * d


def test_causal_reads_about_half_and_l2_serves_each_kv_head_once_per_wave():
    """Causal, N = Nk, B_r = B_c = B | N: K and V are read B H N (N / B + 1) d s / 2 bytes each; when the
    whole grid fits one wave, L2 serves every repeat, so HBM sees Q once and K, V once per kv head."""
    b, h, kvh, n, d, blk, s = 1, 4, 2, 512, 64, 64, 2
    recs = {}
    for causal in (False, True):
        _, _, r, _ = run(meta((b, h, n, d)), meta((b, kvh, n, d)), meta((b, kvh, n, d)), meta((b, h, n, d)),
                         causal=causal, block_q=blk, block_k=blk)
        recs[causal] = r[0]
    assert recs[True].waves == 1                           # 32 blocks on 108 SMs
    kv_causal = b * h * n * (n // blk + 1) * d * s // 2
    assert recs[True].hbm_read_bytes + recs[True].l2_hit_bytes == b * h * n * d * s + 2 * kv_causal
    for rec in recs.values():
        assert rec.hbm_read_bytes == b * h * n * d * s + 2 * b * kvh * n * d * s
    assert recs[True].flops_matmul == 4 * d * blk * blk * (n // blk) * (n // blk + 1) // 2 * b * h


# ---- block sizes and SRAM -------------------------------------------------------------------------

def fwd_sram(br, bc, d, s):
    return (br * d + 2 * bc * d) * s                                    # Q_i, K_j, V_j


def fwd_regs(br, bc, d):
    return (br * bc + br * d + 2 * br) * 4                             # S/P, O_i, m_i, l_i in fp32


def bwd_sram(br, bc, d, s):
    return (2 * bc * d + 2 * br * d + 2 * br * bc) * s                 # K_j, V_j, Q_i, dO_i, P_ij, dS_ij


def bwd_regs(br, bc, d):
    return (2 * br * bc + 2 * bc * d + br * d + 2 * br) * 4            # S, dP, dK_j, dV_j, dQ_i, lse, D


@pytest.mark.parametrize("d,dtype,fwd,bwd", [
    (64, "fp16", (128, 128), (128, 128)),      # FlashAttention-2's own A100 choice for d = 64 backward: 128 x 128
    (128, "fp16", (128, 128), (64, 128)),      # backward 64 x 128, as FlashAttention-2 on the A100
    (64, "fp32", (128, 128), (64, 128)),
])
def test_default_blocks_on_a100(d, dtype, fwd, bwd):
    n = 2048
    _, _, recs, _ = run(meta((1, 1, n, d), dtype), meta((1, 1, n, d), dtype), meta((1, 1, n, d), dtype),
                        meta((1, 1, n, d), dtype))
    s = ELEM_BYTES[dtype]
    assert recs[0].grid == (1, 1, n // fwd[0]) and recs[0].sram_per_block_bytes == fwd_sram(*fwd, d, s)
    assert recs[2].grid == (1, 1, n // bwd[1]) and recs[2].sram_per_block_bytes == bwd_sram(*bwd, d, s)
    assert recs[1].grid == (1, 1, n // bwd[0])
    # the choice is the first candidate (outer dimension first, 128 down to 16) that fits both budgets
    sram, regs = 196_608, 262_144
    assert fwd_sram(*fwd, d, s) <= sram and fwd_regs(*fwd, d) <= regs
    assert bwd_sram(*bwd, d, s) <= sram and bwd_regs(*bwd, d) <= regs
    if bwd[0] < 128:        # the bigger B_r did not fit
        assert bwd_sram(2 * bwd[0], bwd[1], d, s) > sram or bwd_regs(2 * bwd[0], bwd[1], d) > regs


def test_blocks_clamp_to_short_sequences():
    _, _, recs, _ = run(meta((1, 1, 5, 8)), meta((1, 1, 40, 8)), meta((1, 1, 40, 8)), meta((1, 1, 5, 8)))
    assert recs[0].grid == (1, 1, 1) and recs[0].sram_per_block_bytes == fwd_sram(5, 40, 8, 2)
    assert all(r.notes == () for r in recs)                      # the defaults: nothing was asked for


@pytest.mark.parametrize("version", (2, 3))
def test_requested_blocks_longer_than_the_sequences_are_clamped_visibly(version):
    """block_q=128 over 5 queries runs 5-row tiles: the records equal those of block_q=5 (SRAM,
    bytes, FLOPs) and say, in ``notes`` and under the table, what was clamped to what."""
    def records(bq, bk):
        shapes = ((1, 2, 5, 8), (1, 1, 40, 8), (1, 1, 40, 8))
        with Profile("h100-sxm") as prof:
            o, saved = flash_attention(*(meta(s) for s in shapes), version=version, block_q=bq, block_k=bk,
                                       return_saved=True)
            flash_attention_backward(meta(o.shape), saved)
        return prof

    asked, exact = records(128, 64), records(5, 40)
    for a, e in zip(asked.records, exact.records):
        assert {**a.to_dict(), "notes": []} == e.to_dict()
    clamped = ("block_q=128 clamped to N_q = 5: no tile is longer than its sequence",
               "block_k=64 clamped to N_k = 40: no tile is longer than its sequence")
    by_name = {r.name: r.notes for r in asked.records}
    assert by_name == {"flash3_fwd" if version == 3 else "flash2_fwd": clamped, "flash2_bwd_preprocess": (),
                       "flash2_bwd": clamped, "flash2_bwd_dq_convert": (), "flash2_bwd_gqa_sum": ()}
    assert all(r.notes == () for r in exact.records)
    table = asked.table()
    assert f"note: flash2_bwd: {clamped[0]}" in table and f"note: flash2_bwd: {clamped[1]}" in table
    assert "note:" not in exact.table()


# ---- sequence parallelism: FA2 vs FA1 ---------------------------------------------------------------

def test_sequence_parallelism_beats_fa1_when_batch_heads_is_below_the_sm_count():
    """Algorithm 1's grid (one block per (batch, head)) leaves 92 of 108 SMs idle; the shipped FA1
    splits the Q blocks by its num_splits heuristic and closes most of that gap, and FA2 stays faster."""
    from tinyml.kernels.attention.flash1 import MAX_SPLITS, flash_attention_v1, num_splits

    shapes = (meta((1, 16, 8192, 64)),) * 3
    with Profile("a100-40gb") as prof:
        flash_attention(*shapes, version=2)
        flash_attention_v1(*shapes, num_splits=1, skip_masked=False)
        flash_attention(*shapes, version=1)
    fa2, alg1, fa1 = prof.records
    assert fa2.grid == (1, 16, 64) and alg1.n_blocks == 16
    assert fa2.time_s * 3 < alg1.time_s
    t_r = -(-8192 // 64)                                        # B_r = 64 at d = 64 on the A100
    assert fa1.grid == (1, 16, num_splits(16, 108, fa1.blocks_per_sm, min(MAX_SPLITS, t_r)))
    assert fa2.time_s < fa1.time_s < alg1.time_s


# ---- errors ------------------------------------------------------------------------------------------

def test_errors():
    q, k = meta((1, 4, 8, 16)), meta((1, 2, 8, 16))
    with pytest.raises(ShapeError):
        flash_attention(q, k, meta((1, 2, 9, 16)))                       # k and v differ
    with pytest.raises(ShapeError):
        flash_attention(q, meta((1, 3, 8, 16)), meta((1, 3, 8, 16)))     # 4 heads, 3 kv heads
    with pytest.raises(ShapeError):
        flash_attention(q, k, k, key_padding_mask=np.ones((1, 9), bool))
    bad = np.ones((1, 1, 4, 4), np.float32)
    bad[0, 0, 1, 2] = np.nan
    with pytest.raises(NonFiniteError):
        flash_attention(bad, bad, bad)
    with pytest.raises(TileConfigError):
        flash_attention(q, k, k, block_q=0)
    with pytest.raises(TileConfigError, match="version"):
        flash_attention(q, k, k, version=3)
    with pytest.raises(TileConfigError, match="sliding window"):
        flash_attention(q, k, k, version=1, window=4)
    with Profile("a100-40gb"):
        o, saved = flash_attention(q, k, k, return_saved=True)
        with pytest.raises(ShapeError):
            flash_attention_backward(meta((1, 4, 8, 15)), saved)
        with pytest.raises(TinymlError):
            flash_attention_backward(np.zeros((1, 4, 8, 16), np.float32), saved)   # array after a counted forward
        with pytest.raises(SramOverflowError, match="registers.*block_q=128, block_k=128"):
            flash_attention(meta((1, 1, 512, 128)), meta((1, 1, 512, 128)), meta((1, 1, 512, 128)),
                            block_q=256, block_k=256)       # 384 KB of fp32 S and O: over the register file


def test_head_dim_too_large_names_device_budget_and_largest_head_dim():
    # forward, smallest blocks 16 x 16 in fp16: SRAM (16 d + 2 16 d) 2 = 96 d bytes,
    # registers (256 + 16 d + 32) 4 = 64 d + 1152 bytes: SRAM runs out first, at d = 2048
    big = meta((1, 1, 64, 2100))
    with Profile("a100-40gb"), pytest.raises(SramOverflowError) as err:
        flash_attention(big, big, big)
    msg = str(err.value)
    assert "a100-40gb" in msg and "196,608" in msg and str(196608 // 96) in msg
    # the backward: SRAM 128 d + 1024, registers 192 d + 2176: the register file runs out first;
    # d = 1400 fits the forward only
    assert (262144 - 2176) // 192 < (196608 - 1024) // 128
    x = meta((1, 1, 64, 1400))
    with Profile("a100-40gb"):
        o, saved = flash_attention(x, x, x, return_saved=True)
        with pytest.raises(SramOverflowError, match=str((262144 - 2176) // 192)):
            flash_attention_backward(x, saved)


# ---- dispatcher, HBM ledger, NUMBA_DISABLE_JIT ----------------------------------------------------------

def test_dispatcher_runs_both_versions():
    rng = np.random.default_rng(3)
    q, k, v, do = (rng.standard_normal((1, 2, 20, 8)).astype(np.float32) for _ in range(4))
    with Profile("a100-40gb") as prof:
        o2, s2 = flash_attention(q, k, v, causal=True, return_saved=True, block_q=8, block_k=8)
        g2 = flash_attention_backward(do, s2)
        o1, s1 = flash_attention(q, k, v, version=1, causal=True, return_saved=True)
        g1 = flash_attention_backward(do, s1)
    assert isinstance(s2, Flash2Saved) and not isinstance(s1, Flash2Saved)
    names = [r.name for r in prof.records]
    assert names[:4] == ["flash2_fwd"] + BWD_NAMES and names[4:6] == ["flash1_fwd", "flash1_bwd"]
    np.testing.assert_allclose(o1, o2, atol=1e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_saved_tensors_stay_in_hbm_until_dropped():
    n, d = 256, 64
    with Profile("a100-40gb") as prof:
        q = meta((1, 1, n, d))
        o, saved = flash_attention(q, q, q, return_saved=True)
        live = prof.hbm.used
        assert live == n * d * 2 + n * d * 2 + n * 4                # q (= k = v), O, lse
        flash_attention_backward(meta((1, 1, n, d)), saved)
        # the backward's peak, at the dq conversion: q, O, lse, dO, dq_accum (fp32), dk, dv, dq
        # (D, fp32 (n,), is freed after the main kernel, before dq is allocated)
        assert prof.hbm.peak == live + n * d * 2 + n * d * 4 + 3 * n * d * 2
        del o, saved
        assert prof.hbm.used == n * d * 2


def test_runs_with_jit_disabled(tmp_path):
    """NUMBA_DISABLE_JIT=1 runs forward and backward as plain Python, with the jitted counters."""
    script = """
import json, numpy as np, warnings
warnings.simplefilter("ignore")
from tinyml.kernels.attention.flash2 import flash_attention_v2, flash_attention_v2_backward
from tinyml.sim import Profile
rng = np.random.default_rng(0)
shapes = [(1, 2, 5, 3), (1, 1, 6, 3), (1, 1, 6, 3), (1, 2, 5, 3)]
q, k, v, do = (rng.standard_normal(s).astype(np.float32) for s in shapes)
with Profile("toy") as p:
    o, saved = flash_attention_v2(q, k, v, causal=True, dropout_p=0.3, return_saved=True, block_q=2, block_k=4)
    grads = flash_attention_v2_backward(do, saved)
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
    jo, jgrads, jrecs, _ = run(q, k, v, do, device="toy", causal=True, dropout_p=0.3, block_q=2, block_k=4)
    np.testing.assert_allclose(o, jo, rtol=1e-5, atol=1e-6)
    for g, jg in zip(grads, jgrads):
        np.testing.assert_allclose(g, jg, rtol=1e-5, atol=1e-6)
    assert len(records) == len(jrecs)
    for rec, jrec in zip(records, jrecs):
        jd = jrec.to_dict()
        for field in COUNTER_FIELDS:
            assert rec[field] == (list(jd[field]) if field == "grid" else jd[field]), (rec["name"], field)
