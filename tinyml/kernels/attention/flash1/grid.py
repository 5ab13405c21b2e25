"""FlashAttention-1's launch grid: the shipped kernel's splits, the tiles a mask skips, block classes.

Algorithm 1 (``num_splits=1, skip_masked=False``) runs one block per (batch, head) and computes
every tile. The CUDA kernel as it shipped (v1.0) runs ``(batch, heads, S)`` blocks, ``S`` from its
``num_splits`` heuristic, and skips the tiles a causal mask hides entirely (:func:`tile_ranges`).
Counting mode walks the ``S`` splits of one (batch, head) (every (batch, head) moves the same
bytes) and records them as block classes (:mod:`tinyml.kernels._classes`).
"""

from __future__ import annotations

import numpy as np

from ....sim.jit import njit
from ....sim import current_profile
from ....sim.classes import BlockClasses
from ..._contract import block_size, ceil_div
from .._common import AttentionCall
from ..masks import k_block_rows, q_block_spans


#: the CUDA kernel's cap on splits (flash-attention v1 ``fmha_api.cpp``: ``min(30, ...)``)
MAX_SPLITS = 30


def num_splits(batch_heads: int, sm_count: int, blocks_per_sm: int, max_splits: int) -> int:
    """The FA1 CUDA kernel's ``num_splits_heuristic_fwd`` (flash-attention v1.0, ``fmha_api.cpp``).

    The efficiency of S splits is ``waves / ceil(waves)`` with ``waves = batch_heads * S /
    (sm_count * blocks_per_sm)``; the answer is the smallest S within 95% of the best efficiency
    (more splits re-read K and V). 48 (batch, head) pairs on 108 SMs with at most 3 splits: S = 2
    (0.89; 3 splits: 0.67); with up to 30: S = 9 (exactly 4 waves)."""
    effs = []
    for s in range(1, max(1, max_splits) + 1):
        waves = batch_heads * s / (sm_count * blocks_per_sm)
        effs.append(waves / -(-waves // 1))
    best = max(effs)
    return next(s for s, e in enumerate(effs, 1) if e > 0.95 * best)


def splits(call: AttentionCall, requested, n_tiles: int, sram: int, regs: int) -> int:
    """S: the caller's, or the heuristic's; at most one split per tile (Q blocks forward, K/V backward)."""
    if requested is None:
        dev = current_profile().device
        from ....sim import occupancy
        return num_splits(call.batch * call.heads, dev.sm_count, occupancy(dev, sram, regs),
                          min(MAX_SPLITS, n_tiles))
    return min(block_size(requested, "num_splits", 1), n_tiles)


def tile_ranges(call: AttentionCall, b_q: int, b_k: int, skip_masked: bool):
    """(i_lo, i_hi, i_last_lo, i_last_hi), each (T_c,): for K/V block j the Q blocks [i_lo, i_hi) that
    compute it (all, or those some key of block j is visible to), and among them [i_last_lo,
    i_last_hi) the Q blocks no later K/V block reaches (the backward writes dq there)."""
    t_r, t_c = ceil_div(call.seq_q, b_q), ceil_div(call.seq_k, b_k)
    if skip_masked:
        wl, wr = call.window
        lo, hi = q_block_spans(call.seq_q, call.seq_k, b_q, call.causal, wl, wr)
        i_lo, i_hi = k_block_rows(lo, hi, call.seq_k, b_k)
    else:
        i_lo, i_hi = np.zeros(t_c, np.int64), np.full(t_c, t_r, np.int64)
    j_last = last_cover(np.asarray(i_lo, np.int64), np.asarray(i_hi, np.int64), t_r)
    i_last_lo, i_last_hi = i_hi.copy(), i_hi.copy()
    seen = np.flatnonzero(j_last >= 0)
    if len(seen):
        mine = np.bincount(j_last[seen], minlength=t_c)            # Q blocks each K/V block is last for
        first = np.full(t_c, t_r, np.int64)
        last = np.full(t_c, -1, np.int64)
        np.minimum.at(first, j_last[seen], seen)
        np.maximum.at(last, j_last[seen], seen)
        has = mine > 0
        assert np.array_equal(mine[has], last[has] + 1 - first[has]), \
            "the Q blocks a K/V block is last for are contiguous"
        i_last_lo[has], i_last_hi[has] = first[has], last[has] + 1
    return i_lo, i_hi, i_last_lo, i_last_hi


@njit(cache=True)
def last_cover(i_lo, i_hi, t_r):
    """(t_r,) for each Q block i the last K/V block j with ``i_lo[j] <= i < i_hi[j]``, or -1.

    The K/V blocks are visited from the last, each painting the Q blocks of its range not painted
    yet; ``nxt`` jumps over painted runs (path halving), so each Q block is painted once and the
    whole is O(T_r + T_c), not O(T_r T_c) (10M tokens: 26,000 ranges over 156,000 Q blocks)."""
    j_last = np.full(t_r, -1, np.int64)
    nxt = np.arange(t_r + 1)                      # nxt[i]: towards the first unpainted Q block >= i
    for j in range(len(i_lo) - 1, -1, -1):
        i = i_lo[j]
        while nxt[i] != i:                        # find, halving the path
            nxt[i] = nxt[nxt[i]]
            i = nxt[i]
        while i < i_hi[j]:
            j_last[i] = j
            nxt[i] = i + 1
            i += 1
            while nxt[i] != i:
                nxt[i] = nxt[nxt[i]]
                i = nxt[i]
    return j_last


def runs(n_bh: int, splits: int):
    """(run classes, run lengths): every (batch, head) repeats the splits 0..S-1."""
    if splits == 1:
        return np.zeros(1, np.int64), np.array([n_bh], np.int64)
    return np.tile(np.arange(splits, dtype=np.int64), n_bh), np.ones(n_bh * splits, np.int64)


def kv_panels(call: AttentionCall, ops: tuple, splits: int = 1) -> "dict | None":
    """L2 panels: the splits of one (batch, head) and the query heads of one GQA group read the same
    K_j, V_j."""
    if call.group == 1 and splits == 1:
        return None
    blk = np.arange(call.batch * call.heads * splits) // splits
    kv = (blk // call.heads) * call.kv_heads + (blk % call.heads) // call.group
    return {op: kv for op in ops}


def block_ids(call: AttentionCall, n_bh: int, splits: int) -> np.ndarray:
    """The blocks a body walks: all of them when executing; when counting, the splits of
    (batch, head) 0 (every (batch, head) of FA1 moves the same bytes: :mod:`tinyml.kernels._classes`)."""
    return np.arange((n_bh if call.execute else 1) * splits, dtype=np.int64)


def launch_counters(call: AttentionCall, counters: np.ndarray, n_bh: int, splits: int):
    """What the launch records: the per-block rows, or the S split classes repeated per (batch, head)
    (not merged: the Reuse declaration gives one value per split)."""
    if call.execute:
        return counters
    return BlockClasses(counters, *runs(n_bh, splits))
