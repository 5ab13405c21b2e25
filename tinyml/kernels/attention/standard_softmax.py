"""Row softmax over the (B, H, Nq, Nk) scores, forward and backward, as separate kernels.

Forward ``P = softmax(S)`` over each row (hidden keys hold -inf; a row hidden
everywhere gives P = 0, never NaN). Backward ``dS = P * (dP - rowsum(dP * P))``.

Tile loop (forward; the backward is the same with ``D = rowsum(dP * P)`` in
place of ``m, l``)::

    for each block (b, h, row block) in parallel:     # grid B*H x ceil(Nq/BR)
        if BC >= Nk:                                  # a whole row fits on chip: one pass
            X = load S[b, h, rows, :]
            m = rowmax(X); E = exp(X - m); l = rowsum(E)
            store E / l -> P[b, h, rows, :]
        else:                                         # long rows: two passes (online m, l)
            for c0: X = load S[.., c0:+BC];  m, l = online_update(m, l, X)
            for c0: X = load S[.., c0:+BC];  store exp(X - m) / l -> P[.., c0:+BC]

HBM traffic (``X = B H Nq Nk s``)::

    forward:  reads X (one pass) or 2X (two passes), writes X
    backward: reads 2X (P and dP) or 4X,             writes X
    vector FLOPs per element: ROW_MAX + EXP + ROW_SUM + NORMALIZE (+ EXP again
    when two passes recompute the exponent); backward SOFTMAX_BWD
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim.tiles import count_vector, load_tile, store_tile
from .._counting import extent, stand_in
from .flops import EXP, NORMALIZE, ROW_MAX, ROW_SUM, SOFTMAX_BWD
from .standard_rows import block_rows_of, row_tiles, run_rows

FORWARD = ROW_MAX + EXP + ROW_SUM + NORMALIZE


@njit(parallel=PARALLEL, cache=True)
def _forward(x, p, B, H, NQ, NK, execute, elem_bits, BR, BC, ids, counters):
    one_pass = BC >= NK
    for row in prange(len(ids)):                     # every block, or one per class (counting)
        blk = ids[row]
        b, h, r0, rows = block_rows_of(blk, H, NQ, BR)
        x2 = x[b * execute, h * execute]                                           # (Nq, Nk)
        p2 = p[b * execute, h * execute]                                           # (Nq, Nk)
        t = np.empty((extent(BR, execute), extent(BC, execute)), dtype=np.float32)     # (BR, BC) SRAM
        m = np.full(BR, -np.inf, dtype=np.float32)                                 # row max
        l = np.zeros(BR, dtype=np.float32)                                         # row sum
        if not one_pass:                     # pass 1: online row max and sum
            for c0 in range(0, NK, BC):
                cols = min(BC, NK - c0)
                load_tile(x2, r0, c0, rows, cols, t, execute, counters, row, 0, elem_bits)
                count_vector((ROW_MAX + EXP + ROW_SUM) * rows * cols, counters, row)
                if execute:
                    for i in range(rows):
                        mi = m[i]
                        for j in range(cols):
                            mi = max(mi, t[i, j])
                        if mi == -np.inf:
                            continue
                        li = l[i] * math.exp(m[i] - mi) if m[i] > -np.inf else 0.0
                        for j in range(cols):
                            li += math.exp(t[i, j] - mi)
                        m[i] = mi
                        l[i] = li
        for c0 in range(0, NK, BC):          # (pass 2:) normalise and store
            cols = min(BC, NK - c0)
            load_tile(x2, r0, c0, rows, cols, t, execute, counters, row, 0, elem_bits)
            count_vector((FORWARD if one_pass else EXP + NORMALIZE) * rows * cols, counters, row)
            if execute:
                for i in range(rows):
                    if one_pass:
                        mi = -np.inf
                        for j in range(cols):
                            mi = max(mi, t[i, j])
                        li = 0.0
                        if mi > -np.inf:
                            for j in range(cols):
                                t[i, j] = math.exp(t[i, j] - mi)
                                li += t[i, j]
                        m[i] = mi
                        l[i] = li
                        inv = 1.0 / li if li > 0 else 0.0
                        for j in range(cols):
                            t[i, j] = t[i, j] * inv if li > 0 else 0.0
                    else:
                        mi = m[i]
                        inv = 1.0 / l[i] if l[i] > 0 else 0.0
                        for j in range(cols):
                            t[i, j] = math.exp(t[i, j] - mi) * inv if l[i] > 0 else 0.0
            store_tile(t, rows, cols, p2, r0, c0, execute, counters, row, elem_bits)


@njit(parallel=PARALLEL, cache=True)
def _backward(p, dp, ds, B, H, NQ, NK, execute, elem_bits, BR, BC, ids, counters):
    for row in prange(len(ids)):                     # every block, or one per class (counting)
        blk = ids[row]
        b, h, r0, rows = block_rows_of(blk, H, NQ, BR)
        p2 = p[b * execute, h * execute]                                           # (Nq, Nk)
        dp2 = dp[b * execute, h * execute]
        ds2 = ds[b * execute, h * execute]
        tp = np.empty((extent(BR, execute), extent(BC, execute)), dtype=np.float32)    # (BR, BC) P tile
        td = np.empty((extent(BR, execute), extent(BC, execute)), dtype=np.float32)    # (BR, BC) dP tile
        d = np.zeros(BR, dtype=np.float32)                                         # D = rowsum(dP * P)
        one_pass = BC >= NK
        if not one_pass:                      # pass 1: D over the whole row
            for c0 in range(0, NK, BC):
                cols = min(BC, NK - c0)
                load_tile(p2, r0, c0, rows, cols, tp, execute, counters, row, 0, elem_bits)
                load_tile(dp2, r0, c0, rows, cols, td, execute, counters, row, 1, elem_bits)
                if execute:
                    for i in range(rows):
                        for j in range(cols):
                            d[i] += tp[i, j] * td[i, j]
        for c0 in range(0, NK, BC):
            cols = min(BC, NK - c0)
            load_tile(p2, r0, c0, rows, cols, tp, execute, counters, row, 0, elem_bits)
            load_tile(dp2, r0, c0, rows, cols, td, execute, counters, row, 1, elem_bits)
            count_vector(SOFTMAX_BWD * rows * cols, counters, row)
            if execute:
                for i in range(rows):
                    if one_pass:
                        acc = np.float32(0.0)
                        for j in range(cols):
                            acc += tp[i, j] * td[i, j]
                        d[i] = acc
                    for j in range(cols):
                        td[i, j] = tp[i, j] * (td[i, j] - d[i])
            store_tile(td, rows, cols, ds2, r0, c0, execute, counters, row, elem_bits)


def softmax_tiles(dtype: str, n_tiles: int):
    names = ("S/P tile", "dP tile")
    return lambda br, bc: {names[i]: ((br, bc), dtype) for i in range(n_tiles)}


def softmax_forward(call, s, p, name: str, block_rows=None, block_cols=None):
    """P = softmax(S) row by row; one kernel launch. Returns the row tiles used."""

    shape = (call.batch, call.heads, call.seq_q, call.seq_k)
    tiles = row_tiles(call.seq_q, call.seq_k, softmax_tiles(call.dtype, 1), name, block_rows, block_cols)
    ex = call.execute
    args = (s if ex else stand_in(4), p if ex else stand_in(4), *shape, ex, call.elem_bits)
    run_rows(name, _forward, args, shape, tiles, call.dtype, execute=call.execute, n_operands=1)
    return tiles


def softmax_backward(call, p, dp, ds, name: str, block_rows=None, block_cols=None):
    """dS = P * (dP - rowsum(dP * P)); one kernel launch. Returns the row tiles used."""

    shape = (call.batch, call.heads, call.seq_q, call.seq_k)
    tiles = row_tiles(call.seq_q, call.seq_k, softmax_tiles(call.dtype, 2), name, block_rows, block_cols)
    ex = call.execute
    args = (p if ex else stand_in(4), dp if ex else stand_in(4), ds if ex else stand_in(4), *shape, ex, call.elem_bits)
    run_rows(name, _backward, args, shape, tiles, call.dtype, execute=call.execute, n_operands=2)
    return tiles
