"""The naive selective scan: three kernels, the expanded state written to HBM (the "standard implementation").

Written as a framework runs it without a fused kernel, each step is its own
kernel and every intermediate of shape (batch, L, D, N) goes through HBM in
fp32 (the state's precision)::

    1. scan_naive_discretize   dA  = exp(delta A),  dBu = delta B u       writes 2 x (batch, L, D, N)
    2. scan_naive_states       h_t = dA_t h_{t-1} + dBu_t                reads 2, writes 1 x (batch, L, D, N)
    3. scan_naive_readout      y_t = C_t h_t (+ D u_t)                   reads 1 x (batch, L, D, N)

Every kernel has the grid of the fused scan, (batch, ceil(D / BD)), walks the
sequence in chunks of T tokens, and streams its operands HBM -> registers -> HBM
(elementwise: nothing is reused, so nothing is staged in SRAM)::

    for each block (b, channels c0 : c0 + BD) in parallel:         # kernel 2 shown
        h = zeros(BD, N) fp32
        for t in 0 .. L - 1:
            h = load dA[b, t, c0 : +BD] * h + load dBu[b, t, c0 : +BD]     # (BD, N) each
            store h -> H[b, t, c0 : +BD]

HBM traffic (``s`` bytes per element of the logical dtype, ``nD = ceil(D / BD)``,
``E = batch L D N``, the expanded size)::

    discretize  reads 2 batch L D s + batch L N s nD + 4 batch D N      writes 8 E
    states      reads 8 E                                               writes 4 E
    readout     reads 4 E + batch L N s nD (+ batch L D s + 4 batch D)  writes batch L D s
    total       about 24 E = 24 batch L D N bytes, against the fused scan's ~(3 D s + 2 N s nD) batch L

vector FLOPs: discretize ``3 E + batch L D`` (delta A, exp, times delta u; delta u),
states ``2 E``, readout ``2 E (+ 2 batch L D)``: the fused scan's ``6 E``, split in three.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import current_profile
from ...sim.counters import new_counters
from ...sim.sram import REG
from ...sim.tiles import count_load_direct, count_store_direct, count_vector
from .._classes import add_scaled, edge_grid, launch_counters, rep_count, rep_tile
from .._contract import ceil_div
from .scan_call import (DUMMY2, NaiveScanSaved, OP_A, OP_B, OP_C, OP_D, OP_DELTA, OP_U, clamp_notes, grid_of,
                        pick_blocks, prepare_scan, track_inputs)
from .._counting import extent
from .scan_blocks import channel_block

KERNELS = ("scan_naive_discretize", "scan_naive_states", "scan_naive_readout")


def naive_tiles(block_d: int, chunk: int, state: int, dtype: str) -> dict:
    """What a naive block holds: one token's (BD, N) fp32 values (A and the running state) in registers."""
    return {"A, h": ((2, block_d, state), "fp32", REG)}


@njit(parallel=PARALLEL, cache=True)
def _discretize(u, dt, A, Bm, dA, dBu, BT, L, DM, N, BD, T, execute, ids, counters, elem_bits):
    # u, dt: (BT*L, DM); Bm: (BT*L, N); A: (DM, N); dA, dBu: (BT*L, DM*N) fp32
    ndb = (DM + BD - 1) // BD
    nch = (L + T - 1) // T
    for row in prange(len(ids)):
        blk = ids[row]
        b, c0, nd = channel_block(blk, ndb, BD, DM)
        count_load_direct(nd * N, counters, row, OP_A, 32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, nch, execute)):
            c, mult = rep_tile(jr, 0, nch, execute)
            t0 = c * T
            nt = min(T, L - t0)
            step[:] = 0
            count_load_direct(nt * nd, step, 0, OP_U, elem_bits)
            count_load_direct(nt * nd, step, 0, OP_DELTA, elem_bits)
            count_load_direct(nt * N, step, 0, OP_B, elem_bits)
            count_vector(nt * nd * (3 * N + 1), step, 0)
            count_store_direct(2 * nt * nd * N, step, 0, 32)
            add_scaled(counters, row, step, mult)
            if execute:
                for r in range(b * L + t0, b * L + t0 + nt):
                    for d in range(c0, c0 + nd):
                        du = dt[r, d] * u[r, d]
                        for n in range(N):
                            dA[r, d * N + n] = np.exp(dt[r, d] * A[d, n])
                            dBu[r, d * N + n] = du * Bm[r, n]


@njit(parallel=PARALLEL, cache=True)
def _states(dA, dBu, H, BT, L, DM, N, BD, T, execute, ids, counters):
    # dA, dBu, H: (BT*L, DM*N) fp32
    ndb = (DM + BD - 1) // BD
    nch = (L + T - 1) // T
    for row in prange(len(ids)):
        blk = ids[row]
        b, c0, nd = channel_block(blk, ndb, BD, DM)
        h = np.zeros(extent(BD * N, execute), dtype=np.float32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, nch, execute)):
            c, mult = rep_tile(jr, 0, nch, execute)
            t0 = c * T
            nt = min(T, L - t0)
            step[:] = 0
            count_load_direct(2 * nt * nd * N, step, 0, 0, 32)
            count_vector(2 * nt * nd * N, step, 0)
            count_store_direct(nt * nd * N, step, 0, 32)
            add_scaled(counters, row, step, mult)
            if execute:
                for r in range(b * L + t0, b * L + t0 + nt):
                    for i in range(nd * N):
                        h[i] = dA[r, c0 * N + i] * h[i] + dBu[r, c0 * N + i]
                        H[r, c0 * N + i] = h[i]


@njit(parallel=PARALLEL, cache=True)
def _readout(H, Cm, u, Dv, y, BT, L, DM, N, BD, T, has_d, execute, ids, counters, elem_bits):
    # H: (BT*L, DM*N) fp32; Cm: (BT*L, N); u, y: (BT*L, DM); Dv: (DM,)
    ndb = (DM + BD - 1) // BD
    nch = (L + T - 1) // T
    for row in prange(len(ids)):
        blk = ids[row]
        b, c0, nd = channel_block(blk, ndb, BD, DM)
        if has_d:
            count_load_direct(nd, counters, row, OP_D, 32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, nch, execute)):
            c, mult = rep_tile(jr, 0, nch, execute)
            t0 = c * T
            nt = min(T, L - t0)
            step[:] = 0
            count_load_direct(nt * nd * N, step, 0, OP_U, 32)      # the states (column: first input)
            count_load_direct(nt * N, step, 0, OP_C, elem_bits)
            if has_d:
                count_load_direct(nt * nd, step, 0, OP_DELTA, elem_bits)   # u for the skip
            count_vector(nt * nd * (2 * N + (2 if has_d else 0)), step, 0)
            count_store_direct(nt * nd, step, 0, elem_bits)
            add_scaled(counters, row, step, mult)
            if execute:
                for r in range(b * L + t0, b * L + t0 + nt):
                    for d in range(c0, c0 + nd):
                        acc = np.float32(0.0)
                        for n in range(N):
                            acc += Cm[r, n] * H[r, d * N + n]
                        if has_d:
                            acc += Dv[d] * u[r, d]
                        y[r, d] = acc


def expected_bytes(batch, length, channels, state, elem_bytes, block_d, has_d=False):
    """{kernel: (HBM read bytes, HBM write bytes)} of the three naive kernels, from the formulas above."""
    nd = ceil_div(channels, block_d)
    E = batch * length * channels * state
    bld, bln = batch * length * channels * elem_bytes, batch * length * state * elem_bytes * nd
    return {
        KERNELS[0]: (2 * bld + bln + 4 * batch * channels * state, 8 * E),
        KERNELS[1]: (8 * E, 4 * E),
        KERNELS[2]: (4 * E + bln + ((bld + 4 * batch * channels) if has_d else 0), bld),
    }


def selective_scan_naive(u, delta, A, B, C, D=None, *, dtype: str = "fp16", block_d: "int | None" = None,
                         chunk: "int | None" = None, return_saved: bool = False):
    """y (batch, L, D) of the selective scan in three kernels through HBM (see the module docstring).
    Same arguments as :func:`.scan_fused.selective_scan_fused`; ``block_d`` and ``chunk`` only split the work.
    With ``return_saved`` also returns a :class:`~.scan_call.NaiveScanSaved`: ``exp(delta A)`` and the
    states stay alive in HBM for :func:`.scan_naive_bwd.selective_scan_naive_backward`, as autograd keeps them."""
    call = prepare_scan(u, delta, A, B, C, D, dtype=dtype, kernel=KERNELS[0])
    bd, t, sram, regs = pick_blocks(call, block_d, chunk,
                                    lambda b, tt: naive_tiles(b, tt, call.state, call.dtype), KERNELS[0])
    notes = clamp_notes(block_d, chunk, bd, t)
    prof = current_profile()
    track_inputs(call)
    x = call.execute
    bt, L, DM, N = call.batch, call.length, call.channels, call.state
    grid = grid_of(call, bd)
    if x:
        ids, rc, rl = np.arange(grid[0] * grid[1], dtype=np.int64), None, None
    else:
        ids, rc, rl = edge_grid(*grid)
    flat = lambda a: a.reshape(bt * L, -1) if x else DUMMY2                        # noqa: E731
    dA = prof.hbm.new_tensor("exp(delta A)", (bt, L, DM, N), "fp32", x)
    dBu = prof.hbm.new_tensor("delta B u", (bt, L, DM, N), "fp32", x)
    cnt = new_counters(len(ids), n_operands=6)
    _discretize(call.data("u"), call.data("delta"), call.data("A"), call.data("B"), flat(dA), flat(dBu),
                bt, L, DM, N, bd, t, x, ids, cnt, call.elem_bits)
    prof.record(KERNELS[0], grid, launch_counters(cnt, x, rc, rl), dtype=call.dtype, sram_per_block=sram,
                regs_per_block=regs, notes=notes)
    H = prof.hbm.new_tensor("states h", (bt, L, DM, N), "fp32", x)
    cnt = new_counters(len(ids), n_operands=1)
    _states(flat(dA), flat(dBu), flat(H), bt, L, DM, N, bd, t, x, ids, cnt)
    prof.record(KERNELS[1], grid, launch_counters(cnt, x, rc, rl), dtype=call.dtype, sram_per_block=sram,
                regs_per_block=regs, notes=notes)
    saved = NaiveScanSaved(call, dA, H) if return_saved else None
    del dA, dBu
    y = prof.hbm.new_tensor("y", (bt, L, DM), call.dtype, x)
    cnt = new_counters(len(ids), n_operands=6)
    _readout(flat(H), call.data("C"), call.data("u"), call.data("D", 1), flat(y), bt, L, DM, N, bd, t,
             call.has_d, x, ids, cnt, call.elem_bits)
    prof.record(KERNELS[2], grid, launch_counters(cnt, x, rc, rl), dtype=call.dtype, sram_per_block=sram,
                regs_per_block=regs, notes=notes)
    return (y, saved) if return_saved else y
