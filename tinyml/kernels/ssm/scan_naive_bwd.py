"""Backward of the naive selective scan: the saved (batch, L, D, N) states read back from HBM.

This is what a framework's autograd does with the three-kernel forward of
:mod:`.scan_naive`: the forward keeps ``abar = exp(delta A)`` and the states
``h`` alive in HBM (fp32, ``E = batch L D N`` elements each), and the backward
runs the three kernels in reverse, each an elementwise pass over
(batch, L, D, N) fp32 tensors. Compare :mod:`.scan_bwd`, which recomputes the
states of each chunk in SRAM from one checkpoint and reads only the inputs.

Gradients (``dh`` = dL/dh_t, the reverse-time recurrence; ``z = delta A``)::

    1. scan_naive_bwd_readout     dH_t = dy_t C_t                 dC_t = sum_d dy_t[d] h_t[d]      dD += dy_t u_t
    2. scan_naive_bwd_states      dh_t = dH_t + abar_{t+1} dh_{t+1}    (backwards in time)
                                  d(delta B u)_t = dh_t           d(abar)_t = dh_t h_{t-1}   (h_{-1} = 0)
    3. scan_naive_bwd_discretize  dz = d(abar) abar               dA += dz delta     ddelta = sum_n dz A + u sum_n d(dBu) B
                                  dB_t = sum_d d(dBu) delta u     du = delta sum_n d(dBu) B (+ D dy)

dB, dC sum over channel blocks and dA, dD over the batch: every block writes
fp32 partial sums, added by the ``scan_naive_bwd_reduce`` kernels (the
reduction kernel of :mod:`.scan_bwd`).

Every kernel has the forward's grid (batch, ceil(D / BD)) and walks the
sequence in chunks of T tokens, streaming HBM -> registers -> HBM (nothing is
reused, so nothing is staged in SRAM). Kernel 2, the only one with a carried
value::

    for each block (b, channels c0 : c0 + BD) in parallel:
        carry = zeros(BD, N) fp32                                   # abar_{t+1} dh_{t+1}, registers
        for chunk c = nT - 1 down to 0, t = last token of the chunk down to the first:
            dh = load dH[b, t, c0 : +BD] + carry                    # (BD, N) fp32
            store dh -> d(dBu)[b, t];  store dh * load H[b, t - 1] -> d(abar)[b, t]   # no load for t = 0
            carry = dh * load abar[b, t]

HBM traffic (``s`` bytes per element of the logical dtype, ``nD = ceil(D / BD)``, ``E = batch L D N``)::

    readout     reads  batch L D s + batch L N s nD + 4 E (+ batch L D s)      writes 4 E + 4 batch L N nD (+ 4 batch D)
    states      reads  8 E + 4 batch (L - 1) D N                               writes 8 E
    discretize  reads  12 E + 2 batch L D s + batch L N s nD + 4 batch D N (+ batch L D s + 4 batch D)
                writes 2 batch L D s + 4 batch L N nD + 4 batch D N
    reduce      dB, dC: reads 4 nD batch L N, writes batch L N s, each;  dA: reads 4 batch D N, writes 4 D N;
                dD: reads 4 batch D, writes 4 D
    total       about 40 E bytes of fp32 (batch, L, D, N) tensors, against the IO-aware backward's
                4 batch nT D N of checkpoints

vector FLOPs: readout ``3 E`` (``+ 2 batch L D`` with D), states ``3 E``, discretize
``9 E + 4 batch L D`` (``+ 2 batch L D`` with D) (per state element: dz 1, sum dz A 2,
dA 2, sum d(dBu) B 2, dB 2): ``15 E`` against the IO-aware backward's ``22 E``, which
also recomputes the forward.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import current_profile
from ...sim.counters import new_counters
from ...sim.tiles import count_load_direct, count_store_direct, count_vector
from .._classes import add_scaled, edge_grid, launch_counters, rep_count, rep_tile
from .._contract import ceil_div
from .._counting import extent
from .scan_blocks import channel_block
from .scan_bwd import launch_reduce
from .scan_call import DUMMY2, NaiveScanSaved, check_dy, clamp_notes, grid_of, pick_blocks
from .scan_naive import naive_tiles

KERNELS = ("scan_naive_bwd_readout", "scan_naive_bwd_states", "scan_naive_bwd_discretize")
REDUCE = "scan_naive_bwd_reduce"
READOUT_PER_STATE, STATES_PER_STATE, DISCRETIZE_PER_STATE = 3, 3, 9
DISCRETIZE_PER_CHANNEL, PER_SKIP = 4, 2


@njit(parallel=PARALLEL, cache=True)
def _readout_bwd(dy, Cm, H, u, dH, dCp, dDp, BT, L, DM, N, BD, T, has_d, execute, ids, counters, elem_bits):
    # dy, u: (BT*L, DM); Cm: (BT*L, N); H, dH: (BT*L, DM*N) fp32; dCp: (nD*BT*L, N) fp32; dDp: (BT, DM) fp32
    ndb = (DM + BD - 1) // BD
    nch = (L + T - 1) // T
    for row in prange(len(ids)):
        blk = ids[row]
        b, c0, nd = channel_block(blk, ndb, BD, DM)
        prow0 = (blk % ndb) * BT * L            # this channel block's rows of the dC partials
        dD = np.zeros(extent(BD, execute), dtype=np.float32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, nch, execute)):
            c, mult = rep_tile(jr, 0, nch, execute)
            t0 = c * T
            nt = min(T, L - t0)
            step[:] = 0
            count_load_direct(nt * nd, step, 0, 0, elem_bits)             # dy
            count_load_direct(nt * N, step, 0, 1, elem_bits)              # C
            count_load_direct(nt * nd * N, step, 0, 2, 32)                # the saved states H
            if has_d:
                count_load_direct(nt * nd, step, 0, 3, elem_bits)         # u, for dD
            count_vector(nt * nd * (READOUT_PER_STATE * N + (PER_SKIP if has_d else 0)), step, 0)
            count_store_direct(nt * nd * N, step, 0, 32)                  # dH
            count_store_direct(nt * N, step, 0, 32)                       # dC partial
            add_scaled(counters, row, step, mult)
            if execute:
                for r in range(b * L + t0, b * L + t0 + nt):
                    pr = prow0 + r
                    for n in range(N):
                        dCp[pr, n] = 0.0
                    for d in range(c0, c0 + nd):
                        g = dy[r, d]
                        for n in range(N):
                            dH[r, d * N + n] = g * Cm[r, n]
                            dCp[pr, n] += g * H[r, d * N + n]
                        if has_d:
                            dD[d - c0] += g * u[r, d]
        if has_d:
            count_store_direct(nd, counters, row, 32)                     # dD partial
            if execute:
                for d in range(nd):
                    dDp[b, c0 + d] = dD[d]


@njit(cache=True)
def _states_chunk(dH, abar, H, ddBu, dAbar, carry, r0, nt, first, c0, nd, N):
    """Tokens r0 + nt - 1 down to r0 of one block: dh = dH + carry, the two gradients, the new carry."""
    for t in range(nt - 1, -1, -1):
        r = r0 + t
        no_prev = first and t == 0
        for i in range(nd * N):
            col = c0 * N + i
            g = dH[r, col] + carry[i]
            ddBu[r, col] = g
            dAbar[r, col] = 0.0 if no_prev else g * H[r - 1, col]
            carry[i] = g * abar[r, col]


@njit(cache=True)
def _count_states_chunk(nt, n_prev, nd, N, step):
    """One chunk of kernel 2: dH, abar (nt rows) and ``n_prev`` rows of H in, d(dBu), d(abar) out."""
    count_load_direct(nt * nd * N, step, 0, 0, 32)                        # dH
    count_load_direct(nt * nd * N, step, 0, 1, 32)                        # abar
    count_load_direct(n_prev * nd * N, step, 0, 2, 32)                    # h_{t-1}: the saved states
    count_vector(STATES_PER_STATE * nt * nd * N, step, 0)
    count_store_direct(2 * nt * nd * N, step, 0, 32)                      # d(dBu), d(abar)


@njit(parallel=PARALLEL, cache=True)
def _states_bwd(dH, abar, H, ddBu, dAbar, BT, L, DM, N, BD, T, execute, ids, counters):
    # all (BT*L, DM*N) fp32
    ndb = (DM + BD - 1) // BD
    nch = (L + T - 1) // T
    for row in prange(len(ids)):
        blk = ids[row]
        b, c0, nd = channel_block(blk, ndb, BD, DM)
        carry = np.zeros(extent(BD * N, execute), dtype=np.float32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        # chunks nch - 1 down to 1 (counting: chunk 1 standing for 1 .. nch - 2, and the last) ...
        for jr in range(rep_count(1, nch, execute)):
            cr, mult = rep_tile(jr, 1, nch, execute)
            c = nch - cr if execute else cr
            t0 = c * T
            nt = min(T, L - t0)
            step[:] = 0
            _count_states_chunk(nt, nt, nd, N, step)
            if execute:
                _states_chunk(dH, abar, H, ddBu, dAbar, carry, b * L + t0, nt, False, c0, nd, N)
            add_scaled(counters, row, step, mult)
        # ... then chunk 0, whose first token has no h_{t-1} to load
        nt = min(T, L)
        step[:] = 0
        _count_states_chunk(nt, nt - 1, nd, N, step)
        if execute:
            _states_chunk(dH, abar, H, ddBu, dAbar, carry, b * L, nt, True, c0, nd, N)
        add_scaled(counters, row, step, 1)


@njit(parallel=PARALLEL, cache=True)
def _discretize_bwd(dAbar, ddBu, abar, u, dt, Bm, A, Dv, dy, du, ddt, dBp, dAp, BT, L, DM, N, BD, T, has_d,
                    execute, ids, counters, elem_bits):
    # dAbar, ddBu, abar: (BT*L, DM*N) fp32; u, dt, dy, du, ddt: (BT*L, DM); Bm: (BT*L, N); A: (DM, N);
    # Dv: (DM,); dBp: (nD*BT*L, N) fp32; dAp: (BT*DM, N) fp32
    ndb = (DM + BD - 1) // BD
    nch = (L + T - 1) // T
    for row in prange(len(ids)):
        blk = ids[row]
        b, c0, nd = channel_block(blk, ndb, BD, DM)
        prow0 = (blk % ndb) * BT * L
        count_load_direct(nd * N, counters, row, 6, 32)                   # A
        if has_d:
            count_load_direct(nd, counters, row, 7, 32)                   # D
        dA = np.zeros((extent(BD, execute), extent(N, execute)), dtype=np.float32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, nch, execute)):
            c, mult = rep_tile(jr, 0, nch, execute)
            t0 = c * T
            nt = min(T, L - t0)
            step[:] = 0
            count_load_direct(nt * nd * N, step, 0, 0, 32)                # d(abar)
            count_load_direct(nt * nd * N, step, 0, 1, 32)                # d(delta B u)
            count_load_direct(nt * nd * N, step, 0, 2, 32)                # abar (exp's backward uses its output)
            count_load_direct(nt * nd, step, 0, 3, elem_bits)             # delta
            count_load_direct(nt * nd, step, 0, 4, elem_bits)             # u
            count_load_direct(nt * N, step, 0, 5, elem_bits)              # B
            if has_d:
                count_load_direct(nt * nd, step, 0, 8, elem_bits)         # dy, for the skip's du
            count_vector(nt * nd * (DISCRETIZE_PER_STATE * N + DISCRETIZE_PER_CHANNEL
                                    + (PER_SKIP if has_d else 0)), step, 0)
            count_store_direct(2 * nt * nd, step, 0, elem_bits)           # du, ddelta
            count_store_direct(nt * N, step, 0, 32)                       # dB partial
            add_scaled(counters, row, step, mult)
            if execute:
                for r in range(b * L + t0, b * L + t0 + nt):
                    pr = prow0 + r
                    for n in range(N):
                        dBp[pr, n] = 0.0
                    for d in range(c0, c0 + nd):
                        dd = dt[r, d]
                        uu = u[r, d]
                        duu = dd * uu
                        sg = np.float32(0.0)
                        sb = np.float32(0.0)
                        for n in range(N):
                            col = d * N + n
                            dz = dAbar[r, col] * abar[r, col]
                            sg += dz * A[d, n]
                            dA[d - c0, n] += dz * dd
                            gb = ddBu[r, col]
                            sb += gb * Bm[r, n]
                            dBp[pr, n] += gb * duu
                        ddt[r, d] = sg + uu * sb
                        du[r, d] = dd * sb
                        if has_d:
                            du[r, d] += Dv[d] * dy[r, d]
        count_store_direct(nd * N, counters, row, 32)                     # dA partial
        if execute:
            for d in range(nd):
                for n in range(N):
                    dAp[b * DM + c0 + d, n] = dA[d, n]


def expected_bytes(batch, length, channels, state, elem_bytes, block_d, has_d=False):
    """{kernel: (HBM read bytes, HBM write bytes)} of the naive backward, from the formulas above."""
    nd = ceil_div(channels, block_d)
    E = batch * length * channels * state
    bld, bln = batch * length * channels * elem_bytes, batch * length * state * elem_bytes
    bdn = 4 * batch * channels * state
    skip_r, skip_w = (bld + 4 * batch * channels, 4 * batch * channels) if has_d else (0, 0)
    out = {
        KERNELS[0]: (bld + bln * nd + 4 * E + (bld if has_d else 0), 4 * E + 4 * batch * length * state * nd + skip_w),
        KERNELS[1]: (8 * E + 4 * batch * (length - 1) * channels * state, 8 * E),
        KERNELS[2]: (12 * E + 2 * bld + bln * nd + bdn + skip_r, 2 * bld + 4 * batch * length * state * nd + bdn),
        f"{REDUCE}_dB": (4 * nd * batch * length * state, bln),
        f"{REDUCE}_dC": (4 * nd * batch * length * state, bln),
        f"{REDUCE}_dA": (bdn, 4 * channels * state),
    }
    if has_d:
        out[f"{REDUCE}_dD"] = (4 * batch * channels, 4 * channels)
    return out


def expected_flops(batch, length, channels, state, has_d=False):
    """{kernel: vector FLOPs} of the naive backward's three main kernels (the reductions add their partials)."""
    E, bld = batch * length * channels * state, batch * length * channels
    skip = PER_SKIP * bld if has_d else 0
    return {KERNELS[0]: READOUT_PER_STATE * E + skip, KERNELS[1]: STATES_PER_STATE * E,
            KERNELS[2]: DISCRETIZE_PER_STATE * E + DISCRETIZE_PER_CHANNEL * bld + skip}


def selective_scan_naive_backward(saved: NaiveScanSaved, dy, *, block_d: "int | None" = None,
                                  chunk: "int | None" = None):
    """Gradients (du, ddelta, dA, dB, dC, dD) of the naive scan, given dL/dy (batch, L, D).

    ``saved`` is what ``selective_scan_naive(..., return_saved=True)`` returned (the inputs and the
    (batch, L, D, N) fp32 ``exp(delta A)`` and states it kept in HBM); dD is None without D.
    ``block_d`` and ``chunk`` only split the work (defaults as the forward's).
    """
    call = saved.call
    DY = check_dy(dy, call, KERNELS[0])
    bd, t, sram, regs = pick_blocks(call, block_d, chunk,
                                    lambda b, tt: naive_tiles(b, tt, call.state, call.dtype), KERNELS[0])
    notes = clamp_notes(block_d, chunk, bd, t)
    prof = current_profile()
    prof.hbm.track(DY.obj, "dy", call.dtype)
    x = call.execute
    bt, L, DM, N = call.batch, call.length, call.channels, call.state
    grid = grid_of(call, bd)
    nd = grid[1]
    if x:
        ids, rc, rl = np.arange(grid[0] * grid[1], dtype=np.int64), None, None
    else:
        ids, rc, rl = edge_grid(*grid)
    flat = lambda a, w: a.reshape(-1, w) if x else DUMMY2                          # noqa: E731
    dyd = DY.data.reshape(-1, DM) if x else DUMMY2

    def record(name, counters):
        prof.record(name, grid, launch_counters(counters, x, rc, rl), dtype=call.dtype, sram_per_block=sram,
                    regs_per_block=regs, notes=notes)

    dH = prof.hbm.new_tensor("dL/dH", (bt, L, DM, N), "fp32", x)
    dCp = prof.hbm.new_tensor("dC partials", (nd, bt * L * N), "fp32", x)
    dDp = prof.hbm.new_tensor("dD partials", (bt, DM), "fp32", x) if call.has_d else None
    cnt = new_counters(len(ids), n_operands=4)
    _readout_bwd(dyd, call.data("C"), flat(saved.states, DM * N), call.data("u"), flat(dH, DM * N), flat(dCp, N),
                 flat(dDp, DM) if call.has_d else DUMMY2, bt, L, DM, N, bd, t, call.has_d, x, ids, cnt,
                 call.elem_bits)
    record(KERNELS[0], cnt)
    ddBu = prof.hbm.new_tensor("dL/d(delta B u)", (bt, L, DM, N), "fp32", x)
    dAbar = prof.hbm.new_tensor("dL/d exp(delta A)", (bt, L, DM, N), "fp32", x)
    cnt = new_counters(len(ids), n_operands=3)
    _states_bwd(flat(dH, DM * N), flat(saved.abar, DM * N), flat(saved.states, DM * N), flat(ddBu, DM * N),
                flat(dAbar, DM * N), bt, L, DM, N, bd, t, x, ids, cnt)
    record(KERNELS[1], cnt)
    del dH
    du = prof.hbm.new_tensor("du", (bt, L, DM), call.dtype, x)
    ddt = prof.hbm.new_tensor("ddelta", (bt, L, DM), call.dtype, x)
    dBp = prof.hbm.new_tensor("dB partials", (nd, bt * L * N), "fp32", x)
    dAp = prof.hbm.new_tensor("dA partials", (bt, DM * N), "fp32", x)
    cnt = new_counters(len(ids), n_operands=9)
    _discretize_bwd(flat(dAbar, DM * N), flat(ddBu, DM * N), flat(saved.abar, DM * N), call.data("u"),
                    call.data("delta"), call.data("B"), call.data("A"), call.data("D", 1), dyd, flat(du, DM),
                    flat(ddt, DM), flat(dBp, N), flat(dAp, N), bt, L, DM, N, bd, t, call.has_d, x, ids, cnt,
                    call.elem_bits)
    record(KERNELS[2], cnt)
    del ddBu, dAbar
    dB = launch_reduce("dB", dBp, (bt, L, N), call.dtype, x, kernel=REDUCE)
    dC = launch_reduce("dC", dCp, (bt, L, N), call.dtype, x, kernel=REDUCE)
    dA = launch_reduce("dA", dAp, (DM, N), "fp32", x, kernel=REDUCE)
    dD = launch_reduce("dD", dDp, (DM,), "fp32", x, kernel=REDUCE) if call.has_d else None
    return du, ddt, dA, dB, dC, dD
