"""Backward of the IO-aware selective scan: recompute the states, never read them from HBM.

As FlashAttention's backward recomputes the scores from Q and K instead of
saving them, this backward recomputes each chunk's states from the chunk's
inputs and the one checkpoint the forward wrote at the chunk's start
(:mod:`.scan_fused`). The chunk's T states stay in SRAM while the gradient of
the state, ``dh`` (BD, N) fp32, runs backwards in time in registers.

Gradients (``abar = exp(delta_t A)``, ``dh`` = dL/dh_t)::

    dh    += dy_t C_t                                  dC_t  = sum_d dy_t[d] h_t[d]
    g      = dh h_{t-1} abar                           dA   += g delta_t
    ddelta_t = sum_n g A + u_t sum_n dh B_t            dB_t  = sum_d dh delta_t u_t
    du_t   = delta_t sum_n dh B_t + D dy_t             dD   += dy_t u_t
    dh     = dh abar                                   (dL/dh_{t-1})

dB, dC sum over channels and dA, dD over the batch, across thread blocks: every
block writes fp32 partial sums and four small kernels (``scan_bwd_reduce``) add them.

Tile loop, grid (batch, ceil(D / BD)), T = the forward's chunk::

    for each block (b, channels c0 : c0 + BD) in parallel:
        load A, D[c0 : +BD];  dh = 0;  dA, dD = 0             # registers
        for chunk c = nT - 1 down to 0:
            h0 = load checkpoint[b, c - 1, c0 : +BD]           # (BD, N) fp32; zeros for c = 0
            load u, delta, dy (T, BD) and B, C (T, N)
            Hs = the chunk's states, recomputed from h0        # (T, BD, N) fp32 SRAM
            for t = T - 1 down to 0: the updates above
            store du, ddelta (T, BD); dB, dC partials (T, N) fp32
        store dA, dD partials (BD, N), (BD,) fp32

HBM traffic (``s``, ``nD = ceil(D / BD)``, ``nT = ceil(L / T)``)::

    main    reads  3 batch L D s + 2 batch L N s nD + 4 batch (nT - 1) D N + 4 batch D N (+ 4 batch D)
            writes 2 batch L D s + 8 batch L N nD + 4 batch D N (+ 4 batch D)
    reduce  dB, dC: reads 4 nD batch L N, writes batch L N s, each;  dA: reads 4 batch D N, writes 4 D N;
            dD: reads 4 batch D, writes 4 D
    vector FLOPs (main) = 22 batch L D N + 4 batch L D (+ 4 batch L D with D)

(22 per state element: the forward recomputed 5, then dh 2, dC 2, abar 2, g 2, dA 2, sum g A 2,
sum dh B 2, dB 2, dh abar 1.) Compare the naive backward, which would read the saved
(batch, L, D, N) states: the checkpoints are ``nT / L`` of them.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import ShapeError, current_profile
from ...sim.counters import new_counters
from ...sim.sram import REG
from ...sim.tiles import count_tile_load, count_vector, store_tile
from .._classes import add_scaled, edge_grid, launch_counters, rep_count, rep_tile
from .._contract import ceil_div
from ..attention.fastexp import exp_le0
from .._counting import extent
from .scan_call import (DUMMY1, DUMMY2, OP_A, OP_B, OP_C, OP_D, OP_DELTA, OP_U, ScanSaved, check_dy, clamp_notes,
                        grid_of, pick_blocks)

KERNEL = "scan_bwd"
REDUCE = "scan_bwd_reduce"
BWD_PER_STATE = 22
BWD_PER_CHANNEL = 4
BWD_PER_SKIP = 4
OP_DY = 6
OP_CKPT = 7


def bwd_tiles(block_d: int, chunk: int, state: int, dtype: str) -> dict:
    """One backward block on chip: the chunk's inputs and recomputed states in SRAM, dh and the sums in registers."""
    return {
        "u, delta, dy chunk": ((3, chunk, block_d), dtype), "B, C chunk": ((2, chunk, state), dtype),
        "recomputed states": ((chunk + 1, block_d, state), "fp32"),
        "du, ddelta chunk": ((2, chunk, block_d), dtype), "dB, dC partial": ((2, chunk, state), "fp32"),
        "A, dh, dA": ((3, block_d, state), "fp32", REG),
    }


@njit(cache=True, fastmath={"contract", "arcp", "nsz", "afn"})
def _chunk_bwd(u, dt, Bm, Cm, dy, A, Dv, ckpt, crow, Hs, dh, dA, dD, du, ddt, dBp, dCp, r0, nt, c0, nd, N,
               has_d):
    """One chunk, backwards: recompute the states into Hs[1:], then run the gradient updates."""
    for d in range(nd):
        for n in range(N):
            Hs[0, d, n] = ckpt[crow + c0 + d, n] if crow >= 0 else 0.0
    for t in range(nt):
        r = r0 + t
        for d in range(nd):
            dd = dt[r, c0 + d]
            du_ = dd * u[r, c0 + d]
            for n in range(N):
                Hs[t + 1, d, n] = exp_le0(dd * A[c0 + d, n]) * Hs[t, d, n] + du_ * Bm[r, n]
    for t in range(nt - 1, -1, -1):
        r = r0 + t
        for n in range(N):
            dBp[r, n] = 0.0
            dCp[r, n] = 0.0
        for d in range(nd):
            c = c0 + d
            dd = dt[r, c]
            uu = u[r, c]
            g_y = dy[r, c]
            sg = np.float32(0.0)
            sb = np.float32(0.0)
            for n in range(N):
                dCp[r, n] += g_y * Hs[t + 1, d, n]
                g_h = dh[d, n] + g_y * Cm[r, n]
                abar = exp_le0(dd * A[c, n])
                g = g_h * Hs[t, d, n] * abar
                dA[d, n] += g * dd
                sg += g * A[c, n]
                sb += g_h * Bm[r, n]
                dBp[r, n] += g_h * dd * uu
                dh[d, n] = g_h * abar
            ddt[r, c] = sg + uu * sb
            du[r, c] = dd * sb
            if has_d:
                du[r, c] += Dv[c] * g_y
                dD[d] += g_y * uu


@njit(parallel=PARALLEL, cache=True)
def _body(u, dt, A, Bm, Cm, Dv, dy, ckpt, du, ddt, dBp, dCp, dAp, dDp, BT, L, DM, N, BD, T, has_d, execute, ids,
          counters, elem_bits):
    # u, dt, dy, du, ddt: (BT*L, DM); Bm, Cm: (BT*L, N); dBp, dCp: (nD*BT*L, N) fp32; ckpt: (BT*nT*DM, N);
    # dAp: (BT*DM, N) fp32; dDp: (BT, DM) fp32
    ndb = (DM + BD - 1) // BD
    nch = (L + T - 1) // T
    for row in prange(len(ids)):
        blk = ids[row]
        b = blk // ndb
        j = blk % ndb
        c0 = j * BD
        nd = min(BD, DM - c0)
        count_tile_load(nd, N, counters, row, OP_A, 32)
        if has_d:
            count_tile_load(1, nd, counters, row, OP_D, 32)
        dh = np.zeros((extent(BD, execute), extent(N, execute)), dtype=np.float32)
        dA = np.zeros((extent(BD, execute), extent(N, execute)), dtype=np.float32)
        dD = np.zeros(extent(BD, execute), dtype=np.float32)
        Hs = np.zeros((extent(T + 1, execute), extent(BD, execute), extent(N, execute)), dtype=np.float32)
        none = np.zeros((1, 1), dtype=np.float32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        count_tile_load(nd, N, step, 0, OP_CKPT, 32)           # one checkpoint per chunk but the first
        add_scaled(counters, row, step, nch - 1)
        for jr in range(rep_count(0, nch, execute)):
            cr, mult = rep_tile(jr, 0, nch, execute)
            # backwards in time; counting visits chunk 0 (standing for the nch - 1 full ones) and the last
            c = nch - 1 - cr if execute else cr
            t0 = c * T
            nt = min(T, L - t0)
            step[:] = 0
            count_tile_load(nt, nd, step, 0, OP_U, elem_bits)
            count_tile_load(nt, nd, step, 0, OP_DELTA, elem_bits)
            count_tile_load(nt, nd, step, 0, OP_DY, elem_bits)
            count_tile_load(nt, N, step, 0, OP_B, elem_bits)
            count_tile_load(nt, N, step, 0, OP_C, elem_bits)
            count_vector(nt * nd * (BWD_PER_STATE * N + BWD_PER_CHANNEL + (BWD_PER_SKIP if has_d else 0)),
                         step, 0)
            # the chunk's du, ddelta and dB, dC partials (written in place by _chunk_bwd): counted as stores
            store_tile(none, nt, nd, none, 0, 0, False, step, 0, elem_bits)         # du
            store_tile(none, nt, nd, none, 0, 0, False, step, 0, elem_bits)         # ddelta
            store_tile(none, nt, N, none, 0, 0, False, step, 0, 32)                 # dB partial
            store_tile(none, nt, N, none, 0, 0, False, step, 0, 32)                 # dC partial
            if execute:
                prow = (j * BT + b) * L
                _chunk_bwd(u, dt, Bm, Cm, dy, A, Dv, ckpt, (b * nch + c - 1) * DM if c > 0 else -1, Hs, dh,
                           dA, dD, du, ddt, dBp[prow - b * L:], dCp[prow - b * L:], b * L + t0, nt, c0, nd,
                           N, has_d)
            add_scaled(counters, row, step, mult)
        store_tile(dA, nd, N, dAp, b * DM + c0, 0, execute, counters, row, 32)
        if has_d:
            store_tile(dD.reshape(1, -1), 1, nd, dDp, b, c0, execute, counters, row, 32)


@njit(parallel=PARALLEL, cache=True)
def _reduce(parts, out, P, M, TILE, execute, counters, out_bits):
    # parts: (P, M) fp32 -> out: (M,) = sum over P; one block per TILE elements
    nb = (M + TILE - 1) // TILE
    for blk in prange(nb):
        m0 = blk * TILE
        nm = min(TILE, M - m0)
        count_tile_load(P, nm, counters, blk, 0, 32)
        count_vector((P - 1) * nm, counters, blk)
        none = np.zeros((1, 1), dtype=np.float32)
        store_tile(none, 1, nm, none, 0, 0, False, counters, blk, out_bits)     # out[m0 : m0 + nm], below
        if execute:
            for i in range(m0, m0 + nm):
                acc = np.float32(0.0)
                for p in range(P):
                    acc += parts[p, i]
                out[i] = acc


REDUCE_TILE = 1024


def launch_reduce(name: str, parts, shape: tuple, dtype: str, execute: bool, kernel: str = REDUCE):
    """out (shape, dtype) = parts (P, prod(shape)) fp32 summed over P: one small memory-bound kernel,
    recorded as ``{kernel}_{name}``."""
    from ...sim import bits

    prof = current_profile()
    P = parts.shape[0]
    M = int(np.prod(shape))
    out = prof.hbm.new_tensor(name, shape, dtype, execute)
    nb = ceil_div(M, REDUCE_TILE)
    counters = new_counters(nb, n_operands=1)
    _reduce(parts.reshape(P, M) if execute else DUMMY2, out.reshape(-1) if execute else DUMMY1, P, M,
            REDUCE_TILE, execute, counters, bits(dtype))
    prof.record(f"{kernel}_{name}", (nb,), counters, dtype=dtype, sram_per_block=0)
    return out


def expected_bytes(batch, length, channels, state, elem_bytes, block_d, chunk, has_d=False):
    """{kernel: (HBM read bytes, HBM write bytes)} of the backward, from the formulas above."""
    nd, nt = ceil_div(channels, block_d), ceil_div(length, chunk)
    bld, bln = batch * length * channels * elem_bytes, batch * length * state * elem_bytes
    main_r = 3 * bld + 2 * bln * nd + 4 * batch * (nt - 1) * channels * state + 4 * batch * channels * state
    main_w = 2 * bld + 8 * batch * length * state * nd + 4 * batch * channels * state
    if has_d:
        main_r += 4 * batch * channels
        main_w += 4 * batch * channels
    out = {KERNEL: (main_r, main_w),
           f"{REDUCE}_dB": (4 * nd * batch * length * state, bln),
           f"{REDUCE}_dC": (4 * nd * batch * length * state, bln),
           f"{REDUCE}_dA": (4 * batch * channels * state, 4 * channels * state)}
    if has_d:
        out[f"{REDUCE}_dD"] = (4 * batch * channels, 4 * channels)
    return out


def selective_scan_backward(saved: ScanSaved, dy, *, block_d: "int | None" = None):
    """Gradients (du, ddelta, dA, dB, dC, dD) of the fused scan, given dL/dy (batch, L, D).

    ``saved`` is what ``selective_scan_fused(..., return_saved=True)`` returned; dD is None without D.
    ``block_d`` channels per block default to a size whose chunk states fit SRAM.
    """
    if not isinstance(saved, ScanSaved):
        raise ShapeError(f"{KERNEL}: saved must be the ScanSaved that selective_scan_fused(..., return_saved=True) "
                         f"returned (y, saved = ...), got {type(saved).__name__}")
    call = saved.call
    DY = check_dy(dy, call, KERNEL)
    bd, t, sram, regs = pick_blocks(call, block_d, saved.chunk,
                                    lambda b, tt: bwd_tiles(b, tt, call.state, call.dtype), KERNEL)
    notes = clamp_notes(block_d, None, bd, t)
    prof = current_profile()
    prof.hbm.track(DY.obj, "dy", call.dtype)
    x = call.execute
    bt, L, DM, N = call.batch, call.length, call.channels, call.state
    grid = grid_of(call, bd)
    nd = grid[1]
    du = prof.hbm.new_tensor("du", (bt, L, DM), call.dtype, x)
    ddt = prof.hbm.new_tensor("ddelta", (bt, L, DM), call.dtype, x)
    dBp = prof.hbm.new_tensor("dB partials", (nd, bt * L * N), "fp32", x)
    dCp = prof.hbm.new_tensor("dC partials", (nd, bt * L * N), "fp32", x)
    dAp = prof.hbm.new_tensor("dA partials", (bt, DM * N), "fp32", x)
    dDp = prof.hbm.new_tensor("dD partials", (bt, DM), "fp32", x) if call.has_d else None
    if x:
        ids, rc, rl = np.arange(grid[0] * grid[1], dtype=np.int64), None, None
        dBp[:] = 0.0
        dCp[:] = 0.0
    else:
        ids, rc, rl = edge_grid(*grid)
    counters = new_counters(len(ids), n_operands=8)
    flat = lambda a, w: a.reshape(-1, w) if x else DUMMY2                           # noqa: E731
    _body(call.data("u"), call.data("delta"), call.data("A"), call.data("B"), call.data("C"), call.data("D", 1),
          DY.data.reshape(-1, DM) if x else DUMMY2, flat(saved.checkpoints, N), flat(du, DM), flat(ddt, DM),
          flat(dBp, N), flat(dCp, N), flat(dAp, N), flat(dDp, DM) if call.has_d else DUMMY2,
          bt, L, DM, N, bd, t, call.has_d, x, ids, counters, call.elem_bits)
    prof.record(KERNEL, grid, launch_counters(counters, x, rc, rl), dtype=call.dtype, sram_per_block=sram,
                regs_per_block=regs, notes=notes)
    dB = launch_reduce("dB", dBp, (bt, L, N), call.dtype, x)
    dC = launch_reduce("dC", dCp, (bt, L, N), call.dtype, x)
    dA = launch_reduce("dA", dAp, (DM, N), "fp32", x)
    dD = launch_reduce("dD", dDp, (DM,), "fp32", x) if call.has_d else None
    return du, ddt, dA, dB, dC, dD
