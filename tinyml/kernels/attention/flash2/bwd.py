"""FlashAttention-2 backward (Dao 2023, arXiv 2307.08691, Algorithm 2), as four kernels.

Nothing of size N x N was saved: the backward recomputes P from Q, K and the
saved log-sum-exp (P = exp(S - lse), no running max needed), and regenerates
the dropout mask from the seed. Each thread block owns one K/V column block j
of one (batch, head) (sequence parallelism over the keys), so dK_j and dV_j
accumulate on chip; dQ_i gets a contribution from every column block, which
real FA2 adds with fp32 atomicAdd into an HBM buffer.

Kernels and tile loops::

    flash2_bwd_preprocess   grid (B, H, ceil(Nq / B_r))
        D_i = rowsum(dO_i * O_i)                # read dO, O; write D (fp32)
        dq_accum_i = 0                          # write the fp32 accumulator (FA2 clears it here)

    flash2_bwd              grid (B, H, ceil(Nk / B_c)), the column block fastest
        for each block (b, h, j):
            if no query sees block j: dK_j = dV_j = 0; store; done
            K_j, V_j = load K, V[b, h // group, j*B_c : +B_c]    # (B_c, d)
            dK = dV = zeros(B_c, d) fp32
            for i over the q blocks that see block j (fully masked tiles skipped):
                Q_i, dO_i = load (B_r, d);  lse_i, D_i = load (B_r,) fp32
                S = scale * Q_i K_j^T, masked;  P = exp(S - lse_i)       # (B_r, B_c)
                P_d = dropout(P) (mask regenerated from the seed)
                dV += P_d^T dO_i                                         # (B_c, d)
                dP = dropout(dO_i V_j^T)                                 # (B_r, B_c)
                dS = P * (dP - D_i)
                dK += dS^T Q_i                                           # (B_c, d)
                dq_accum_i += dS K_j             # fp32 atomicAdd: read + write the (B_r, d) tile
            store dK_j = scale * dK, dV_j = dV   # per query head (B, H, Nk, d)

    flash2_bwd_dq_convert   grid (B, H, ceil(Nq / B_r))
        dQ_i = scale * dq_accum_i               # read fp32, write the logical dtype

    flash2_bwd_gqa_sum      grid (B, KVH, ceil(Nk / B_c)), only when group = H / KVH > 1
        dK[b, g], dV[b, g] = sum over the group's query heads    # read 2 B H Nk d s, write 2 B KVH Nk d s
                                                # (tinyml.kernels.attention.gqa_reduce, shared with FA1)

HBM traffic (``s`` bytes per element of the logical dtype, before L2 reuse),
without causal / window masks (every tile computed, Tk = ceil(Nk / B_c))::

    preprocess  reads 2 B H Nq d s                 writes 4 B H Nq + 4 B H Nq d
    main        reads 2 B H Nk d s                 (K_j, V_j once per block)
                    + Tk B H Nq (2 d s + 8 + 4 d)  (Q_i, dO_i, lse_i, D_i, dq_accum_i per tile)
                    (+ B H Nk with a key padding mask: 1 byte a key)
                writes 2 B H Nk d s + Tk B H Nq 4 d
    dq_convert  reads 4 B H Nq d                   writes B H Nq d s
    gqa_sum     reads 2 B H Nk d s                 writes 2 B KVH Nk d s

With causal / window masks the per-tile terms run over the computed tiles only
(as in the forward: causal halves them), and K_j, V_j (and the mask) are read
only by blocks j that some query sees. FLOPs: ``10 d`` per score of a computed
tile on tensor cores (five products); vector FLOPs per computed score from
:func:`bwd_per_score`, plus ``d`` per tile
row (the dQ add) and ``d`` per K/V row (scaling dK).

L2: blocks of one wave with the same (batch, head) read the same Q, dO, lse, D
(the first, j = 0, reads the most under a causal mask); query heads of one
GQA group read the same K_j, V_j.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ....sim.jit import PARALLEL, njit
from ....sim import FLOAT_DTYPES, ShapeError, current_profile
from ....sim.counters import new_counters
from ....sim.tiles import (count_load_direct, count_mma, count_store_direct, count_vector, load_tile,
                           store_tile)
from ..._classes import add_scaled, blocks_to_walk, launch_counters, rep_count, rep_tile
from ..._contract import blas_single_thread, ceil_div, operand, same_mode
from ..._counting import extent, stand_in
from ..._mma import mma_acc, mma_acc_bt, sgemm
from .._common import check_saved
from ..flops import DROPOUT, EXP, MASK, SCALE, SOFTMAX_BWD, attention_issue
from ..gqa_reduce import gqa_reduce
from ..masks import visible
from ..rng import keep
from .block_sizes import resolve_blocks
from .fwd import Flash2Saved
from .grid import kv_block_classes, tile_grid

KERNEL = "flash2_bwd"
# operands of the main kernel
OP_Q, OP_DO, OP_LSE, OP_D, OP_DQACC, OP_K, OP_V, OP_MASK = range(8)


def bwd_per_score(masked: bool, dropout: bool) -> int:
    """Backward vector FLOPs per computed score: recompute s (SCALE, MASK), P = exp(s - lse) (EXP),
    regenerate the dropout mask and apply it to P and to dP (DROPOUT + 1), dS (SOFTMAX_BWD)."""
    return SCALE + (MASK if masked else 0) + EXP + ((DROPOUT + 1) if dropout else 0) + SOFTMAX_BWD


@njit(parallel=PARALLEL, cache=True)
def _pre_body(o, do, dd, dq_acc, BH, NQ, D, BR, execute, ids, counters, elem_bits):
    # o, do, dq_acc: (BH*NQ, D); dd: (BH, NQ); walks the blocks ids (all, or one per class when
    # counting: a (batch, head)'s last q block is partial when B_r does not divide Nq)
    nqb = (NQ + BR - 1) // BR
    for row in prange(len(ids)):
        blk = ids[row]
        bh = blk // nqb
        r0 = (blk % nqb) * BR
        rows = min(BR, NQ - r0)
        count_load_direct(rows * D, counters, row, 0, elem_bits)     # dO_i
        count_load_direct(rows * D, counters, row, 1, elem_bits)     # O_i
        count_vector(2 * rows * D, counters, row)
        count_store_direct(rows, counters, row, 32)                  # D_i
        count_store_direct(rows * D, counters, row, 32)              # dq_accum_i = 0
        if execute:
            for r in range(rows):
                acc = 0.0
                for c in range(D):
                    acc += do[bh * NQ + r0 + r, c] * o[bh * NQ + r0 + r, c]
                    dq_acc[bh * NQ + r0 + r, c] = 0.0
                dd[bh, r0 + r] = acc


@njit(parallel=PARALLEL, cache=True)
def _body(q, k, v, do, lse, dd, key_valid, dq_acc, dk, dv, B, H, KVH, NQ, NK, D, BR, BC, i_lo, i_hi,
          causal, wl, wr, has_mask, scale, dropout_p, seed, per_score, execute, n_bh, jbs, counters, elem_bits, gemm):
    # q, do, dq_acc: (B*H*NQ, D); k, v: (B*KVH*NK, D); dk, dv: (B*H*NK, D); lse, dd: (B*H, NQ)
    # walks (batch, head) 0 .. n_bh - 1 and their column blocks jbs (all of them, or one per class when
    # counting), block (bh, jbs[jn]) counting into row bh * len(jbs) + jn; counting visits one q tile of
    # each kind with its multiplicity (tinyml.kernels._classes)
    group = H // KVH
    offset = NK - NQ
    keep_scale = 1.0 / (1.0 - dropout_p)
    scale32 = np.float32(scale)               # the softmax scale in float32, as in the forward
    # One (batch, head) per parallel iteration, its column blocks in order: the dq_accum adds of
    # different column blocks never race (the GPU uses atomics instead).
    for bh in prange(n_bh):
        b = bh // H
        h = bh % H
        kv0 = (b * KVH + h // group) * NK
        br_, bc_, d_ = extent(BR, execute), extent(BC, execute), extent(D, execute)
        k_s = np.zeros((bc_, d_), dtype=np.float32)      # (BC, D) SRAM
        v_s = np.zeros((bc_, d_), dtype=np.float32)      # (BC, D)
        q_s = np.zeros((br_, d_), dtype=np.float32)      # (BR, D)
        do_s = np.zeros((br_, d_), dtype=np.float32)     # (BR, D)
        lse_s = np.zeros((1, BR), dtype=np.float32)      # (1, BR)
        d_s = np.zeros((1, BR), dtype=np.float32)        # (1, BR)
        s_t = np.zeros((br_, bc_), dtype=np.float32)     # (BR, BC) S, then dP
        p_t = np.zeros((br_, bc_), dtype=np.float32)     # (BR, BC) P
        pdt = np.zeros((bc_, br_), dtype=np.float32)     # (BC, BR) dropout(P)^T
        kp_t = np.zeros((br_, bc_), dtype=np.float32)    # (BR, BC) dropout multiplier (0 or 1/(1-p))
        ds_t = np.zeros((br_, bc_), dtype=np.float32)    # (BR, BC) dS
        dst = np.zeros((bc_, br_), dtype=np.float32)     # (BC, BR) dS^T
        dq_t = np.zeros((br_, d_), dtype=np.float32)     # (BR, D) this tile's dQ contribution
        dk_acc = np.zeros((bc_, d_), dtype=np.float32)   # (BC, D) fp32
        dv_acc = np.zeros((bc_, d_), dtype=np.float32)   # (BC, D) fp32
        step = np.zeros((1, counters.shape[1]), np.int64)  # counts of one q tile
        for jn in range(len(jbs)):
            jb = jbs[jn]
            blk = bh * len(jbs) + jn                     # the counters row
            c0 = jb * BC
            cols = min(BC, NK - c0)
            if execute:
                dk_acc[:] = 0.0
                dv_acc[:] = 0.0
            if i_hi[jb] > i_lo[jb]:
                if execute and cols < BC:         # the last, partial tile: zero padding
                    k_s[:] = 0.0
                    v_s[:] = 0.0
                load_tile(k, kv0 + c0, 0, cols, D, k_s, execute, counters, blk, OP_K, elem_bits)
                load_tile(v, kv0 + c0, 0, cols, D, v_s, execute, counters, blk, OP_V, elem_bits)
                if has_mask:
                    count_load_direct(cols, counters, blk, OP_MASK, 8)      # key_valid[b, c0:c0+cols]
                for ir in range(rep_count(i_lo[jb], i_hi[jb], execute)):
                    ib, mult = rep_tile(ir, i_lo[jb], i_hi[jb], execute)
                    step[:] = 0
                    r0 = ib * BR
                    rows = min(BR, NQ - r0)
                    if execute and rows < BR:
                        q_s[:] = 0.0
                        do_s[:] = 0.0
                    load_tile(q, bh * NQ + r0, 0, rows, D, q_s, execute, step, 0, OP_Q, elem_bits)
                    load_tile(do, bh * NQ + r0, 0, rows, D, do_s, execute, step, 0, OP_DO, elem_bits)
                    load_tile(lse, bh, r0, 1, rows, lse_s, execute, step, 0, OP_LSE, 32)
                    load_tile(dd, bh, r0, 1, rows, d_s, execute, step, 0, OP_D, 32)
                    count_mma(rows, cols, D, step, 0, elem_bits)      # S = Q_i K_j^T
                    count_mma(cols, D, rows, step, 0, elem_bits)      # dV += P_d^T dO_i
                    count_mma(rows, cols, D, step, 0, elem_bits)      # dP = dO_i V_j^T
                    count_mma(cols, D, rows, step, 0, elem_bits)      # dK += dS^T Q_i
                    count_mma(rows, D, cols, step, 0, elem_bits)      # dQ_i = dS K_j
                    count_vector(rows * cols * per_score, step, 0)
                    count_load_direct(rows * D, step, 0, OP_DQACC, 32)   # atomicAdd: read,
                    count_vector(rows * D, step, 0)                       # add,
                    count_store_direct(rows * D, step, 0, 32)             # write
                    add_scaled(counters, blk, step, mult)
                    if not execute:
                        continue
                    s_t[:] = 0.0
                    mma_acc_bt(q_s, k_s, s_t, gemm)                  # (BR, D) @ (BC, D)^T, as the forward
                    for r in range(BR):
                        i = r0 + r
                        row_lse = lse_s[0, r] if r < rows else -np.inf
                        for c in range(BC):
                            j = c0 + c
                            pe = 0.0
                            if row_lse > -np.inf and c < cols and visible(i, j, offset, causal, wl, wr) \
                                    and key_valid[b, j]:
                                s_t[r, c] = s_t[r, c] * scale32
                                pe = np.exp(s_t[r, c] - row_lse)
                            p_t[r, c] = pe
                            if dropout_p > 0.0 and pe != 0.0:
                                kp_t[r, c] = keep_scale if keep(seed, b, h, i, j, dropout_p) else 0.0
                                pe = pe * kp_t[r, c]
                            pdt[c, r] = pe
                    mma_acc(pdt, do_s, dv_acc, gemm)                 # (BC, BR) @ (BR, D)
                    s_t[:] = 0.0
                    mma_acc_bt(do_s, v_s, s_t, gemm)                 # dP: (BR, D) @ (BC, D)^T
                    for r in range(BR):
                        for c in range(BC):
                            pe = p_t[r, c]
                            g = 0.0
                            if pe != 0.0:
                                dp = s_t[r, c]
                                if dropout_p > 0.0:
                                    dp = dp * kp_t[r, c]
                                g = pe * (dp - d_s[0, r])
                            ds_t[r, c] = g
                            dst[c, r] = g
                    mma_acc(dst, q_s, dk_acc, gemm)                  # (BC, BR) @ (BR, D)
                    dq_t[:] = 0.0
                    mma_acc(ds_t, k_s, dq_t, gemm)                   # (BR, BC) @ (BC, D)
                    for r in range(rows):
                        for x in range(D):
                            dq_acc[bh * NQ + r0 + r, x] += dq_t[r, x]
                count_vector(cols * D, counters, blk)                # dK *= scale
                if execute:
                    for c in range(cols):
                        for x in range(D):
                            dk_acc[c, x] *= scale
            store_tile(dk_acc, cols, D, dk, bh * NK + c0, 0, execute, counters, blk, elem_bits)
            store_tile(dv_acc, cols, D, dv, bh * NK + c0, 0, execute, counters, blk, elem_bits)


@njit(parallel=PARALLEL, cache=True)
def _convert_body(dq_acc, dq, BH, NQ, D, BR, scale, execute, ids, counters, elem_bits):
    # dq_acc (fp32), dq (logical dtype): (BH*NQ, D); walks the blocks ids, as _pre_body
    nqb = (NQ + BR - 1) // BR
    for row in prange(len(ids)):
        blk = ids[row]
        row0 = (blk // nqb) * NQ + (blk % nqb) * BR
        rows = min(BR, NQ - (blk % nqb) * BR)
        count_load_direct(rows * D, counters, row, 0, 32)
        count_vector(rows * D, counters, row)
        count_store_direct(rows * D, counters, row, elem_bits)
        if execute:
            for r in range(row0, row0 + rows):
                for x in range(D):
                    dq[r, x] = scale * dq_acc[r, x]


def _dout(dout, saved: Flash2Saved):
    call = saved.call
    dO = operand(dout, "dout", ndim=4, dtype=call.dtype, allowed=FLOAT_DTYPES, check_finite=saved.check_finite)
    same_mode(dO, call.q)                   # arrays after an executed forward, meta after a counted one
    if dO.shape != call.q.shape:
        raise ShapeError(f"{KERNEL}: dout must have q's shape {call.q.shape} (= O's), got {dO.shape}")
    return dO


def flash_attention_v2_backward(dout, saved: Flash2Saved):
    """FlashAttention-2 backward: (dq, dk, dv) from dO and the forward's ``saved``.

    ``dout``: (B, H, Nq, d) like O (an array when the forward executed, a
    ``meta`` tensor when it counted). dk, dv are shaped like k, v (summed over
    each GQA group). Records ``flash2_bwd_preprocess``, ``flash2_bwd``,
    ``flash2_bwd_dq_convert`` and, with GQA, ``flash2_bwd_gqa_sum``. See the
    module docstring for the tile loop and the HBM bytes.
    """
    check_saved(saved, (Flash2Saved,), "flash_attention_v2_backward", "flash_attention_v2")
    call = saved.call
    dO = _dout(dout, saved)
    prof = current_profile()
    B, H, KVH, NQ, NK, D = call.batch, call.heads, call.kv_heads, call.seq_q, call.seq_k, call.head_dim
    G = call.group
    dt, x, bits = call.dtype, call.execute, call.elem_bits
    blocks, sram, regs = resolve_blocks(prof.device, "bwd", NQ, NK, D, dt, KERNEL, saved.block_q, saved.block_k)
    BR, BC = blocks.block_q, blocks.block_k
    for op in (call.q, call.k, call.v, dO):
        prof.hbm.track(op.obj, op.name, dt)
    prof.hbm.track(saved.o, "o", dt)
    prof.hbm.track(saved.lse, "lse", "fp32")
    has_mask = call.key_padding_obj is not None
    if has_mask:
        prof.hbm.track(call.key_padding_obj, "key_padding_mask", "int8")

    def flat(a, rows):
        return a.reshape(rows, -1) if x else stand_in(2)

    gemm = sgemm()
    nqb, nkb = ceil_div(NQ, BR), ceil_div(NK, BC)
    # 1. D = rowsum(dO * O); dq_accum = 0
    d_stat = prof.hbm.new_tensor("D", (B, H, NQ), "fp32", x)                       # (B, H, Nq)
    dq_acc = prof.hbm.new_tensor("dq_accum", (B, H, NQ, D), "fp32", x)             # (B, H, Nq, d)
    q_ids, *q_classes = blocks_to_walk(B * H, nqb, x)        # counting: a full and the last q block
    counters = new_counters(len(q_ids), n_operands=2)
    _pre_body(flat(saved.o, B * H * NQ), flat(dO.data, B * H * NQ), flat(d_stat, B * H),
              flat(dq_acc, B * H * NQ), B * H, NQ, D, BR, x, q_ids, counters, bits)
    prof.record("flash2_bwd_preprocess", (B, H, nqb), launch_counters(counters, x, *q_classes), dtype=dt,
                sram_per_block=0)

    # 2. the main kernel: one block per (b, h, K/V column block)
    dk_h = prof.hbm.new_tensor("dk" if G == 1 else "dk_per_head", (B, H, NK, D), dt, x)   # (B, H, Nk, d)
    dv_h = prof.hbm.new_tensor("dv" if G == 1 else "dv_per_head", (B, H, NK, D), dt, x)
    _, _, i_lo, i_hi = tile_grid(call, blocks)
    jbs, classes = kv_block_classes(x, B * H, nkb, NK, BC, i_lo, i_hi)
    counters = new_counters((B * H if x else 1) * len(jbs), n_operands=8)
    wl, wr = call.window
    with blas_single_thread():
        _body(flat(call.q.data, B * H * NQ), flat(call.k.data, B * KVH * NK), flat(call.v.data, B * KVH * NK),
              flat(dO.data, B * H * NQ), flat(saved.lse, B * H), flat(d_stat, B * H), call.key_valid_array(),
              flat(dq_acc, B * H * NQ), flat(dk_h, B * H * NK), flat(dv_h, B * H * NK),
              B, H, KVH, NQ, NK, D, BR, BC, i_lo, i_hi, call.causal, wl, wr, has_mask, call.scale,
              call.dropout_p, call.seed, bwd_per_score(call.masked, call.dropout_p > 0), x, B * H if x else 1, jbs,
              counters, bits, gemm)
    blk = np.arange(B * H * nkb)
    bh, jb = np.divmod(blk, nkb)
    b, h = np.divmod(bh, H)
    kv_panel = (b * KVH + h // G) * nkb + jb
    panels = {OP_Q: bh, OP_DO: bh, OP_LSE: bh, OP_D: bh, OP_K: kv_panel, OP_V: kv_panel, OP_MASK: b}
    prof.record(KERNEL, (B, H, nkb), launch_counters(counters, x, *classes), dtype=dt, sram_per_block=sram, panels=panels,
                regs_per_block=regs, pipelined=True, issue=attention_issue(D, backward=True, dropout=call.dropout_p > 0),
                notes=blocks.notes(saved.block_q, saved.block_k))
    del d_stat                              # freed: D is dead after the main kernel

    # 3. dq = scale * dq_accum, in the logical dtype
    dq = prof.hbm.new_tensor("dq", (B, H, NQ, D), dt, x)                          # (B, H, Nq, d)
    counters = new_counters(len(q_ids), n_operands=1)
    _convert_body(flat(dq_acc, B * H * NQ), flat(dq, B * H * NQ), B * H, NQ, D, BR, call.scale, x, q_ids, counters,
                  bits)
    prof.record("flash2_bwd_dq_convert", (B, H, nqb), launch_counters(counters, x, *q_classes), dtype=dt,
                sram_per_block=0)
    del dq_acc

    # 4. GQA: sum each group's per-head dk, dv
    if G == 1:
        return dq, dk_h, dv_h
    dk = prof.hbm.new_tensor("dk", (B, KVH, NK, D), dt, x)                        # (B, KVH, Nk, d)
    dv = prof.hbm.new_tensor("dv", (B, KVH, NK, D), dt, x)
    gqa_reduce("flash2_bwd_gqa_sum", (B, KVH, nkb), dk_h, dv_h, dk, dv, batch=B, kv_heads=KVH, group=G, seq_k=NK,
               head_dim=D, rows=BC, execute=x, dtype=dt, elem_bits=bits)
    return dq, dk, dv
