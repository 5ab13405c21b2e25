"""FlashAttention-1: Algorithm 1 (forward) and Algorithm 4 (backward) of Dao et al. 2022.

Standard attention writes the N x N score and probability matrices to HBM.
FlashAttention never does: it walks K/V blocks in an outer loop and Q blocks in
an inner loop, keeps S and P in SRAM, and carries the softmax's running row
maximum ``m`` and row sum ``l`` in HBM next to the output ``O``, which it
rescales every time a new K/V block changes them (Algorithm 1). The backward
pass recomputes P from Q, K, ``l`` and ``m`` instead of reading it, and
regenerates the dropout mask from the seed (Algorithm 4). The kernel bodies
live in :mod:`.flash1_fwd` and :mod:`.flash1_bwd`.

Block sizes (Algorithm 1, line 1): with M the SRAM of one SM counted in
elements of the logical dtype (``sram_per_sm // bytes per element``)::

    B_c = ceil(M / (4 d)),  B_r = min(B_c, d)      # a100-40gb, d = 64, fp16: B_c = 384, B_r = 64

then clamped to the sequences (``B_c <= N_k``, ``B_r <= N_q``). If those tiles
overflow SRAM (large d: at d = 128 in fp16, B_c = 192 and B_r = 128 need
214,016 bytes), B_r is halved first (HBM traffic depends only on B_c), then
B_c. Algorithm 4 (line 2) reuses the forward's sizes, but the paper's analysis
is asymptotic: its four B_c x d tiles K_j, V_j, dK~_j, dV~_j alone would fill M.
The backward therefore starts from the same rule and shrinks the same way
until its tile set fits (a100-40gb, d = 64, fp16: B_c = 192, B_r = 32).
Explicit ``block_q`` / ``block_k`` are clamped the same way; tiles that do not
fit raise :class:`~tinyml.sim.SramOverflowError` with sizes that do, or, when
not even 1 x 1 blocks fit, the largest head_dim that does.

On-chip tiles of one forward block (checked against SRAM)::

    K_j, V_j (B_c x d), Q_i, O_i (B_r x d), S_ij / P_ij (B_r x B_c)   logical dtype
    l_i, m_i (B_r)                                                    fp32

S is produced in fp32 registers by the MMA and kept on chip as P in the
logical dtype, the operand of the P V tensor-core product. At the paper's
configuration that is 164,352 bytes: one block per SM. The backward keeps
K_j, V_j (logical) and dK~_j, dV~_j (fp32) (B_c x d); Q_i, O_i, dO_i (logical)
and dQ_i (fp32) (B_r x d); P_ij, overwritten in place by dS_ij (B_r x B_c,
logical); l_i, m_i, D_i (B_r, fp32).

Grid. Algorithm 1 (``num_splits=1, skip_masked=False``, what the paper's Figure 2
measured): one thread block per (batch, query head), every tile computed, even those a
causal mask hides completely; FLOPs are charged for the full valid area of every tile.
The CUDA kernel as it shipped (v1.0, what the FlashAttention-2 paper benchmarked; the
default): grid (batch, heads, S) with S from its ``num_splits`` heuristic
(:func:`num_splits`: enough splits to fill the SMs' waves when batch x heads is small),
the forward splitting the Q blocks and the backward the K/V blocks, and fully masked
tiles skipped under a causal mask. Its four warps split each K/V tile (split-K) and sum
their partial outputs in shared memory between barriers (FA2 paper, Sec. 3.3): SRAM
bytes counted per tile and charged serially (:func:`~tinyml.kernels.attention.flops.attention_issue`).
It prefetches the next tiles while computing (``pipelined``).

HBM traffic of Algorithm 1, exact (``s`` = bytes per element of the logical dtype, statistics
and the dQ accumulator are fp32 = 4 bytes; ``T_c = ceil(N_k / B_c)``,
``T_r = ceil(N_q / B_r)``; the shipped grid's changes are in :func:`flash1_expected_bytes`).
Per (batch, head) of the forward::

    reads  = 2 N_k d s                   K_j, V_j: once each
           + 2 T_c N_q d s               Q_i, O_i: every inner step (the T_r steps of one
                                          pass load B_r rows each, N_q rows in all)
           + 2 T_c N_q 4                 l_i, m_i: every inner step
           [+ N_k]                       key padding mask, 1 byte per key (only when given)
    writes = N_q d s + 2 N_q 4           line 2: O = 0, l = 0, m = -inf
           + T_c (N_q d s + 2 N_q 4)     O_i, l_i, m_i written back every inner step

times ``batch * heads``. ``T_r`` only sets how that traffic is cut into tiles:
``T_c * T_r`` inner steps each move one B_r-row tile of Q, O, l, m. With
``B_c = Theta(M / d)`` the dominant term ``2 T_c N d s`` is
``Theta(N^2 d^2 / M)`` element accesses: Theorem 2 of the paper (standard
attention needs ``Theta(N d + N^2)``). Per block of the backward::

    reads  = 2 N_k d s                   K_j, V_j once
           + T_c N_q (3 d s + 4 d + 8)   Q_i, O_i, dO_i, dQ_i (fp32), l_i, m_i every inner step
           [+ N_k]                       key padding mask
    writes = N_q d 4 + 2 N_k d s         line 5: dQ = 0 (fp32), dK = 0, dV = 0
           + (T_c - 1) N_q d 4 + N_q d s dQ_i every inner step; the last pass writes dq
                                          in the logical dtype instead of the accumulator
           + 2 N_k d s                   dK_j, dV_j after each inner loop

With GQA (``group = heads // kv_heads > 1``) dK and dV are per query head and a
second kernel, ``flash1_bwd_dkv_reduce``, reads ``2 B H N_k d s`` and writes
``2 B KVH N_k d s``. :func:`flash1_expected_bytes` evaluates these formulas.
Counters are before L2 reuse: with GQA the blocks of one group read the same
K_j, V_j, declared as L2 panels, so ``hbm_read_bytes + l2_hit_bytes`` of the
records equals the formula.

FLOPs per (batch, head): matmul ``4 N_q N_k d`` forward (S = Q K^T, P V) and
``10 N_q N_k d`` backward (S, dV, dP, dQ, dK), every tile; vector, with the
per-score conventions of :mod:`.flops`: forward ``fwd_per_score * N_q N_k +
T_c N_q (ROW_UPDATE + RESCALE_O d)`` (Algorithm 1 rescales O_i every inner
step instead of normalising P), backward ``backward_per_score * N_q N_k +
T_c N_q D_ROWSUM d`` (D_i is recomputed every inner step), and the GQA sum
``2 (group - 1) N_k d`` per kv head.

CPU numerics (the counters do not depend on them): tile products are BLAS
``sgemm`` calls (:mod:`tinyml.kernels._mma`) except S = Q_i K_j^T, which sums d
in one fixed order in float64, like a tensor core (exact products, one wide
accumulator, a fixed instruction order whatever the tile shape). The backward
then recomputes exactly the forward's scores, so P = exp(S - m) / l matches
the forward's P even for logits of 1e3 and more.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace

import numpy as np

from ...sim import (FLOAT_DTYPES, Device, DTypeError, Reuse, ShapeError, check_registers, check_tiles,
                    current_profile, nbytes, tile_budget, tiles_fit)
from ...sim.sram import REG
from ...sim.counters import new_counters
from ...sim.classes import BlockClasses
from .._contract import blas_single_thread, block_size, ceil_div, operand
from .._mma import sgemm
from ._common import DUMMY2, AttentionCall, check_saved, prepare_attention
from . import flash1_bwd as _bwd
from .flops import attention_issue
from . import flash1_fwd as _fwd

DUMMY3 = np.zeros((1, 1, 1), dtype=np.float32)   # stands in for (B*H, N, d) data in counting mode


# ---- tiles and block sizes --------------------------------------------------------

def forward_tiles(block_q: int, block_k: int, head_dim: int, dtype: str) -> dict:
    """The tiles one forward block keeps on chip: {name: (shape, logical dtype[, "reg"])}."""
    return {
        "K_j": ((block_k, head_dim), dtype), "V_j": ((block_k, head_dim), dtype),
        "Q_i": ((block_q, head_dim), dtype), "O_i": ((block_q, head_dim), dtype),
        "P_ij": ((block_q, block_k), dtype),
        "S_ij": ((block_q, block_k), "fp32", REG), "P_ij V_j": ((block_q, head_dim), "fp32", REG),
        "l_i": ((block_q,), "fp32", REG), "m_i": ((block_q,), "fp32", REG),
    }


def backward_tiles(block_q: int, block_k: int, head_dim: int, dtype: str) -> dict:
    """The tiles one backward block keeps on chip (P_ij is overwritten in place by dS_ij)."""
    return {
        "K_j": ((block_k, head_dim), dtype), "V_j": ((block_k, head_dim), dtype),
        "Q_i": ((block_q, head_dim), dtype), "O_i": ((block_q, head_dim), dtype),
        "dO_i": ((block_q, head_dim), dtype), "P_ij/dS_ij": ((block_q, block_k), dtype),
        "dK~_j": ((block_k, head_dim), "fp32", REG), "dV~_j": ((block_k, head_dim), "fp32", REG),
        "dQ_i": ((block_q, head_dim), "fp32", REG), "S_ij/dP_ij": ((block_q, block_k), "fp32", REG),
        "l_i": ((block_q,), "fp32", REG), "m_i": ((block_q,), "fp32", REG), "D_i": ((block_q,), "fp32", REG),
    }


def _chip(device) -> "Device | SimpleNamespace":
    """A device, or a bare SRAM size in bytes (a chip without a register file)."""
    if isinstance(device, (int, np.integer)):
        return SimpleNamespace(sram_per_sm=int(device), register_bytes=0)
    return device


def paper_blocks(sram_per_sm: int, head_dim: int, dtype: str) -> tuple[int, int]:
    """(B_r, B_c) of Algorithm 1, line 1, before clamping: M = SRAM in elements of ``dtype``."""
    m = sram_per_sm // (nbytes(8, dtype) // 8)
    b_c = ceil_div(m, 4 * head_dim)
    return min(b_c, head_dim), b_c


def default_blocks(device, seq_q: int, seq_k: int, head_dim: int, dtype: str,
                   backward: bool = False) -> "tuple[int, int] | None":
    """(block_q, block_k): the paper's sizes clamped to the sequences, B_r then B_c halved
    until the tiles fit the device's SRAM and register file; None if not even 1 x 1 blocks fit.

    ``device`` is a Device or an SRAM size in bytes (then accumulators count as SRAM).
    """
    chip = _chip(device)
    return _default_blocks(chip.sram_per_sm, chip.register_bytes, seq_q, seq_k, head_dim, dtype, backward)


@lru_cache(maxsize=None)
def _default_blocks(sram: int, regs: int, seq_q: int, seq_k: int, head_dim: int, dtype: str,
                    backward: bool) -> "tuple[int, int] | None":
    chip = SimpleNamespace(sram_per_sm=sram, register_bytes=regs)
    tiles = backward_tiles if backward else forward_tiles
    b_r0, b_c = paper_blocks(sram, head_dim, dtype)
    while True:
        b_r = min(b_r0, b_c)
        while True:
            cand = (min(b_r, seq_q), min(b_c, seq_k))
            if tiles_fit(chip, tiles(*cand, head_dim, dtype)):
                return cand
            if b_r == 1:
                break
            b_r = ceil_div(b_r, 2)
        if b_c == 1:
            return None
        b_c = ceil_div(b_c, 2)


def largest_head_dim(device, dtype: str, backward: bool = False) -> int:
    """The largest head_dim whose 1 x 1 blocks fit: SRAM and register bytes are linear in d."""
    chip = _chip(device)
    tiles = backward_tiles if backward else forward_tiles
    base = tile_budget(chip, tiles(1, 1, 0, dtype))
    per_d = [a - b for a, b in zip(tile_budget(chip, tiles(1, 1, 1, dtype)), base)]
    best = (chip.sram_per_sm - base[0]) // per_d[0]
    if per_d[1] > 0:
        best = min(best, (chip.register_bytes - base[1]) // per_d[1])
    return max(0, best)


def resolve_blocks(call: AttentionCall, block_q, block_k, *, backward: bool, kernel: str
                   ) -> tuple[int, int, int, int]:
    """(block_q, block_k, SRAM bytes, register bytes per block): given or chosen, checked against the device."""
    dev = current_profile().device
    auto = default_blocks(dev, call.seq_q, call.seq_k, call.head_dim, call.dtype, backward)
    tiles = backward_tiles if backward else forward_tiles

    def suggest() -> str:
        if auto is None:
            return (f"No block size fits: even 1 x 1 blocks overflow at head_dim={call.head_dim}; the largest "
                    f"head_dim that fits {dev.name}'s {dev.sram_per_sm:,}-byte SRAM in {call.dtype} is "
                    f"{largest_head_dim(dev, call.dtype, backward)}. Use a smaller head_dim or a "
                    f"device with more SRAM")
        return (f"Blocks that fit: block_q={auto[0]}, block_k={auto[1]} "
                f"({tile_budget(dev, tiles(*auto, call.head_dim, call.dtype))[0]:,} bytes of SRAM); "
                f"or omit the block sizes")

    b_q = block_size(block_q, "block_q", auto[0] if auto else 1)
    b_k = block_size(block_k, "block_k", auto[1] if auto else 1)
    b_q, b_k = min(b_q, call.seq_q), min(b_k, call.seq_k)
    chosen = tiles(b_q, b_k, call.head_dim, call.dtype)
    sram = check_tiles(dev, chosen, kernel=kernel, suggest=suggest)
    return b_q, b_k, sram, check_registers(dev, chosen)


# ---- the byte formula -------------------------------------------------------------

def flash1_expected_bytes(batch: int, heads: int, seq_q: int, seq_k: int, head_dim: int, *, block_q: int,
                          block_k: int, dtype: str = "fp16", kv_heads: "int | None" = None,
                          key_padding_mask: bool = False, backward: bool = False, num_splits: int = 1,
                          causal: bool = False, skip_masked: bool = False) -> tuple[int, int]:
    """(HBM read bytes, HBM write bytes) of the forward (or the whole backward, GQA reduction
    included), before L2 reuse, from the formulas in the module docstring.

    The defaults are Algorithm 1 (one block per (batch, head), every tile). The shipped kernel's
    grid: ``num_splits`` S re-reads K, V (and the key mask) once per split in the forward; with
    ``causal`` and ``skip_masked`` only the tiles C some query of Q block i sees a key of K/V
    block j in move their Q-side bytes (``T_c N_q`` becomes ``sum over C of r_i``)."""
    s = nbytes(8, dtype) // 8
    n, m, d = seq_q, seq_k, head_dim
    t_c = ceil_div(m, block_k)
    mask = m if key_padding_mask else 0
    if skip_masked and causal:
        from .flash2_tiles import k_block_rows, q_block_spans
        lo, hi = q_block_spans(n, m, block_q, True, -1, -1)
        i_lo, i_hi = k_block_rows(lo, hi, m, block_k)
        rows = np.minimum(block_q, n - np.arange(ceil_div(n, block_q)) * block_q)       # r_i
        csum = np.concatenate([[0], np.cumsum(rows)])
        tile_rows = int(sum(csum[i_hi[j]] - csum[i_lo[j]] for j in range(t_c)))        # sum over C of r_i
        seen = np.zeros(len(rows), bool)
        for j in range(t_c):
            seen[i_lo[j]:i_hi[j]] = True
        unseen = int(rows[~seen].sum())                # Q rows no tile reaches: dq = 0 written once
        last = int(rows[seen].sum())                   # each seen Q block writes dq once, at its last tile
    else:
        tile_rows, unseen, last = t_c * n, 0, n
    if not backward:
        reads = num_splits * (2 * m * d * s + mask) + tile_rows * (2 * d * s + 8)
        writes = (n + tile_rows) * (d * s + 2 * 4)
        return batch * heads * reads, batch * heads * writes
    reads = 2 * m * d * s + tile_rows * (3 * d * s + 4 * d + 8) + mask
    writes = n * d * 4 + 2 * m * d * s + (tile_rows - last) * d * 4 + (last + unseen) * d * s + 2 * m * d * s
    reads, writes = batch * heads * reads, batch * heads * writes
    kvh = heads if kv_heads is None else kv_heads
    if heads // kvh > 1:
        reads += 2 * batch * heads * m * d * s
        writes += 2 * batch * kvh * m * d * s
    return reads, writes


# ---- forward ----------------------------------------------------------------------

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


# ---- the shipped kernel's grid: num_splits and the tiles it skips -----------------------

#: the CUDA kernel's cap on splits (flash-attention v1 ``fmha_api.cpp``: ``min(30, ...)``)
MAX_SPLITS = 30


def num_splits(batch_heads: int, sm_count: int, blocks_per_sm: int, max_splits: int) -> int:
    """The FA1 CUDA kernel's ``num_splits_heuristic_fwd`` (flash-attention v1.0, ``fmha_api.cpp``).

    The efficiency of S splits is ``waves / ceil(waves)`` with ``waves = batch_heads * S /
    (sm_count * blocks_per_sm)``; the answer is the smallest S within 95% of the best efficiency
    (more splits re-read K and V). 48 (batch, head) pairs on 108 SMs with at most 3 splits: S = 2
    (0.89; 3 splits: 0.67); with up to 30: S = 9 (exactly 4 waves)."""
    effs = []
    for s in range(1, max(1, max_splits) + 1):
        waves = batch_heads * s / (sm_count * blocks_per_sm)
        effs.append(waves / -(-waves // 1))
    best = max(effs)
    return next(s for s, e in enumerate(effs, 1) if e > 0.95 * best)


def _splits(call: AttentionCall, requested, n_tiles: int, sram: int, regs: int) -> int:
    """S: the caller's, or the heuristic's; at most one split per tile (Q blocks forward, K/V backward)."""
    if requested is None:
        dev = current_profile().device
        from ...sim import occupancy
        return num_splits(call.batch * call.heads, dev.sm_count, occupancy(dev, sram, regs),
                          min(MAX_SPLITS, n_tiles))
    return min(block_size(requested, "num_splits", 1), n_tiles)


def tile_ranges(call: AttentionCall, b_q: int, b_k: int, skip_masked: bool):
    """(i_lo, i_hi, i_last_lo, i_last_hi), each (T_c,): for K/V block j the Q blocks [i_lo, i_hi) that
    compute it (all, or those some key of block j is visible to), and among them [i_last_lo,
    i_last_hi) the Q blocks no later K/V block reaches (the backward writes dq there)."""
    t_r, t_c = ceil_div(call.seq_q, b_q), ceil_div(call.seq_k, b_k)
    if skip_masked:
        from .flash2_tiles import k_block_rows, q_block_spans
        wl, wr = call.window
        lo, hi = q_block_spans(call.seq_q, call.seq_k, b_q, call.causal, wl, wr)
        i_lo, i_hi = k_block_rows(lo, hi, call.seq_k, b_k)
    else:
        i_lo, i_hi = np.zeros(t_c, np.int64), np.full(t_c, t_r, np.int64)
    j_last = np.full(t_r, -1, np.int64)
    for j in range(t_c):
        j_last[i_lo[j]:i_hi[j]] = j                   # ascending j: the last one that reaches i wins
    i_last_lo, i_last_hi = i_hi.copy(), i_hi.copy()
    for j in range(t_c):
        mine = np.flatnonzero(j_last[i_lo[j]:i_hi[j]] == j) + i_lo[j]
        if len(mine):
            i_last_lo[j], i_last_hi[j] = mine[0], mine[-1] + 1
            assert len(mine) == mine[-1] + 1 - mine[0], "the Q blocks a K/V block is last for are contiguous"
    return i_lo, i_hi, i_last_lo, i_last_hi


def _runs(n_bh: int, splits: int):
    """(run classes, run lengths): every (batch, head) repeats the splits 0..S-1."""
    if splits == 1:
        return np.zeros(1, np.int64), np.array([n_bh], np.int64)
    return np.tile(np.arange(splits, dtype=np.int64), n_bh), np.ones(n_bh * splits, np.int64)


def _flat(call: AttentionCall, x, rows: int, *tail) -> np.ndarray:
    """``x`` as (rows, *tail) for the Numba body, or a dummy in counting mode."""
    if not call.execute:
        return DUMMY3 if len(tail) == 2 else DUMMY2
    return x.reshape(rows, *tail)


def _kv_panels(call: AttentionCall, ops: tuple, splits: int = 1) -> "dict | None":
    """L2 panels: the splits of one (batch, head) and the query heads of one GQA group read the same
    K_j, V_j."""
    if call.group == 1 and splits == 1:
        return None
    blk = np.arange(call.batch * call.heads * splits) // splits
    kv = (blk // call.heads) * call.kv_heads + (blk % call.heads) // call.group
    return {op: kv for op in ops}


def _block_ids(call: AttentionCall, n_bh: int, splits: int) -> np.ndarray:
    """The blocks a body walks: all of them when executing; when counting, the splits of
    (batch, head) 0 (every (batch, head) of FA1 moves the same bytes: :mod:`tinyml.kernels._classes`)."""
    return np.arange((n_bh if call.execute else 1) * splits, dtype=np.int64)


def _launch(call: AttentionCall, counters: np.ndarray, n_bh: int, splits: int):
    """What the launch records: the per-block rows, or the S split classes repeated per (batch, head)
    (not merged: the Reuse declaration gives one value per split)."""
    if call.execute:
        return counters
    return BlockClasses(counters, *_runs(n_bh, splits))


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
    default to the paper's sizes (module docstring) and are clamped to N_q and N_k.
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
    S = _splits(call, num_splits, ceil_div(NQ, b_q), sram, regs)
    i_lo, i_hi, _, _ = tile_ranges(call, b_q, b_k, skip_masked)
    ids = _block_ids(call, B * H, S)
    counters = new_counters(len(ids), _fwd.N_OPERANDS)
    left, right = call.window
    gemm = sgemm()                   # load SciPy's BLAS first, so blas_single_thread pins it too
    with blas_single_thread():
        _fwd.fwd_body(_flat(call, call.q.data, B * H, NQ, D), _flat(call, call.k.data, B * KVH, NK, D),
                      _flat(call, call.v.data, B * KVH, NK, D), _flat(call, o, B * H, NQ, D),
                      _flat(call, l, B * H, NQ), _flat(call, m, B * H, NQ), call.key_valid_array(),
                      H, call.group, KVH, NQ, NK, D, b_q, b_k, S, i_lo, i_hi, call.scale, call.causal,
                      call.offset, left, right, call.key_padding_obj is not None, call.dropout_p, call.seed,
                      _fwd.fwd_per_score(call.masked, call.dropout_p > 0), call.execute, ids, counters,
                      call.elem_bits, gemm)
    s = nbytes(8, call.dtype) // 8
    mine = np.array([sum(min(b_q, NQ - i * b_q) for i in range(sp, ceil_div(NQ, b_q), S)) for sp in range(S)])
    mine = mine if not call.execute else np.tile(mine, B * H)       # query rows of each split (block)
    reuse = Reuse(reads={_fwd.OP_Q: mine * D * s, _fwd.OP_O: 0, _fwd.OP_L: 0, _fwd.OP_M: 0},  # O, l, m: written first
                  writes=mine * (D * s + 2 * 4))
    prof.record("flash1_fwd", (B, H, S), _launch(call, counters, B * H, S), dtype=call.dtype, sram_per_block=sram,
                regs_per_block=regs, panels=_kv_panels(call, (_fwd.OP_K, _fwd.OP_V), S), reuse=reuse,
                pipelined=True, issue=attention_issue(D, split_k=(_fwd.WARPS, b_k), dropout=call.dropout_p > 0))
    if return_saved:
        return o, Flash1Saved(call, o, l, m, check_finite, num_splits, skip_masked)
    return o


# ---- backward ---------------------------------------------------------------------

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
    S = _splits(call, saved.num_splits, ceil_div(NK, b_k), sram, regs)
    i_lo, i_hi, i_last_lo, i_last_hi = tile_ranges(call, b_q, b_k, saved.skip_masked)
    bhs = np.arange(B * H if ex else 1, dtype=np.int64)
    counters = new_counters(len(bhs) * S, _bwd.N_OPERANDS)
    left, right = call.window
    gemm = sgemm()
    with blas_single_thread():
        _bwd.bwd_body(_flat(call, call.q.data, B * H, NQ, D), _flat(call, call.k.data, B * KVH, NK, D),
                      _flat(call, call.v.data, B * KVH, NK, D), _flat(call, saved.o, B * H, NQ, D),
                      _flat(call, DO.data, B * H, NQ, D), _flat(call, saved.l, B * H, NQ),
                      _flat(call, saved.m, B * H, NQ), call.key_valid_array(), _flat(call, dq_acc, B * H, NQ, D),
                      _flat(call, dq, B * H, NQ, D), _flat(call, dkh, B * H, NK, D), _flat(call, dvh, B * H, NK, D),
                      H, G, KVH, NQ, NK, D, b_q, b_k, S, i_lo, i_hi, i_last_lo, i_last_hi, call.scale,
                      call.causal, call.offset, left, right,
                      call.key_padding_obj is not None, call.dropout_p, call.seed,
                      _bwd.backward_per_score(call.masked, call.dropout_p > 0), ex, bhs, counters,
                      call.elem_bits, gemm)
    s = nbytes(8, call.dtype) // 8
    reuse = Reuse(reads={_bwd.OP_Q: NQ * D * s, _bwd.OP_O: NQ * D * s, _bwd.OP_DO: NQ * D * s,
                         _bwd.OP_DQ: 0, _bwd.OP_L: 4 * NQ, _bwd.OP_M: 4 * NQ},      # dQ: zeroed first
                  writes=NQ * D * (4 + s) + 2 * NK * D * s)                        # dQ acc, dq, dK_j, dV_j
    prof.record("flash1_bwd", (B, H, S), _launch(call, counters, B * H, S), dtype=call.dtype, sram_per_block=sram,
                regs_per_block=regs, panels=_kv_panels(call, (_bwd.OP_K, _bwd.OP_V), S), reuse=reuse,
                pipelined=True, issue=attention_issue(D, backward=True, split_k=(_fwd.WARPS, b_k),
                                                     dropout=call.dropout_p > 0))
    del dq_acc                      # the fp32 accumulator dies with the kernel
    if G > 1:
        rows = _bwd.REDUCE_ROWS
        grid = (B * KVH, ceil_div(NK, rows))
        counters = new_counters(grid[0] * grid[1], 2)
        _bwd.reduce_body(_flat(call, dkh, B * H, NK, D), _flat(call, dvh, B * H, NK, D),
                         _flat(call, dk, B * KVH, NK, D), _flat(call, dv, B * KVH, NK, D),
                         G, NK, D, rows, ex, counters, call.elem_bits)
        prof.record("flash1_bwd_dkv_reduce", grid, counters, dtype=call.dtype, sram_per_block=0)
    return dq, dk, dv


__all__ = ["flash_attention_v1", "flash_attention_v1_backward", "flash1_expected_bytes", "Flash1Saved",
           "forward_tiles", "backward_tiles", "paper_blocks", "default_blocks", "largest_head_dim"]
