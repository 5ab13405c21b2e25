"""Recurrent linear attention: one token at a time, the (d, dv) state per head in registers.

This is how an RNN (RWKV, a linear transformer at inference) runs a sequence::

    for each block (b, h) in parallel:                 # grid (batch, H)
        S = zeros(d, dv) fp32                          # registers
        for each chunk of T tokens:                    # staged through SRAM
            load q, k (T, d), v (T, dv)
            for t in the chunk:
                S = g S + k_t^T v_t                    # rank-1 update: vector units, 3 d dv FLOPs
                o_t = q_t S                            # 2 d dv FLOPs
            store o (T, dv)

HBM traffic: the chunked form's, ``batch H N (2 d + dv) s`` read and
``batch H N dv s`` written. FLOPs: ``5 batch H N d dv`` vector FLOPs, no
tensor-core work at all: on a GPU whose tensor cores are 16x its vector units
this is the slow way to train (:mod:`.linear_chunked` moves the work to matmuls).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim.sram import REG
from ...sim.tiles import count_vector, load_tile, store_tile
from .._classes import add_scaled, rep_count, rep_tile
from .._contract import clamp_note
from .._counting import extent
from .linear_call import OP_K, OP_Q, OP_V, prepare_linear
from .linear_chunked import per_head_ids, resolve_chunk, run_linear

KERNEL = "linear_recurrent"
PER_TOKEN = 5          # x d dv: decay 1, k^T v multiply-add 2, q S multiply-add 2


def recurrent_tiles(chunk: int, d: int, dv: int, dtype: str) -> dict:
    return {"q, k chunk": ((2, chunk, d), dtype), "v, o chunk": ((2, chunk, dv), dtype),
            "S": ((d, dv), "fp32", REG)}


@njit(parallel=PARALLEL, cache=True)
def _body(q, k, v, o, decay, BT, H, N, D, DV, T, execute, ids, counters, elem_bits):
    nch = (N + T - 1) // T
    for row in prange(len(ids)):
        blk = ids[row]
        g = np.float32(decay[blk % H])
        q_s = np.zeros((extent(T, execute), extent(D, execute)), dtype=np.float32)
        k_s = np.zeros((extent(T, execute), extent(D, execute)), dtype=np.float32)
        v_s = np.zeros((extent(T, execute), extent(DV, execute)), dtype=np.float32)
        o_s = np.zeros((extent(T, execute), extent(DV, execute)), dtype=np.float32)
        S = np.zeros((extent(D, execute), extent(DV, execute)), dtype=np.float32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, nch, execute)):
            c, mult = rep_tile(jr, 0, nch, execute)
            r0 = blk * N + c * T
            nt = min(T, N - c * T)
            step[:] = 0
            load_tile(q, r0, 0, nt, D, q_s, execute, step, 0, OP_Q, elem_bits)
            load_tile(k, r0, 0, nt, D, k_s, execute, step, 0, OP_K, elem_bits)
            load_tile(v, r0, 0, nt, DV, v_s, execute, step, 0, OP_V, elem_bits)
            count_vector(PER_TOKEN * nt * D * DV, step, 0)
            if execute:
                for t in range(nt):
                    for i in range(D):
                        ki = k_s[t, i]
                        for j in range(DV):
                            S[i, j] = g * S[i, j] + ki * v_s[t, j]
                    for j in range(DV):
                        o_s[t, j] = 0.0
                    for i in range(D):
                        qi = q_s[t, i]
                        for j in range(DV):
                            o_s[t, j] += qi * S[i, j]
            store_tile(o_s, nt, DV, o, r0, 0, execute, step, 0, elem_bits)
            add_scaled(counters, row, step, mult)


def linear_attention_recurrent(q, k, v, *, decay=None, chunk: "int | None" = None, dtype: str = "fp16"):
    """Causal linear attention one token at a time (see the module docstring); arguments as
    :func:`.linear_chunked.linear_attention_chunked` (``chunk``: tokens staged through SRAM at once)."""
    call = prepare_linear(q, k, v, decay, dtype=dtype, kernel=KERNEL)
    t, sram, regs = resolve_chunk(call, chunk, lambda c: recurrent_tiles(c, call.dk, call.dv, call.dtype), KERNEL)
    ids, rc, rl = per_head_ids(call)
    return run_linear(call, _body, KERNEL, (call.batch, call.heads), ids, rc, rl, sram, regs, t,
                      notes=clamp_note("chunk", chunk, t, "N"))
