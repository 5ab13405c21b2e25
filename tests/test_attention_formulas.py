"""FlashAttention-2's formula functions, pinned without running a kernel (found unpinned by tools/mutate.py).

The vector FLOPs per computed score (``attention/flops.py``, FA2's ``fwd_per_score`` / ``bwd_per_score``)
written out by hand; which tiles a mask hides (``attention/masks.py``: ``visible``, ``key_range``,
``q_block_spans``, ``k_block_rows``) against a brute force over the dense mask; FA2's block sizes
(``attention/flash2/block_sizes.py``) against a brute force of the documented rule with the tiles' bytes in
closed form, exactly at a chip's capacity and one byte below. test_attention_flash2.py checks the kernels'
counters against the same quantities; this file is what a mutation run of these modules executes.
"""

from __future__ import annotations

import dataclasses
import re
from types import SimpleNamespace

import numpy as np
import pytest

from tinyml.kernels.attention import flops
from tinyml.kernels.attention.flash2 import block_sizes as fb
from tinyml.kernels.attention.flash2.bwd import bwd_per_score
from tinyml.kernels.attention.flash2.fwd import fwd_per_score
from tinyml.kernels.attention.masks import k_block_rows, key_range, q_block_spans, visible, visible_matrix
from tinyml.sim import SramOverflowError, TileConfigError, load_device
from tinyml.sim.cost import Issue

# ---- vector FLOPs per score (flops.py) ----------------------------------------------------------------------
#
# scale 1, mask 1, row max 1, exp 2, row sum 1, normalise 1, dropout 15 (Philox) + 2; FA2's backward:
# scale, mask, exp, dropout + 1 (applied to P and to dP), softmax backward 3.


@pytest.mark.parametrize("masked, dropout, fwd, fwd_normalised, bwd", [
    (False, False, 5, 6, 6),
    (True, False, 6, 7, 7),
    (False, True, 22, 23, 24),
    (True, True, 23, 24, 25),
])
def test_per_score_flops_by_hand(masked, dropout, fwd, fwd_normalised, bwd):
    assert fwd_per_score(masked, dropout) == fwd
    assert flops.forward_per_score(masked, dropout, normalize=False) == fwd
    assert flops.forward_per_score(masked, dropout, normalize=True) == fwd_normalised
    assert bwd_per_score(masked, dropout) == bwd


def test_flop_constants():
    assert (flops.SCALE, flops.MASK, flops.ROW_MAX, flops.EXP, flops.ROW_SUM, flops.NORMALIZE) == (1, 1, 1, 2, 1, 1)
    assert flops.DROPOUT == 17 and flops.SOFTMAX_BWD == 3
    assert flops.MATMUL_PER_SCORE == {False: 4, True: 10}


def test_attention_issue_by_hand():
    # forward at d = 64: 4 * 64 = 256 matmul FLOPs per score, one exp on the SFU each
    assert flops.attention_issue(64) == Issue(mma="mma_sync", sfu_per_mma_flop=1 / 256)
    # backward, FA3-style overlap and wgmma, dropout: 10 * 64 = 640 per score, 15 Philox ops each
    assert flops.attention_issue(64, backward=True, mma="wgmma", overlap=True, dropout=True) == \
        Issue(mma="wgmma", sfu_per_mma_flop=1 / 640, overlap=True, int_per_mma_flop=15 / 640)
    # FA1's split-K exchange: 4 warps, B_c = 32: 2 * 3 * (64 + 2) * 4 bytes per row against 256 * 32 FLOPs
    got = flops.attention_issue(64, split_k=(4, 32))
    assert got.exchange_per_mma_flop == 2 * 3 * 66 * 4 / (256 * 32) == 1584 / 8192
    assert flops.attention_issue(64, split_k=(1, 32)).exchange_per_mma_flop == 0.0     # one warp: nothing


# ---- masks.py -------------------------------------------------------------------------------------------------
#
# equivalent mutant tinyml/kernels/attention/masks.py:83: -1 -> 1
# equivalent mutant tinyml/kernels/attention/masks.py:83: 1 -> 2
#   q_block_spans' ``first = -1`` -> ``1`` / ``-2``: -2 is still "none found"; with 1, a block with no visible
#   row skips the ``continue`` but its backward scan finds no visible row either, so its span stays (0, 0).
# equivalent mutant tinyml/kernels/attention/masks.py:91: continue -> pass
#   the same block without the ``continue``: the backward scan runs over its rows and those above it (down to
#   row -1), none of which sees a key (invisible rows are only at the top), so span_hi stays 0.
# equivalent mutant tinyml/kernels/attention/masks.py:117: True -> False
# equivalent mutant tinyml/kernels/attention/masks.py:119: span_lo[ib] < span_lo[ib - 1] -> span_lo[ib] <= span_lo[ib - 1]
# equivalent mutant tinyml/kernels/attention/masks.py:119: span_hi[ib] < span_hi[ib - 1] -> span_hi[ib] <= span_hi[ib - 1]
#   k_block_rows' monotone flag only picks the fast path: starting it False, or calling spans with an equal
#   lo or hi "not monotone", sends those K/V blocks to the direct scan, which finds the same q blocks.
# equivalent mutant tinyml/kernels/attention/masks.py:130: continue -> pass
#   without the ``continue`` a K/V block the fast path answered also takes the direct scan, which writes the
#   same [i_lo, i_hi) (or leaves the fast path's answer when it finds no q block, as the fast path did).
# equivalent mutant tinyml/kernels/attention/masks.py:92: 1 -> 2
# equivalent mutant tinyml/kernels/attention/masks.py:94: lo < hi -> lo <= hi
#   the backward scan for a block's last visible row: a block with any visible row has a visible last row
#   (rows that see nothing are only at the top), so the scan stops at its first step, r1 - 1, whatever its
#   stop (``first - 2``), its step (``-2``) or its test (``<=``).
# equivalent mutant tinyml/kernels/attention/masks.py:112: span_lo[a] >= span_hi[a] -> span_lo[a] > span_hi[a]
# equivalent mutant tinyml/kernels/attention/masks.py:115: span_lo[z - 1] >= span_hi[z - 1] -> span_lo[z - 1] > span_hi[z - 1]
# equivalent mutant tinyml/kernels/attention/masks.py:115: z > a -> z >= a
#   k_block_rows' trimming of empty spans before the monotone fast path (leading and trailing): with ``>`` an
#   empty (0, 0) span is not trimmed, the spans are then "not monotone" and every K/V block takes the direct scan, which gives the
#   same rows (test_k_block_rows_on_hand_made_spans checks both paths); ``z >= a`` differs only when every
#   span is empty, where both paths find no q block.
# equivalent mutant tinyml/kernels/attention/masks.py:86: lo < hi -> lo <= hi
#   an empty row range is (lo, lo) (key_range clamps hi to lo); rows that see nothing occur only at the top of
#   the mask (p < 0 under causal, p < -right under a right window: bottom-right alignment), where lo =
#   max(0, p - left) = 0, and the first row that does see a key has lo = 0 too (p - left <= 0 there). So taking
#   span_lo from the first row of the block instead of the first visible one gives the same 0; a block of
#   invisible rows only keeps span_hi = 0 <= span_lo, empty either way, and lo is 0 for it as well.

MASKS = [(False, (-1, -1)), (True, (-1, -1)), (False, (2, 1)), (True, (3, -1)), (False, (0, 0)),
         (False, (-1, 2)), (True, (1, 0))]
SIZES = [(1, 1), (5, 5), (7, 12), (12, 7), (9, 3), (3, 16), (16, 16)]


def dense(n_q, n_k, causal, window):
    """The docstring's rule written out per entry: query i at key position p = i + n_k - n_q."""
    ok = np.zeros((n_q, n_k), bool)
    for i in range(n_q):
        p = i + n_k - n_q
        for j in range(n_k):
            ok[i, j] = ((not causal or j <= p) and (window[0] < 0 or j >= p - window[0])
                        and (window[1] < 0 or j <= p + window[1]))
    return ok


@pytest.mark.parametrize("n_q, n_k", SIZES)
@pytest.mark.parametrize("causal, window", MASKS)
def test_visible_key_range_and_the_dense_mask_agree(n_q, n_k, causal, window):
    want = dense(n_q, n_k, causal, window)
    assert (visible_matrix(n_q, n_k, causal, window) == want).all()
    offset = n_k - n_q
    for i in range(n_q):
        assert [visible(i, j, offset, causal, *window) for j in range(n_k)] == list(want[i])
        lo, hi = key_range(i, offset, n_k, causal, *window)
        keys = np.flatnonzero(want[i])
        if len(keys):
            assert (lo, hi) == (keys[0], keys[-1] + 1)
        else:
            assert hi == lo                                  # empty: hi clamped to lo


def brute_spans(vis, br):
    """(lo, hi) per q block: the keys some row of the block sees; (0, 0) when none."""
    out = []
    for r0 in range(0, vis.shape[0], br):
        keys = np.flatnonzero(vis[r0:r0 + br].any(axis=0))
        out.append((keys[0], keys[-1] + 1) if len(keys) else (0, 0))
    return out


def brute_rows(spans, n_k, bc):
    """[i_lo, i_hi) per K/V block: the q blocks whose non-empty span meets it; (0, 0) when none."""
    out = []
    for c0 in range(0, n_k, bc):
        c1 = min(n_k, c0 + bc)
        meets = [i for i, (lo, hi) in enumerate(spans) if lo < hi and lo < c1 and hi > c0]
        out.append((meets[0], meets[-1] + 1) if meets else (0, 0))
    return out


@pytest.mark.parametrize("n_q, n_k", SIZES)
@pytest.mark.parametrize("causal, window", MASKS)
@pytest.mark.parametrize("br, bc", [(1, 1), (2, 3), (4, 4), (5, 2), (16, 16)])
def test_tile_spans_and_rows_against_the_dense_mask(n_q, n_k, causal, window, br, bc):
    vis = dense(n_q, n_k, causal, window)
    lo, hi = q_block_spans(n_q, n_k, br, causal, *window)
    assert len(lo) == len(hi) == -(-n_q // br)
    assert list(zip(lo.tolist(), hi.tolist())) == brute_spans(vis, br)
    i_lo, i_hi = k_block_rows(lo, hi, n_k, bc)
    assert len(i_lo) == len(i_hi) == -(-n_k // bc)
    assert list(zip(i_lo.tolist(), i_hi.tolist())) == brute_rows(list(zip(lo.tolist(), hi.tolist())), n_k, bc)
    # tile (i, j) is computed iff some (query, key) of it is visible
    for ib, (a, b) in enumerate(zip(lo, hi)):
        for jb in range(len(i_lo)):
            tile = vis[ib * br:(ib + 1) * br, jb * bc:(jb + 1) * bc].any()
            assert tile == (a < min(n_k, (jb + 1) * bc) and b > jb * bc) == (i_lo[jb] <= ib < i_hi[jb])


@pytest.mark.parametrize("spans", [
    [(0, 0), (0, 0), (1, 3), (2, 6), (0, 0)],          # empty spans before and after the non-empty run
    [(0, 0), (4, 8), (4, 8), (9, 12)],                 # equal neighbours; a K/V block [8, 9) meets none
    [(6, 9), (0, 3), (2, 5)],                          # not monotone: the direct scan
    [(0, 4), (0, 0), (5, 8)],                          # an empty span inside: not monotone
    [(2, 5), (3, 4), (6, 9)],                          # hi moves back: not monotone
    [(0, 0), (0, 0)],                                  # nothing visible
    [(6, 9), (0, 3)],                                  # two spans, the second before the first: not monotone
    [(0, 4), (5, 5), (6, 8)],                          # an empty span written (5, 5), inside: not monotone
    [(0, 0), (1, 9), (9, 12), (5, 12)],                # lo moves back between neighbours only (5 < 9; not 5 < 1)
    [(0, 0), (1, 8), (2, 3), (7, 11)],                 # hi moves back between neighbours only (3 < 8; not 11 < 8)
])
@pytest.mark.parametrize("bc", [1, 2, 3, 4])
def test_k_block_rows_on_hand_made_spans(spans, bc):
    n_k = 12
    lo = np.array([s[0] for s in spans], np.int64)
    hi = np.array([s[1] for s in spans], np.int64)
    i_lo, i_hi = k_block_rows(lo, hi, n_k, bc)
    want = []
    for c0 in range(0, n_k, bc):                      # not contiguous for non-monotone spans: first and last
        meets = [i for i, (a, b) in enumerate(spans) if a < b and a < min(n_k, c0 + bc) and b > c0]
        want.append((meets[0], meets[-1] + 1) if meets else (0, 0))
    assert list(zip(i_lo.tolist(), i_hi.tolist())) == want


# ---- FA2 block sizes (flash2/block_sizes.py) -------------------------------------------------------------------

# equivalent mutant tinyml/kernels/attention/flash2/block_sizes.py:87: 0 -> 1
#   largest_head_dim's ``per_d[1] > 0`` -> ``> 1``: the register bytes per unit of head dim are 0 (no register
#   file: all counted as SRAM) or 4 (r + 2 c) / 4 r for fp32 register tiles, at least 4; never 1.

# equivalent mutant tinyml/kernels/attention/flash2/block_sizes.py:121: 0 -> 1
#   resolve_blocks' ``block_size(block_q, "block_q", 0)`` (and block_k's): the default of block_size is used
#   only for None, and both sizes were filled in from choose_blocks just above, so the 0 is never read.

ELEM = {"fp16": 2, "bf16": 2, "fp32": 4}


def need(kind, br, bc, d, s):
    """(SRAM bytes in the logical dtype, fp32 register bytes) of a block: the module docstring's tiles."""
    if kind == "fwd":        # Q_i, K_j, V_j | S_ij/P_ij, O_i accumulator, m_i and l_i
        return (br * d + 2 * bc * d) * s, (br * bc + br * d + 2 * br) * 4
    # K_j, V_j, Q_i, dO_i, P_ij, dS_ij | S_ij and dP_ij, dK_j and dV_j, dQ_i, lse_i and D_i
    return (2 * bc * d + 2 * br * d + 2 * br * bc) * s, (2 * br * bc + 2 * bc * d + br * d + 2 * br) * 4


def fits(chip, kind, br, bc, d, s):
    sram, regs = need(kind, br, bc, d, s)
    if chip.register_bytes <= 0:                        # no register file: everything in SRAM
        return sram + regs <= chip.sram_per_sm
    return sram <= chip.sram_per_sm and regs <= chip.register_bytes


def brute_blocks(chip, kind, nq, nk, d, s):
    """B_r then B_c (forward) or B_c then B_r (backward) in 128, 64, 32, 16, clamped; the first that fits."""
    rows = sorted({min(x, nq) for x in (128, 64, 32, 16)}, reverse=True)
    cols = sorted({min(x, nk) for x in (128, 64, 32, 16)}, reverse=True)
    pairs = [(r, c) for r in rows for c in cols] if kind == "fwd" else [(r, c) for c in cols for r in rows]
    return next(((r, c) for r, c in pairs if fits(chip, kind, r, c, d, s)), None)


def chip(sram, regs, name="test-chip"):
    return SimpleNamespace(sram_per_sm=sram, register_bytes=regs, name=name)


def test_tiles_are_the_docstrings():
    blocks = fb.Flash2Blocks(8, 4)
    assert fb.Flash2Blocks(8, 4).tiles("fwd", 3, "fp16") == {
        "Q_i": ((8, 3), "fp16"), "K_j": ((4, 3), "fp16"), "V_j": ((4, 3), "fp16"),
        "S_ij/P_ij": ((8, 4), "fp32", "reg"), "O_i accumulator": ((8, 3), "fp32", "reg"),
        "m_i, l_i": ((2, 8), "fp32", "reg")} == blocks.fwd_tiles(3, "fp16")
    assert blocks.tiles("bwd", 3, "fp32") == blocks.bwd_tiles(3, "fp32")
    assert blocks.tiles("bwd", 3, "fp32")["P_ij"] == ((8, 4), "fp32")
    assert blocks.tiles("bwd", 3, "fp32")["dK_j, dV_j accumulators"] == ((2, 4, 3), "fp32", "reg")


@pytest.mark.parametrize("device", ["a100-40gb", "h100-sxm", "toy"])
@pytest.mark.parametrize("kind", ["fwd", "bwd"])
@pytest.mark.parametrize("nq, nk, d, dtype", [
    (4096, 4096, 64, "fp16"), (4096, 4096, 128, "fp16"), (4096, 4096, 256, "bf16"), (1000, 3000, 96, "fp32"),
    (100, 40, 64, "fp16"), (20, 5000, 128, "fp16"), (1, 1, 8, "fp32"), (16, 16, 4, "fp16")])
def test_choose_blocks_follows_its_rule(device, kind, nq, nk, d, dtype):
    dev = load_device(device)
    want = brute_blocks(dev, kind, nq, nk, d, ELEM[dtype])
    if want is None:
        with pytest.raises(SramOverflowError):
            fb.choose_blocks(dev, kind, nq, nk, d, dtype, "k")
        return
    got = fb.choose_blocks(dev, kind, nq, nk, d, dtype, "k")
    assert (got.block_q, got.block_k) == want
    blocks, sram, regs = fb.resolve_blocks(dev, kind, nq, nk, d, dtype, "k", None, None)
    assert blocks == got and (sram, regs) == need(kind, *want, d, ELEM[dtype])


@pytest.mark.parametrize("kind", ["fwd", "bwd"])
def test_blocks_exactly_at_capacity(kind):
    d, s = 64, 2
    sram, regs = need(kind, 128, 128, d, s)
    # exactly both capacities: the largest pair; one byte short of either: not that pair
    assert fb.choose_blocks(chip(sram, regs), kind, 4096, 4096, d, "fp16", "k") == fb.Flash2Blocks(128, 128)
    for short in (chip(sram - 1, regs), chip(sram, regs - 1)):
        got = fb.choose_blocks(short, kind, 4096, 4096, d, "fp16", "k")
        assert (got.block_q, got.block_k) == brute_blocks(short, kind, 4096, 4096, d, s)
        assert got != fb.Flash2Blocks(128, 128)
    # the block's own dimension is tried first: forward keeps B_r = 128, backward keeps B_c = 128
    got = fb.choose_blocks(chip(sram - 1, regs), kind, 4096, 4096, d, "fp16", "k")
    assert (got.block_q if kind == "fwd" else got.block_k) == 128
    # no register file: the register tiles count as SRAM
    assert fb.choose_blocks(chip(sram + regs, 0), kind, 4096, 4096, d, "fp16", "k") == fb.Flash2Blocks(128, 128)
    assert fb.choose_blocks(chip(sram + regs - 1, 0), kind, 4096, 4096, d, "fp16", "k") != \
        fb.Flash2Blocks(128, 128)


def brute_head_dim(c, kind, nq, nk, s):
    """The last d whose smallest blocks fit (the bytes grow with d: stop at the first that does not)."""
    d = 0
    while fits(c, kind, min(16, nq), min(16, nk), d + 1, s):
        d += 1
    return d


@pytest.mark.parametrize("kind", ["fwd", "bwd"])
@pytest.mark.parametrize("c", [chip(196608, 262144), chip(49152, 65536), chip(2048, 2048), chip(2048, 0),
                               chip(100, 100000), chip(100000, 100), chip(10, 10)])
@pytest.mark.parametrize("nq, nk, dtype", [(4096, 4096, "fp16"), (8, 3, "fp32")])
def test_largest_head_dim_is_the_last_that_fits(kind, c, nq, nk, dtype):
    best = fb.largest_head_dim(c, kind, nq, nk, dtype)
    assert best == brute_head_dim(c, kind, nq, nk, ELEM[dtype])
    if best:
        assert fb.choose_blocks(c, kind, nq, nk, best, dtype, "k") is not None
    with pytest.raises(SramOverflowError) as e:
        fb.choose_blocks(c, kind, nq, nk, best + 1, dtype, "flash2_" + kind)
    br, bc = min(16, nq), min(16, nk)
    sram, regs = need(kind, br, bc, best + 1, ELEM[dtype])
    if c.register_bytes <= 0:
        sram, regs = sram + regs, 0
    msg = str(e.value)
    assert msg.startswith(f"flash2_{kind}: head_dim {best + 1} is too large for test-chip: ")
    assert f"(block_q={br}, block_k={bc}) need {sram:,} bytes of SRAM" in msg
    assert (f" and {regs:,} bytes of registers (the register file has {c.register_bytes:,})" in msg) == (regs > 0)
    assert f"an SM has {c.sram_per_sm:,} bytes of SRAM; the largest head dim that fits ({dtype}) is {best}." in msg


def test_resolve_blocks_clamps_checks_and_fills_in():
    dev = load_device("a100-40gb")
    auto = fb.choose_blocks(dev, "fwd", 300, 200, 64, "fp16", "k")
    # given sizes are clamped to the sequences; SRAM and register bytes are the clamped blocks'
    blocks, sram, regs = fb.resolve_blocks(dev, "fwd", 10, 7, 64, "fp16", "k", 64, 32)
    assert blocks == fb.Flash2Blocks(10, 7) and (sram, regs) == need("fwd", 10, 7, 64, 2)
    # one size given: the other is the default's
    assert fb.resolve_blocks(dev, "fwd", 300, 200, 64, "fp16", "k", 16, None)[0] == \
        fb.Flash2Blocks(16, auto.block_k)
    assert fb.resolve_blocks(dev, "fwd", 300, 200, 64, "fp16", "k", None, 16)[0] == \
        fb.Flash2Blocks(auto.block_q, 16)
    # too large: refused, with the blocks that fit
    with pytest.raises(SramOverflowError, match=re.escape(
            f"Blocks that fit: block_q={auto.block_q}, block_k={auto.block_k}; or omit them")):
        fb.resolve_blocks(dev, "fwd", 300, 200, 64, "fp16", "k", 256, 256)
    with pytest.raises(TileConfigError):
        fb.resolve_blocks(dev, "fwd", 300, 200, 64, "fp16", "k", 0, 16)


def test_resolve_blocks_says_when_no_block_fits():
    tiny = chip(64, 64)
    with pytest.raises(SramOverflowError, match="head_dim 64 is too large for test-chip"):
        fb.resolve_blocks(tiny, "bwd", 300, 200, 64, "fp16", "k", 16, 16)


def test_the_choice_is_cached_per_chip_not_per_device_object():
    a, b = chip(49152, 65536, "a"), chip(49152, 65536, "b")
    assert fb.choose_blocks(a, "fwd", 4096, 4096, 128, "fp16", "k") == \
        fb.choose_blocks(b, "fwd", 4096, 4096, 128, "fp16", "k")
    assert dataclasses.astuple(fb.choose_blocks(chip(49152, 65536), "bwd", 4096, 4096, 128, "fp16", "k")) == \
        brute_blocks(chip(49152, 65536), "bwd", 4096, 4096, 128, 2)
