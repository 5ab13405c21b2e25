"""Dropout on the attention probabilities, forward and backward, as separate kernels.

Forward (PyTorch's ``native_dropout``): ``keep = rng.keep(seed, b, h, i, j, p)``
(the same counter-based decision every tinyml attention variant makes, so the
result matches the reference bit for bit), ``P_drop = P * keep / (1 - p)``;
the keep mask is written to HBM, one byte per element, for the backward.
Backward (``native_dropout_backward``): ``dP = dP_drop * keep / (1 - p)``,
reading the stored mask instead of regenerating it.

Tile loop::

    for each block (b, h, row block) in parallel:     # grid B*H x ceil(Nq/BR)
        for c0 in range(0, Nk, BC):
            X = load P[b, h, rows, c0 : +BC]          # backward: dP_drop and the mask
            K = keep(seed, b, h, i, j, p)             # backward: K = load mask
            store X * K / (1 - p) -> P_drop           # backward: -> dP
            store K -> mask                           # forward only, 1 byte per element

HBM traffic (``X = B H Nq Nk s``, the mask is ``B H Nq Nk`` bytes)::

    forward:  reads X,              writes X + B H Nq Nk
    backward: reads X + B H Nq Nk,  writes X
    vector FLOPs per element: forward DROPOUT (random number, compare, scale),
    backward DROPOUT_APPLY = DROPOUT - RNG_OPS (no random number: select, scale)
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim.tiles import count_vector, load_tile, store_tile
from .._counting import extent, stand_in
from .flops import DROPOUT
from .rng import RNG_OPS, keep
from .standard_rows import block_rows_of, row_tiles, run_rows

DROPOUT_APPLY = DROPOUT - RNG_OPS


@njit(parallel=PARALLEL, cache=True)
def _forward(p, pd, mask, B, H, NQ, NK, seed, prob, execute, elem_bits, BR, BC, ids, counters):
    scale = np.float32(1.0 / (1.0 - prob))
    for row in prange(len(ids)):                     # every block, or one per class (counting)
        blk = ids[row]
        b, h, r0, rows = block_rows_of(blk, H, NQ, BR)
        p2 = p[b * execute, h * execute]                                           # (Nq, Nk)
        pd2 = pd[b * execute, h * execute]
        m2 = mask[b * execute, h * execute]                                        # (Nq, Nk) uint8
        t = np.empty((extent(BR, execute), extent(BC, execute)), dtype=np.float32)     # (BR, BC) SRAM
        k = np.empty((extent(BR, execute), extent(BC, execute)), dtype=np.uint8)       # (BR, BC) keep bits
        for c0 in range(0, NK, BC):
            cols = min(BC, NK - c0)
            load_tile(p2, r0, c0, rows, cols, t, execute, counters, row, 0, elem_bits)
            count_vector(DROPOUT * rows * cols, counters, row)
            if execute:
                for i in range(rows):
                    for j in range(cols):
                        kept = keep(seed, b, h, r0 + i, c0 + j, prob)
                        k[i, j] = kept
                        t[i, j] = t[i, j] * scale if kept else 0.0
            store_tile(t, rows, cols, pd2, r0, c0, execute, counters, row, elem_bits)
            store_tile(k, rows, cols, m2, r0, c0, execute, counters, row, 8)


@njit(parallel=PARALLEL, cache=True)
def _backward(dpd, mask, dp, B, H, NQ, NK, prob, execute, elem_bits, BR, BC, ids, counters):
    scale = np.float32(1.0 / (1.0 - prob))
    for row in prange(len(ids)):                     # every block, or one per class (counting)
        blk = ids[row]
        b, h, r0, rows = block_rows_of(blk, H, NQ, BR)
        g2 = dpd[b * execute, h * execute]                                         # (Nq, Nk)
        m2 = mask[b * execute, h * execute]                                        # (Nq, Nk) uint8
        dp2 = dp[b * execute, h * execute]
        t = np.empty((extent(BR, execute), extent(BC, execute)), dtype=np.float32)     # (BR, BC) SRAM
        k = np.empty((extent(BR, execute), extent(BC, execute)), dtype=np.uint8)       # (BR, BC) keep bits
        for c0 in range(0, NK, BC):
            cols = min(BC, NK - c0)
            load_tile(g2, r0, c0, rows, cols, t, execute, counters, row, 0, elem_bits)
            load_tile(m2, r0, c0, rows, cols, k, execute, counters, row, 1, 8)
            count_vector(DROPOUT_APPLY * rows * cols, counters, row)
            if execute:
                for i in range(rows):
                    for j in range(cols):
                        t[i, j] = t[i, j] * scale if k[i, j] else 0.0
            store_tile(t, rows, cols, dp2, r0, c0, execute, counters, row, elem_bits)


def dropout_tiles(dtype: str):
    return lambda br, bc: {"P tile": ((br, bc), dtype), "keep tile": ((br, bc), "int8")}


def dropout_forward(call, p, pd, mask, name: str, block_rows=None, block_cols=None) -> None:
    """P_drop = P * keep / (1 - p), keep mask -> HBM; one kernel launch."""

    shape = (call.batch, call.heads, call.seq_q, call.seq_k)
    tiles = row_tiles(call.seq_q, call.seq_k, dropout_tiles(call.dtype), name, block_rows, block_cols)
    ex = call.execute
    args = (p if ex else stand_in(4), pd if ex else stand_in(4), mask if ex else stand_in(4, np.uint8), *shape, call.seed,
            call.dropout_p, ex, call.elem_bits)
    run_rows(name, _forward, args, shape, tiles, call.dtype, execute=call.execute, n_operands=1)


def dropout_backward(call, dpd, mask, dp, name: str, block_rows=None, block_cols=None) -> None:
    """dP = dP_drop * keep / (1 - p) with the stored mask; one kernel launch."""

    shape = (call.batch, call.heads, call.seq_q, call.seq_k)
    tiles = row_tiles(call.seq_q, call.seq_k, dropout_tiles(call.dtype), name, block_rows, block_cols)
    ex = call.execute
    args = (dpd if ex else stand_in(4), mask if ex else stand_in(4, np.uint8), dp if ex else stand_in(4), *shape, call.dropout_p,
            ex, call.elem_bits)
    run_rows(name, _backward, args, shape, tiles, call.dtype, execute=call.execute, n_operands=2)
