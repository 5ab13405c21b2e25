"""softmax v2: online softmax (Milakov & Gimelshein 2018), two passes over HBM.

The max and the sum are found in *one* pass. Keep a running max ``m`` and a
running sum ``d`` of exponentials taken relative to ``m``; when the max grows
from ``m`` to ``m_new``, every term already in ``d`` was shifted by the old
max, so rescale it::

    m_new = max(m, x)
    d_new = d * exp(m - m_new) + exp(x - m_new)

After the last element ``m`` is the row max and ``d = sum_j exp(x_j - m)``
(the invariant; proof in docs/softmax.md). A second pass writes the output.
Per tile of BC elements the block takes the tile's max first and rescales
``d`` once (with BC = 1 this is exactly the per-element recurrence above). The
rescale is computed every time, not only when the max grows: a GPU warp would
diverge on the branch, and ``exp(0) = 1`` is harmless.

Tile loop::

    for each block b in parallel:                     # grid ceil(R/BR)
        m = -inf (BR,);  d = 0 (BR,)                  # on chip, fp32
        for c0 in range(0, C, BC):                    # pass 1: max and sum together
            t = load x[rows of b, c0 : +BC]           # HBM -> SRAM
            m_new = max(m, rowmax(t))
            d = d * exp(m - m_new) + rowsum(exp(t - m_new))
            m = m_new
        for c0 in range(0, C, BC):                    # pass 2: the output
            t = load x[rows of b, c0 : +BC]           # HBM -> SRAM, again
            store exp(t - m) / d -> y[rows of b, c0 : +BC]

HBM traffic (exact for any shape)::

    reads  = 2 * R * C * s
    writes = R * C * s
    vector FLOPs = 7 * R * C + 3 * R * ceil(C / BC)
                   (max 1; sub, exp, add 3; sub, exp, div 3 per element;
                    the rescale's sub, exp, mul once per row per tile)
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim.tiles import count_vector, load_tile
from .._contract import ceil_div
from .._counting import extent
from ._launch import prepare, resolve_tiles, run
from ._rowmath import tile_online
from .v1_three_pass import normalize_pass   # the same last pass as v1


@njit(parallel=PARALLEL, cache=True)
def _body(x, y, R, C, BR, BC, execute, ids, counters, elem_bits):
    for row in prange(len(ids)):                     # every block, or one per class (counting)
        r0 = ids[row] * BR
        rows = min(BR, R - r0)
        t = np.empty((extent(BR, execute), extent(BC, execute)), dtype=np.float32)   # (BR, BC) SRAM
        m = np.full(extent(BR, execute), -np.inf, dtype=np.float32)              # (BR,) running max
        d = np.zeros(extent(BR, execute), dtype=np.float32)                      # (BR,) running sum
        for c0 in range(0, C, BC):                       # pass 1: max and sum together
            cols = min(BC, C - c0)
            load_tile(x, r0, c0, rows, cols, t, execute, counters, row, 0, elem_bits)
            count_vector(4 * rows * cols, counters, row)                # max; sub, exp, add
            count_vector(3 * rows, counters, row)                       # rescale: sub, exp, mul
            if execute:
                tile_online(t, rows, cols, m, d)
        normalize_pass(x, y, r0, rows, C, BC, t, m, d, execute, counters, row, elem_bits)   # pass 2


def expected_bytes(rows: int, cols: int, elem_bytes: float) -> tuple[float, float]:
    """(HBM read bytes, HBM write bytes) of v2, from the formula above."""
    return 2 * rows * cols * elem_bytes, rows * cols * elem_bytes


def expected_flops(rows: int, cols: int, block_cols: int) -> int:
    """Vector FLOPs of v2 with column tiles of ``block_cols``."""
    return 7 * rows * cols + 3 * rows * ceil_div(cols, block_cols)


def softmax_v2(x, *, dtype: str = "fp16", block_rows: int | None = None, block_cols: int | None = None):
    """Online softmax over the last axis of ``x`` (R, C): the max and the sum in one
    pass, the output in a second. See the module docstring."""
    call = prepare(x, dtype, "softmax_v2")
    tiles, sram = resolve_tiles(call, block_rows, block_cols, "softmax_v2")
    return run(call, "softmax_v2_online", _body, tiles, sram)
