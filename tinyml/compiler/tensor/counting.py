"""Numba helpers of generated kernels that the hand-written kernels do not need.

The loads, stores and FLOP counts of a generated kernel use :mod:`tinyml.sim.tiles`
(``load_tile``, ``store_tile``, ``count_load_direct``, ``count_mma`` ...); these add what a
loop nest needs beyond tiles: how many points of a region are inside the buffers (a split
that does not divide runs a guard), SRAM traffic of the scalar update, and an output
updated in place in HBM.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ...sim import jit  # noqa: F401  (versioned Numba cache; before any @njit)
from ...sim.counters import HBM_READ, HBM_WRITE, SRAM_READ, SRAM_WRITE
from ...sim.tiles import tile_bytes


@njit(cache=True)
def valid(limit, exts, strides):
    """How many combinations of the pieces ``(exts[p], strides[p])`` have
    ``sum(value * stride) < limit``: the points of a region inside the axis.

    The pieces of one axis are the digits of a mixed-radix number (a piece's stride is at
    least the span of every smaller-stride piece), so walking them from the largest stride
    down, at most one value of each digit is cut by the limit.
    """
    n = len(exts)
    e = np.empty(n, np.int64)
    s = np.empty(n, np.int64)
    for p in range(n):
        e[p] = exts[p]
        s[p] = strides[p]
    order = np.argsort(-s, kind="mergesort")
    total = 0
    lim = limit
    for a in range(n):
        p = order[a]
        full = 1
        rest = 0
        for b in range(a + 1, n):
            full *= e[order[b]]
            rest += (e[order[b]] - 1) * s[order[b]]
        whole = 0
        if lim - rest > 0:
            whole = min(e[p], (lim - rest + s[p] - 1) // s[p])
        total += whole * full
        if whole < e[p] and whole * s[p] < lim:
            lim -= whole * s[p]          # the cut value of this digit: count the digits below it
        else:
            return total
    return total


@njit(cache=True)
def count_sram(n_read, n_write, counters, blk, elem_bits):
    """Count ``n_read`` elements read from and ``n_write`` written to SRAM (a scalar update
    whose operand or output lives in a ``shared`` buffer)."""
    counters[blk, SRAM_READ] += tile_bytes(n_read, elem_bits)
    counters[blk, SRAM_WRITE] += tile_bytes(n_write, elem_bits)


@njit(cache=True)
def count_hbm_update(n_elements, counters, blk, elem_bits):
    """Count an output updated in place in HBM: each element read, then written back."""
    b = tile_bytes(n_elements, elem_bits)
    counters[blk, HBM_READ] += b
    counters[blk, HBM_WRITE] += b
