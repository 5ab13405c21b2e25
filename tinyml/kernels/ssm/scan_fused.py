"""The IO-aware selective scan (Mamba's hardware-aware scan): the state never leaves the chip.

Kernel fusion: discretisation (exp(delta A), delta B u), the recurrence and
the readout (C h + D u) run in one kernel, so the expanded (batch, L, D, N)
tensors of the naive scan (:mod:`.scan_naive`) are never written. Each
block keeps the state of its BD channels, (BD, N) fp32, in registers for the
whole sequence; only the inputs, the outputs and one checkpoint of the state
per chunk (what the backward restarts from, :mod:`.scan_bwd`) cross HBM.

Tile loop, grid (batch, ceil(D / BD))::

    for each block (b, channels c0 : c0 + BD) in parallel:
        A_blk = load A[c0 : c0 + BD]                        # (BD, N) fp32, once
        D_blk = load D[c0 : c0 + BD]                        # (BD,) fp32, if D is given
        h = zeros(BD, N) fp32                               # registers
        for each chunk of T tokens t0 : t0 + T:
            load u, delta[b, t0 : t0 + T, c0 : c0 + BD]      # (T, BD) each
            load B, C[b, t0 : t0 + T]                        # (T, N) each (every channel block re-reads them)
            for t in the chunk, for (d, n):
                h[d, n] = exp(delta[t, d] A[d, n]) h[d, n] + delta[t, d] u[t, d] B[t, n]
                y[t, d] += C[t, n] h[d, n]
            y[t, d] += D[d] u[t, d]
            store y[b, t0 : t0 + T, c0 : c0 + BD]            # (T, BD)
            store h -> checkpoint[b, chunk, c0 : c0 + BD]    # (BD, N) fp32

HBM traffic (``s`` bytes per element of the logical dtype, ``nD = ceil(D / BD)``,
``nT = ceil(L / T)``)::

    reads  = 2 batch L D s + 2 batch L N s nD + 4 batch D N (+ 4 batch D with D_skip)
    writes = batch L D s + 4 batch nT D N
    vector FLOPs = 7 batch L D N + batch L D (+ 2 batch L D with D_skip)

(per state element: delta A 1, exp 1, times h 1, delta u times B 1, add 1, C h
multiply-add 2; per token and channel: delta u 1; the skip: multiply-add 2.) The
naive scan moves ``24 batch L D N`` bytes of fp32 states instead
(:func:`tinyml.kernels.ssm.scan_naive.expected_bytes`): per token and channel the
fused scan moves ``s (3 + 2 N nD / D)`` bytes (B and C are re-read once per channel
block), so the ratio is about ``24 N / (s (3 + 2 N nD / D))``: 4N for fp16 inputs when
D >> N nD, 3N when N nD = D (D = 4096, N = 16, BD = 32: a 47x ratio).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import current_profile
from ...sim.args import flag
from ...sim.counters import new_counters
from ...sim.tiles import count_tile_load, count_vector, store_tile
from .._classes import add_scaled, edge_grid, launch_counters, rep_count, rep_tile
from .._contract import ceil_div
from ..attention.fastexp import exp_le0
from .._counting import extent
from .scan_call import (clamp_notes, DUMMY2, ScanSaved, OP_A, OP_D, ScanCall, fused_tiles, grid_of,
                        pick_blocks, prepare_scan, track_inputs)
from .scan_blocks import channel_block, count_chunk_inputs

KERNEL = "scan_fused"
PER_STATE = 7
PER_CHANNEL = 1
PER_SKIP = 2


@njit(cache=True, fastmath={"contract", "arcp", "nsz", "afn", "reassoc"})
def scan_chunk(u, dt, Bm, Cm, A, Dv, h, y_s, r0, nt, c0, nd, N, has_d):
    """Run the recurrence over tokens r0 : r0 + nt (rows of u, dt, Bm, Cm) for channels c0 : c0 + nd,
    updating the state h (nd, N) and writing y into y_s (nt, nd). Returns nothing."""
    for t in range(nt):
        r = r0 + t
        for d in range(nd):
            dd = dt[r, c0 + d]
            du = dd * u[r, c0 + d]
            hd = h[d]
            a = A[c0 + d]
            b_t = Bm[r]
            for n in range(N):            # no reduction in this loop: it runs in SIMD lanes, exp included
                hd[n] = exp_le0(dd * a[n]) * hd[n] + du * b_t[n]
            acc = np.float32(0.0)
            c_t = Cm[r]
            for n in range(N):            # the readout's sum, reassociated into SIMD lanes (~15% on this CPU)
                acc += c_t[n] * hd[n]
            if has_d:
                acc += Dv[c0 + d] * u[r, c0 + d]
            y_s[t, d] = acc


@njit(parallel=PARALLEL, cache=True)
def _body(u, dt, A, Bm, Cm, Dv, y, ckpt, BT, L, DM, N, BD, T, has_d, execute, ids, counters, elem_bits):
    # u, dt, y: (BT*L, DM); Bm, Cm: (BT*L, N); A: (DM, N); Dv: (DM,); ckpt: (BT*nT*DM, N) fp32
    ndb = (DM + BD - 1) // BD
    nch = (L + T - 1) // T
    for row in prange(len(ids)):
        blk = ids[row]
        b, c0, nd = channel_block(blk, ndb, BD, DM)
        count_tile_load(nd, N, counters, row, OP_A, 32)
        if has_d:
            count_tile_load(1, nd, counters, row, OP_D, 32)
        h = np.zeros((extent(BD, execute), extent(N, execute)), dtype=np.float32)     # (BD, N) registers
        y_s = np.zeros((extent(T, execute), extent(BD, execute)), dtype=np.float32)   # (T, BD) SRAM
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, nch, execute)):
            c, mult = rep_tile(jr, 0, nch, execute)
            t0 = c * T
            nt = min(T, L - t0)
            step[:] = 0
            count_chunk_inputs(nt, nd, N, step, elem_bits)
            count_vector(nt * nd * (PER_STATE * N + PER_CHANNEL + (PER_SKIP if has_d else 0)), step, 0)
            if execute:
                scan_chunk(u, dt, Bm, Cm, A, Dv, h, y_s, b * L + t0, nt, c0, nd, N, has_d)
            store_tile(y_s, nt, nd, y, b * L + t0, c0, execute, step, 0, elem_bits)
            store_tile(h, nd, N, ckpt, (b * nch + c) * DM + c0, 0, execute, step, 0, 32)
            add_scaled(counters, row, step, mult)


def expected_bytes(batch, length, channels, state, elem_bytes, block_d, chunk, has_d=False):
    """(HBM read bytes, HBM write bytes) of the fused scan, from the formula above."""
    nd, nt = ceil_div(channels, block_d), ceil_div(length, chunk)
    reads = (2 * batch * length * channels * elem_bytes + 2 * batch * length * state * elem_bytes * nd
             + 4 * batch * channels * state + (4 * batch * channels if has_d else 0))
    writes = batch * length * channels * elem_bytes + 4 * batch * nt * channels * state
    return reads, writes


def expected_flops(batch, length, channels, state, has_d=False):
    """Vector FLOPs of the fused scan (it uses no tensor cores)."""
    return batch * length * channels * (PER_STATE * state + PER_CHANNEL + (PER_SKIP if has_d else 0))


def launch_fused(call: ScanCall, block_d, chunk, kernel: str = KERNEL):
    """Run the fused scan of a validated call; returns (y, checkpoints, BD, T)."""
    bd, t, sram, regs = pick_blocks(call, block_d, chunk,
                                    lambda b, tt: fused_tiles(b, tt, call.state, call.dtype), kernel)
    notes = clamp_notes(block_d, chunk, bd, t)
    prof = current_profile()
    track_inputs(call)
    x = call.execute
    y = prof.hbm.new_tensor("y", (call.batch, call.length, call.channels), call.dtype, x)
    nch = ceil_div(call.length, t)
    ckpt = prof.hbm.new_tensor("checkpoints", (call.batch, nch, call.channels, call.state), "fp32", x)
    grid = grid_of(call, bd)
    if x:
        ids, run_class, run_length = np.arange(grid[0] * grid[1], dtype=np.int64), None, None
    else:
        ids, run_class, run_length = edge_grid(*grid)
    counters = new_counters(len(ids), n_operands=6)
    _body(call.data("u"), call.data("delta"), call.data("A"), call.data("B"), call.data("C"),
          call.data("D", 1), y.reshape(-1, call.channels) if x else DUMMY2,
          ckpt.reshape(-1, call.state) if x else DUMMY2, call.batch, call.length, call.channels, call.state,
          bd, t, call.has_d, x, ids, counters, call.elem_bits)
    prof.record(kernel, grid, launch_counters(counters, x, run_class, run_length), dtype=call.dtype,
                sram_per_block=sram, regs_per_block=regs, notes=notes)
    return y, ckpt, bd, t


def selective_scan_fused(u, delta, A, B, C, D=None, *, dtype: str = "fp16", block_d: "int | None" = None,
                         chunk: "int | None" = None, return_saved: bool = False):
    """y (batch, L, D) of the selective scan, IO-aware (see the module docstring).

    u, delta: (batch, L, D); A: (D, N) <= 0; B, C: (batch, L, N); D: (D,) or None. NumPy arrays
    (executing) or ``tinyml.sim.meta`` tensors (counting). ``block_d`` channels per thread block and
    ``chunk`` tokens per SRAM chunk default to sizes that fit the active device
    (:func:`.scan_call.pick_blocks`; sizes above D or L are clamped to D or L). With ``return_saved`` also returns a
    :class:`~.scan_call.ScanSaved`: the inputs and the (batch, nT, D, N) fp32 states at the end of each
    chunk, what :func:`.scan_bwd.selective_scan_backward` restarts from.
    """
    return_saved = flag(return_saved, "return_saved")
    call = prepare_scan(u, delta, A, B, C, D, dtype=dtype, kernel=KERNEL)
    y, ckpt, _, t = launch_fused(call, block_d, chunk)
    return (y, ScanSaved(call, ckpt, t)) if return_saved else y
