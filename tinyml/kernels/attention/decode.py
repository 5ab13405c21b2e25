"""Decoding attention: one new query token per sequence against a KV cache.

While a model generates, every step attends one new query per sequence to all
the keys and values already in its KV cache (:mod:`.kv_cache`). There is
almost no arithmetic per byte: each cached key and value (d elements) is read
once and used in 2 x group multiply-adds per element, where ``group`` query
heads share a kv head. Decoding attention is memory-bound, and the only way to
make it fast is to stream the cache at the full HBM bandwidth.

Layout: q (B, H, 1, d) or (B, H, d); k_cache, v_cache (B, KVH, L, d) with
``H % KVH == 0`` (``group = H / KVH`` query heads per kv head: MQA when
KVH = 1, GQA in between); ``cache_len[b]`` in [1, L] is how many cached
tokens sequence b has (the new one included). Positions >= cache_len[b] are
never read. The query is the sequence's last token, so it sees every cached key:
no mask is needed.

GQA choice (FlashDecoding's and FlashInfer's): one thread block per
(sequence, kv head) processes all ``group`` query heads that share the kv head,
as the ``group`` rows of one Q tile. K and V are read from HBM once per kv head,
not once per query head, and the tile products have ``group`` rows instead of 1.

The plain kernel (``split_kv=1``), grid (B, KVH)::

    for each block (b, g) in parallel:                  # kv head g of sequence b
        Q = load q[b, g*group : (g+1)*group]            # (group, d) HBM -> SRAM
        O = zeros(group, d) fp32;  l = zeros(group);  m = full(group, -inf)
        for j over the K/V tiles of [0, cache_len[b]):  # tiles of B_c rows; the last is partial
            K_j, V_j = load k, v[b, g, j*B_c : +B_c]    # (B_c, d) each
            S = scale * Q K_j^T                         # (group, B_c) tensor cores
            m_new = max(m, rowmax(S));  P = exp(S - m_new)
            l = exp(m - m_new) * l + rowsum(P)
            O = diag(exp(m - m_new)) O + P V_j          # (group, d) tensor cores
            m = m_new
        store O / l -> o[b, g*group : (g+1)*group]      # logical dtype

HBM traffic (``s`` bytes per element, ``len_b`` = cache_len[b])::

    reads  = B H d s + 2 KVH d s sum_b len_b             (q once; K and V once per kv head)
    writes = B H d s                                     (o)
    matmul FLOPs = 4 H d sum_b len_b
    vector FLOPs = H sum_b (5 len_b + (d + 3) ceil(len_b / B_c)) + B H d

(5 per score: scale, max, exp (2), sum; ``d + 3`` per tile row to rescale O,
l and compute alpha; ``d`` per row for the final O / l.) ``cache_len`` reaches
the kernels as a launch argument: its B integers (FlashAttention's
``cache_seqlens``) are not counted.

This grid has only B x KVH blocks: at batch 1 with 32 kv heads, 32 of an A100's
108 SMs work and each gets only its fair share of HBM bandwidth. Flash-Decoding
(``split_kv=S``, :mod:`.decode_split`) splits each cache into S chunks so that
B x KVH x S blocks fill the GPU, then combines the partial results.
"""

from __future__ import annotations

import math
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import FLOAT_DTYPES, DTypeError, ShapeError, TileConfigError, check_registers, check_tiles
from ...sim import current_profile, tiles_fit
from ...sim.args import integer
from ...sim.sram import REG
from ...sim.counters import new_counters
from ...sim.tiles import count_vector, load_tile, store_tile
from .._classes import blocks_to_walk, launch_counters, uniform_runs
from .._contract import blas_single_thread, block_size, clamp_note, operand, same_mode
from .._counting import extent, stand_in
from .._mma import sgemm
from .decode_common import OP_Q, DecodeCall, attend_tiles, cache_lengths, check_prefix_finite
from .decode_split import auto_splits, launch_split

KERNEL = "decode"
#: candidate K/V tile rows B_c, largest first
SIZES = (128, 64, 32, 16)


# ---- validation ---------------------------------------------------------------------------------

def prepare_decode(q, k_cache, v_cache, *, cache_len, scale, dtype: str, check_finite: bool,
                   kernel: str = KERNEL) -> DecodeCall:
    """Validate a decode call; every error names the shapes and says what to do."""
    ndim = getattr(q, "ndim", np.ndim(q))
    if ndim not in (3, 4):
        raise ShapeError(f"{kernel}: q must be (batch, heads, 1, head_dim) or (batch, heads, head_dim), "
                         f"got {ndim}-D shape {tuple(np.shape(q))}")
    Q = operand(q, "q", ndim=ndim, dtype=dtype, allowed=FLOAT_DTYPES, check_finite=check_finite)
    # The caches are checked below, over the positions the kernel reads only.
    K = operand(k_cache, "k_cache", ndim=4, dtype=dtype, allowed=FLOAT_DTYPES, check_finite=False, check_range=False)
    V = operand(v_cache, "v_cache", ndim=4, dtype=dtype, allowed=FLOAT_DTYPES, check_finite=False, check_range=False)
    execute = same_mode(Q, K, V)
    if len({Q.dtype, K.dtype, V.dtype}) > 1:
        raise DTypeError(f"{kernel}: q, k_cache, v_cache have logical dtypes {Q.dtype}, {K.dtype}, {V.dtype}; "
                         f"use one")
    if ndim == 4 and Q.shape[2] != 1:
        raise ShapeError(f"{kernel}: decoding takes one new query token per sequence, but q {Q.shape} has "
                         f"{Q.shape[2]}; for a prompt (prefill) use flash_attention(q, k, v, causal=True)")
    b, h, d = Q.shape[0], Q.shape[1], Q.shape[-1]
    bk, hk, L, dk = K.shape
    if K.shape != V.shape:
        raise ShapeError(f"{kernel}: k_cache is {K.shape} but v_cache is {V.shape}; they must have the same shape")
    if bk != b:
        raise ShapeError(f"{kernel}: q has batch {b} but the cache has batch {bk} (q {Q.shape}, k_cache {K.shape})")
    if dk != d:
        raise ShapeError(f"{kernel}: q has head_dim {d} but the cache has head_dim {dk} (q {Q.shape}, "
                         f"k_cache {K.shape})")
    if h % hk:
        raise ShapeError(f"{kernel}: q has {h} heads, which kv_heads={hk} does not divide (q {Q.shape}, "
                         f"k_cache {K.shape}); GQA needs heads to be a multiple of kv_heads")
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    elif isinstance(scale, bool) or not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        raise TileConfigError(f"{kernel}: scale must be a finite number, got {scale!r}")
    lens = cache_lengths(cache_len, b, L, kernel=kernel)
    if execute:
        check_prefix_finite(K, lens, check_finite=check_finite)
        check_prefix_finite(V, lens, check_finite=check_finite)
    return DecodeCall(Q, K, V, b, h, hk, L, d, Q.dtype, execute, float(scale), lens)


# ---- tiles and SRAM --------------------------------------------------------------------------------

def decode_tiles(group: int, block_k: int, d: int, dtype: str) -> dict:
    """What one decode block keeps on chip: Q, K_j, V_j in SRAM; the fp32 scores and O accumulator and
    the row statistics in registers (as FlashAttention-2's forward does)."""
    return {
        "Q (group rows)": ((group, d), dtype), "K_j": ((block_k, d), dtype), "V_j": ((block_k, d), dtype),
        "S/P": ((group, block_k), "fp32", REG), "O accumulator": ((group, d), "fp32", REG),
        "m, l": ((2, group), "fp32", REG),
    }


def _auto_block_k(device, group: int, max_len: int, d: int, dtype: str) -> "int | None":
    return _auto_block_k_cached(device.sram_per_sm, device.register_bytes, group, max_len, d, dtype)


@lru_cache(maxsize=None)
def _auto_block_k_cached(sram: int, regs: int, group: int, max_len: int, d: int, dtype: str) -> "int | None":
    chip = SimpleNamespace(sram_per_sm=sram, register_bytes=regs)
    for bc in sorted({min(s, max_len) for s in SIZES}, reverse=True):
        if tiles_fit(chip, decode_tiles(group, bc, d, dtype)):
            return bc
    return None


def resolve_block_k(call: DecodeCall, block_k, kernel: str = KERNEL) -> tuple[int, int, int]:
    """B_c (the caller's, clamped to max_len, or the largest of 128, 64, 32, 16 that fits on chip) and the
    SRAM and register bytes of one block."""
    dev = current_profile().device
    auto = _auto_block_k(dev, call.group, call.max_len, call.head_dim, call.dtype)

    def suggest() -> str:
        if auto is None:
            return (f"Even block_k={min(SIZES[-1], call.max_len)} does not fit with {call.group} query heads per "
                    f"kv head and head_dim {call.head_dim}; use a device with more SRAM per SM (`tinyml devices`)")
        return f"block_k={auto} fits; or omit block_k to let tinyml choose"

    if block_k is None and auto is None:
        bc = min(SIZES[-1], call.max_len)          # the smallest tiles: check_tiles raises, naming them
    else:
        bc = min(block_size(block_k, "block_k", auto), call.max_len)
    tiles = decode_tiles(call.group, bc, call.head_dim, call.dtype)
    return bc, check_tiles(dev, tiles, kernel=kernel, suggest=suggest), check_registers(dev, tiles)


@njit(parallel=PARALLEL, cache=True)
def _body(q, k, v, lens, o, B, H, KVH, L, D, BC, scale, execute, ids, counters, elem_bits, gemm):
    # q, o: (B*H, D); k, v: (B*KVH*L, D); lens: (B,)
    G = H // KVH
    for row in prange(len(ids)):              # every block, or one per sequence (counting)
        blk = ids[row]
        b = blk // KVH
        row0 = b * H + (blk % KVH) * G       # the group's first query head, a row of q and o
        length = lens[b]
        q_s = np.zeros((extent(G, execute), extent(D, execute)), dtype=np.float32)       # (G, D) SRAM
        k_s = np.zeros((extent(BC, execute), extent(D, execute)), dtype=np.float32)     # (BC, D)
        v_s = np.zeros((extent(BC, execute), extent(D, execute)), dtype=np.float32)     # (BC, D)
        s_t = np.zeros((extent(G, execute), extent(BC, execute)), dtype=np.float32)     # (G, BC) S
        p_t = np.zeros((extent(G, execute), extent(BC, execute)), dtype=np.float32)     # (G, BC) P
        o_acc = np.zeros((extent(G, execute), extent(D, execute)), dtype=np.float32)     # (G, D) fp32
        m_i = np.full(G, -np.inf, dtype=np.float32)                                 # (G,)
        l_i = np.zeros(G, dtype=np.float32)                                         # (G,)
        load_tile(q, row0, 0, G, D, q_s, execute, counters, row, OP_Q, elem_bits)
        attend_tiles(q_s, k, v, blk * L, 0, (length + BC - 1) // BC, length, G, D, BC, scale, k_s, v_s,
                     s_t, p_t, o_acc, m_i, l_i, execute, counters, row, elem_bits, gemm)
        count_vector(G * D, counters, row)                                # O / l
        if execute:
            for r in range(G):
                inv = 1.0 / l_i[r]                 # l >= 1: the max score contributes exp(0)
                for dd in range(D):
                    o_acc[r, dd] *= inv
        store_tile(o_acc, G, D, o, row0, 0, execute, counters, row, elem_bits)


def launch_plain(call: DecodeCall, o, block_k: int, sram: int, regs: int, notes: tuple = ()) -> None:
    """Run the plain kernel of a validated call into ``o`` and record it."""
    prof = current_profile()
    B, H, KVH, L, D = call.batch, call.heads, call.kv_heads, call.max_len, call.head_dim
    x = call.execute
    # counting: the KVH blocks of a sequence do the same work, one class per sequence
    ids, run_class, run_length = blocks_to_walk(B, KVH, x, uniform_runs)
    counters = new_counters(len(ids), n_operands=3)
    gemm = sgemm()
    with blas_single_thread():
        _body(call.q.data.reshape(B * H, D) if x else stand_in(2),
              call.k.data.reshape(B * KVH * L, D) if x else stand_in(2),
              call.v.data.reshape(B * KVH * L, D) if x else stand_in(2),
              call.lengths, o.reshape(B * H, D) if x else stand_in(2),
              B, H, KVH, L, D, block_k, call.scale, x, ids, counters, call.elem_bits, gemm)
    prof.record(KERNEL, (B, KVH), launch_counters(counters, x, run_class, run_length), dtype=call.dtype,
                sram_per_block=sram, regs_per_block=regs, pipelined=True, notes=notes)


# ---- the public entry point ----------------------------------------------------------------------------

def resolve_splits(split_kv, call: DecodeCall, block_k: int) -> int:
    """The number of KV splits: the caller's (a positive int) or, for None, :func:`.decode_split.auto_splits`."""
    if split_kv is None:
        return auto_splits(current_profile().device, call.batch, call.kv_heads,
                           int(call.n_tiles(block_k).max()))
    return integer(split_kv, "split_kv", lo=1, error=TileConfigError,
                   hint="1 = the plain kernel, or None to choose from the device's SM count")


def decode_attention(q, k_cache, v_cache, *, cache_len, split_kv: "int | None" = None, scale=None,
                     block_k: "int | None" = None, dtype: str = "fp16", check_finite: bool = True):
    """Attention of one new query token per sequence over its first ``cache_len`` cached keys and values.

    q: (B, H, 1, d) or (B, H, d); k_cache, v_cache: (B, KVH, L, d) with H a
    multiple of KVH (GQA/MQA); NumPy arrays (executing) or ``tinyml.sim.meta``
    tensors (counting). ``cache_len``: an int or B ints, each in [1, L]
    (positions past it are never read, so they may hold anything).
    ``split_kv``: 1 runs the plain kernel (one block per sequence and kv head,
    one launch, ``decode``); S >= 2 runs Flash-Decoding (S chunks per cache in
    parallel, ``decode_split`` then ``decode_combine``); None chooses S from
    the device's SM count (:func:`.decode_split.auto_splits`). ``scale``
    defaults to 1/sqrt(d); ``block_k`` is B_c, the K/V tile rows (default: the
    largest of 128, 64, 32, 16 that fits SRAM; a block_k larger than the cache's
    L is clamped to L, SRAM is counted for L rows, as ``sram_per_block_bytes`` shows, and
    the record's ``notes`` say so).
    Returns o shaped like q.
    See the module docstrings for the tile loops and HBM bytes.
    """
    call = prepare_decode(q, k_cache, v_cache, cache_len=cache_len, scale=scale, dtype=dtype,
                          check_finite=check_finite)
    bc, sram, regs = resolve_block_k(call, block_k)
    splits = resolve_splits(split_kv, call, bc)
    prof = current_profile()
    for op in (call.q, call.k, call.v):
        prof.hbm.track(op.obj, op.name, call.dtype)
    o = prof.hbm.new_tensor("o", call.q.shape, call.dtype, call.execute)          # like q
    notes = clamp_note("block_k", block_k, bc, "the cache's L")
    if splits == 1:
        launch_plain(call, o, bc, sram, regs, notes)
    else:
        launch_split(call, o, bc, sram, regs, splits, notes)
    return o
