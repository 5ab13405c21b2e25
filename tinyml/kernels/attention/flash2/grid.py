"""FlashAttention-2's launch grid: which tiles are computed, counting mode's block classes, L2 panels.

With a causal mask or a sliding window the (i, j) tile grid has tiles no query of block i may
see any key of; FlashAttention-2 skips them (no loads, no FLOPs): :func:`tile_grid` gives, per
q block, the span of keys it sees, and per K/V block, the q blocks that see it
(:func:`~tinyml.kernels.attention.masks.q_block_spans`). Counting mode walks one block of each
class (:func:`q_block_classes` forward, :func:`kv_block_classes` backward) in the first
(batch, head) (:mod:`tinyml.kernels._classes`).
"""

from __future__ import annotations

import numpy as np

from ..masks import k_block_rows, q_block_spans
from .block_sizes import Flash2Blocks


def tile_grid(call, blocks: Flash2Blocks):
    """Spans of the q blocks and the q-block ranges of the K/V blocks for ``call``'s masks."""
    wl, wr = call.window
    span_lo, span_hi = q_block_spans(call.seq_q, call.seq_k, blocks.block_q, call.causal, wl, wr)
    i_lo, i_hi = k_block_rows(span_lo, span_hi, call.seq_k, blocks.block_k)
    return span_lo, span_hi, i_lo, i_hi


def q_block_classes(execute: bool, n_bh: int, nqb: int, n_q: int, n_k: int, blocks, span_lo, span_hi):
    """(block ids to walk, (run classes, run lengths) or (None, None)) of a forward grid of
    ``n_bh`` (batch, head) pairs times ``nqb`` q blocks, heaviest first.

    A block's counts depend only on its rows, whether it sees any key and its first and last
    K/V tiles, so counting walks one q block of each such class, in the first (batch, head),
    and every (batch, head) repeats the launch order of the first.
    """
    if execute:
        return np.arange(n_bh * nqb, dtype=np.int64), (None, None)
    ib = np.arange(nqb - 1, -1, -1)                                   # launch order: heaviest first
    rows = np.minimum(blocks.block_q, n_q - ib * blocks.block_q)
    seen = span_hi[ib] > span_lo[ib]
    j_lo = np.where(seen, span_lo[ib] // blocks.block_k, 0)
    j_hi = np.where(seen, -(-span_hi[ib] // blocks.block_k), 0)
    keys = np.stack([rows, seen, j_lo, j_hi], axis=1)                 # (nqb, 4)
    _, first, cls = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    cls = cls.reshape(-1)
    return first.astype(np.int64), (np.tile(cls, n_bh), np.ones(n_bh * nqb, dtype=np.int64))


def kv_panels(n_blocks: int, per_bh: int, heads: int, kv_heads: int) -> np.ndarray:
    """(n_blocks,) the (batch, kv head) each block reads K and V of: b * kv_heads + h // group."""
    bh = np.arange(n_blocks) // per_bh
    b, h = np.divmod(bh, heads)
    return b * kv_heads + h // (heads // kv_heads)


def kv_block_classes(execute: bool, n_bh: int, nkb: int, n_k: int, bc: int, i_lo, i_hi):
    """(column blocks to walk, (run classes, run lengths) or (None, None)) of the main kernel's grid
    of ``n_bh`` (batch, head) pairs times ``nkb`` column blocks.

    A block's counts depend only on its columns and its range of q blocks, so counting walks one
    column block of each such class, in the first (batch, head), and every (batch, head) repeats
    the launch order of the first.
    """
    if execute:
        return np.arange(nkb, dtype=np.int64), (None, None)
    jb = np.arange(nkb)
    cols = np.minimum(bc, n_k - jb * bc)
    seen = i_hi > i_lo
    keys = np.stack([cols, seen, np.where(seen, i_lo, 0), np.where(seen, i_hi, 0)], axis=1)   # (nkb, 4)
    _, first, cls = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    cls = cls.reshape(-1)
    return first.astype(np.int64), (np.tile(cls, n_bh), np.ones(n_bh * nkb, dtype=np.int64))
