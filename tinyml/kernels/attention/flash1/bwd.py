"""FlashAttention-1 backward: the Numba body of Algorithm 4 (Dao et al. 2022, Appendix B).

One thread block per (batch, query head, split): Algorithm 4's grid is one block per
(batch, head) (``S = 1``); the shipped CUDA kernel splits the K/V blocks over ``S`` blocks when
batch x heads is small, all of them adding into the fp32 dQ in HBM. Per block::

    dQ = 0 (fp32 accumulator), dK = 0, dV = 0     # written to HBM (line 5)
    for j in my K/V blocks (j = split mod S):     # outer loop
        load K_j, V_j (B_c, d); dK~ = dV~ = 0      # fp32, on chip
        for i in the Q blocks that see a key of K_j (all: Algorithm 4; causal skipping): # inner loop
            load Q_i, O_i, dO_i (B_r, d), dQ_i (B_r, d) fp32, l_i, m_i (B_r)
            S = MASK(scale * Q_i K_j^T); P = exp(S - m_i) / l_i       # recomputed
            Z = dropout mask from the seed (regenerated, never stored)
            dV~ += (P o Z)^T dO_i
            dP = (dO_i V_j^T) o Z; D_i = rowsum(dO_i o O_i)
            dS = P o (dP - D_i)
            dQ_i += scale * dS K_j  -> HBM          # every inner step (the last one
                                                    #  writes dq in the logical dtype)
            dK~ += scale * dS^T Q_i
        write dK_j = dK~, dV_j = dV~               # per query head

With GQA (group > 1) dK, dV are per query head, (B, H, N_k, d), and a small
second kernel sums each group into the kv head's (B, KVH, N_k, d)
(:mod:`~tinyml.kernels.attention.gqa_reduce`, shared with FA2).
The exact byte formula is in :mod:`tinyml.kernels.attention.flash1` (package docstring).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ....sim.jit import PARALLEL, njit
from ....sim import FLOAT_DTYPES, DTypeError, Reuse, ShapeError, current_profile, nbytes
from ....sim.counters import new_counters
from ....sim.tiles import count_load_direct, count_mma, count_store_direct, count_vector, load_tile, store_tile
from ..._classes import add_scaled, rep_count, rep_tile
from ..._contract import blas_single_thread, ceil_div, operand
from ..._counting import extent
from ..._mma import mma_acc, sgemm
from .._common import check_saved
from ..flops import DROPOUT, EXP, MASK, NORMALIZE, SCALE, SOFTMAX_BWD, attention_issue
from ..gqa_reduce import gqa_reduce
from ..rng import keep
from .block_sizes import clamp_notes, resolve_blocks
from .fwd import NEG_INF, WARPS, Flash1Saved, _flat, _scores, _track_inputs, count_split_k
from .grid import kv_panels, launch_counters, splits, tile_ranges

# operand columns of the backward's counters
OP_Q, OP_K, OP_V, OP_O, OP_DO, OP_DQ, OP_L, OP_M, OP_MASK = range(9)
N_OPERANDS = 9

#: D_i = rowsum(dO_i o O_i): a multiply and an add per element of O_i, every inner step
D_ROWSUM = 2
#: rows of (N_k, d) one block of the GQA reduction kernel sums
REDUCE_ROWS = 64


def backward_per_score(masked: bool, dropout: bool) -> int:
    """Vector FLOPs per recomputed score: S, P = exp(S - m) / l, Z (twice), dS, scale * dS."""
    return SCALE + (MASK if masked else 0) + EXP + NORMALIZE + ((DROPOUT + 1) if dropout else 0) \
        + SOFTMAX_BWD + 1


@njit(cache=True)
def _bwd_step(q_s, k_s, kT_s, vT_s, o_s, do_s, dq_s, dk_t, dv_t, l_s, m_s, s64, ds_t, z_t, dp, pdT, dsT, d_row,
              rows, cols, r0, c0, b, h, kvalid, scale, causal, offset, wl, wr, p_drop, seed, gemm):
    """One inner step of Algorithm 4 on the tiles in SRAM (executing mode only)."""
    _scores(q_s, kT_s, s64, rows, cols, r0, c0, b, kvalid, scale, causal, offset, wl, wr)
    br, bc = ds_t.shape
    inv_keep = 1.0 / (1.0 - p_drop)
    for r in range(br):
        live = r < rows and m_s[0, r] != NEG_INF          # a fully masked row has P = 0
        for c in range(bc):
            p = 0.0
            z = 0.0
            if live and c < cols:
                p = math.exp(s64[r, c] - m_s[0, r]) / l_s[0, r]          # P = diag(l)^-1 exp(S - m)
                z = 1.0
                if p_drop > 0.0:
                    z = inv_keep if keep(seed, b, h, r0 + r, c0 + c, p_drop) else 0.0
            s64[r, c] = p                                 # S becomes P in place
            z_t[r, c] = z
            pdT[c, r] = p * z                             # (P o Z)^T
    mma_acc(pdT, do_s, dv_t, gemm)                        # dV~ += (B_c, B_r) @ (B_r, d)
    dp[:, :] = 0.0
    mma_acc(do_s, vT_s, dp, gemm)                         # dP = (B_r, d) @ (d, B_c)
    for r in range(rows):
        dsum = 0.0
        for x in range(do_s.shape[1]):
            dsum += do_s[r, x] * o_s[r, x]
        d_row[r] = dsum                                   # D_i = rowsum(dO_i o O_i)
    for r in range(br):
        for c in range(bc):
            ds = 0.0
            if r < rows and c < cols:
                ds = scale * s64[r, c] * (dp[r, c] * z_t[r, c] - d_row[r])
            ds_t[r, c] = ds                               # scale * dS, the MMA operand
            dsT[c, r] = ds
    mma_acc(ds_t, k_s, dq_s, gemm)                        # dQ_i += (B_r, B_c) @ (B_c, d)
    mma_acc(dsT, q_s, dk_t, gemm)                         # dK~ += (B_c, B_r) @ (B_r, d)


@njit(parallel=PARALLEL, cache=True)
def bwd_body(q, k, v, o, do, l, m, kvalid, dq_acc, dq, dkh, dvh, H, G, KVH, NQ, NK, D, BR, BC, S, i_lo, i_hi,
             i_last_lo, i_last_hi, scale, causal, offset, wl, wr, has_mask, p_drop, seed, per_score, execute, bhs,
             counters, eb, gemm):
    """Algorithm 4 over (batch * heads * S) blocks; q, o, do, dq_acc, dq: (B*H, N_q, d); k, v:
    (B*KVH, N_k, d); dkh, dvh: (B*H, N_k, d) per query head; l, m: (B*H, N_q) fp32.

    Block ``bh * S + split`` owns the K/V blocks ``j = split mod S`` (the CUDA kernel's ``num_splits``;
    dQ is accumulated in HBM by every split); for K/V block j it visits the Q blocks
    ``[i_lo[j], i_hi[j])``, of which ``[i_last_lo[j], i_last_hi[j])`` see no later K/V block and write
    dq itself (the logical dtype) instead of the fp32 accumulator. The CPU walks the splits of one
    (batch, head) in j order, so the accumulation into dQ is race-free; split ``j mod S`` counts into
    row ``r * S + j mod S`` of (batch, head) ``bhs[r]`` (counting: the first (batch, head) alone)."""
    ex = 1 if execute else 0                                # counting mode: block 0's stand-in
    t_c = (NK + BC - 1) // BC
    t_r = (NQ + BR - 1) // BR
    br, bc, d = extent(BR, execute), extent(BC, execute), extent(D, execute)
    for rb in prange(len(bhs)):
        blk = bhs[rb]
        b = blk // H
        h = blk % H
        kv = b * KVH + h // G
        qb, ob, dob, dqab, dqb = q[blk * ex], o[blk * ex], do[blk * ex], dq_acc[blk * ex], dq[blk * ex]
        kb, vb, dkb, dvb = k[kv * ex], v[kv * ex], dkh[blk * ex], dvh[blk * ex]
        k_s = np.zeros((bc, d), np.float32)                # (B_c, d) K_j
        v_s = np.zeros((bc, d), np.float32)                # (B_c, d) V_j
        kT_s = np.zeros((d, bc), np.float32)               # (d, B_c) layouts of K_j, V_j for the MMAs
        vT_s = np.zeros((d, bc), np.float32)
        dk_t = np.zeros((bc, d), np.float32)               # (B_c, d) dK~_j fp32
        dv_t = np.zeros((bc, d), np.float32)               # (B_c, d) dV~_j fp32
        q_s = np.zeros((br, d), np.float32)                # (B_r, d) Q_i
        o_s = np.zeros((br, d), np.float32)                # (B_r, d) O_i
        do_s = np.zeros((br, d), np.float32)               # (B_r, d) dO_i
        dq_s = np.zeros((br, d), np.float32)               # (B_r, d) dQ_i fp32
        s64 = np.zeros((br, bc))                           # (B_r, B_c) S -> P (registers)
        ds_t = np.zeros((br, bc), np.float32)              # (B_r, B_c) dS (P's SRAM buffer)
        z_t = np.zeros((br, bc), np.float32)               # (B_r, B_c) dropout mask Z (registers)
        dp = np.zeros((br, bc), np.float32)                # (B_r, B_c) dP (registers)
        pdT = np.zeros((bc, br), np.float32)               # (B_c, B_r) (P o Z)^T layout
        dsT = np.zeros((bc, br), np.float32)               # (B_c, B_r) dS^T layout
        l_s = np.zeros((1, br), np.float32)                # (1, B_r) l_i
        m_s = np.zeros((1, br), np.float32)                # (1, B_r) m_i
        d_row = np.zeros(br)                               # (B_r,) D_i
        step_i = np.zeros((1, counters.shape[1]), np.int64)   # counts of one inner step
        # line 5: dQ = 0 (fp32), by split 0; Q blocks no K/V block reaches get dq = 0 (the logical dtype)
        row0 = rb * S
        count_store_direct(NQ * D, counters, row0, 32)
        if execute:
            dqab[:, :] = 0.0
        for i in range(t_r):
            unseen = True
            for j in range(t_c):
                if i_lo[j] <= i < i_hi[j]:
                    unseen = False
                    break
            if unseen:
                rows = min(BR, NQ - i * BR)
                count_store_direct(rows * D, counters, row0, eb)
                if execute:
                    dqb[i * BR:i * BR + rows, :] = 0.0
        for j in range(t_c):
            row = rb * S + j % S
            c0 = j * BC
            cols = min(BC, NK - c0)
            count_store_direct(2 * cols * D, counters, row, eb)         # line 5: dK_j = 0, dV_j = 0
            load_tile(kb, c0, 0, cols, D, k_s, execute, counters, row, OP_K, eb)
            load_tile(vb, c0, 0, cols, D, v_s, execute, counters, row, OP_V, eb)
            if has_mask:
                count_load_direct(cols, counters, row, OP_MASK, 8)      # 1 byte per key
            if execute:
                for c in range(cols):
                    for x in range(D):
                        kT_s[x, c] = k_s[c, x]
                        vT_s[x, c] = v_s[c, x]
                dk_t[:, :] = 0.0
                dv_t[:, :] = 0.0
            for part in range(3):                          # Q blocks before, writing dq at, and after the last pass
                lo = i_lo[j] if part == 0 else (i_last_lo[j] if part == 1 else i_last_hi[j])
                hi = i_last_lo[j] if part == 0 else (i_last_hi[j] if part == 1 else i_hi[j])
                for ir in range(rep_count(lo, hi, execute)):
                    i, mult_i = rep_tile(ir, lo, hi, execute)
                    step_i[:] = 0
                    r0 = i * BR
                    rows = min(BR, NQ - r0)
                    load_tile(qb, r0, 0, rows, D, q_s, execute, step_i, 0, OP_Q, eb)
                    load_tile(ob, r0, 0, rows, D, o_s, execute, step_i, 0, OP_O, eb)
                    load_tile(dob, r0, 0, rows, D, do_s, execute, step_i, 0, OP_DO, eb)
                    load_tile(dqab, r0, 0, rows, D, dq_s, execute, step_i, 0, OP_DQ, 32)
                    load_tile(l, blk, r0, 1, rows, l_s, execute, step_i, 0, OP_L, 32)
                    load_tile(m, blk, r0, 1, rows, m_s, execute, step_i, 0, OP_M, 32)
                    count_mma(rows, cols, D, step_i, 0, eb)                  # S = Q_i K_j^T
                    count_mma(cols, D, rows, step_i, 0, eb)                  # dV~ += P^T dO_i
                    count_mma(rows, cols, D, step_i, 0, eb)                  # dP = dO_i V_j^T
                    count_mma(rows, D, cols, step_i, 0, eb)                  # dQ_i += dS K_j
                    count_mma(cols, D, rows, step_i, 0, eb)                  # dK~ += dS^T Q_i
                    count_vector(per_score * rows * cols + D_ROWSUM * rows * D, step_i, 0)
                    count_split_k(rows, cols, D, step_i, 0, eb)              # the warps' partial dQ_i, through SRAM
                    if execute:
                        _bwd_step(q_s, k_s, kT_s, vT_s, o_s, do_s, dq_s, dk_t, dv_t, l_s, m_s, s64, ds_t, z_t, dp,
                                  pdT, dsT, d_row, rows, cols, r0, c0, b, h, kvalid, scale, causal, offset,
                                  wl, wr, p_drop, seed, gemm)
                    if part == 1:                          # no later K/V block sees Q_i: dq itself
                        store_tile(dq_s, rows, D, dqb, r0, 0, execute, step_i, 0, eb)
                    else:
                        store_tile(dq_s, rows, D, dqab, r0, 0, execute, step_i, 0, 32)
                    add_scaled(counters, row, step_i, mult_i)
            store_tile(dk_t, cols, D, dkb, c0, 0, execute, counters, row, eb)
            store_tile(dv_t, cols, D, dvb, c0, 0, execute, counters, row, eb)


# ---- the launcher ------------------------------------------------------------------

def flash_attention_v1_backward(dout, saved: Flash1Saved, *, block_q: "int | None" = None,
                                block_k: "int | None" = None):
    """FlashAttention-1 backward (Algorithm 4): returns (dq, dk, dv), dk and dv shaped like k and v.

    Kernels: ``flash1_bwd`` and, with GQA, ``flash1_bwd_dkv_reduce``. Block sizes
    default to the paper's rule shrunk until the backward's tiles fit SRAM.
    """
    check_saved(saved, (Flash1Saved,), "flash_attention_v1_backward", "flash_attention_v1")
    call = saved.call
    DO = operand(dout, "dout", ndim=4, dtype=call.dtype, allowed=FLOAT_DTYPES, check_finite=saved.check_finite)
    if DO.execute != call.execute:
        raise DTypeError("flash_attention_v1_backward: dout is "
                         f"{'an array' if DO.execute else 'a MetaTensor'} but the forward ran in "
                         f"{'executing' if call.execute else 'counting'} mode; use the same kind")
    if DO.shape != call.q.shape:
        raise ShapeError(f"flash_attention_v1_backward: dout is {DO.shape} but the output is {call.q.shape}; "
                         f"dout must have the output's shape")
    if DO.dtype != call.dtype:
        raise DTypeError(f"flash_attention_v1_backward: dout is {DO.dtype} but the forward ran in {call.dtype}")
    b_q, b_k, sram, regs = resolve_blocks(call, block_q, block_k, backward=True,
                                          kernel="flash_attention_v1_backward")
    prof = current_profile()
    _track_inputs(prof, call)
    for name, obj, dt in (("o", saved.o, call.dtype), ("l", saved.l, "fp32"), ("m", saved.m, "fp32"),
                          ("dout", DO.obj, call.dtype)):
        prof.hbm.track(obj, name, dt)
    B, H, KVH, NQ, NK, D = call.batch, call.heads, call.kv_heads, call.seq_q, call.seq_k, call.head_dim
    ex, G = call.execute, call.group
    dq = prof.hbm.new_tensor("dq", (B, H, NQ, D), call.dtype, ex)
    dq_acc = prof.hbm.new_tensor("dq_accum", (B, H, NQ, D), "fp32", ex)
    dk = prof.hbm.new_tensor("dk", (B, KVH, NK, D), call.dtype, ex)
    dv = prof.hbm.new_tensor("dv", (B, KVH, NK, D), call.dtype, ex)
    if G > 1:
        dkh = prof.hbm.new_tensor("dk_per_head", (B, H, NK, D), call.dtype, ex)
        dvh = prof.hbm.new_tensor("dv_per_head", (B, H, NK, D), call.dtype, ex)
    else:
        dkh, dvh = dk, dv
    S = splits(call, saved.num_splits, ceil_div(NK, b_k), sram, regs)
    i_lo, i_hi, i_last_lo, i_last_hi = tile_ranges(call, b_q, b_k, saved.skip_masked)
    bhs = np.arange(B * H if ex else 1, dtype=np.int64)
    counters = new_counters(len(bhs) * S, N_OPERANDS)
    left, right = call.window
    gemm = sgemm()
    with blas_single_thread():
        bwd_body(_flat(call, call.q.data, B * H, NQ, D), _flat(call, call.k.data, B * KVH, NK, D),
                      _flat(call, call.v.data, B * KVH, NK, D), _flat(call, saved.o, B * H, NQ, D),
                      _flat(call, DO.data, B * H, NQ, D), _flat(call, saved.l, B * H, NQ),
                      _flat(call, saved.m, B * H, NQ), call.key_valid_array(), _flat(call, dq_acc, B * H, NQ, D),
                      _flat(call, dq, B * H, NQ, D), _flat(call, dkh, B * H, NK, D), _flat(call, dvh, B * H, NK, D),
                      H, G, KVH, NQ, NK, D, b_q, b_k, S, i_lo, i_hi, i_last_lo, i_last_hi, call.scale,
                      call.causal, call.offset, left, right,
                      call.key_padding_obj is not None, call.dropout_p, call.seed,
                      backward_per_score(call.masked, call.dropout_p > 0), ex, bhs, counters,
                      call.elem_bits, gemm)
    s = nbytes(8, call.dtype) // 8
    reuse = Reuse(reads={OP_Q: NQ * D * s, OP_O: NQ * D * s, OP_DO: NQ * D * s,
                         OP_DQ: 0, OP_L: 4 * NQ, OP_M: 4 * NQ},      # dQ: zeroed first
                  writes=NQ * D * (4 + s) + 2 * NK * D * s)                        # dQ acc, dq, dK_j, dV_j
    prof.record("flash1_bwd", (B, H, S), launch_counters(call, counters, B * H, S), dtype=call.dtype, sram_per_block=sram,
                regs_per_block=regs, panels=kv_panels(call, (OP_K, OP_V), S), reuse=reuse,
                pipelined=True, issue=attention_issue(D, backward=True, split_k=(WARPS, b_k),
                                                     dropout=call.dropout_p > 0),
                notes=clamp_notes(block_q, block_k, b_q, b_k))
    del dq_acc                      # the fp32 accumulator dies with the kernel
    if G > 1:
        gqa_reduce("flash1_bwd_dkv_reduce", (B * KVH, ceil_div(NK, REDUCE_ROWS)), dkh, dvh, dk, dv, batch=B,
                   kv_heads=KVH, group=G, seq_k=NK, head_dim=D, rows=REDUCE_ROWS, execute=ex, dtype=call.dtype,
                   elem_bits=call.elem_bits)
    return dq, dk, dv
