"""FlashAttention-1: Algorithm 1 (forward) and Algorithm 4 (backward) of Dao et al. 2022.

Standard attention writes the N x N score and probability matrices to HBM.
FlashAttention never does: it walks K/V blocks in an outer loop and Q blocks in
an inner loop, keeps S and P in SRAM, and carries the softmax's running row
maximum ``m`` and row sum ``l`` in HBM next to the output ``O``, which it
rescales every time a new K/V block changes them (Algorithm 1). The backward
pass recomputes P from Q, K, ``l`` and ``m`` instead of reading it, and
regenerates the dropout mask from the seed (Algorithm 4).

Files (FlashAttention-2's package has the same four):

* :mod:`.block_sizes`: the tiles a block keeps on chip, the block sizes that fit, the byte
  formula (:func:`flash1_expected_bytes`);
* :mod:`.grid`: the launch grid: the shipped kernel's ``num_splits``, which tiles a mask skips,
  counting mode's block classes, L2 panels;
* :mod:`.fwd`: the forward's tile loop (Numba body) and its launcher :func:`flash_attention_v1`;
* :mod:`.bwd`: the backward's tile loop and its launcher :func:`flash_attention_v1_backward`.

Block sizes: Algorithm 1, line 1's rule and how it shrinks to fit SRAM are in :mod:`.block_sizes`.

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

from .block_sizes import (backward_tiles, default_blocks, flash1_expected_bytes, forward_tiles, largest_head_dim,
                          paper_blocks)
from .bwd import flash_attention_v1_backward
from .fwd import Flash1Saved, flash_attention_v1
from .grid import MAX_SPLITS, num_splits

__all__ = ["flash_attention_v1", "flash_attention_v1_backward", "flash1_expected_bytes", "Flash1Saved",
           "forward_tiles", "backward_tiles", "paper_blocks", "default_blocks", "largest_head_dim",
           "num_splits", "MAX_SPLITS"]
