"""softmax v1: three passes over HBM (the "safe softmax" as written in a textbook).

    y[i, j] = exp(x[i, j] - m_i) / d_i,   m_i = max_j x[i, j],   d_i = sum_j exp(x[i, j] - m_i)

Subtracting the row max keeps every exponent <= 0, so ``exp`` cannot overflow.
It costs a pass: the max must be known before the sum, and the sum before the
output. Each block owns BR rows and streams them through SRAM three times.

Tile loop::

    for each block b in parallel:                     # grid ceil(R/BR)
        m = -inf (BR,);  d = 0 (BR,)                  # on chip, fp32
        for c0 in range(0, C, BC):                    # pass 1: the max
            t = load x[rows of b, c0 : +BC]           # HBM -> SRAM
            m = max(m, rowmax(t))
        for c0 in range(0, C, BC):                    # pass 2: the sum
            t = load x[rows of b, c0 : +BC]           # HBM -> SRAM, again
            d += rowsum(exp(t - m))
        for c0 in range(0, C, BC):                    # pass 3: the output
            t = load x[rows of b, c0 : +BC]           # HBM -> SRAM, a third time
            store exp(t - m) / d -> y[rows of b, c0 : +BC]

HBM traffic (``s`` = bytes per element of the logical dtype; exact for any shape)::

    reads  = 3 * R * C * s
    writes = R * C * s
    vector FLOPs = 7 * R * C     (max 1; sub, exp, add 3; sub, exp, div 3)

A fully masked row (every entry ``-inf``) has ``m = -inf``; the kernel
shifts by 0 instead, so the row comes out as zeros, never NaN.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim.tiles import count_vector, load_tile, store_tile
from .._counting import extent
from ._launch import prepare, resolve_tiles, run
from ._rowmath import tile_max, tile_normalize, tile_sum_exp


@njit(parallel=PARALLEL, cache=True)
def _body(x, y, R, C, BR, BC, execute, ids, counters, elem_bits):
    for row in prange(len(ids)):                     # every block, or one per class (counting)
        r0 = ids[row] * BR
        rows = min(BR, R - r0)
        t = np.empty((extent(BR, execute), extent(BC, execute)), dtype=np.float32)   # (BR, BC) SRAM
        m = np.full(extent(BR, execute), -np.inf, dtype=np.float32)              # (BR,) row max
        d = np.zeros(extent(BR, execute), dtype=np.float32)                      # (BR,) row sum
        for c0 in range(0, C, BC):                       # pass 1: the max
            cols = min(BC, C - c0)
            load_tile(x, r0, c0, rows, cols, t, execute, counters, row, 0, elem_bits)
            count_vector(rows * cols, counters, row)                    # max
            if execute:
                tile_max(t, rows, cols, m)
        for c0 in range(0, C, BC):                       # pass 2: the sum
            cols = min(BC, C - c0)
            load_tile(x, r0, c0, rows, cols, t, execute, counters, row, 0, elem_bits)
            count_vector(3 * rows * cols, counters, row)                # sub, exp, add
            if execute:
                tile_sum_exp(t, rows, cols, m, d)
        normalize_pass(x, y, r0, rows, C, BC, t, m, d, execute, counters, row, elem_bits)   # pass 3


@njit(cache=True)
def normalize_pass(x, y, r0, rows, C, BC, t, m, d, execute, counters, blk, elem_bits):
    """The last pass of v1 and v2: reload each tile, y = exp(x - m) / d, store it."""
    for c0 in range(0, C, BC):
        cols = min(BC, C - c0)
        load_tile(x, r0, c0, rows, cols, t, execute, counters, blk, 0, elem_bits)
        count_vector(3 * rows * cols, counters, blk)                # sub, exp, div
        if execute:
            tile_normalize(t, rows, cols, m, d)
        store_tile(t, rows, cols, y, r0, c0, execute, counters, blk, elem_bits)


def expected_bytes(rows: int, cols: int, elem_bytes: float) -> tuple[float, float]:
    """(HBM read bytes, HBM write bytes) of v1, from the formula above."""
    return 3 * rows * cols * elem_bytes, rows * cols * elem_bytes


def expected_flops(rows: int, cols: int, block_cols: int) -> int:
    """Vector FLOPs of v1 (``block_cols`` does not matter)."""
    return 7 * rows * cols


def softmax_v1(x, *, dtype: str = "fp16", block_rows: int | None = None, block_cols: int | None = None):
    """Three-pass softmax over the last axis of ``x`` (R, C). See the module docstring.

    Block sizes default to tiles of about 1024 elements that fit the active
    device's SRAM (:func:`~tinyml.kernels.softmax.block_sizes.choose_tiles`).
    """
    call = prepare(x, dtype, "softmax_v1")
    tiles, sram = resolve_tiles(call, block_rows, block_cols, "softmax_v1")
    return run(call, "softmax_v1_three_pass", _body, tiles, sram)
