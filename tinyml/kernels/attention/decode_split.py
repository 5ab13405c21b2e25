"""Flash-Decoding (Dao, Haziza, Massa, Sizov 2023): split the KV cache, attend to the chunks in parallel, combine.

The plain decode kernel (:mod:`.decode`) has one block per (sequence, kv
head). At batch 1 that is 32 blocks for Llama-2-7B, on a GPU with 108 SMs:
two thirds of the SMs idle, and since each SM gets only its share of the HBM
bandwidth, two thirds of the bandwidth too. Flash-Decoding adds a split
dimension to the grid: each cache is cut into S chunks of whole K/V tiles,
every chunk is its own block (B x KVH x S blocks), and a second, small kernel
merges the S partial results. Softmax over the whole cache is exact from the
partials: chunk s returns its normalised output O_s and its log-sum-exp
lse_s, and

    O = sum_s exp(lse_s - lse) O_s,    lse = log sum_s exp(lse_s)

Chunking (per sequence, so that uneven lengths stay balanced): sequence b has
``T_b = ceil(len_b / B_c)`` tiles, each chunk ``C_b = ceil(T_b / S)`` of them;
chunk s covers tiles [s C_b, min((s+1) C_b, T_b)), so the first
``U_b = ceil(T_b / C_b) <= S`` chunks hold work and the rest (when S > T_b)
are empty blocks that write nothing and that the combine never reads.

Kernel 1, ``decode_split``, grid (B, KVH, S)::

    for each block (b, g, s) in parallel:
        if s >= U_b: done                                  # an empty chunk
        Q = load q[b, g*group : (g+1)*group]               # (group, d)
        run the plain kernel's tile loop over tiles [s C_b, min((s+1) C_b, T_b))
        store O / l -> o_part[s, b, g*group : +group]      # (group, d) fp32
        store m + log(l) -> lse_part[s, b, g*group : +group]   # (group,) fp32

Kernel 2, ``decode_combine``, grid (B, H)::

    for each block (b, h) in parallel:
        L = load lse_part[:U_b, b, h]                      # (U_b,) fp32
        M = max(L);  w = exp(L - M);  W = sum(w)
        acc = zeros(d)
        for s < U_b:  acc += w_s * load o_part[s, b, h]    # (d,) fp32 each
        store acc / W -> o[b, h]                           # logical dtype

HBM traffic (``s`` bytes per element, ``len_b`` = cache_len[b], ``U_b`` used chunks)::

    decode_split   reads  = H d s sum_b U_b + 2 KVH d s sum_b len_b     (q once per used chunk; K, V once)
                   writes = H (4 d + 4) sum_b U_b                        (fp32 partials and lse)
    decode_combine reads  = H (4 d + 4) sum_b U_b
                   writes = B H d s

FLOPs: ``decode_split`` does the plain kernel's matmul FLOPs and vector FLOPs
``H sum_b (5 len_b + (d + 3) T_b + (d + 2) U_b)``; ``decode_combine`` does
``H sum_b ((2 d + 4) U_b + d)`` vector FLOPs (max, exp (2) and sum per lse, a
multiply-add per partial element, the final division).

Choosing S (``split_kv=None``): :func:`auto_splits`, FlashAttention's own
heuristic (``num_splits_heuristic`` in flash-attention's ``flash_api.cpp``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import Device, check_registers, check_tiles, current_profile
from ...sim.sram import REG
from ...sim.counters import new_counters
from ...sim.tiles import count_vector, load_tile, store_tile
from .._classes import blocks_to_walk, launch_counters, uniform_runs
from .._contract import blas_single_thread
from .._counting import extent, stand_in
from .._mma import sgemm
from .decode_common import OP_Q, DecodeCall, attend_tiles
from .flash2.fwd import FINAL_PER_ROW
from .flops import EXP, ROW_MAX, ROW_SUM

SPLIT_KERNEL = "decode_split"
COMBINE_KERNEL = "decode_combine"
#: vector FLOPs per partial lse in the combine: max, exp (2), sum
COMBINE_PER_SPLIT = ROW_MAX + EXP + ROW_SUM
#: FlashAttention's cap on the number of splits
MAX_SPLITS = 128


def auto_splits(device: Device, batch: int, kv_heads: int, n_kv_tiles: int, max_splits: int = MAX_SPLITS) -> int:
    """The split count FlashAttention would choose (``num_splits_heuristic``).

    With n = batch x kv_heads x S blocks of equal work, a grid runs in
    ceil(n / SMs) rounds of one block per SM, so its *wave efficiency* is
    (n / SMs) / ceil(n / SMs). The rule: 1 if batch x kv_heads already fills
    80% of the SMs; otherwise the smallest S in 1 .. min(128, SMs, KV tiles)
    whose efficiency is at least 85% of the best one, skipping an S that gives
    the same tiles per chunk as S - 1 (it would leave a chunk empty). Fewer
    splits mean less partial traffic and a cheaper combine, so a slightly less
    efficient S that is much smaller wins.
    """
    blocks = batch * kv_heads
    sms = device.sm_count
    if blocks >= 0.8 * sms:
        return 1
    top = min(max_splits, sms, n_kv_tiles)

    def eligible(s: int) -> bool:
        return s == 1 or math.ceil(n_kv_tiles / s) != math.ceil(n_kv_tiles / (s - 1))

    def efficiency(s: int) -> float:
        waves = blocks * s / sms
        return waves / math.ceil(waves)

    effs = {s: efficiency(s) for s in range(1, top + 1) if eligible(s)}
    best = max(effs.values(), default=1.0)
    return next((s for s, e in effs.items() if e >= 0.85 * best), 1)


def split_plan(lengths: np.ndarray, block_k: int, splits: int) -> tuple[np.ndarray, np.ndarray]:
    """(tiles per chunk C_b, used chunks U_b), each (B,): see the module docstring."""
    tiles = -(-lengths // block_k)                    # T_b >= 1
    chunk = -(-tiles // splits)                       # C_b
    return chunk, -(-tiles // chunk)                  # U_b = ceil(T_b / C_b) <= S


@njit(parallel=PARALLEL, cache=True)
def _split_body(q, k, v, lens, chunk, used, o_part, lse_part, B, H, KVH, L, D, BC, S, scale, execute, ids,
                counters, elem_bits, gemm):
    # q: (B*H, D); k, v: (B*KVH*L, D); o_part: (S*B*H, D) fp32; lse_part: (S, B*H) fp32
    G = H // KVH
    for row in prange(len(ids)):             # every block, or one per (sequence, chunk) when counting
        blk = ids[row]
        bg = blk // S                        # b * KVH + g
        s = blk % S
        b = bg // KVH
        if s >= used[b]:
            continue                         # an empty chunk: no loads, no stores
        row0 = b * H + (bg % KVH) * G        # the group's first query head
        length = lens[b]
        t0 = s * chunk[b]
        t1 = min(t0 + chunk[b], (length + BC - 1) // BC)
        q_s = np.zeros((extent(G, execute), extent(D, execute)), dtype=np.float32)       # (G, D) SRAM
        k_s = np.zeros((extent(BC, execute), extent(D, execute)), dtype=np.float32)     # (BC, D)
        v_s = np.zeros((extent(BC, execute), extent(D, execute)), dtype=np.float32)     # (BC, D)
        s_t = np.zeros((extent(G, execute), extent(BC, execute)), dtype=np.float32)     # (G, BC) S
        p_t = np.zeros((extent(G, execute), extent(BC, execute)), dtype=np.float32)     # (G, BC) P
        o_acc = np.zeros((extent(G, execute), extent(D, execute)), dtype=np.float32)     # (G, D) fp32
        m_i = np.full(G, -np.inf, dtype=np.float32)                                 # (G,)
        l_i = np.zeros(G, dtype=np.float32)                                         # (G,)
        lse_row = np.zeros((1, G), dtype=np.float32)                                # (1, G)
        load_tile(q, row0, 0, G, D, q_s, execute, counters, row, OP_Q, elem_bits)
        attend_tiles(q_s, k, v, bg * L, t0, t1, length, G, D, BC, scale, k_s, v_s, s_t, p_t, o_acc,
                     m_i, l_i, execute, counters, row, elem_bits, gemm)
        count_vector(G * (D + FINAL_PER_ROW), counters, row)             # O / l and lse = m + log(l)
        if execute:
            for r in range(G):
                inv = 1.0 / l_i[r]
                for dd in range(D):
                    o_acc[r, dd] *= inv
                lse_row[0, r] = m_i[r] + np.log(l_i[r])
        store_tile(o_acc, G, D, o_part, s * B * H + row0, 0, execute, counters, row, 32)
        store_tile(lse_row, 1, G, lse_part, s, row0, execute, counters, row, 32)


@njit(parallel=PARALLEL, cache=True)
def _combine_body(o_part, lse_part, used, o, B, H, D, S, execute, ids, counters, elem_bits):
    # o_part: (S*B*H, D) fp32; lse_part: (S, B*H) fp32; o: (B*H, D)
    for row in prange(len(ids)):             # every block, or one per sequence when counting
        blk = ids[row]                       # blk = b * H + h, a row of o
        n = used[blk // H]
        lse_s = np.zeros((extent(S, execute), 1), dtype=np.float32)                    # (S, 1) SRAM
        o_s = np.zeros((1, extent(D, execute)), dtype=np.float32)                       # (1, D) one partial
        acc = np.zeros((1, extent(D, execute)), dtype=np.float32)                       # (1, D) fp32
        load_tile(lse_part, 0, blk, n, 1, lse_s, execute, counters, row, 1, 32)     # lse_part[:n, b, h]
        count_vector(n * COMBINE_PER_SPLIT, counters, row)
        big = -np.inf
        total = 0.0
        if execute:
            for s in range(n):
                big = max(big, lse_s[s, 0])
            for s in range(n):
                total += np.exp(lse_s[s, 0] - big)
        for s in range(n):
            load_tile(o_part, s * B * H + blk, 0, 1, D, o_s, execute, counters, row, 0, 32)
            count_vector(2 * D, counters, row)                            # acc += w_s O_s
            if execute:
                w = np.exp(lse_s[s, 0] - big)
                for dd in range(D):
                    acc[0, dd] += w * o_s[0, dd]
        count_vector(D, counters, row)                                    # acc / W
        if execute:
            inv = 1.0 / total                # W >= 1: the largest lse contributes exp(0)
            for dd in range(D):
                acc[0, dd] *= inv
        store_tile(acc, 1, D, o, blk, 0, execute, counters, row, elem_bits)


def combine_tiles(splits: int, d: int) -> dict:
    """What one combine block keeps on chip: the chunks' lse in SRAM, one partial row and the sum in registers."""
    return {"lse of the chunks": ((splits,), "fp32"), "O_s": ((d,), "fp32", REG),
            "accumulator": ((d,), "fp32", REG)}


def launch_split(call: DecodeCall, o, block_k: int, sram: int, regs: int, splits: int, notes: tuple = ()) -> None:
    """Run Flash-Decoding (split kernel, then combine) of a validated call into ``o``; records both launches."""
    prof = current_profile()
    B, H, KVH, L, D, S = call.batch, call.heads, call.kv_heads, call.max_len, call.head_dim, splits
    x = call.execute
    chunk, used = split_plan(call.lengths, block_k, S)
    tiles = combine_tiles(S, D)
    combine_sram = check_tiles(prof.device, tiles, kernel=COMBINE_KERNEL, suggest=lambda: "Use fewer splits (split_kv)")
    combine_regs = check_registers(prof.device, tiles)
    o_part = prof.hbm.new_tensor("o_partial", (S, B, H, D), "fp32", x)          # (S, B, H, d)
    lse_part = prof.hbm.new_tensor("lse_partial", (S, B, H), "fp32", x)         # (S, B, H)
    if x:                            # every block
        ids, run_class, run_length = np.arange(B * KVH * S, dtype=np.int64), None, None
    else:                            # blocks (b, g, s) and (b, g', s) do the same work: one class per (b, s)
        ids, run_class, run_length = _split_classes(B, KVH, S)
    counters = new_counters(len(ids), n_operands=3)
    gemm = sgemm()
    with blas_single_thread():
        _split_body(call.q.data.reshape(B * H, D) if x else stand_in(2),
                    call.k.data.reshape(B * KVH * L, D) if x else stand_in(2),
                    call.v.data.reshape(B * KVH * L, D) if x else stand_in(2),
                    call.lengths, chunk, used,
                    o_part.reshape(S * B * H, D) if x else stand_in(2),
                    lse_part.reshape(S, B * H) if x else stand_in(2),
                    B, H, KVH, L, D, block_k, S, call.scale, x, ids, counters, call.elem_bits, gemm)
    prof.record(SPLIT_KERNEL, (B, KVH, S), launch_counters(counters, x, run_class, run_length), dtype=call.dtype,
                sram_per_block=sram, regs_per_block=regs, pipelined=True, notes=notes)
    # counting: the H rows of a sequence combine alike, one class per sequence
    ids, run_class, run_length = blocks_to_walk(B, H, x, uniform_runs)
    counters = new_counters(len(ids), n_operands=2)
    _combine_body(o_part.reshape(S * B * H, D) if x else stand_in(2), lse_part.reshape(S, B * H) if x else stand_in(2),
                  used, o.reshape(B * H, D) if x else stand_in(2), B, H, D, S, x, ids, counters, call.elem_bits)
    prof.record(COMBINE_KERNEL, (B, H), launch_counters(counters, x, run_class, run_length), dtype=call.dtype,
                sram_per_block=combine_sram, regs_per_block=combine_regs)


def _split_classes(B: int, KVH: int, S: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Classes of the split kernel's grid (launch order b, g, s): class ``b S + s`` is block (b, 0, s),
    and every kv head g of sequence b runs the same S classes in order."""
    ids = (np.arange(B, dtype=np.int64)[:, None] * (KVH * S) + np.arange(S, dtype=np.int64)).ravel()
    per_seq = np.arange(B * S, dtype=np.int64).reshape(B, 1, S)
    run_class = np.broadcast_to(per_seq, (B, KVH, S)).ravel()
    return ids, run_class, np.ones(B * KVH * S, dtype=np.int64)
