"""Numba helpers of generated kernels that the hand-written kernels do not need.

The loads, stores and FLOP counts of a generated kernel use :mod:`tinyml.sim.tiles`
(``load_tile``, ``store_tile``, ``count_load_direct``, ``count_mma`` ...); these add what a
loop nest needs beyond tiles: how many points of a region are inside the buffers (a split
that does not divide runs a guard), SRAM traffic of the scalar update, and an output
updated in place in HBM.
"""

from __future__ import annotations

from ...sim.jit import njit  # versioned Numba cache, one compile per argument type
from ...sim.counters import HBM_READ, HBM_WRITE, SRAM_READ, SRAM_WRITE
from ...sim.tiles import tile_bytes


@njit(cache=True)
def valid(limit, exts, strides):
    """How many combinations of the pieces ``(exts[p], strides[p])`` have
    ``sum(value * stride) < limit``: the points of a region inside the axis.

    The pieces of one axis are the digits of a mixed-radix number (a piece's stride is at
    least the span of every smaller-stride piece), so walking them from the largest stride
    down, at most one value of each digit is cut by the limit. No allocation: this runs
    once per tile step of a counting-mode launch.
    """
    n = len(exts)
    full = 1
    span = 0
    for p in range(n):
        full *= exts[p]
        span += (exts[p] - 1) * strides[p]
    if limit > span:             # the whole region is inside (every interior tile)
        return full
    if limit <= 0:
        return 0
    used = 0                     # bit p: piece p has been walked
    total = 0
    lim = limit
    for _ in range(n):
        best = -1
        for p in range(n):
            if not (used >> p) & 1 and (best < 0 or strides[p] > strides[best]):
                best = p
        used |= 1 << best
        below = 1
        rest = 0
        for q in range(n):
            if not (used >> q) & 1:
                below *= exts[q]
                rest += (exts[q] - 1) * strides[q]
        e, s = exts[best], strides[best]
        whole = 0
        if lim - rest > 0:
            whole = min(e, (lim - rest + s - 1) // s)
        total += whole * below
        if whole < e and whole * s < lim:
            lim -= whole * s     # the cut value of this digit: count the digits below it
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


@njit(cache=True)
def im2col(xs, col, kh, kw, stride, ty, tx):
    """Unfold an SRAM tile of the input for an implicit GEMM (the CPU stand-in's copy; a GPU's
    MMA reads ``xs`` through this addressing, with no copy and no bytes counted)::

        col[(c * kh + r) * kw + s, yy * tx + xx] = xs[c, yy * stride + r, xx * stride + s]

    xs (C', span_y, span_x) -> col (C' kh kw, ty tx): the K x N operand whose product with the
    filter tile W (F', C' kh kw) is the output tile (F', ty tx)."""
    for c in range(xs.shape[0]):
        for r in range(kh):
            for s in range(kw):
                row = col[(c * kh + r) * kw + s]
                for yy in range(ty):
                    src = xs[c, yy * stride + r]
                    for xx in range(tx):
                        row[yy * tx + xx] = src[xx * stride + s]
