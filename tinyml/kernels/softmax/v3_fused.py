"""softmax v3: fused, one pass over HBM. A block keeps its rows whole in SRAM.

If a whole row fits on chip, the three passes of v1 can all read SRAM instead
of HBM: load the rows once, find the max, exponentiate in place while summing,
divide in place, store once. Each exponential is computed once (v1 and v2
compute it twice). This is the Triton tutorial's "fused softmax".

It works only while ``BR`` rows (at least one) fit one SM's SRAM:
``BR * C * s + 8 * BR <= sram_per_sm``. A longer row raises
:class:`~tinyml.sim.SramOverflowError`, which names the row length, its bytes,
the SRAM budget and the longest row that fits, and points to v2, whose tiles
fit any row. (Nothing falls back silently.)

Tile loop::

    for each block b in parallel:                     # grid ceil(R/BR)
        t = load x[rows of b, :]                      # HBM -> SRAM, the whole rows, once
        m = rowmax(t)                                 # on chip
        t = exp(t - m);  d = rowsum(t)                # in place, each exp once
        store t / d -> y[rows of b, :]                # SRAM -> HBM, once

HBM traffic (exact for any shape)::

    reads  = R * C * s
    writes = R * C * s
    vector FLOPs = 5 * R * C     (max 1; sub, exp, add 3; div 1)
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import TileConfigError
from ...sim.tiles import count_vector, load_tile, store_tile
from .._counting import extent
from ._launch import prepare, resolve_tiles, run
from ._rowmath import tile_divide, tile_exp_inplace, tile_max


@njit(parallel=PARALLEL, cache=True)
def _body(x, y, R, C, BR, BC, execute, ids, counters, elem_bits):
    for row in prange(len(ids)):                     # every block, or one per class (counting)
        r0 = ids[row] * BR
        rows = min(BR, R - r0)
        t = np.empty((extent(BR, execute), extent(C, execute)), dtype=np.float32)     # (BR, C) SRAM
        m = np.full(extent(BR, execute), -np.inf, dtype=np.float32)              # (BR,) row max
        d = np.zeros(extent(BR, execute), dtype=np.float32)                      # (BR,) row sum
        load_tile(x, r0, 0, rows, C, t, execute, counters, row, 0, elem_bits)
        count_vector(rows * C, counters, row)                           # max
        count_vector(3 * rows * C, counters, row)                       # sub, exp, add
        count_vector(rows * C, counters, row)                           # div
        if execute:
            tile_max(t, rows, C, m)
            tile_exp_inplace(t, rows, C, m, d)
            tile_divide(t, rows, C, d)
        store_tile(t, rows, C, y, r0, 0, execute, counters, row, elem_bits)


def expected_bytes(rows: int, cols: int, elem_bytes: float) -> tuple[float, float]:
    """(HBM read bytes, HBM write bytes) of v3, from the formula above."""
    return rows * cols * elem_bytes, rows * cols * elem_bytes


def expected_flops(rows: int, cols: int, block_cols: int) -> int:
    """Vector FLOPs of v3 (it has no column tiles)."""
    return 5 * rows * cols


def softmax_v3(x, *, dtype: str = "fp16", block_rows: int | None = None, block_cols: int | None = None):
    """Fused softmax over the last axis of ``x`` (R, C): one read, one write. See the
    module docstring. ``block_rows`` rows per block (default: as many as make about
    1024 elements and fit SRAM); the rows are kept whole, so ``block_cols`` can only
    be left out (or be the row length)."""
    call = prepare(x, dtype, "softmax_v3")
    if block_cols is not None and not (isinstance(block_cols, (int, np.integer)) and block_cols == call.cols):
        raise TileConfigError(f"softmax_v3 keeps whole rows in SRAM, so its tile is the row length "
                              f"(x is {call.x.shape}: {call.cols} columns) and block_cols={block_cols!r} "
                              f"has no meaning; drop it, or use version 1 or 2 to tile the columns")
    tiles, sram = resolve_tiles(call, block_rows, None, "softmax_v3", whole_rows=True)
    return run(call, "softmax_v3_fused", _body, tiles, sram)
