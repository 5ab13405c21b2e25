"""The byte formulas of matmul and attention, pinned (found unpinned by tools/mutate.py).

``expected_bytes`` of matmul v1 and v2 against what the kernels count in counting mode
(HBM reads before L2 reuse = HBM reads + L2 hits), and against the docstrings' closed
forms; the L2 panels of v2; the tile search of matmul/block_sizes.py against a brute force of
its documented rule, exactly at the SRAM capacity and one byte below; bmm's and
FlashAttention-1's formulas at hand-computed points.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tinyml.kernels.matmul.batched import BmmShape
from tinyml.kernels.matmul.batched import expected_bytes as bmm_expected_bytes
from tinyml.kernels.attention.flash1 import flash1_expected_bytes
from tinyml.kernels.attention.standard import standard_expected_bytes
from tinyml.kernels.matmul import matmul
from tinyml.kernels.matmul import block_sizes as mt
from tinyml.kernels.matmul.v1_naive import expected_bytes as v1_bytes
from tinyml.kernels.matmul._tiled import expected_bytes as v2_bytes
from tinyml.kernels.matmul._tiled import tile_panels
from tinyml.sim import Profile, SramOverflowError, load_device, meta

SHAPES = [(1, 1, 1), (3, 5, 7), (16, 16, 16), (17, 33, 9), (40, 24, 70)]

# Equivalent mutant (tools/mutate.py counts it as such):
#
# equivalent mutant tinyml/kernels/matmul/block_sizes.py:77: -size -> size
#   the search's last tie-break (smaller SRAM footprint first) never decides: two candidates with the
#   same bm bn / (bm + bn) are the same pair swapped (no two distinct pairs of the sizes 16..256 share
#   the value), and a swapped pair with the same bk has the same footprint.
# equivalent mutant tinyml/kernels/matmul/block_sizes.py:54: 0 -> 1
#   choose_tiles' max(_cap(k), DEPTHS[0]) -> DEPTHS[1]: _cap returns at least SIZES[0] = 16 = DEPTHS[1],
#   so both maxima are _cap(k).
# equivalent mutant tinyml/kernels/attention/flash1/block_sizes.py:180: heads // kvh -> heads / kvh
#   heads // kvh > 1 and heads / kvh > 1 differ only when heads is not a multiple of kv_heads, a GQA
#   configuration the kernels refuse (the formula describes only launches that can happen).
# equivalent mutant tinyml/kernels/attention/flash1/block_sizes.py:160: 1 -> 2
# equivalent mutant tinyml/kernels/attention/flash1/block_sizes.py:160: -1 -> 1
#   flash1_expected_bytes' ``q_block_spans(n, m, block_q, True, -1, -1)``: a window bound of -2 is as unbounded
#   as -1 (masks.py tests ``>= 0``), and a right bound of 1 adds nothing under causal (j <= p already hides
#   every key a right window of 1 would). The left bound -1 -> 1 is killed.
# equivalent mutant tinyml/kernels/attention/flash1/block_sizes.py:155: 8 -> 9
#   s = nbytes(8, dtype) // 8 is the element size; nbytes(9, dtype) // 8 is the same for every dtype
#   width b (ceil(9 b / 8) // 8 == b // 8 for b = 4, 8, 16, 32).


def counted(version, m, n, k, dtype, **blocks):
    with Profile("a100-40gb") as prof:
        matmul(meta((m, k), dtype), meta((k, n), dtype), version=version, dtype=dtype, **blocks)
    (rec,) = prof.records
    return rec.hbm_read_bytes + rec.l2_hit_bytes, rec.hbm_write_bytes


# ---- matmul v1 / v2 ---------------------------------------------------------------------------------------


def test_v1_closed_form():
    assert v1_bytes(3, 5, 7, 2) == (2 * 3 * 5 * 7 * 2, 3 * 5 * 2) == (420, 30)
    assert v1_bytes(1, 1, 1, 0.5) == (1.0, 0.5)


@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("dtype, s", [("fp16", 2), ("fp32", 4)])
def test_v1_formula_is_what_the_kernel_counts(m, n, k, dtype, s):
    assert counted(1, m, n, k, dtype, block_m=4, block_n=8) == v1_bytes(m, n, k, s)


def test_v2_closed_form():
    # M K ceil(N/BN) + K N ceil(M/BM): 17*9*ceil(33/16) + 9*33*ceil(17/8) = 17*9*3 + 9*33*3
    assert v2_bytes(17, 33, 9, 2, 8, 16) == ((17 * 9 * 3 + 9 * 33 * 3) * 2, 17 * 33 * 2)
    assert v2_bytes(16, 16, 16, 4, 16, 16) == ((256 + 256) * 4, 256 * 4)       # one tile: each operand once


@pytest.mark.parametrize("m, n, k", SHAPES)
@pytest.mark.parametrize("bm, bn, bk", [(16, 16, 8), (8, 32, 16)])
def test_v2_formula_is_what_the_kernel_counts(m, n, k, bm, bn, bk):
    assert counted(2, m, n, k, "fp16", block_m=bm, block_n=bn, block_k=bk) == v2_bytes(m, n, k, 2, bm, bn)


def test_tile_panels_are_tile_rows_and_columns():
    p = tile_panels((2, 3))                   # blocks numbered row by row: 0 1 2 / 3 4 5
    assert set(p) == {0, 1}
    np.testing.assert_array_equal(p[0], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(p[1], [0, 1, 2, 0, 1, 2])
    np.testing.assert_array_equal(tile_panels((1, 1))[0], [0])


# ---- matmul tile choice -----------------------------------------------------------------------------------


def test_element_bytes_and_sram_bytes():
    assert (mt.element_bytes("fp32"), mt.element_bytes("fp16"), mt.element_bytes("int8"),
            mt.element_bytes("int4")) == (4, 2, 1, 0.5)
    t = mt.MatmulTiles(32, 64, 16)
    # A tile 32 x 16 and B tile 16 x 64 in fp16, the fp32 accumulator 32 x 64
    assert t.sram_bytes("fp16") == (32 * 16 + 16 * 64) * 2 + 32 * 64 * 4
    assert t.sram_tiles("fp16") == {"A tile": ((32, 16), "fp16"), "B tile": ((16, 64), "fp16"),
                                    "C accumulator": ((32, 64), "fp32")}


def test_cap_is_the_smallest_size_covering_the_dimension():
    assert mt._cap(1) == 16 and mt._cap(16) == 16 and mt._cap(17) == 32
    assert mt._cap(128) == 128 and mt._cap(129) == 256 and mt._cap(256) == 256 and mt._cap(10 ** 6) == 256


#: the candidate block sizes (powers of two, 16..256 wide, 8..128 deep), written out here, not read
#: from the module, so a changed candidate fails the search test
SIZES = (16, 32, 64, 128, 256)
DEPTHS = (8, 16, 32, 64, 128)


def brute_force(sram, m, n, k, dtype):
    """The documented rule, independently: the largest bm bn / (bm + bn), then the deepest bk,
    then the smallest footprint, among tiles no larger than the matrix (rounded up) that fit; a full
    tie (128 x 256 vs 256 x 128) goes to the first in the search order, bm, then bn, then bk."""
    cap = lambda d: next((s for s in SIZES if s >= d), SIZES[-1])     # noqa: E731
    s = {"fp16": 2, "fp32": 4}[dtype]
    fits = [(bm * bn / (bm + bn), bk, -((bm * bk + bk * bn) * s + bm * bn * 4), (bm, bn, bk))
            for bm in SIZES for bn in SIZES for bk in DEPTHS
            if bm <= cap(m) and bn <= cap(n) and bk <= max(cap(k), DEPTHS[0])
            and (bm * bk + bk * bn) * s + bm * bn * 4 <= sram]
    return max(fits, key=lambda f: f[:3])[3] if fits else None        # max keeps the first of equals


@pytest.mark.parametrize("m, n, k", [(4096, 4096, 4096), (5, 300, 40), (100, 7, 3), (64, 64, 64)])
@pytest.mark.parametrize("sram", [167936, 100 * 1024, 49152, 16384])
@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_choose_tiles_follows_its_rule(m, n, k, sram, dtype):
    dev = dataclasses.replace(load_device("a100-40gb"), sram_per_sm=sram)
    t = mt.choose_tiles(dev, m, n, k, dtype)
    assert (t.block_m, t.block_n, t.block_k) == brute_force(sram, m, n, k, dtype)
    assert t.sram_bytes(dtype) <= sram


def test_tiles_exactly_at_sram_capacity_are_chosen():
    big = mt.MatmulTiles(256, 256, 128)
    size = big.sram_bytes("fp16")
    assert mt._best_tiles(size, 256, 256, 128, "fp16") == big                 # fits exactly
    below = mt._best_tiles(size - 1, 256, 256, 128, "fp16")
    assert below != big and below.sram_bytes("fp16") <= size - 1


def test_no_tiles_fit_a_tiny_sram():
    assert mt._best_tiles(100, 256, 256, 128, "fp16") is None
    smallest = mt.MatmulTiles(16, 16, 8).sram_bytes("fp16")                    # (128 + 128) * 2 + 1024
    assert smallest == 1536
    assert mt._best_tiles(smallest, 256, 256, 128, "fp16") == mt.MatmulTiles(16, 16, 8)
    dev = dataclasses.replace(load_device("a100-40gb"), sram_per_sm=smallest - 1)
    with pytest.raises(SramOverflowError, match=r"need 1,536 bytes of SRAM but an SM of a100-40gb has 1,535 bytes "
                                                r"\(A tile 16x8 fp16 = 256 B, B tile 8x16 fp16 = 256 B, C accumulator "
                                                r"16x16 fp32 = 1,024 B\).*cannot hold even the smallest tiles"):
        mt.choose_tiles(dev, 64, 64, 64, "fp16")


def test_check_matmul_tiles_suggests_the_chosen_tiles():
    dev = dataclasses.replace(load_device("a100-40gb"), sram_per_sm=49152)
    good = mt.choose_tiles(dev, 512, 512, 512, "fp16")
    assert mt.check_matmul_tiles(dev, good, 512, 512, 512, "fp16", "matmul_v2") == good.sram_bytes("fp16")
    with pytest.raises(SramOverflowError, match=(f"block_m={good.block_m}, block_n={good.block_n}, "
                                                 f"block_k={good.block_k} \\({good.sram_bytes('fp16'):,} bytes\\)")):
        mt.check_matmul_tiles(dev, mt.MatmulTiles(256, 256, 128), 512, 512, 512, "fp16", "matmul_v2")


# ---- attention ------------------------------------------------------------------------------------------------


def test_bmm_closed_form_with_gqa_and_a_group_reduction():
    # 2 batches, 8 a-heads, 2 b-heads, m=10, n=20, K=6, tiles 4 x 8: ceil(20/8)=3, ceil(10/4)=3
    shape = BmmShape(2, 8, 2, 10, 20, 6, 1, False, False, "fp16")
    per_head = 10 * 6 * 3 + 6 * 20 * 3
    assert bmm_expected_bytes(shape, 4, 8, 2) == (2 * 8 * per_head * 2, 2 * 8 * 10 * 20 * 2)
    grouped = BmmShape(2, 8, 8, 10, 20, 6, 4, False, False, "fp16")          # 8 / 4 = 2 output heads
    assert bmm_expected_bytes(grouped, 4, 8, 2) == (2 * 8 * per_head * 2, 2 * 2 * 10 * 20 * 2)


FP32 = 4


@pytest.mark.parametrize("b, h, kvh, nq, nk, d, bq, bk, dtype, mask", [
    (1, 1, 1, 8, 8, 4, 8, 8, "fp16", False),          # one K/V block: t_c = 1
    (2, 4, 4, 10, 33, 8, 4, 16, "fp16", True),        # t_c = 3, a partial last block
    (1, 6, 2, 5, 7, 3, 2, 3, "fp32", False),          # GQA: groups of 3 query heads
    (3, 2, 1, 16, 16, 16, 16, 1, "bf16", True),       # t_c = 16
])
def test_flash1_formula_at_hand_computed_points(b, h, kvh, nq, nk, d, bq, bk, dtype, mask):
    s = {"fp16": 2, "bf16": 2, "fp32": 4}[dtype]
    t_c = math.ceil(nk / bk)
    m_bytes = nk if mask else 0
    fwd_r = 2 * nk * d * s + 2 * t_c * nq * d * s + 2 * t_c * nq * FP32 + m_bytes
    fwd_w = nq * d * s + 2 * nq * FP32 + t_c * (nq * d * s + 2 * nq * FP32)
    assert flash1_expected_bytes(b, h, nq, nk, d, block_q=bq, block_k=bk, dtype=dtype, kv_heads=kvh,
                                 key_padding_mask=mask) == (b * h * fwd_r, b * h * fwd_w)
    bwd_r = 2 * nk * d * s + t_c * nq * d * (3 * s + FP32) + 2 * t_c * nq * FP32 + m_bytes
    bwd_w = nq * d * FP32 + 4 * nk * d * s + (t_c - 1) * nq * d * FP32 + nq * d * s
    r, w = b * h * bwd_r, b * h * bwd_w
    if h != kvh:                                       # the GQA group sum of dK and dV
        r, w = r + 2 * b * h * nk * d * s, w + 2 * b * kvh * nk * d * s
    assert flash1_expected_bytes(b, h, nq, nk, d, block_q=bq, block_k=bk, dtype=dtype, kv_heads=kvh,
                                 key_padding_mask=mask, backward=True) == (r, w)
    for backward in (False, True):                     # whole bytes, as ints
        got = flash1_expected_bytes(b, h, nq, nk, d, block_q=bq, block_k=bk, dtype=dtype, backward=backward)
        assert all(type(v) is int for v in got)
    if not mask:                                       # no key padding mask unless asked
        assert flash1_expected_bytes(b, h, nq, nk, d, block_q=bq, block_k=bk, dtype=dtype, kv_heads=kvh) == \
            (b * h * fwd_r, b * h * fwd_w)
    if kvh == h:                                       # kv_heads=None means no GQA
        assert flash1_expected_bytes(b, h, nq, nk, d, block_q=bq, block_k=bk, dtype=dtype,
                                     key_padding_mask=mask, backward=True) == (r, w)


# ---- standard attention (attention/standard.py) ----------------------------------------------------------------
#
# standard_expected_bytes is checked here as a formula only (no kernel runs, so a mutation run of it takes
# seconds per mutant); test_attention_standard.py checks it against what the twelve kernels count.
#
# equivalent mutant tinyml/kernels/attention/standard.py:204: 1 -> 2
# equivalent mutant tinyml/kernels/attention/standard.py:210: H // KVH -> H / KVH
# equivalent mutant tinyml/kernels/attention/standard.py:205: False -> True
#   the bmm's GQA group (the default 1, or H // KVH for dV) and its two transpose flags (the two
#   False -> True mutants of line 205) are carried in the BmmShape given to resolve_tiles, which picks
#   tiles from (m, n, k, dtype) alone (choose_tiles); neither reaches the formula.


def standard_closed_form(B, H, KVH, Nq, Nk, d, s, qk, pv, dv, mask_rows, fwd_cols, bwd_cols,
                         masked, padded, dropout):
    """The module docstring's table, term by term: qk/pv/dv = each bmm's (BM, BN); mask_rows = the mask
    kernel's BR; fwd_cols/bwd_cols = the forward/backward softmax kernels' BC."""
    cd = lambda a, b: -(-a // b)  # noqa: E731
    X, E = B * H * Nq * Nk * s, B * H * Nq * Nk
    Q, K_, KV = B * H * Nq * d * s, B * H * Nk * d * s, B * KVH * Nk * d * s
    pad = B * H * cd(Nq, mask_rows) * Nk if padded else 0
    qk_reads = Q * cd(Nk, qk[1]) + K_ * cd(Nq, qk[0])
    pv_reads = X * cd(d, pv[1]) + K_ * cd(Nq, pv[0])
    dv_reads = X * cd(d, dv[1]) + Q * cd(Nk, dv[0])
    out = {"attn_std_qk": (qk_reads, X)}
    if masked:
        out["attn_std_mask"] = (X + pad, X)
    out["attn_std_softmax"] = ((1 if fwd_cols >= Nk else 2) * X, X)
    if dropout:
        out["attn_std_dropout"] = (X, X + E)
    out["attn_std_pv"] = (pv_reads, Q)
    out["attn_std_bwd_dv"] = (dv_reads, KV)
    out["attn_std_bwd_dp"] = (qk_reads, X)
    if dropout:
        out["attn_std_bwd_dropout"] = (X + E, X)
    out["attn_std_bwd_softmax"] = ((2 if bwd_cols >= Nk else 4) * X, X)
    if masked:
        out["attn_std_bwd_mask"] = (X + pad, X)
    out["attn_std_bwd_dq"] = (pv_reads, Q)
    out["attn_std_bwd_dk"] = (dv_reads, KV)
    return out


def test_standard_formula_at_a_hand_computed_point():
    # B=2, H=4, KVH=2, Nq=5, Nk=7, d=3, fp16; BM=2, BN=4, BR=2, BC=4 (< Nk: two passes)
    # X = 2*4*5*7*2 = 560, E = 280, Q = 2*4*5*3*2 = 240, K' = 2*4*7*3*2 = 336, KV = 2*2*7*3*2 = 168,
    # pad = 2*4*ceil(5/2)*7 = 168
    got = standard_expected_bytes(2, 4, 2, 5, 7, 3, dtype="fp16", masked=True, padded=True, dropout=True,
                                  device="a100-40gb", block_m=2, block_n=4, block_k=8, block_rows=2, block_cols=4)
    qk = 240 * 2 + 336 * 3                 # Q ceil(7/4) + K' ceil(5/2) = 1488
    pv = 560 * 1 + 336 * 3                 # X ceil(3/4) + K' ceil(5/2) = 1568
    dv = 560 * 1 + 240 * 4                 # X ceil(3/4) + Q ceil(7/2) = 1520
    assert got == {
        "attn_std_qk": (qk, 560), "attn_std_mask": (728, 560), "attn_std_softmax": (1120, 560),
        "attn_std_dropout": (560, 840), "attn_std_pv": (pv, 240), "attn_std_bwd_dv": (dv, 168),
        "attn_std_bwd_dp": (qk, 560), "attn_std_bwd_dropout": (840, 560), "attn_std_bwd_softmax": (2240, 560),
        "attn_std_bwd_mask": (728, 560), "attn_std_bwd_dq": (pv, 240), "attn_std_bwd_dk": (dv, 168)}
    assert list(got) == ["attn_std_qk", "attn_std_mask", "attn_std_softmax", "attn_std_dropout", "attn_std_pv",
                         "attn_std_bwd_dv", "attn_std_bwd_dp", "attn_std_bwd_dropout", "attn_std_bwd_softmax",
                         "attn_std_bwd_mask", "attn_std_bwd_dq", "attn_std_bwd_dk"]     # launch order


def test_standard_formula_defaults_are_fp16_without_mask_or_dropout():
    # the unmasked, dropout-free fp16 forward and backward: 3 + 5 kernels
    blocks = dict(block_m=4, block_n=2, block_k=8, block_rows=4, block_cols=7)
    got = standard_expected_bytes(1, 3, 1, 9, 7, 5, device="a100-40gb", **blocks)
    assert got == standard_closed_form(1, 3, 1, 9, 7, 5, 2, (4, 2), (4, 2), (4, 2), 4, 7, 7, False, False, False)
    assert len(got) == 8
    assert standard_expected_bytes(1, 3, 1, 9, 7, 5, masked=True, device="a100-40gb", **blocks) == \
        standard_closed_form(1, 3, 1, 9, 7, 5, 2, (4, 2), (4, 2), (4, 2), 4, 7, 7, True, False, False)


@pytest.mark.parametrize("masked, padded, dropout", [(False, False, False), (True, False, False),
                                                     (True, True, False), (False, False, True)])
@pytest.mark.parametrize("cols", [7, 8, 6])          # BC = Nk: one pass; BC > Nk: one pass; BC = Nk - 1: two
def test_standard_formula_kernels_and_passes(masked, padded, dropout, cols):
    B, H, KVH, Nq, Nk, d = 1, 3, 1, 9, 7, 5
    got = standard_expected_bytes(B, H, KVH, Nq, Nk, d, dtype="fp32", masked=masked, padded=padded,
                                  dropout=dropout, device="a100-40gb", block_m=4, block_n=2, block_k=8,
                                  block_rows=4, block_cols=cols)
    want = standard_closed_form(B, H, KVH, Nq, Nk, d, 4, (4, 2), (4, 2), (4, 2), 4, cols, cols,
                                masked, padded, dropout)
    assert got == want and list(got) == list(want)
    assert all(type(v) is int for pair in got.values() for v in pair)


@pytest.mark.parametrize("device, Nq, Nk, d, dtype", [
    ("a100-40gb", 48, 200, 24, "fp16"),      # three different bmm tiles: (64, 256), (64, 32), (256, 32)
    ("a100-40gb", 100, 20000, 64, "fp16"),   # a row of 20000 fits one tile (forward), not two (backward)
    ("a100-40gb", 30, 9000, 64, "fp32"),     # the same at 4 bytes per element
    ("toy", 40, 200, 16, "fp16"),            # 2 KB of SRAM: 16 x 16 bmm tiles, BR = 1
])
@pytest.mark.parametrize("padded", [False, True])
def test_standard_formula_uses_the_tiles_the_kernels_pick(device, Nq, Nk, d, dtype, padded):
    """No block sizes given: each bmm's tiles are choose_tiles' for its (m, n, k), each row kernel's
    row_tiles' for its own SRAM tiles (mask: score tile + padding row; softmax: one tile; its backward: two)."""
    from tinyml.kernels.attention.standard_mask import mask_tiles
    from tinyml.kernels.attention.standard_rows import row_tiles
    from tinyml.kernels.attention.standard_softmax import softmax_tiles
    B, H, KVH = 2, 4, 2
    s = {"fp16": 2, "fp32": 4}[dtype]
    dev = load_device(device)
    qk, pv, dv = (mt.choose_tiles(dev, m, n, k, dtype) for m, n, k in ((Nq, Nk, d), (Nq, d, Nk), (Nk, d, Nq)))
    with Profile(device):
        mask = row_tiles(Nq, Nk, mask_tiles(dtype, padded), "mask")
        fwd = row_tiles(Nq, Nk, softmax_tiles(dtype, 1), "softmax")
        bwd = row_tiles(Nq, Nk, softmax_tiles(dtype, 2), "softmax_bwd")
    want = standard_closed_form(B, H, KVH, Nq, Nk, d, s, (qk.block_m, qk.block_n), (pv.block_m, pv.block_n),
                                (dv.block_m, dv.block_n), mask.block_rows, fwd.block_cols, bwd.block_cols,
                                True, padded, True)
    got = standard_expected_bytes(B, H, KVH, Nq, Nk, d, dtype=dtype, masked=True, padded=padded, dropout=True,
                                  device=device)
    assert got == want
    with Profile(device):                                  # device=None: the current profile's device
        assert standard_expected_bytes(B, H, KVH, Nq, Nk, d, dtype=dtype, masked=True, padded=padded,
                                       dropout=True) == want


def test_standard_formula_tiles_differ_per_kernel():
    """The points above tell the kernels' tiles apart (else a swapped tile would go unnoticed)."""
    dev = load_device("a100-40gb")
    picks = [mt.choose_tiles(dev, m, n, k, "fp16") for m, n, k in ((48, 200, 24), (48, 24, 200), (200, 24, 48))]
    assert [(t.block_m, t.block_n) for t in picks] == [(64, 256), (64, 32), (256, 32)]
    with Profile("a100-40gb"):
        from tinyml.kernels.attention.standard_rows import row_tiles
        from tinyml.kernels.attention.standard_softmax import softmax_tiles
        # 49,152 B per row kernel (a quarter of 192 KB): one row of 20,000 fp16 (40,000 B) fits whole;
        # two tiles do not, so BC = the largest power of two that fits twice: 8192 (32,768 B), 3 chunks
        assert row_tiles(100, 20000, softmax_tiles("fp16", 1), "f").chunks(20000) == 1
        assert row_tiles(100, 20000, softmax_tiles("fp16", 2), "b").block_cols == 8192


@pytest.mark.parametrize("nq, nk, bq, bk", [(10, 10, 4, 3), (12, 7, 5, 2), (5, 13, 2, 4), (9, 3, 4, 4), (1, 6, 1, 6)])
@pytest.mark.parametrize("backward", [False, True])
def test_flash1_causal_skip_masked_against_the_dense_mask(nq, nk, bq, bk, backward):
    """skip_masked + causal: only the tiles some query of Q block i sees a key of K/V block j in move their
    Q-side bytes; the tiles, their rows r_i, the Q blocks no tile reaches (dq = 0 written once) and those
    some tile reaches (dq written at the last tile), all from the dense causal mask (bottom-right aligned)."""
    b, h, d, s = 2, 3, 4, 2
    p = np.arange(nq)[:, None] + (nk - nq)
    vis = np.arange(nk)[None, :] <= p
    starts_q, starts_k = range(0, nq, bq), range(0, nk, bk)
    rows = [min(bq, nq - i) for i in starts_q]
    tiles = [[vis[i:i + bq, j:j + bk].any() for j in starts_k] for i in starts_q]
    tile_rows = sum(r for r, row in zip(rows, tiles) for t in row if t)
    last = sum(r for r, row in zip(rows, tiles) if any(row))
    unseen = nq - last
    t_c = len(starts_k)
    if not backward:
        want = (b * h * (2 * nk * d * s + tile_rows * (2 * d * s + 8)), b * h * (nq + tile_rows) * (d * s + 8))
    else:
        want = (b * h * (2 * nk * d * s + tile_rows * (3 * d * s + 4 * d + 8)),
                b * h * (nq * d * 4 + 4 * nk * d * s + (tile_rows - last) * d * 4 + (last + unseen) * d * s))
    got = flash1_expected_bytes(b, h, nq, nk, d, block_q=bq, block_k=bk, causal=True, skip_masked=True,
                                backward=backward)
    assert got == want
    # causal alone, or skip_masked alone, moves every tile's bytes: t_c N_q rows
    every = flash1_expected_bytes(b, h, nq, nk, d, block_q=bq, block_k=bk, backward=backward)
    assert every == flash1_expected_bytes(b, h, nq, nk, d, block_q=bq, block_k=bk, causal=True, backward=backward)
    assert every == flash1_expected_bytes(b, h, nq, nk, d, block_q=bq, block_k=bk, skip_masked=True,
                                          backward=backward)
    assert (tile_rows < t_c * nq) == (got != every)
