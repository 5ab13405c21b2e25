"""FlashAttention-1 forward: the Numba body of Algorithm 1 (Dao et al. 2022).

One thread block per (batch, query head, split): Algorithm 1's grid is one block per
(batch, head) (``S = 1``); the shipped CUDA kernel splits the Q blocks over ``S`` blocks when
batch x heads is small (:func:`~tinyml.kernels.attention.flash1.grid.num_splits`). Per block
(``N_q`` queries, ``N_k`` keys, ``T_r = ceil(N_q / B_r)``, ``T_c = ceil(N_k / B_c)``)::

    O_i = 0, l_i = 0, m_i = -inf for my Q blocks  # written to HBM (line 2)
    for j in 0..T_c-1:                            # K/V blocks (outer loop)
        load K_j, V_j                             # (B_c, d) each, once per split
        for i in my Q blocks (i = split mod S) that see a key of K_j:   # inner loop (all i: Algorithm 1)
            load Q_i, O_i (B_r, d), l_i, m_i (B_r)
            S = scale * Q_i K_j^T ; mask          # (B_r, B_c), fp32 registers
            m~ = rowmax(S); P~ = exp(S - m~); l~ = rowsum(P~)
            m_new = max(m_i, m~); l_new = e^(m_i - m_new) l_i + e^(m~ - m_new) l~
            O_i = (l_i e^(m_i - m_new) O_i + e^(m~ - m_new) dropout(P~) V_j) / l_new
            write O_i, l_i = l_new, m_i = m_new   # back to HBM, every inner step

Warps (split-K, FA2 paper Sec. 3.3): the block's ``WARPS`` warps each hold a slice of K_j and
V_j; each reads all of Q_i from SRAM, computes its slice of S and a partial P V_j (B_r x d, fp32),
and the partials meet in SRAM, summed after a barrier: per inner step ``WARPS - 1`` partials of
B_r x d x 4 bytes written and read, plus the row max and sum exchanged the same way
(:func:`count_split_k`).

The exact byte formula is in :mod:`tinyml.kernels.attention.flash1` (package docstring) and
:func:`~tinyml.kernels.attention.flash1.block_sizes.flash1_expected_bytes`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import prange

from ....sim.jit import PARALLEL, njit
from ....sim import Reuse, current_profile, nbytes
from ....sim.counters import SRAM_READ, SRAM_WRITE, new_counters
from ....sim.tiles import count_load_direct, count_mma, count_store_direct, count_vector, load_tile, store_tile, tile_bytes
from ..._classes import add_scaled, rep_count, rep_tile
from ..._contract import blas_single_thread, ceil_div
from ..._counting import extent, stand_in
from ..._mma import mma_acc, sgemm
from .._common import AttentionCall, prepare_attention
from ..flops import EXP, ROW_MAX, attention_issue, forward_per_score
from ..masks import visible
from ..rng import keep
from .block_sizes import clamp_notes, resolve_blocks
from .grid import block_ids, kv_panels, launch_counters, splits, tile_ranges

# operand columns of the forward's counters (HBM bytes read per input)
OP_Q, OP_K, OP_V, OP_O, OP_L, OP_M, OP_MASK = range(7)
N_OPERANDS = 7

#: warps per block of the FA1 CUDA forward (128 threads)
WARPS = 4

#: vector FLOPs per element of O_i per inner step: two scalings, an add, the division by l_new
RESCALE_O = 4
#: vector FLOPs per row per inner step: m_new (max), two exponentials, l_new (2 mul + 1 add)
ROW_UPDATE = ROW_MAX + 2 * EXP + 3

NEG_INF = -np.inf


def fwd_per_score(masked: bool, dropout: bool) -> int:
    """Vector FLOPs per score: scale, mask, rowmax, exp, rowsum, dropout (P~ is never normalised:
    O_i is, ``RESCALE_O`` per element)."""
    return forward_per_score(masked, dropout, normalize=False)


@njit(cache=True)
def count_split_k(rows, cols, d, counters, blk, eb):
    """SRAM traffic of FA1's split-K warps for one (rows x cols) tile: Q_i read by every warp (the MMA
    count read it once), and the partial (rows x d) fp32 outputs and row max and sum (2 x rows fp32)
    of all warps but one written to SRAM and read back to be summed."""
    counters[blk, SRAM_READ] += tile_bytes((WARPS - 1) * rows * d, eb) + (WARPS - 1) * (rows * d + 2 * rows) * 4
    counters[blk, SRAM_WRITE] += (WARPS - 1) * (rows * d + 2 * rows) * 4


@njit(cache=True)
def _scores(q_s, kT_s, s64, rows, cols, r0, c0, b, kvalid, scale, causal, offset, wl, wr):
    """s64[:rows, :cols] = MASK(scale * Q_i K_j^T) in float64; hidden scores are -inf.

    CPU numerics (the counters are unaffected): like a tensor core (exact products, one
    wide accumulator) the dot products sum d in a fixed order whatever the tile shape, so
    the backward recomputes exactly the forward's scores. S stays float64 until P, so a
    large logit (|S| ~ 1e3, where a float32 ulp is 1e-4) costs no accuracy.
    """
    for r in range(rows):
        for c in range(cols):
            s64[r, c] = 0.0
        for x in range(q_s.shape[1]):
            a = np.float64(q_s[r, x])
            for c in range(cols):
                s64[r, c] += a * kT_s[x, c]                # (B_r, d) @ (d, B_c), one row at a time
        for c in range(cols):
            if kvalid[b, c0 + c] and visible(r0 + r, c0 + c, offset, causal, wl, wr):
                s64[r, c] = scale * s64[r, c]
            else:
                s64[r, c] = NEG_INF


@njit(cache=True)
def _fwd_step(q_s, kT_s, v_s, o_s, l_s, m_s, s64, p_t, pv, alpha, beta, rows, cols, r0, c0, b, h, kvalid,
              scale, causal, offset, wl, wr, p_drop, seed, gemm):
    """One inner step of Algorithm 1 on the tiles in SRAM (executing mode only)."""
    _scores(q_s, kT_s, s64, rows, cols, r0, c0, b, kvalid, scale, causal, offset, wl, wr)
    inv_keep = 1.0 / (1.0 - p_drop)
    for r in range(rows):
        mt = NEG_INF                                       # m~ = rowmax(S), as fp32 (what HBM keeps)
        for c in range(cols):
            mt = max(mt, s64[r, c])
        mt = np.float64(np.float32(mt))
        lt = 0.0                                           # l~ = rowsum(P~), before dropout
        for c in range(cols):
            e = 0.0 if mt == NEG_INF else math.exp(s64[r, c] - mt)
            lt += e
            if p_drop > 0.0:
                e = e * inv_keep if keep(seed, b, h, r0 + r, c0 + c, p_drop) else 0.0
            p_t[r, c] = e                                  # dropout(P~), the MMA operand
        for c in range(cols, p_t.shape[1]):
            p_t[r, c] = 0.0                                # a stale V row must not reach P V
        m_old = m_s[0, r]
        m_new = max(m_old, mt)
        if m_new == NEG_INF:                               # nothing visible yet: O, l, m stay 0, 0, -inf
            alpha[r] = 0.0
            beta[r] = 0.0
            continue
        a = math.exp(m_old - m_new)                        # e^(m_i - m_new), 0 when m_i = -inf
        bt = math.exp(mt - m_new)                          # e^(m~ - m_new), 0 when m~ = -inf
        l_new = a * l_s[0, r] + bt * lt
        alpha[r] = l_s[0, r] * a / l_new
        beta[r] = bt / l_new
        l_s[0, r] = l_new
        m_s[0, r] = m_new
    pv[:, :] = 0.0
    mma_acc(p_t, v_s, pv, gemm)                            # (B_r, B_c) @ (B_c, d): dropout(P~) V_j
    for r in range(rows):
        for x in range(o_s.shape[1]):
            o_s[r, x] = alpha[r] * o_s[r, x] + beta[r] * pv[r, x]


@njit(parallel=PARALLEL, cache=True)
def fwd_body(q, k, v, o, l, m, kvalid, H, G, KVH, NQ, NK, D, BR, BC, S, i_lo, i_hi, scale, causal, offset, wl, wr,
             has_mask, p_drop, seed, per_score, execute, ids, counters, eb, gemm):
    """Algorithm 1 over a grid of (batch * heads * S) blocks; q, o: (B*H, N_q, d), k, v: (B*KVH, N_k, d),
    l, m: (B*H, N_q) fp32, kvalid: (B, N_k); per_score: vector FLOPs per score (:func:`fwd_per_score`).

    Block ``bh * S + split`` owns the Q blocks ``i = split, split + S, ...`` (the CUDA kernel's
    ``num_splits``); it loads every K/V block and, for K/V block j, updates its Q blocks in
    ``[i_lo[j], i_hi[j])`` (all of them, or only those a mask leaves some visible key: causal
    tile skipping). Counting mode passes 1-element dummies, walks the blocks ``ids`` (the S splits
    of one (batch, head): every (batch, head) counts alike) and visits one Q tile of each kind, with
    its multiplicity (:mod:`tinyml.kernels._classes`); block ``ids[row]`` counts into row ``row``."""
    ex = 1 if execute else 0                                # counting mode: block 0's stand-in
    t_c = (NK + BC - 1) // BC
    t_r = (NQ + BR - 1) // BR
    for row in prange(len(ids)):
        blk = ids[row]
        bh = blk // S
        split = blk % S
        b = bh // H
        h = bh % H
        kv = b * KVH + h // G
        qb, ob, kb, vb = q[bh * ex], o[bh * ex], k[kv * ex], v[kv * ex]         # (N, d) views of HBM
        k_s = np.zeros((extent(BC, execute), extent(D, execute)), np.float32)    # (B_c, d) K_j
        kT_s = np.zeros((extent(D, execute), extent(BC, execute)), np.float32)   # (d, B_c) K_j^T (layout only)
        v_s = np.zeros((extent(BC, execute), extent(D, execute)), np.float32)    # (B_c, d) V_j
        q_s = np.zeros((extent(BR, execute), extent(D, execute)), np.float32)    # (B_r, d) Q_i
        o_s = np.zeros((extent(BR, execute), extent(D, execute)), np.float32)    # (B_r, d) O_i
        s64 = np.zeros((extent(BR, execute), extent(BC, execute)))              # (B_r, B_c) S_ij (registers)
        p_t = np.zeros((extent(BR, execute), extent(BC, execute)), np.float32)  # (B_r, B_c) P_ij
        pv = np.zeros((extent(BR, execute), extent(D, execute)), np.float32)     # (B_r, d) registers
        l_s = np.zeros((1, extent(BR, execute)), np.float32)                  # (1, B_r) l_i
        m_s = np.zeros((1, extent(BR, execute)), np.float32)                  # (1, B_r) m_i
        alpha = np.zeros(extent(BR, execute))                                 # (B_r,) O_i rescale factors
        beta = np.zeros(extent(BR, execute))
        step_i = np.zeros((1, counters.shape[1]), np.int64)                # counts of one inner step
        # line 2: O = 0, l = 0, m = -inf in HBM, for this split's rows
        mine = 0
        for i in range(split, t_r, S):
            mine += min(BR, NQ - i * BR)
            if execute:
                ob[i * BR:i * BR + BR, :] = 0.0
                l[bh, i * BR:i * BR + BR] = 0.0
                m[bh, i * BR:i * BR + BR] = NEG_INF
        count_store_direct(mine * D, counters, row, eb)
        count_store_direct(mine, counters, row, 32)
        count_store_direct(mine, counters, row, 32)
        for j in range(t_c):
            c0 = j * BC
            cols = min(BC, NK - c0)
            load_tile(kb, c0, 0, cols, D, k_s, execute, counters, row, OP_K, eb)
            load_tile(vb, c0, 0, cols, D, v_s, execute, counters, row, OP_V, eb)
            if has_mask:
                count_load_direct(cols, counters, row, OP_MASK, 8)          # 1 byte per key
            if execute:
                for c in range(cols):
                    for x in range(D):
                        kT_s[x, c] = k_s[c, x]
            n_lo = max(0, (i_lo[j] - split + S - 1) // S)                  # this split's Q blocks i = split + n S
            n_hi = max(n_lo, (i_hi[j] - split + S - 1) // S)
            for ir in range(rep_count(n_lo, n_hi, execute)):
                n, mult_i = rep_tile(ir, n_lo, n_hi, execute)
                i = split + n * S
                step_i[:] = 0
                r0 = i * BR
                rows = min(BR, NQ - r0)
                load_tile(qb, r0, 0, rows, D, q_s, execute, step_i, 0, OP_Q, eb)
                load_tile(ob, r0, 0, rows, D, o_s, execute, step_i, 0, OP_O, eb)
                load_tile(l, bh, r0, 1, rows, l_s, execute, step_i, 0, OP_L, 32)
                load_tile(m, bh, r0, 1, rows, m_s, execute, step_i, 0, OP_M, 32)
                count_mma(rows, cols, D, step_i, 0, eb)                      # S = Q_i K_j^T
                count_vector(per_score * rows * cols + ROW_UPDATE * rows + RESCALE_O * rows * D,
                             step_i, 0)
                count_mma(rows, D, cols, step_i, 0, eb)                      # P~ V_j
                count_split_k(rows, cols, D, step_i, 0, eb)                     # the warps' partial O, through SRAM
                if execute:
                    _fwd_step(q_s, kT_s, v_s, o_s, l_s, m_s, s64, p_t, pv, alpha, beta, rows, cols, r0, c0,
                              b, h, kvalid, scale, causal, offset, wl, wr, p_drop, seed, gemm)
                store_tile(o_s, rows, D, ob, r0, 0, execute, step_i, 0, eb)
                store_tile(l_s, 1, rows, l, bh, r0, execute, step_i, 0, 32)
                store_tile(m_s, 1, rows, m, bh, r0, execute, step_i, 0, 32)
                add_scaled(counters, row, step_i, mult_i)


# ---- the launcher ------------------------------------------------------------------

@dataclass
class Flash1Saved:
    """What the backward needs: the validated call, O and the softmax statistics l, m."""

    call: AttentionCall
    o: object            # (B, H, N_q, d) logical dtype
    l: object            # (B, H, N_q) fp32 row sums of exp(S - m)
    m: object            # (B, H, N_q) fp32 row maxima (-inf for a fully masked row)
    check_finite: bool = True
    num_splits: "int | None" = None   # the caller's choice (None: the shipped kernel's heuristic)
    skip_masked: bool = True          # causal tile skipping (False: Algorithm 1 computes every tile)



def _flat(call: AttentionCall, x, rows: int, *tail) -> np.ndarray:
    """``x`` as (rows, *tail) for the Numba body, or a dummy in counting mode."""
    if not call.execute:
        return stand_in(1 + len(tail))
    return x.reshape(rows, *tail)


def _track_inputs(prof, call: AttentionCall) -> None:
    for name, op in (("q", call.q), ("k", call.k), ("v", call.v)):
        prof.hbm.track(op.obj, name, call.dtype)
    if call.key_padding_obj is not None:
        prof.hbm.track(call.key_padding_obj, "key_padding_mask", "int8")   # 1 byte per key


def flash_attention_v1(q, k, v, *, causal: bool = False, key_padding_mask=None, dropout_p: float = 0.0,
                       seed: int = 0, scale=None, window=None, dtype: str = "fp16", check_finite: bool = True,
                       return_saved: bool = False, block_q: "int | None" = None,
                       block_k: "int | None" = None, num_splits: "int | None" = None, skip_masked: bool = True):
    """FlashAttention-1 forward (Algorithm 1): one kernel, ``flash1_fwd``.

    q: (B, H, N_q, d); k, v: (B, KVH, N_k, d), NumPy arrays (executing) or
    ``tinyml.sim.meta`` tensors (counting). Returns o (B, H, N_q, d), or
    ``(o, saved)`` with ``return_saved=True`` for
    :func:`flash_attention_v1_backward`. ``block_q`` (B_r) and ``block_k`` (B_c)
    default to the paper's sizes (module docstring) and are clamped to N_q and N_k (a clamped
    request is named in the record's ``notes``).
    ``num_splits`` / ``skip_masked``: the grid and tiles of the CUDA kernel as it shipped (default:
    its ``num_splits`` heuristic and causal tile skipping); ``num_splits=1, skip_masked=False`` is
    Algorithm 1 exactly, as the paper's Figure 2 measured it.
    """
    call = prepare_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask, dropout_p=dropout_p,
                             seed=seed, scale=scale, window=window, dtype=dtype, kernel="flash_attention_v1",
                             check_finite=check_finite)
    b_q, b_k, sram, regs = resolve_blocks(call, block_q, block_k, backward=False, kernel="flash_attention_v1")
    prof = current_profile()
    _track_inputs(prof, call)
    B, H, KVH, NQ, NK, D = call.batch, call.heads, call.kv_heads, call.seq_q, call.seq_k, call.head_dim
    o = prof.hbm.new_tensor("o", (B, H, NQ, D), call.dtype, call.execute)
    l = prof.hbm.new_tensor("l", (B, H, NQ), "fp32", call.execute)
    m = prof.hbm.new_tensor("m", (B, H, NQ), "fp32", call.execute)
    S = splits(call, num_splits, ceil_div(NQ, b_q), sram, regs)
    i_lo, i_hi, _, _ = tile_ranges(call, b_q, b_k, skip_masked)
    ids = block_ids(call, B * H, S)
    counters = new_counters(len(ids), N_OPERANDS)
    left, right = call.window
    gemm = sgemm()                   # load SciPy's BLAS first, so blas_single_thread pins it too
    with blas_single_thread():
        fwd_body(_flat(call, call.q.data, B * H, NQ, D), _flat(call, call.k.data, B * KVH, NK, D),
                      _flat(call, call.v.data, B * KVH, NK, D), _flat(call, o, B * H, NQ, D),
                      _flat(call, l, B * H, NQ), _flat(call, m, B * H, NQ), call.key_valid_array(),
                      H, call.group, KVH, NQ, NK, D, b_q, b_k, S, i_lo, i_hi, call.scale, call.causal,
                      call.offset, left, right, call.key_padding_obj is not None, call.dropout_p, call.seed,
                      fwd_per_score(call.masked, call.dropout_p > 0), call.execute, ids, counters,
                      call.elem_bits, gemm)
    s = nbytes(8, call.dtype) // 8
    mine = np.array([sum(min(b_q, NQ - i * b_q) for i in range(sp, ceil_div(NQ, b_q), S)) for sp in range(S)])
    mine = mine if not call.execute else np.tile(mine, B * H)       # query rows of each split (block)
    reuse = Reuse(reads={OP_Q: mine * D * s, OP_O: 0, OP_L: 0, OP_M: 0},  # O, l, m: written first
                  writes=mine * (D * s + 2 * 4))
    prof.record("flash1_fwd", (B, H, S), launch_counters(call, counters, B * H, S), dtype=call.dtype, sram_per_block=sram,
                regs_per_block=regs, panels=kv_panels(call, (OP_K, OP_V), S), reuse=reuse,
                pipelined=True, issue=attention_issue(D, split_k=(WARPS, b_k), dropout=call.dropout_p > 0),
                notes=clamp_notes(block_q, block_k, b_q, b_k))
    if return_saved:
        return o, Flash1Saved(call, o, l, m, check_finite, num_splits, skip_masked)
    return o
