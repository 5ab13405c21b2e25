"""Quadratic ("attention-like") linear attention: FlashAttention's tile loop without the softmax.

``o = ((Q K^T) * M) V`` with ``M[t, s] = g^(t-s)`` for s <= t: the scores need no
running max and no normaliser, so a q block just accumulates ``S_ij V_j`` over
the visible K/V blocks. N^2 work; no state at all.

Tile loop, grid (batch, H, ceil(N / B)) with B_r = B_c = B::

    for each block (b, h, i) in parallel:
        Q_i = load q[b, h, i*B : +B]                          # (B, d)
        O = zeros(B, dv) fp32
        for j = 0 .. i:                                        # causal: the tiles at or below the diagonal
            K_j, V_j = load k, v[b, h, j*B : +B]
            P = (Q_i K_j^T) * M_ij                             # (B, B) tensor cores, 1 vector FLOP a score
            O += P V_j                                         # (B, dv) tensor cores
        store O -> o[b, h, i*B : +B]

HBM traffic (``r_i`` rows of q block i, ``c_j`` of kv block j)::

    reads  = batch H (N d s + (d + dv) s sum_i sum_{j <= i} c_j)
    writes = batch H N dv s
    matmul FLOPs = 2 (d + dv) batch H sum_i r_i sum_{j <= i} c_j;  vector FLOPs = the scores computed
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim.sram import REG
from ...sim.tiles import count_mma, count_vector, load_tile, store_tile
from .._classes import add_scaled, rep_count, rep_tile
from .._contract import ceil_div, clamp_note
from .._counting import extent
from .linear_call import OP_K, OP_Q, OP_V, prepare_linear
from .linear_chunked import add_into, resolve_chunk, run_linear

KERNEL = "linear_quadratic"


def quadratic_tiles(block: int, d: int, dv: int, dtype: str) -> dict:
    return {"Q_i, K_j": ((2, block, d), dtype), "V_j": ((block, dv), dtype),
            "P": ((block, block), "fp32", REG), "O": ((block, dv), "fp32", REG)}


@njit(parallel=PARALLEL, cache=True)
def _body(q, k, v, o, decay, BT, H, N, D, DV, BS, execute, ids, counters, elem_bits):
    nqb = (N + BS - 1) // BS
    for row in prange(len(ids)):
        blk = ids[row]
        head = blk // nqb
        i = blk % nqb
        g = np.float32(decay[head % H])
        base = head * N
        rows = min(BS, N - i * BS)
        q_s = np.zeros((extent(BS, execute), extent(D, execute)), dtype=np.float32)
        k_s = np.zeros((extent(BS, execute), extent(D, execute)), dtype=np.float32)
        v_s = np.zeros((extent(BS, execute), extent(DV, execute)), dtype=np.float32)
        o_s = np.zeros((extent(BS, execute), extent(DV, execute)), dtype=np.float32)
        load_tile(q, base + i * BS, 0, rows, D, q_s, execute, counters, row, OP_Q, elem_bits)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, i + 1, execute)):
            j, mult = rep_tile(jr, 0, i + 1, execute)
            cols = min(BS, N - j * BS)
            step[:] = 0
            load_tile(k, base + j * BS, 0, cols, D, k_s, execute, step, 0, OP_K, elem_bits)
            load_tile(v, base + j * BS, 0, cols, DV, v_s, execute, step, 0, OP_V, elem_bits)
            count_mma(rows, cols, D, step, 0, elem_bits)
            count_vector(rows * cols, step, 0)
            count_mma(rows, DV, cols, step, 0, elem_bits)
            if execute:
                P = np.dot(q_s[:rows], k_s[:cols].T)
                for a in range(rows):
                    for bb in range(cols):
                        dist = (i * BS + a) - (j * BS + bb)
                        P[a, bb] = P[a, bb] * g ** dist if dist >= 0 else 0.0
                add_into(o_s[:rows], np.dot(P, v_s[:cols]), o_s)     # O += P V, in place (linear_chunked.add_into)
            add_scaled(counters, row, step, mult)
        store_tile(o_s, rows, DV, o, base + i * BS, 0, execute, counters, row, elem_bits)


def expected_bytes(batch, heads, length, d, dv, elem_bytes, block):
    """(HBM read bytes, HBM write bytes) of the quadratic form, from the formula above."""
    nqb = ceil_div(length, block)
    kv_rows = sum(min(length, (i + 1) * block) for i in range(nqb))
    return (batch * heads * (length * d + (d + dv) * kv_rows) * elem_bytes,
            batch * heads * length * dv * elem_bytes)


def linear_attention_quadratic(q, k, v, *, decay=None, block: "int | None" = None, dtype: str = "fp16"):
    """Causal linear attention in its quadratic form (see the module docstring); ``block`` = B_r = B_c
    (default: 64, or the largest that fits)."""
    call = prepare_linear(q, k, v, decay, dtype=dtype, kernel=KERNEL)
    bs, sram, regs = resolve_chunk(call, block, lambda c: quadratic_tiles(c, call.dk, call.dv, call.dtype), KERNEL)
    nqb = ceil_div(call.length, bs)
    heads = call.batch * call.heads
    if call.execute:
        ids, rc, rl = np.arange(heads * nqb, dtype=np.int64), None, None
    else:                      # one class per q block; every head repeats them
        ids = np.arange(nqb, dtype=np.int64)
        rc, rl = np.tile(np.arange(nqb), heads), np.ones(heads * nqb, dtype=np.int64)
    return run_linear(call, _body, KERNEL, (call.batch, call.heads, nqb), ids, rc, rl, sram, regs, bs,
                      notes=clamp_note("block", block, bs, "N"))
