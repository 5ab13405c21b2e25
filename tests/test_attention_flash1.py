"""FlashAttention-1 (Algorithms 1 and 4 of Dao et al. 2022): forward and backward against the
float64 reference with FlashAttention's tolerance rule, counting mode == executing mode, HBM
bytes and matmul FLOPs equal to the closed forms, the paper's block sizes, fully masked rows,
and input errors.

Gradient tolerance: error vs float64 <= 3 x the error of a naive float32 backward + 1e-6. The
naive backward (written out below) is the reference's formulas evaluated in float32, in both
textbook forms of the softmax backward's row term: D = rowsum(dP o P) (standard attention) and
D = rowsum(dO o O) (the identity FlashAttention uses, Appendix B.2 of the paper). They round
differently, so the baseline is the larger of the two errors. Both can be exactly 0 by luck
(one key: dS = P (dP - D) cancels exactly in float32 while the kernel's D, summed over d in
another order, rounds; or a float32 sum of N_q terms that happens to round well), so the
epsilon is relative to the size of the terms each gradient sums, as a float32 error bound is:
1e-6 x max of scale |P| (|dP| + |D|) |K| for dq (|Q| for dk) and of |P o Z|^T |dO| for dv, at
least 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from strategies import (ELEM_BYTES, attention_inputs, attention_options, attention_shapes,
                        attention_tolerance, block_sizes, logical_dtypes, naive_float32_attention)
from tinyml.kernels import reference
from tinyml.kernels.attention.masks import visible_matrix
from tinyml.kernels.attention.flash1 import (flash1_expected_bytes, flash_attention_v1, num_splits,
                                             flash_attention_v1_backward)
from tinyml.sim import (DTypeError, NonFiniteError, Profile, ShapeError, SramOverflowError,
                        TileConfigError, TinymlError, load_device, meta)

FP32 = 4              # statistics (l, m) and the dQ accumulator, bytes per element, by hand
A100_SRAM = 196_608   # bytes per SM of the a100-40gb preset (192 KB)
A100_REGS = 262_144   # register file per SM of the a100-40gb preset (256 KB)


@pytest.fixture(scope="module", autouse=True)
def warm_flash1():
    """Compile (or load from Numba's cache) both bodies once, in both modes."""
    x = np.ones((1, 2, 3, 4), np.float32)
    kv = np.ones((1, 1, 3, 4), np.float32)
    with Profile("a100-40gb"):
        for args in ((x, kv, kv, x), tuple(meta(a.shape) for a in (x, kv, kv, x))):
            _, saved = flash_attention_v1(*args[:3], return_saved=True)
            flash_attention_v1_backward(args[3], saved)


#: Algorithm 1's grid and tiles (one block per (batch, head), every tile computed): what the byte
#: formulas below describe; the shipped kernel's splits and causal skipping have their own tests
ALGORITHM_1 = dict(num_splits=1, skip_masked=False)


def run(q, k, v, do, *, device="a100-40gb", blocks=(None, None), bwd_blocks=(None, None), **kw):
    """Forward + backward in one profile; returns (o, (dq, dk, dv), profile)."""
    with Profile(device) as prof:
        kw = {**ALGORITHM_1, **kw}
        o, saved = flash_attention_v1(q, k, v, return_saved=True, block_q=blocks[0], block_k=blocks[1], **kw)
        grads = flash_attention_v1_backward(do, saved, block_q=bwd_blocks[0], block_k=bwd_blocks[1])
    return o, grads, prof


def naive_backward(q, k, v, do, row_term="dP.P", dtype=np.float32, magnitudes=False, **kw):
    """The reference's backward formulas evaluated in ``dtype`` (float32: the baseline of the
    tolerance rule); ``row_term`` "dP.P" or "dO.O" picks how D = rowsum(...) is formed. With
    ``magnitudes``, the sizes of the terms each gradient sums instead (|A| |B| of its products)."""
    from tinyml.kernels.attention._common import _window
    from tinyml.kernels.attention.masks import visible_matrix
    from tinyml.kernels.attention.rng import keep_mask

    f = dtype
    q, k, v, do = (x.astype(f) for x in (q, k, v, do))
    b, h, nq, d = q.shape
    kvh, nk = k.shape[1], k.shape[2]
    g = h // kvh
    k, v = np.repeat(k, g, axis=1), np.repeat(v, g, axis=1)                   # (B, H, Nk, d)
    scale = f(1.0 / np.sqrt(d) if kw.get("scale") is None else kw["scale"])
    s = scale * (q @ np.swapaxes(k, -1, -2))                                   # (B, H, Nq, Nk)
    ok = np.broadcast_to(visible_matrix(nq, nk, kw.get("causal", False),
                                        _window(kw.get("window"), kw.get("causal", False))), s.shape)
    if kw.get("key_padding_mask") is not None:
        ok = ok & kw["key_padding_mask"][:, None, None, :]
    s = np.where(ok, s, f(-np.inf))
    mx = s.max(axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, f(0))
    e = np.where(ok, np.exp(s - mx), f(0))
    den = e.sum(axis=-1, keepdims=True)
    p = np.where(den > 0, e / np.where(den > 0, den, 1), f(0)).astype(f)
    z = np.ones_like(p)
    if kw.get("dropout_p", 0.0) > 0:
        z = (keep_mask(kw.get("seed", 0), b, h, nq, nk, kw["dropout_p"]) / f(1 - kw["dropout_p"])).astype(f)
    dp = (do @ np.swapaxes(v, -1, -2)) * z                                     # (B, H, Nq, Nk)
    if row_term == "dP.P":
        d_row = (dp * p).sum(axis=-1, keepdims=True)                           # (B, H, Nq, 1)
    else:
        d_row = (do * ((p * z) @ v)).sum(axis=-1, keepdims=True)              # rowsum(dO o O)
    ds = p * (dp - d_row)
    if magnitudes:
        p, ds, q, k, do = (np.abs(x) for x in (p, p * (np.abs(dp) + np.abs(d_row)), q, k, do))
        z = np.abs(z)
    dv = np.swapaxes(p * z, -1, -2) @ do                                       # (B, H, Nk, d)
    sc = abs(scale) if magnitudes else scale
    dq = sc * (ds @ k)                                                         # (B, H, Nq, d)
    dk = sc * (np.swapaxes(ds, -1, -2) @ q)                                    # (B, H, Nk, d)
    return dq, dk.reshape(b, kvh, g, nk, d).sum(axis=2), dv.reshape(b, kvh, g, nk, d).sum(axis=2)


def grad_epsilons(q, k, v, do, **kw):
    """The epsilons of the gradient checks (module docstring): 1e-6 x the largest sum of
    absolute terms of each gradient (at least 1e-6)."""
    sizes = naive_backward(q, k, v, do, dtype=np.float64, magnitudes=True, **kw)
    return [max(1e-6, 1e-6 * float(x.max(initial=0.0))) for x in sizes]


def max_err(x, ref) -> float:
    return float(np.abs(np.asarray(x, np.float64) - ref).max())


@st.composite
def case(draw, allow_window=True):
    """Inputs, options, a device and block sizes (explicit on the A100, defaults on the toy device)."""
    q, k, v, do = draw(attention_inputs())
    kw = draw(attention_options(k.shape[2], q.shape[0], allow_window=allow_window))
    device = draw(st.sampled_from(("a100-40gb", "toy")))
    if device == "toy":
        return q, k, v, do, kw, device, (None, None), (None, None)
    maybe = st.one_of(st.none(), block_sizes(16))
    return q, k, v, do, kw, device, (draw(maybe), draw(maybe)), (draw(maybe), draw(maybe))


# ---- numerics ----------------------------------------------------------------------------

@given(c=case())
def test_forward_and_backward_match_reference(c):
    q, k, v, do, kw, device, blocks, bwd_blocks = c
    o, grads, prof = run(q, k, v, do, device=device, blocks=blocks, bwd_blocks=bwd_blocks, **kw)
    ref_o, _ = reference.attention(q, k, v, **kw)
    assert o.shape == q.shape and o.dtype == np.float32 and np.isfinite(o).all()
    naive = max_err(naive_float32_attention(q, k, v, **kw), ref_o)
    assert max_err(o, ref_o) <= attention_tolerance(naive)
    ref_g = reference.attention_backward(q, k, v, do, **kw)
    naive_g = [naive_backward(q, k, v, do, row_term=t, **kw) for t in ("dP.P", "dO.O")]
    eps = grad_epsilons(q, k, v, do, **kw)
    for n, (name, got, ref, like) in enumerate(zip(("dq", "dk", "dv"), grads, ref_g, (q, k, v))):
        assert got.shape == like.shape and np.isfinite(got).all(), name
        naive = max(max_err(g[n], ref) for g in naive_g)
        assert max_err(got, ref) <= 3.0 * naive + eps[n], name
    group = q.shape[1] // k.shape[1]
    names = ["flash1_fwd", "flash1_bwd"] + (["flash1_bwd_dkv_reduce"] if group > 1 else [])
    assert [r.name for r in prof.records] == names


def test_fully_masked_rows_give_zero_output_and_gradients(rng):
    """Causal with N_q > N_k (bottom-right) hides every key from the first queries; a padded batch
    hides every key from all of its queries. Those rows give o = 0 and zero dq, never NaN."""
    b, h, nq, nk, d = 2, 2, 9, 5, 8
    q, do = (rng.standard_normal((b, h, nq, d)).astype(np.float32) for _ in range(2))
    k, v = (rng.standard_normal((b, 1, nk, d)).astype(np.float32) for _ in range(2))
    mask = np.ones((b, nk), bool)
    mask[1] = False
    o, (dq, dk, dv), _ = run(q, k, v, do, blocks=(4, 2), bwd_blocks=(3, 2), causal=True,
                             key_padding_mask=mask, dropout_p=0.3, seed=7)
    dead = nq - nk                                   # queries 0..3 see no key
    assert np.all(o[:, :, :dead] == 0) and np.all(dq[:, :, :dead] == 0)
    assert np.all(o[1] == 0) and np.all(dq[1] == 0) and np.all(dk[1] == 0) and np.all(dv[1] == 0)
    ref_o, _ = reference.attention(q, k, v, causal=True, key_padding_mask=mask, dropout_p=0.3, seed=7)
    assert max_err(o, ref_o) < 1e-5


# ---- counting mode, bytes, FLOPs ---------------------------------------------------------

@given(c=case(), dtype=logical_dtypes())
def test_counting_mode_equals_executing_mode(c, dtype):
    """Every record field is equal (or both modes refuse the tiles with the same message: the
    toy device's SRAM cannot hold the backward's fp32 tiles at d = 64)."""
    q, k, v, do, kw, device, blocks, bwd_blocks = c

    def outcome(*args):
        try:
            prof = run(*args, device=device, blocks=blocks, bwd_blocks=bwd_blocks, dtype=dtype, **kw)[2]
        except SramOverflowError as err:
            return str(err)
        return [r.to_dict() for r in prof.records]

    assert outcome(*(meta(x.shape, dtype) for x in (q, k, v, do))) == outcome(q, k, v, do)


def expected_bytes_by_hand(b, h, kvh, nq, nk, d, bq, bk, s, mask, backward):
    """The docstring's formula, term by term (independent of the kernel's helper)."""
    t_c = -(-nk // bk)
    if not backward:
        reads = (nk * d * s * 2                      # K_j, V_j once
                 + t_c * nq * d * s                   # Q_i every inner step
                 + t_c * nq * d * s                   # O_i every inner step
                 + t_c * nq * FP32 * 2                # l_i, m_i
                 + (nk if mask else 0))               # 1 byte per key
        writes = nq * d * s + nq * FP32 * 2 + t_c * (nq * d * s + nq * FP32 * 2)
        return b * h * reads, b * h * writes
    reads = nk * d * s * 2 + t_c * nq * d * (3 * s + FP32) + t_c * nq * FP32 * 2 + (nk if mask else 0)
    writes = (nq * d * FP32 + 2 * nk * d * s                       # zero dQ (fp32), dK, dV
              + (t_c - 1) * nq * d * FP32 + nq * d * s             # dQ_i each step, last pass as dq
              + 2 * nk * d * s)                                     # dK_j, dV_j
    reads, writes = b * h * reads, b * h * writes
    if h != kvh:                                                    # the GQA group sum
        reads, writes = reads + 2 * b * h * nk * d * s, writes + 2 * b * kvh * nk * d * s
    return reads, writes


def sram_by_hand(bq, bk, d, s, backward):
    """SRAM of one block, by hand, from the tile lists in the module docstring."""
    if not backward:     # K_j, V_j, Q_i, O_i, P in the dtype
        return (2 * bk * d + 2 * bq * d + bq * bk) * s
    return (2 * bk * d + 3 * bq * d + bq * bk) * s     # K_j, V_j, Q_i, O_i, dO_i, P/dS in the dtype


def regs_by_hand(bq, bk, d, backward):
    """Register bytes of one block: the fp32 accumulators."""
    if not backward:     # S_ij, P_ij V_j, l_i, m_i
        return (bq * bk + bq * d + 2 * bq) * FP32
    return (2 * bk * d + bq * d + bq * bk + 3 * bq) * FP32     # dK~, dV~, dQ_i, S/dP, l_i, m_i, D_i


def check_bytes(prof, shape, blocks, bwd_blocks, s, masked, dtype="fp16"):
    b, h, kvh, nq, nk, d = shape
    fwd, bwd = prof.records[:1], prof.records[1:]
    for recs, (bq, bk), backward in ((fwd, blocks, False), (bwd, bwd_blocks, True)):
        bq, bk = min(bq, nq), min(bk, nk)                # clamped to the sequences
        want = expected_bytes_by_hand(b, h, kvh, nq, nk, d, bq, bk, s, masked, backward)
        got = (sum(r.hbm_read_bytes + r.l2_hit_bytes for r in recs),
               sum(r.hbm_write_bytes + r.l2_write_hit_bytes for r in recs))           # before L2
        assert got == want, (backward, got, want)
        assert got == flash1_expected_bytes(b, h, nq, nk, d, block_q=bq, block_k=bk, dtype=dtype,
                                            kv_heads=kvh, key_padding_mask=masked, backward=backward)
        assert recs[0].sram_per_block_bytes == sram_by_hand(bq, bk, d, s, backward)


def count(shape, dtype="fp16", blocks=(None, None), bwd_blocks=(None, None), masked=False, **kw):
    b, h, kvh, nq, nk, d = shape
    q, do = meta((b, h, nq, d), dtype), meta((b, h, nq, d), dtype)
    k, v = meta((b, kvh, nk, d), dtype), meta((b, kvh, nk, d), dtype)
    mask = meta((b, nk), "int8") if masked else None
    return run(q, k, v, do, blocks=blocks, bwd_blocks=bwd_blocks, key_padding_mask=mask, dtype=dtype, **kw)[2]


@given(shape=attention_shapes(max_seq=300, head_dims=(1, 3, 16, 64, 80)), dtype=logical_dtypes(),
       blocks=st.tuples(*[st.one_of(block_sizes(64), st.just(384))] * 4),
       causal=st.booleans(), masked=st.booleans(), dropout=st.booleans())
def test_hbm_bytes_and_matmul_flops_equal_the_formula(shape, dtype, blocks, causal, masked, dropout):
    b, h, kvh, nq, nk, d = shape
    for (bq, bk), backward in ((blocks[:2], False), (blocks[2:], True)):   # big explicit blocks may overflow
        assume(sram_by_hand(min(bq, nq), min(bk, nk), d, ELEM_BYTES[dtype], backward) <= A100_SRAM)
        assume(regs_by_hand(min(bq, nq), min(bk, nk), d, backward) <= A100_REGS)
    prof = count(shape, dtype, blocks[:2], blocks[2:], masked, causal=causal, dropout_p=0.1 * dropout)
    check_bytes(prof, shape, blocks[:2], blocks[2:], ELEM_BYTES[dtype], masked, dtype)
    # FA1 skips no tile, causal or not: QK^T and PV forward, five products backward
    assert prof.records[0].flops_matmul == 4 * b * h * nq * nk * d
    assert sum(r.flops_matmul for r in prof.records[1:]) == 10 * b * h * nq * nk * d


def test_paper_configuration():
    """Figure 2's config (B=64, H=16, N=1024, d=64, fp16) on the A100: B_c = ceil(M / 4d) = 384,
    B_r = min(B_c, d) = 64, 163,840 bytes of SRAM, one block per SM, one block per (b, h). The
    backward's accumulators (dK~, dV~, S, dP, dQ_i in fp32) fit the 256 KB register file with
    B_r = 32, B_c = 384 (halving B_r once)."""
    shape = b, h, _, n, _, d = (64, 16, 16, 1024, 1024, 64)
    prof = count(shape, causal=True, dropout_p=0.1)
    fwd, bwd = prof.records
    assert fwd.sram_per_block_bytes == 163_840 and fwd.blocks_per_sm == 1
    assert fwd.grid == bwd.grid == (64, 16, 1)
    check_bytes(prof, shape, (64, 384), (32, 384), 2, False)
    # L2: 108 concurrent blocks re-read their Q rows and rewrite O, l, m: 108 x (N d s + N d s + 8 N)
    # = 28.5 MB fits the 40 MB L2, so after L2 the forward reads Q, K, V and writes O, l, m once
    assert 108 * (2 * n * d * 2 + 8 * n) <= load_device("a100-40gb").l2_bytes
    assert (fwd.hbm_read_bytes, fwd.hbm_write_bytes) == (b * h * 3 * n * d * 2, b * h * (n * d * 2 + 8 * n))
    # the backward's working set (Q, O, dO, l, m re-read; dQ in fp32, dq, dK, dV written) does not fit
    assert 108 * (3 * n * d * 2 + 8 * n + n * d * 6 + 2 * n * d * 2) > load_device("a100-40gb").l2_bytes
    assert bwd.l2_hit_bytes == bwd.l2_write_hit_bytes == 0


def test_default_blocks_clamp_to_the_sequences():
    prof = count((1, 2, 1, 5, 7, 64))
    check_bytes(prof, (1, 2, 1, 5, 7, 64), (5, 7), (5, 7), 2, False)


def test_requested_blocks_longer_than_the_sequences_are_clamped_visibly():
    """Asked for 384 x 384 tiles over 5 queries and 7 keys, forward and backward run 5 x 7 tiles
    (the records equal those of block_q=5, block_k=7) and their notes say so."""
    shape = (1, 2, 1, 5, 7, 64)
    asked = count(shape, blocks=(384, 384), bwd_blocks=(384, 6))
    exact = count(shape, blocks=(5, 7), bwd_blocks=(5, 6))
    for a, e in zip(asked.records, exact.records):
        assert {**a.to_dict(), "notes": []} == e.to_dict()
    q_note = "block_q=384 clamped to N_q = 5: no tile is longer than its sequence"
    k_note = "block_k=384 clamped to N_k = 7: no tile is longer than its sequence"
    assert [(r.name, r.notes) for r in asked.records] == [
        ("flash1_fwd", (q_note, k_note)), ("flash1_bwd", (q_note,)), ("flash1_bwd_dkv_reduce", ())]
    assert f"note: flash1_fwd: {k_note}" in asked.table() and "note:" not in exact.table()


def test_large_head_dim_shrinks_block_q_first():
    """d = 128 fp16: the paper's B_c = 192, B_r = 128 overflow 192 KB; B_r = 64 fits."""
    shape = (1, 1, 1, 1024, 1024, 128)
    prof = count(shape)
    assert prof.records[0].sram_per_block_bytes == sram_by_hand(64, 192, 128, 2, False)


def test_gqa_blocks_share_k_and_v_through_l2():
    prof = count((1, 8, 1, 512, 512, 64))
    fwd = prof.records[0]
    assert fwd.l2_hit_bytes > 0


# ---- errors -------------------------------------------------------------------------------

def test_head_dim_too_large_for_any_block():
    """1 x 1 forward tiles need (4 d + 1) * 2 bytes of SRAM in fp16 (and 4 d + 12 of registers):
    d = 24575 is the largest that fits 196,608 bytes."""
    q = meta((1, 1, 4, 24576))
    with Profile("a100-40gb"), pytest.raises(SramOverflowError) as err:
        flash_attention_v1(q, q, q)
    msg = str(err.value)
    assert "a100-40gb" in msg and "196,608" in msg and "24575" in msg
    q = meta((1, 1, 4, 24575))
    with Profile("a100-40gb"):
        flash_attention_v1(q, q, q)


def test_explicit_blocks_that_overflow_suggest_ones_that_fit():
    q = meta((1, 1, 4096, 64))
    with Profile("a100-40gb"), pytest.raises(SramOverflowError, match="block_q=64, block_k=384"):
        flash_attention_v1(q, q, q, block_q=512, block_k=512)


@pytest.mark.parametrize("bad", ["shapes", "heads", "nan", "mask", "block", "dout", "dout_mode", "dropout"])
def test_bad_input_raises(bad):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 4, 5, 8)).astype(np.float32)
    kv = rng.standard_normal((2, 2, 6, 8)).astype(np.float32)
    kw, args = {}, [q, kv, kv]
    expected = {"shapes": ShapeError, "heads": ShapeError, "nan": NonFiniteError, "mask": ShapeError,
                "block": TileConfigError, "dout": ShapeError, "dout_mode": DTypeError,
                "dropout": TileConfigError}[bad]
    if bad == "shapes":
        args[2] = kv[:, :, :5]
    elif bad == "heads":
        args[1] = args[2] = rng.standard_normal((2, 3, 6, 8)).astype(np.float32)
    elif bad == "nan":
        args[0] = q.copy()
        args[0][1, 2, 3, 4] = np.nan
    elif bad == "mask":
        kw["key_padding_mask"] = np.ones((2, 5), bool)
    elif bad == "block":
        kw["block_q"] = 0
    elif bad == "dropout":
        kw["dropout_p"] = 1.0
    with Profile("a100-40gb"), pytest.raises(expected) as err:
        o, saved = flash_attention_v1(*args, return_saved=True, **kw)
        dout = {"dout": q[:, :, :4], "dout_mode": meta(q.shape)}.get(bad, q)
        flash_attention_v1_backward(dout, saved)
    assert isinstance(err.value, TinymlError)


# ---- the kernel as it shipped: num_splits, causal tile skipping, split-K warps ---------------

def test_num_splits_heuristic_matches_the_cuda_comment():
    """fmha_api.cpp's example: 48 (batch, head) pairs on 108 SMs: 2 splits (efficiency 0.89) beat 3
    (0.67); with up to 30 allowed, 9 splits fill exactly 4 waves (efficiency 1)."""
    assert num_splits(48, 108, 1, 3) == 2
    assert num_splits(48, 108, 1, 30) == 9
    assert num_splits(1024, 108, 1, 1) == 1                     # one split allowed: one split
    assert num_splits(108, 108, 1, 30) == 1                     # a full wave already


@given(c=case(), dtype=logical_dtypes(), splits=st.integers(1, 4))
def test_shipped_grid_counting_equals_executing_and_matches_the_reference(c, dtype, splits):
    """Splits over Q blocks (forward) and K/V blocks (backward) and causal skipping change the grid and
    the bytes, not the result; counting mode still equals executing mode."""
    q, k, v, do, kw, device, blocks, bwd_blocks = c
    kw = {**kw, "num_splits": splits, "skip_masked": True}

    def outcome(*args):
        try:
            o, g, prof = run(*args, device=device, blocks=blocks, bwd_blocks=bwd_blocks, dtype=dtype, **kw)
        except SramOverflowError as err:
            return str(err), None
        return [r.to_dict() for r in prof.records], (o, g)

    counted, _ = outcome(*(meta(x.shape, dtype) for x in (q, k, v, do)))
    executed, res = outcome(q, k, v, do)
    assert counted == executed
    if res is not None:
        with_algorithm_1 = run(q, k, v, do, device=device, blocks=blocks, bwd_blocks=bwd_blocks, dtype=dtype,
                               **{**kw, **ALGORITHM_1})
        for got, want in zip((res[0], *res[1]), (with_algorithm_1[0], *with_algorithm_1[1])):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@given(shape=attention_shapes(max_seq=200, head_dims=(8, 64)), splits=st.integers(1, 5), causal=st.booleans())
def test_shipped_bytes_equal_the_formula(shape, splits, causal):
    """K, V read once per split; only the tiles some query sees move Q, O, l, m (forward) and Q, O, dO,
    dQ, l, m (backward): flash1_expected_bytes with num_splits and skip_masked, before L2."""
    b, h, kvh, nq, nk, d = shape
    prof = count(shape, blocks=(16, 32), bwd_blocks=(16, 32), causal=causal, num_splits=splits, skip_masked=True)
    fwd, bwd = prof.records[0], prof.records[1:]
    s_f, s_b = fwd.grid[2], bwd[0].grid[2]
    assert s_f == min(splits, -(-nq // 16)) and s_b == min(splits, -(-nk // 32))
    for recs, backward, s in (([fwd], False, s_f), (bwd, True, s_b)):
        got = (sum(r.hbm_read_bytes + r.l2_hit_bytes for r in recs), sum(r.hbm_write_bytes + r.l2_write_hit_bytes for r in recs))
        assert got == flash1_expected_bytes(b, h, nq, nk, d, block_q=16, block_k=32, kv_heads=kvh, backward=backward,
                                            num_splits=s if not backward else 1, causal=causal, skip_masked=True)
    # matmul FLOPs: 4 d (forward) and 10 d (backward) per score of the computed tiles
    vis = visible_matrix(nq, nk, causal, (-1, -1))
    tiles = np.add.reduceat(np.add.reduceat(vis, np.arange(0, nq, 16), axis=0), np.arange(0, nk, 32), axis=1) > 0
    rows = np.minimum(16, nq - np.arange(0, nq, 16))[:, None]
    cols = np.minimum(32, nk - np.arange(0, nk, 32))[None, :]
    scores = int((tiles * rows * cols).sum())
    assert fwd.flops_matmul == 4 * b * h * scores * d
    assert sum(r.flops_matmul for r in bwd) == 10 * b * h * scores * d
