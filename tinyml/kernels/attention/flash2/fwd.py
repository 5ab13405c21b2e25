"""FlashAttention-2 forward (Dao 2023, arXiv 2307.08691, Algorithm 1).

What changed from FlashAttention-1: the loops are swapped. The outer loop runs
over blocks of Q rows, so the output block O_i and its statistics m_i, l_i
stay on chip for the whole inner loop over K/V blocks and are written once;
the accumulator is kept unnormalised (rescaled by exp(m_old - m_new) only when
the max grows) and divided by l once at the end; only O and the log-sum-exp
are saved for the backward. Each (batch, head, q block) is its own thread
block, so even batch x heads smaller than the SM count fills the GPU
(sequence parallelism).

Tile loop (grid (batch, heads, ceil(Nq / B_r)), the q-block index fastest and
heaviest-first, so consecutive blocks read the same K and V from L2)::

    for each block (b, h, i) in parallel:
        if no key is visible to block i: O_i = 0, lse_i = -inf; store; done
        Q_i = load Q[b, h, i*B_r : +B_r]                       # (B_r, d) HBM -> SRAM
        O = zeros(B_r, d) fp32;  l = zeros(B_r);  m = full(B_r, -inf)
        for j over the K/V blocks block i can see (fully masked tiles skipped):
            K_j, V_j = load K, V[b, h // group, j*B_c : +B_c]  # (B_c, d) each
            S = scale * Q_i K_j^T                              # (B_r, B_c) tensor cores
            S = -inf where causal / window / key padding hides the key
            m_new = max(m, rowmax(S));  P = exp(S - m_new)     # unnormalised
            l = exp(m - m_new) * l + rowsum(P)
            O = diag(exp(m - m_new)) O + dropout(P) V_j        # (B_r, d) tensor cores
            m = m_new
        O_i = O / l;  lse_i = m + log(l)                       # rows with l = 0: 0 and -inf
        store O_i (logical dtype), lse_i (fp32)

HBM traffic (``s`` bytes per element of the logical dtype, before L2 reuse).
Without causal / window masks (every tile computed)::

    reads  = B H Nq d s                      Q, once
           + 2 B H ceil(Nq / B_r) Nk d s     K and V, once per q block
           (+ B H ceil(Nq / B_r) Nk          the key padding mask, 1 byte a key, if given)
    writes = B H Nq d s + 4 B H Nq           O and lse, once

In general, with C the computed tiles ((i, j) such that some query of block i
may see some key of block j) and r_i, c_j the valid rows / columns of a tile::

    reads  = B H d s sum_{i with a tile in C} r_i + (2 d s (+1 with a mask)) B H sum_{(i,j) in C} c_j
    writes = B H Nq d s + 4 B H Nq

Causal with Nq = Nk = N and B_r = B_c = B dividing N: block i computes tiles
j <= i, so K and V are read ``B H N (N / B + 1) d s / 2`` bytes each, about
half of the non-causal ``B H N (N / B) d s``. FLOPs: ``4 d sum_{(i,j) in C} r_i c_j`` on tensor cores
(QK^T and PV); vector FLOPs per computed score from
:func:`fwd_per_score`, plus
``(d + 3) r_i`` per computed tile (rescaling) and ``(d + 2) r_i`` per q block
with any tile (final O / l and lse).

L2: blocks of one wave with the same (batch, kv head) read the same K and V
(the ``panels`` of the launch); the heaviest q block comes first, so the first
reader in a wave reads the whole causal span.

A padded q tile (``pad_queries=True``, FlashAttention-2's CUDA kernel as it shipped): the kernel's tile
shape is fixed when it is compiled (B_r = 128 rows of Q for head dim 128 on the A100), so a query
sequence shorter than B_r (decoding's single row: the "FlashAttention-2" baseline of the
Flash-Decoding blog) still runs a B_r-row tile: the missing rows are zero-filled in SRAM, never read
from HBM, multiplied on the tensor cores and exponentiated with the real ones, and never stored.
Per tile, with r_i the real rows::

    HBM reads, writes        as above (r_i rows of Q, O and lse)
    matmul FLOPs             4 d B_r c_j          instead of 4 d r_i c_j
    vector FLOPs             B_r (c_j per_score + d + 3) per tile, B_r (d + 2) per q block
    SRAM and registers       Q_i, S_ij, O_i for B_r rows

so at Nq = 1 the tile does B_r = 128 times the useful arithmetic, and with B x H blocks (one q block
each) the launch is compute-bound on the padding. The default (``pad_queries=False``) clamps B_r to
the sequence: the algorithm's cost, not the shipped kernel's.

On the CPU (executing mode) the same loop runs with the score tile held
transposed, one row per key and one column per query: Q_i is loaded as Q_i^T
(D, B_r), S^T = K_j Q_i^T and O += (P^T)^T V_j, and the statistics m, l are
vectors over the tile's queries. K_j and V_j are read where they lie (views of
K and V: a CPU has no SRAM to copy them into, its caches bring them on chip),
and counted as the GPU's loads into SRAM. Two reasons, both about this CPU and not about
the algorithm (the counters are the same): both tile products then use BLAS's
fast untransposed-first-operand small-matrix kernels (``_mma``: about 30%
faster than S = Q_i K_j^T with K_j transposed), and each key row updates all
queries' max, exp and sum as 16-lane vector operations with no horizontal
reduction (``fastexp``). A GPU gets the transpose for free when its tensor
cores read K_j from shared memory (``ldmatrix.trans``) and reduces rows across
the threads of a warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from ....sim.jit import PARALLEL, njit
from ....sim import current_profile
from ....sim.args import flag
from ....sim.counters import new_counters
from ....sim.tiles import count_load_direct, count_mma, count_tile_load, count_vector, load_tile_t, store_tile
from ..._classes import add_scaled, launch_counters, rep_count, rep_tile
from ..._contract import blas_single_thread, ceil_div
from ..._counting import extent, stand_in
from ..._mma import mma_acc_at, mma_set, sgemm
from .._common import AttentionCall, prepare_attention
from ..fastexp import start_tile, tile_exp, tile_scale_max
from ..flops import EXP, attention_issue, forward_per_score
from ..masks import visible
from ..rng import keep
from .block_sizes import SIZES, resolve_blocks
from .grid import kv_panels, q_block_classes, tile_grid

KERNEL = "flash2_fwd"

OP_Q, OP_K, OP_V, OP_MASK = 0, 1, 2, 3

#: vector FLOPs per computed tile row to rescale the running state when the max grows:
#: alpha = exp(m_old - m_new) (EXP) and l *= alpha (1); plus d per row for O *= alpha
RESCALE_PER_ROW = EXP + 1
#: vector FLOPs per output row at the end of the forward: lse = m + log(l) (2); plus d for O / l
FINAL_PER_ROW = 2


def fwd_per_score(masked: bool, dropout: bool) -> int:
    """Forward vector FLOPs per computed score (P stays unnormalised: no NORMALIZE)."""
    return forward_per_score(masked, dropout, normalize=False)


@dataclass
class Flash2Saved:
    """What the FlashAttention-2 backward needs: the call (q, k, v), O and lse (kept alive in HBM)."""

    call: AttentionCall
    o: object                 # (B, H, Nq, d) logical dtype
    lse: object               # (B, H, Nq) fp32
    block_q: "int | None"     # the caller's block sizes (None: the backward picks its own)
    block_k: "int | None"
    check_finite: bool = True
    version: int = 2


@njit(parallel=PARALLEL, cache=True)
def _body(q, k, v, key_valid, o, lse, B, H, KVH, NQ, NK, D, BR, BC, span_lo, span_hi, causal, wl, wr,
          has_mask, scale, dropout_p, seed, per_score, execute, ids, counters, elem_bits, gemm, pad_rows):
    # q, o: (B*H*NQ, D); k, v: (B*KVH*NK, D); lse: (B*H, NQ); key_valid: (B, NK)
    # pad_rows: BR when the q tile is padded (tensor-core and softmax work for all BR rows), else 0
    # walks the blocks ids (all, or one per class when counting), block ids[row] counting into row row;
    # counting visits one K/V tile of each kind with its multiplicity (tinyml.kernels._classes)
    nqb = (NQ + BR - 1) // BR
    group = H // KVH
    offset = NK - NQ
    keep_scale = 1.0 / (1.0 - dropout_p)
    scale32 = np.float32(scale)              # the softmax scale in float32, as the GPU kernels hold it
    for row in prange(len(ids)):
        blk = ids[row]
        bh = blk // nqb
        ib = nqb - 1 - blk % nqb             # heaviest (causal) q block first
        b = bh // H
        h = bh % H
        r0 = ib * BR
        rows = min(BR, NQ - r0)
        mrows = max(rows, pad_rows)          # rows the tile's MMAs and softmax run on (padded or real)
        kv0 = (b * KVH + h // group) * NK    # first row of this kv head in k, v
        br_, bc_, d_ = extent(BR, execute), extent(BC, execute), extent(D, execute)
        # Tiles are not zeroed (a memset per block cost 2-3% of the forward): only what a partial
        # q block leaves unwritten is, below.
        qt_s = np.empty((d_, br_), dtype=np.float32)       # (D, BR) Q_i^T (see "On the CPU" above)
        st = np.empty((bc_, br_), dtype=np.float32)        # (BC, BR) S^T (every element written by the MMA)
        pt = np.empty((bc_, br_), dtype=np.float32)        # (BC, BR) P^T (not in place: see fastexp.tile_exp)
        o_acc = np.zeros((br_, d_), dtype=np.float32)      # (BR, D) fp32 accumulator
        if execute and rows < BR:                          # a partial q block: padded queries are 0
            qt_s[:] = 0.0
            pt[:] = 0.0
        m_i = np.full(BR, -np.inf, dtype=np.float32)       # (BR,) running max per query
        l_i = np.zeros(BR)                                 # (BR,) running sum, float64: a long row's tile
                                                           # sums added in float32 would drift
        m_new = np.empty(BR, dtype=np.float32)             # (BR,)
        shift = np.empty(BR, dtype=np.float32)             # (BR,) m_new, or 0 where nothing is visible yet
        alpha = np.empty(BR, dtype=np.float32)             # (BR,) exp(m_i - m_new): rescales l and O
        p_sum = np.empty(BR, dtype=np.float32)             # (BR,) this tile's sum (BC terms, float32:
                                                           # a float64 sum cost 5% of the forward)
        lse_row = np.full((1, BR), -np.inf, dtype=np.float32)   # (1, BR)
        step = np.zeros((1, counters.shape[1]), np.int64)       # counts of one K/V tile
        lo = span_lo[ib]
        hi = span_hi[ib]
        if hi > lo:
            load_tile_t(q, bh * NQ + r0, 0, rows, D, qt_s, execute, counters, row, OP_Q, elem_bits)
            j_lo, j_hi = lo // BC, (hi + BC - 1) // BC
            for jr in range(rep_count(j_lo, j_hi, execute)):
                jb, mult = rep_tile(jr, j_lo, j_hi, execute)
                step[:] = 0
                c0 = jb * BC
                cols = min(BC, NK - c0)
                # K_j, V_j: (cols, D) each. A GPU copies them into SRAM; the CPU body reads them in
                # place (views of k, v; its caches are its SRAM). Same bytes counted.
                count_tile_load(cols, D, step, 0, OP_K, elem_bits)
                count_tile_load(cols, D, step, 0, OP_V, elem_bits)
                if has_mask:
                    count_load_direct(cols, step, 0, OP_MASK, 8)           # key_valid[b, c0:c0+cols]
                count_mma(mrows, cols, D, step, 0, elem_bits)              # S = Q_i K_j^T
                count_vector(mrows * cols * per_score, step, 0)
                count_vector(mrows * (D + RESCALE_PER_ROW), step, 0)
                count_mma(mrows, D, cols, step, 0, elem_bits)              # O += P V_j
                add_scaled(counters, row, step, mult)
                if not execute:
                    continue
                k_j = k[kv0 + c0:kv0 + c0 + cols]                          # (cols, D) in place
                v_j = v[kv0 + c0:kv0 + c0 + cols]                          # (cols, D)
                mma_set(k_j, qt_s, st[:cols], gemm)                        # S^T = (cols, D) @ (D, BR)
                # Decide once per tile whether every score is visible: the causal / window
                # limits are half-planes in (i, j), so checking the two extreme corners is
                # enough; key padding needs each key. Full tiles skip the per-score test.
                full = (visible(r0, c0 + cols - 1, offset, causal, wl, wr)
                        and visible(r0 + rows - 1, c0, offset, causal, wl, wr))
                if full and has_mask:
                    for c in range(cols):
                        if not key_valid[b, c0 + c]:
                            full = False
                            break
                for r in range(rows):
                    m_new[r] = m_i[r]
                if full:                               # no per-score test: key by key, all queries at once
                    tile_scale_max(st, scale32, rows, cols, m_new)
                else:                                  # hidden keys -inf
                    for c in range(cols):
                        j = c0 + c
                        for r in range(rows):
                            if visible(r0 + r, j, offset, causal, wl, wr) and key_valid[b, j]:
                                st[c, r] = st[c, r] * scale32
                                m_new[r] = max(m_new[r], st[c, r])
                            else:
                                st[c, r] = -np.inf
                start_tile(m_i, m_new, rows, shift, alpha, p_sum)       # shift = m_new, alpha = exp(m - m_new), sum = 0
                # P = exp(S - m_new), one key row (all queries) at a time; exp(-inf) = 0 for hidden keys
                tile_exp(st, shift, rows, cols, pt, p_sum)
                if dropout_p > 0.0:                    # after the sum: l normalises the undropped P
                    for c in range(cols):
                        for r in range(rows):
                            if keep(seed, b, h, r0 + r, c0 + c, dropout_p):
                                pt[c, r] *= keep_scale
                            else:
                                pt[c, r] = 0.0
                for r in range(rows):
                    l_i[r] = alpha[r] * l_i[r] + p_sum[r]
                    m_i[r] = m_new[r]
                    if alpha[r] != 1.0:                # the max grew: rescale the running output row
                        a = alpha[r]
                        for dd in range(D):
                            o_acc[r, dd] *= a
                mma_acc_at(pt[:cols], v_j, o_acc, gemm)                    # O += (P^T)^T V: (BR, cols) @ (cols, D)
            count_vector(mrows * (D + FINAL_PER_ROW), counters, row)
            if execute:
                for r in range(rows):
                    if l_i[r] > 0.0:
                        inv = 1.0 / l_i[r]
                        for dd in range(D):
                            o_acc[r, dd] *= inv
                        lse_row[0, r] = m_i[r] + np.log(l_i[r])
                    else:                              # a fully masked row
                        for dd in range(D):
                            o_acc[r, dd] = 0.0
        store_tile(o_acc, rows, D, o, bh * NQ + r0, 0, execute, counters, row, elem_bits)
        store_tile(lse_row, 1, rows, lse, bh, r0, execute, counters, row, 32)


def tile_rows(seq_q: int, pad_queries: bool) -> int:
    """The query rows the block sizes are chosen for and clamped to: the sequence's, or with
    ``pad_queries`` at least the largest candidate B_r (128), so a short query sequence runs in a
    full tile as in FlashAttention-2's CUDA kernel (module docstring, "A padded q tile")."""
    return max(seq_q, SIZES[0]) if pad_queries else seq_q


def forward(call: AttentionCall, block_q, block_k, return_saved: bool, check_finite: bool = True,
            kernel: str = KERNEL, issue=None, pad_queries: bool = False):
    """Launch the forward of a validated call; returns O (and the saved state). ``kernel`` / ``issue``:
    the record's name and instructions (FlashAttention-3 runs this tile loop as ``flash3_fwd``);
    ``pad_queries``: the q tile keeps its full B_r rows on a short query sequence (:func:`tile_rows`)."""
    prof = current_profile()
    blocks, sram, regs = resolve_blocks(prof.device, "fwd", tile_rows(call.seq_q, pad_queries), call.seq_k,
                                        call.head_dim, call.dtype, kernel, block_q, block_k)
    B, H, KVH, NQ, NK, D = call.batch, call.heads, call.kv_heads, call.seq_q, call.seq_k, call.head_dim
    for op in (call.q, call.k, call.v):
        prof.hbm.track(op.obj, op.name, call.dtype)
    has_mask = call.key_padding_obj is not None
    if has_mask:
        prof.hbm.track(call.key_padding_obj, "key_padding_mask", "int8")
    o = prof.hbm.new_tensor("o", (B, H, NQ, D), call.dtype, call.execute)          # (B, H, Nq, d)
    lse = prof.hbm.new_tensor("lse", (B, H, NQ), "fp32", call.execute)             # (B, H, Nq)
    span_lo, span_hi, _, _ = tile_grid(call, blocks)
    nqb = ceil_div(NQ, blocks.block_q)
    grid = (B, H, nqb)
    ids, classes = q_block_classes(call.execute, B * H, nqb, NQ, NK, blocks, span_lo, span_hi)
    counters = new_counters(len(ids), n_operands=4)
    x = call.execute
    wl, wr = call.window
    gemm = sgemm()
    with blas_single_thread():
        _body(call.q.data.reshape(B * H * NQ, D) if x else stand_in(2),
              call.k.data.reshape(B * KVH * NK, D) if x else stand_in(2),
              call.v.data.reshape(B * KVH * NK, D) if x else stand_in(2),
              call.key_valid_array(),
              o.reshape(B * H * NQ, D) if x else stand_in(2),
              lse.reshape(B * H, NQ) if x else stand_in(2),
              B, H, KVH, NQ, NK, D, blocks.block_q, blocks.block_k, span_lo, span_hi, call.causal, wl, wr,
              has_mask, call.scale, call.dropout_p, call.seed,
              fwd_per_score(call.masked, call.dropout_p > 0), x, ids, counters, call.elem_bits, gemm,
              blocks.block_q if pad_queries else 0)
    panel = kv_panels(B * H * nqb, nqb, H, KVH)
    panels = {OP_K: panel, OP_V: panel, OP_MASK: panel // KVH}
    prof.record(kernel, grid, launch_counters(counters, x, *classes), dtype=call.dtype, sram_per_block=sram,
                panels=panels, regs_per_block=regs, pipelined=True,
                issue=issue or attention_issue(D, dropout=call.dropout_p > 0), notes=blocks.notes(block_q, block_k))
    if not return_saved:
        return o
    return o, Flash2Saved(call, o, lse, block_q, block_k, check_finite)


def flash_attention_v2(q, k, v, *, causal: bool = False, key_padding_mask=None, dropout_p: float = 0.0,
                       seed: int = 0, scale=None, window=None, block_q: "int | None" = None,
                       block_k: "int | None" = None, dtype: str = "fp16", check_finite: bool = True,
                       return_saved: bool = False, pad_queries: bool = False):
    """FlashAttention-2 forward: O = softmax(scale Q K^T + mask) V without an N x N matrix in HBM.

    q: (B, H, Nq, d); k, v: (B, KVH, Nk, d) (GQA when KVH < H); NumPy arrays
    (executing) or ``tinyml.sim.meta`` tensors (counting). ``window`` is a
    sliding window (int or (left, right)); ``block_q`` / ``block_k`` are B_r /
    B_c (default: the largest that fit SRAM; sizes beyond Nq / Nk are clamped to them, and the
    record's ``notes`` say so). Returns O (B, H, Nq, d), or
    ``(O, saved)`` with ``return_saved=True`` for :func:`flash_attention_v2_backward`.
    ``pad_queries=True`` runs every q tile at its full B_r rows, as the CUDA kernel does when the
    query sequence is shorter than its tile (decoding with FlashAttention-2): same bytes, B_r-row
    tensor-core and softmax work. Records one kernel, ``flash2_fwd``. See the module docstring for
    the tile loop and the HBM bytes.
    """
    call = prepare_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask, dropout_p=dropout_p,
                             seed=seed, scale=scale, window=window, dtype=dtype, kernel=KERNEL,
                             check_finite=check_finite)
    return forward(call, block_q, block_k, return_saved, check_finite, pad_queries=flag(pad_queries, "pad_queries"))
