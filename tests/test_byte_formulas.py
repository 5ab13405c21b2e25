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
# equivalent mutant tinyml/kernels/attention/flash1/block_sizes.py:241: heads // kvh -> heads / kvh
#   heads // kvh > 1 and heads / kvh > 1 differ only when heads is not a multiple of kv_heads, a GQA
#   configuration the kernels refuse (the formula describes only launches that can happen).
# equivalent mutant tinyml/kernels/attention/flash1/block_sizes.py:229: 8 -> 9
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
