"""Counting mode at the limits of a simulated GPU: exact bytes and FLOPs, no per-block walk.

Counting mode counts one representative block per class of identical blocks and one tile of
each kind (tinyml.kernels._classes), and the cost model consumes the classes
(tinyml.sim.classes). These shapes took minutes (FlashAttention at 10M tokens walked
~10^10 tile steps) or gigabytes (a 10^5-cubed naive matmul held an int64 counter row per
block for 39 million blocks); here they must be costed, with the closed-form counts.
Their time and memory budgets are checked by benchmarks/bench_counting.py.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tinyml.kernels._classes import edge_grid, head_edge_grid, rep_count, rep_tile, row_edge_grid, uniform_runs
from tinyml.kernels.attention.flash import flash_attention, flash_attention_backward
from tinyml.kernels.attention.flash1 import default_blocks, flash1_expected_bytes
from tinyml.kernels.matmul import matmul
from tinyml.sim import Profile, load_device, meta

N = 10_000_000           # tokens
H, D, S = 4, 64, 2       # heads, head dim, bytes per fp16 element


def _attention(version: int, causal: bool, backward: bool = False, **blocks) -> dict:
    shape = (1, H, N, D)
    with Profile("a100-40gb") as prof:
        alg1 = {"num_splits": 1, "skip_masked": False} if version == 1 else {}   # FA1: Algorithm 1's grid
        if version == 1:
            from tinyml.kernels.attention.flash1 import flash_attention_v1
            o, saved = flash_attention_v1(meta(shape), meta(shape), meta(shape), causal=causal, return_saved=True,
                                          **alg1, **blocks)
        else:
            o, saved = flash_attention(meta(shape), meta(shape), meta(shape), version=version, causal=causal,
                                       return_saved=True, **blocks)
        if backward:
            flash_attention_backward(meta(o.shape), saved)
    return {r.name: r for r in prof.records}


def test_flash1_at_10m_tokens_reproduces_the_byte_formula():
    for causal in (False, True):                 # FA1 computes every tile either way
        rec = _attention(1, causal)["flash1_fwd"]
        bq, bk = default_blocks(load_device("a100-40gb"), N, N, D, "fp16")
        reads, writes = flash1_expected_bytes(1, H, N, N, D, block_q=bq, block_k=bk)
        assert rec.n_blocks == H
        assert rec.hbm_read_bytes + rec.l2_hit_bytes == reads
        assert rec.hbm_write_bytes + rec.l2_write_hit_bytes == writes
        assert rec.flops_matmul == 4 * H * N * N * D
        assert math.isfinite(rec.time_s) and rec.time_s > 0


def test_flash2_at_10m_tokens_reproduces_the_byte_formula():
    b = 128                                      # divides 10^7: the causal formula is exact
    nqb = N // b
    full = _attention(2, False, block_q=b, block_k=b)["flash2_fwd"]
    assert full.n_blocks == H * nqb
    assert full.hbm_read_bytes + full.l2_hit_bytes == H * N * D * S + 2 * H * nqb * N * D * S
    assert full.hbm_write_bytes == H * N * D * S + 4 * H * N
    assert full.flops_matmul == 4 * D * H * N * N
    causal = _attention(2, True, block_q=b, block_k=b)["flash2_fwd"]
    kv = H * N * (N // b + 1) * D * S // 2       # K (and V) bytes: block i reads tiles 0..i
    assert causal.hbm_read_bytes + causal.l2_hit_bytes == H * N * D * S + 2 * kv
    assert causal.flops_matmul == 4 * D * H * b * b * (nqb * (nqb + 1) // 2)
    assert causal.time_s < full.time_s


def test_flash2_backward_at_1m_tokens_reproduces_the_byte_formula():
    n, b = 1_000_000, 64
    shape = (1, H, n, D)
    with Profile("a100-40gb") as prof:
        o, saved = flash_attention(meta(shape), meta(shape), meta(shape), version=2, return_saved=True,
                                   block_q=b, block_k=b)
        flash_attention_backward(meta(o.shape), saved)
    rec = {r.name: r for r in prof.records}["flash2_bwd"]
    tk = -(-n // b)
    assert rec.n_blocks == H * tk
    assert rec.hbm_read_bytes + rec.l2_hit_bytes == 2 * H * n * D * S + tk * H * n * (2 * D * S + 8 + 4 * D)
    assert rec.hbm_write_bytes + rec.l2_write_hit_bytes == 2 * H * n * D * S + tk * H * n * 4 * D
    assert rec.flops_matmul == 10 * D * H * n * n


def test_standard_attention_row_kernels_count_by_class_over_millions_of_blocks():
    """The mask, softmax and dropout kernels of standard attention, forward and backward, over
    64 x 128 (batch, head) pairs of 500 x 500 scores in row blocks of 3 (1.4 million blocks per
    kernel, the last row block of every head 2 rows): two classes each, the closed-form bytes
    (X = B H N^2 s; the keep mask is B H N^2 bytes) and FLOPs (flops.py, written out here)."""
    from tinyml.kernels.attention.standard import standard_attention, standard_attention_backward

    b, h, n, d, br = 64, 128, 500, 8, 3
    x, e = b * h * n * n * S, b * h * n * n
    with Profile("a100-80gb") as prof:
        o, saved = standard_attention(meta((b, h, n, d)), meta((b, h, n, d)), meta((b, h, n, d)), causal=True,
                                      dropout_p=0.1, return_saved=True, block_rows=br)
        standard_attention_backward(meta(o.shape), saved)
    rec = {r.name: r for r in prof.records}
    want = {  # kernel: (reads, writes, vector FLOPs per score)
        "attn_std_mask": (x, x, 1), "attn_std_softmax": (x, x, 1 + 2 + 1 + 1),
        "attn_std_dropout": (x, x + e, 15 + 2), "attn_std_bwd_dropout": (x + e, x, 2),
        "attn_std_bwd_softmax": (2 * x, x, 3), "attn_std_bwd_mask": (x, x, 1)}
    for name, (reads, writes, per_score) in want.items():
        r = rec[name]
        assert r.n_blocks == b * h * -(-n // br), name
        assert (r.hbm_read_bytes + r.l2_hit_bytes, r.hbm_write_bytes + r.l2_write_hit_bytes) == (reads, writes), name
        assert r.flops_vector == per_score * e and r.flops_matmul == 0, name


def test_flash_backward_gqa_reduction_and_fa2_row_kernels_count_by_class():
    """FlashAttention-2's backward at 2,000,003 tokens, 16 query heads on 4 kv heads, 16 x 16
    tiles: its preprocess and dq-convert kernels (2.0 million blocks each) and the GQA reduction
    (0.5 million) reproduce the module docstring's bytes; FA1's reduction (64 keys a block) too."""
    from tinyml.kernels.attention.flash1 import flash_attention_v1

    n, h, kvh, d, bt = 2_000_003, 16, 4, 64, 16
    q, kv = meta((1, h, n, d)), meta((1, kvh, n, d))
    with Profile("a100-80gb") as prof:
        o, saved = flash_attention(q, kv, kv, version=2, block_q=bt, block_k=bt, return_saved=True)
        flash_attention_backward(meta(o.shape), saved)
    rec = {r.name: r for r in prof.records}
    tiles = -(-n // bt)
    total = lambda r: (r.hbm_read_bytes + r.l2_hit_bytes, r.hbm_write_bytes + r.l2_write_hit_bytes)  # noqa: E731
    assert rec["flash2_bwd_preprocess"].n_blocks == rec["flash2_bwd_dq_convert"].n_blocks == h * tiles
    assert total(rec["flash2_bwd_preprocess"]) == (2 * h * n * d * S, 4 * h * n + 4 * h * n * d)
    assert total(rec["flash2_bwd_dq_convert"]) == (4 * h * n * d, h * n * d * S)
    assert rec["flash2_bwd_gqa_sum"].n_blocks == kvh * tiles
    assert total(rec["flash2_bwd_gqa_sum"]) == (2 * h * n * d * S, 2 * kvh * n * d * S)
    assert rec["flash2_bwd_gqa_sum"].flops_vector == 2 * (h // kvh - 1) * kvh * n * d
    with Profile("a100-80gb") as prof:
        o, saved = flash_attention_v1(q, kv, kv, return_saved=True)
        flash_attention_backward(meta(o.shape), saved)
    red = prof.records[-1]
    assert red.name == "flash1_bwd_dkv_reduce" and red.n_blocks == kvh * -(-n // 64)
    assert total(red) == (2 * h * n * d * S, 2 * kvh * n * d * S)


def test_matmul_100000_cubed_counts_by_class():
    n = 100_000
    recs = {}
    for version in (1, 2, 3):
        with Profile("a100-80gb") as prof:
            matmul(meta((n, n)), meta((n, n)), version=version)
        recs[version] = prof.records[0]
    assert recs[1].n_blocks == (n // 16) ** 2
    assert recs[1].hbm_read_bytes == 2 * n ** 3 * S and recs[1].flops_vector == 2 * n ** 3
    assert recs[3].flops_matmul == 2 * n ** 3
    assert recs[3].hbm_write_bytes == n * n * S
    assert recs[3].time_s < recs[2].time_s < recs[1].time_s


def test_naive_matmul_with_edge_blocks():
    """113,000 is not a multiple of 16: 4 classes of blocks, interleaved in every tile row."""
    n = 113_000
    with Profile("a100-80gb") as prof:
        matmul(meta((n, n)), meta((n, n)), version=1)
    rec = prof.records[0]
    assert rec.n_blocks == math.ceil(n / 16) ** 2
    assert rec.hbm_read_bytes == 2 * n ** 3 * S and rec.hbm_write_bytes == n * n * S
    assert rec.waves == math.ceil(rec.n_blocks / (prof.device.sm_count * rec.blocks_per_sm))


def test_softmax_decode_and_elementwise_at_scale_count_by_class():
    """Row kernels, decoding and fused elementwise count a few classes, with the closed-form bytes."""
    from tinyml.kernels.attention import decode_attention
    from tinyml.kernels.fusion import fused_elementwise
    from tinyml.kernels.softmax import softmax

    rows, cols = 4_000_000, 2048
    b, h, kvh, length, d = 4, 32, 8, 1_000_000, 128
    m, n = 65_536, 16_384
    with Profile("a100-80gb") as prof:
        softmax(meta((rows, cols)), version=3)                      # reads R C s, writes R C s
        decode_attention(meta((b, h, 1, d)), meta((b, kvh, length, d)), meta((b, kvh, length, d)),
                         cache_len=length, split_kv=1)
        fused_elementwise(["add", "gelu"], [meta((m, n)), meta((m, n))])
    sm, dec, ew = prof.records
    assert sm.hbm_read_bytes == rows * cols * S and sm.hbm_write_bytes == rows * cols * S
    # decode: reads B H d s + 2 KVH d s sum_b len_b, writes B H d s (the module docstring)
    assert dec.hbm_read_bytes == b * h * d * S + 2 * kvh * d * S * b * length
    assert dec.hbm_write_bytes == b * h * d * S and dec.n_blocks == b * kvh
    assert ew.hbm_read_bytes == 2 * m * n * S and ew.hbm_write_bytes == m * n * S


def test_dequantize_kernel_at_70b_size_counts_by_class():
    """The unfused baseline's dequantize kernel over Llama-2-70B's 80 MLP gate projections stacked
    (80 x 28,672 rows of K = 8,192: 1.9e10 weights, 9.4 million blocks of 32 x 256): reads the
    packed bytes once, writes N K s, N K FLOPs (no min). A per-row scheme's one scale is read by
    K tile 0 only, so that tile is a class of its own."""
    from tinyml.kernels.quant import QuantizedTensor, dequantize_kernel

    n, k, bn, bk = 80 * 28_672, 8_192, 32, 256
    packed = {"q4_0": n * (k // 32) * (2 + 32 // 2),       # per group of 32: fp16 scale + 16 code bytes
              "int8": n * (2 + k)}                          # per row: fp16 scale + K code bytes
    for fmt, qbytes in packed.items():
        with Profile("a100-80gb") as prof:
            dequantize_kernel(QuantizedTensor.meta((n, k), fmt), block_n=bn, block_k=bk)
        (rec,) = prof.records
        assert rec.n_blocks == (n // bn) * (k // bk)
        assert rec.hbm_read_bytes + rec.l2_hit_bytes == qbytes
        assert rec.hbm_write_bytes + rec.l2_write_hit_bytes == n * k * S
        assert rec.flops_vector == n * k and rec.flops_matmul == 0
        assert math.isfinite(rec.time_s) and rec.time_s > 0


# ---- the helpers that pick representatives ----------------------------------------------

@given(gm=st.integers(1, 40), gn=st.integers(1, 40))
def test_row_edge_grid_keeps_tile_rows_apart(gm, gn):
    ids, run_class, run_length = row_edge_grid(gm, gn)
    cls = np.repeat(run_class, run_length)
    assert len(cls) == gm * gn
    blk, rep = np.arange(gm * gn), ids[cls]
    assert np.array_equal(blk // gn, rep // gn)                               # the same tile row
    assert np.array_equal(blk % gn == gn - 1, rep % gn == gn - 1)             # the last column or not


@given(n=st.integers(1, 30), run=st.integers(1, 30))
def test_uniform_runs_cover_the_launch(n, run):
    ids, run_class, run_length = uniform_runs(n, run)
    cls = np.repeat(run_class, run_length)
    assert np.array_equal(ids[cls] // run, np.arange(n * run) // run)         # block i stands for its run

@given(gm=st.integers(1, 40), gn=st.integers(1, 40))
def test_edge_grid_runs_cover_the_grid_with_matching_representatives(gm, gn):
    ids, run_class, run_length = edge_grid(gm, gn)
    cls = np.repeat(run_class, run_length)                   # (gm * gn,) class of every block
    assert len(cls) == gm * gn
    blk = np.arange(gm * gn)
    rep = ids[cls]
    # a block and its representative agree on being in the last tile row and the last tile column
    assert np.array_equal(blk // gn == gm - 1, rep // gn == gm - 1)
    assert np.array_equal(blk % gn == gn - 1, rep % gn == gn - 1)
    assert len(set(ids.tolist())) == len(ids)


@given(lo=st.integers(0, 30), n=st.integers(0, 30))
def test_representative_tiles_stand_for_every_tile(lo, n):
    """Counting visits tile lo for the n - 1 non-last tiles and the last tile once; executing, each once."""
    hi = lo + n
    for execute in (True, False):
        seen = []
        for jr in range(rep_count(lo, hi, execute)):
            j, mult = rep_tile(jr, lo, hi, execute)
            assert lo <= j < hi and mult >= 1
            seen += [j == hi - 1] * mult                      # what matters: the last tile or not
        assert sorted(seen) == sorted(j == hi - 1 for j in range(lo, hi))


@given(gm=st.integers(1, 40), gn=st.integers(1, 40))
def test_head_edge_grid_keeps_the_first_and_last_columns_apart(gm, gn):
    ids, run_class, run_length = head_edge_grid(gm, gn)
    cls = np.repeat(run_class, run_length)
    assert len(cls) == gm * gn
    blk, rep = np.arange(gm * gn), ids[cls]
    assert np.array_equal(blk // gn == gm - 1, rep // gn == gm - 1)             # the last tile row or not
    assert np.array_equal(blk % gn == gn - 1, rep % gn == gn - 1)               # the last column or not
    assert np.array_equal(blk % gn == 0, rep % gn == 0)                         # the first column or not
    assert len(set(ids.tolist())) == len(ids)


@given(t_r=st.integers(1, 30), ranges=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=30))
def test_last_cover_is_the_last_range_that_holds_each_q_block(t_r, ranges):
    """FA1's grid finds, per Q block, the last K/V block whose Q-block range holds it in
    O(T_r + T_c) (10M tokens: 26,000 ranges over 156,000 Q blocks); by hand, range by range."""
    from tinyml.kernels.attention.flash1.grid import last_cover

    lo = np.array([min(a, t_r) for a, _ in ranges], np.int64)
    hi = np.array([min(max(a, b), t_r) for a, b in ranges], np.int64)
    want = [max([j for j in range(len(ranges)) if lo[j] <= i < hi[j]], default=-1) for i in range(t_r)]
    assert last_cover(lo, hi, t_r).tolist() == want
