"""Backward of chunked linear attention: two sweeps over the chunks, states recomputed, never saved.

The forward (:mod:`.linear_chunked`) keeps nothing but o. With ``M[i, j] = g^(i-j)`` (i >= j),
``P = (Q_c K_c^T) * M`` and ``dP = (dO_c V_c^T) * M`` inside a chunk of nc tokens::

    dQ_c = dP K_c + diag(g^(i+1)) dO_c S_prev^T                (S_prev: the state entering the chunk)
    dK_c = dP^T Q_c + diag(g^(nc-1-j)) V_c dS^T                (dS: dL/d(the state leaving the chunk))
    dV_c = P^T dO_c + diag(g^(nc-1-j)) K_c dS
    dS  <- g^nc dS + (diag(g^(i+1)) Q_c)^T dO_c                (going backwards)

dQ needs the states going forwards, dK and dV the state gradients going
backwards, so one block per (batch, head) sweeps twice, each state (d, dv) fp32
in registers::

    for each block (b, h) in parallel:                        # grid (batch, H)
        S = 0
        for each chunk c, forwards:                            # sweep 1
            load K_c, V_c, dO_c;  dP = (dO_c V_c^T) * M
            store dQ_c = dP K_c + diag(g^(i+1)) dO_c S^T
            S = g^nc S + (diag(g^(nc-1-j)) K_c)^T V_c
        dS = 0
        for each chunk c, backwards:                           # sweep 2
            load Q_c, K_c, V_c, dO_c;  P, dP as above
            store dK_c, dV_c (above);  dS = g^nc dS + (diag(g^(i+1)) Q_c)^T dO_c

HBM traffic (``s`` bytes per element)::

    reads  = batch H N (3 d + 4 dv) s          (sweep 1: K, V, dO; sweep 2: Q, K, V, dO)
    writes = batch H N (2 d + dv) s            (dQ, dK, dV)

Per chunk of nc tokens: matmul FLOPs ``2 (3 nc^2 (d + dv) + 5 nc d dv)`` (sweep 1: ``nc^2 (d + dv)
+ 2 nc d dv`` multiply-adds, sweep 2: ``2 nc^2 (d + dv) + 3 nc d dv``), vector FLOPs
``3 nc^2 + 3 nc d + 2 nc dv + 2 d dv`` (:func:`expected_flops`).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import ShapeError, current_profile
from ...sim.counters import new_counters
from ...sim.sram import REG
from ...sim.tiles import count_mma, count_vector, load_tile, store_tile
from .._classes import add_scaled, launch_counters, rep_count, rep_tile
from .._contract import blas_single_thread, clamp_note, operand
from .._counting import extent
from .linear_call import DUMMY2, OP_DO, OP_K, OP_Q, OP_V, prepare_linear
from .linear_chunked import add_into, decay_add, decay_mask, per_head_ids, resolve_chunk, row_powers, scale_rows

KERNEL = "linear_chunked_bwd"


def bwd_tiles(chunk: int, d: int, dv: int, dtype: str) -> dict:
    return {"Q_c, K_c": ((2, chunk, d), dtype), "V_c, dO_c": ((2, chunk, dv), dtype),
            "P, dP": ((2, chunk, chunk), "fp32", REG), "dQ/dK, dV": ((chunk, d + dv), "fp32", REG),
            "S or dS": ((d, dv), "fp32", REG)}


@njit(parallel=PARALLEL, cache=True)
def _body(q, k, v, do, dq, dk, dv, decay, BT, H, N, D, DV, C, execute, ids, counters, elem_bits):
    nch = (N + C - 1) // C
    for row in prange(len(ids)):
        blk = ids[row]
        g = decay[blk % H]
        c1 = extent(C, execute)
        q_s = np.zeros((c1, extent(D, execute)), dtype=np.float32)
        k_s = np.zeros((c1, extent(D, execute)), dtype=np.float32)
        v_s = np.zeros((c1, extent(DV, execute)), dtype=np.float32)
        do_s = np.zeros((c1, extent(DV, execute)), dtype=np.float32)
        r_q = np.zeros((c1, extent(D, execute)), dtype=np.float32)
        r_v = np.zeros((c1, extent(DV, execute)), dtype=np.float32)
        S = np.zeros((extent(D, execute), extent(DV, execute)), dtype=np.float32)
        up = np.zeros(c1, dtype=np.float32)
        down = np.zeros(c1, dtype=np.float32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, nch, execute)):          # sweep 1, forwards: dQ
            c, mult = rep_tile(jr, 0, nch, execute)
            r0 = blk * N + c * C
            nc = min(C, N - c * C)
            step[:] = 0
            load_tile(k, r0, 0, nc, D, k_s, execute, step, 0, OP_K, elem_bits)
            load_tile(v, r0, 0, nc, DV, v_s, execute, step, 0, OP_V, elem_bits)
            load_tile(do, r0, 0, nc, DV, do_s, execute, step, 0, OP_DO, elem_bits)
            count_mma(nc, nc, DV, step, 0, elem_bits)          # dO V^T
            count_vector(nc * nc, step, 0)                     # * M
            count_mma(nc, D, nc, step, 0, elem_bits)           # dP K
            count_vector(nc * DV, step, 0)                     # diag(g^(i+1)) dO
            count_mma(nc, D, DV, step, 0, elem_bits)           # (g dO) S^T
            count_vector(nc * D + D * DV, step, 0)             # diag(g^(nc-1-j)) K, g^nc S
            count_mma(D, DV, nc, step, 0, elem_bits)           # K^T V
            if execute:
                row_powers(nc, g, up, down)
                kc, vc, dc = k_s[:nc], v_s[:nc], do_s[:nc]
                dP = np.dot(dc, vc.T)
                decay_mask(dP, nc, g)
                gd = scale_rows(dc, up)                        # diag(g^(i+1)) dO_c
                kd = scale_rows(kc, down)                      # diag(g^(nc-1-j)) K_c
                add_into(np.dot(dP, kc), np.dot(gd, S.T), r_q)         # dQ_c, written into r_q
                decay_add(S, np.float32(g ** nc), np.dot(kd.T, vc))    # S = g^nc S + (g K_c)^T V_c
            store_tile(r_q, nc, D, dq, r0, 0, execute, step, 0, elem_bits)
            add_scaled(counters, row, step, mult)
        if execute:
            S[:, :] = 0.0                                      # now dS
        for jr in range(rep_count(0, nch, execute)):          # sweep 2, backwards: dK, dV
            cr, mult = rep_tile(jr, 0, nch, execute)
            c = nch - 1 - cr if execute else cr
            r0 = blk * N + c * C
            nc = min(C, N - c * C)
            step[:] = 0
            load_tile(q, r0, 0, nc, D, q_s, execute, step, 0, OP_Q, elem_bits)
            load_tile(k, r0, 0, nc, D, k_s, execute, step, 0, OP_K, elem_bits)
            load_tile(v, r0, 0, nc, DV, v_s, execute, step, 0, OP_V, elem_bits)
            load_tile(do, r0, 0, nc, DV, do_s, execute, step, 0, OP_DO, elem_bits)
            count_mma(nc, nc, D, step, 0, elem_bits)           # Q K^T
            count_mma(nc, nc, DV, step, 0, elem_bits)          # dO V^T
            count_vector(2 * nc * nc, step, 0)                 # both * M
            count_mma(nc, D, nc, step, 0, elem_bits)           # dP^T Q
            count_mma(nc, D, DV, step, 0, elem_bits)           # V dS^T
            count_vector(nc * D, step, 0)                      # diag(g^(nc-1-j)) on it
            count_mma(nc, DV, nc, step, 0, elem_bits)          # P^T dO
            count_mma(nc, DV, D, step, 0, elem_bits)           # K dS
            count_vector(nc * DV, step, 0)                     # diag(g^(nc-1-j)) on it
            count_vector(D * DV + nc * D, step, 0)             # g^nc dS, diag(g^(i+1)) Q
            count_mma(D, DV, nc, step, 0, elem_bits)           # Q^T dO
            if execute:
                row_powers(nc, g, up, down)
                qc, kc, vc, dc = q_s[:nc], k_s[:nc], v_s[:nc], do_s[:nc]
                P = np.dot(qc, kc.T)
                decay_mask(P, nc, g)
                dP = np.dot(dc, vc.T)
                decay_mask(dP, nc, g)
                a = scale_rows(np.dot(vc, S.T), down)             # (nc, D)
                bb = scale_rows(np.dot(kc, S), down)              # (nc, DV)
                add_into(np.dot(dP.T, qc), a, r_q)                # dK_c
                add_into(np.dot(P.T, dc), bb, r_v)                # dV_c
                gq = scale_rows(qc, up)                           # diag(g^(i+1)) Q_c
                decay_add(S, np.float32(g ** nc), np.dot(gq.T, dc))    # dS = g^nc dS + (g Q_c)^T dO_c
            store_tile(r_q, nc, D, dk, r0, 0, execute, step, 0, elem_bits)
            store_tile(r_v, nc, DV, dv, r0, 0, execute, step, 0, elem_bits)
            add_scaled(counters, row, step, mult)


def expected_bytes(batch, heads, length, d, dv, elem_bytes):
    """(HBM read bytes, HBM write bytes) of the backward, from the formula above."""
    n = batch * heads * length
    return n * (3 * d + 4 * dv) * elem_bytes, n * (2 * d + dv) * elem_bytes


def expected_flops(batch, heads, length, d, dv, chunk):
    """(matmul FLOPs, vector FLOPs) of the backward, summed over the chunks (both sweeps)."""
    full, last = divmod(length, chunk)
    sizes = [chunk] * full + ([last] if last else [])
    mm = sum(2 * (n * n * dv + n * d * n + n * d * dv + d * dv * n)
             + 2 * (n * n * d + n * n * dv + n * d * n + n * d * dv + n * dv * n + n * dv * d + d * dv * n)
             for n in sizes)
    vec = sum(3 * n * n + 3 * n * d + 2 * n * dv + 2 * d * dv for n in sizes)
    return batch * heads * mm, batch * heads * vec


def linear_attention_chunked_backward(q, k, v, do, *, decay=None, chunk: "int | None" = None,
                                      dtype: str = "fp16"):
    """(dq, dk, dv) of causal linear attention given dL/do (batch, H, N, dv); see the module docstring.
    Arguments as :func:`.linear_chunked.linear_attention_chunked`."""
    call = prepare_linear(q, k, v, decay, dtype=dtype, kernel=KERNEL)
    DO = operand(do, "do", ndim=4, dtype=call.dtype, allowed=(call.dtype,))
    if DO.execute != call.execute:
        raise ShapeError(f"{KERNEL}: do is {'an array' if DO.execute else 'a MetaTensor'} but q is not; use one mode")
    if DO.shape != call.v.shape:
        raise ShapeError(f"{KERNEL}: do is {DO.shape} but o is {call.v.shape}; do must have o's shape")
    c, sram, regs = resolve_chunk(call, chunk, lambda cc: bwd_tiles(cc, call.dk, call.dv, call.dtype), KERNEL)
    prof = current_profile()
    for op in (call.q, call.k, call.v, DO):
        prof.hbm.track(op.obj, op.name, call.dtype)
    x = call.execute
    shp = (call.batch, call.heads, call.length)
    dq = prof.hbm.new_tensor("dq", shp + (call.dk,), call.dtype, x)
    dk = prof.hbm.new_tensor("dk", shp + (call.dk,), call.dtype, x)
    dv = prof.hbm.new_tensor("dv", shp + (call.dv,), call.dtype, x)
    ids, rc, rl = per_head_ids(call)
    counters = new_counters(len(ids), n_operands=4)
    flat = lambda a, w: a.reshape(-1, w) if x else DUMMY2                         # noqa: E731
    with blas_single_thread():
        _body(call.flat("q"), call.flat("k"), call.flat("v"), flat(DO.data, call.dv) if x else DUMMY2,
              flat(dq, call.dk), flat(dk, call.dk), flat(dv, call.dv), call.decay, call.batch, call.heads,
              call.length, call.dk, call.dv, c, x, ids, counters, call.elem_bits)
    prof.record(KERNEL, (call.batch, call.heads), launch_counters(counters, x, rc, rl), dtype=call.dtype,
                sram_per_block=sram, regs_per_block=regs, notes=clamp_note("chunk", chunk, c, "N"))
    return dq, dk, dv
