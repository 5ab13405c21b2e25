"""The KV cache: every past token's keys and values, kept in HBM for decoding.

A decoder generates one token at a time. Attention for the new token needs the
keys and values of every token before it, so instead of recomputing them the
model keeps them: per layer, k and v of shape (batch, kv_heads, max_len,
head_dim), allocated once for the longest sequence it will serve, plus the
current length of each sequence. Each step appends one row per sequence and
kv head (the ``kv_append`` kernel) and then attends over the first ``len``
rows (:func:`tinyml.kernels.attention.decode.decode_attention`).

Memory per token of context, over the whole model::

    bytes_per_token = 2 x layers x kv_heads x head_dim x s       (K and V, s bytes per element)

Llama-2-7B (32 layers, 32 kv heads, head_dim 128, fp16): 2 x 32 x 32 x 128 x 2
= 512 KiB per token, so a 4K-token context holds 2 GiB and a 64K one 32 GiB.
GQA and MQA (fewer kv heads) shrink it by heads / kv_heads.

The append kernel (grid (batch, kv_heads), no SRAM staging: it is a copy)::

    for each block (b, h) in parallel:
        n = n_new[b]                                   # tokens sequence b appends
        K[b, h, len[b] : len[b] + n] = K_new[b, h, :n]     # HBM -> registers -> HBM
        V[b, h, len[b] : len[b] + n] = V_new[b, h, :n]
    len += n_new                                       # on the host, after the launch

HBM traffic: reads = writes = 2 x kv_heads x head_dim x s x sum_b n_new[b].
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import FLOAT_DTYPES, DTypeError, ShapeError, bits, canonical, current_profile, nbytes
from ...sim.counters import new_counters
from ...sim.tiles import copy_rect, count_load_direct, count_store_direct
from ...sim.args import integer
from .._classes import blocks_to_walk, launch_counters, uniform_runs
from .._contract import operand, same_mode
from .._counting import stand_in
from .decode import decode_attention
from .decode_common import CacheLengthError, cache_lengths

KERNEL = "kv_append"


class KVCacheFullError(CacheLengthError):
    """Appending would write past the cache's max_len."""


# ---- memory --------------------------------------------------------------------------------

def bytes_per_token(layers: int, kv_heads: int, head_dim: int, dtype: str = "fp16") -> int:
    """HBM bytes one token of context occupies in a model's KV cache: 2 x layers x kv_heads x head_dim x s."""
    for name, value in (("layers", layers), ("kv_heads", kv_heads), ("head_dim", head_dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ShapeError(f"bytes_per_token: {name} must be a positive integer, got {value!r}")
    return nbytes(2 * int(layers) * int(kv_heads) * int(head_dim), dtype)


# ---- the append kernel -------------------------------------------------------------------------

@njit(parallel=PARALLEL, cache=True)
def _append_body(k_new, v_new, k, v, lens, n_new, B, KVH, T, L, D, execute, ids, counters, elem_bits):
    # k_new, v_new: (B*KVH*T, D); k, v: (B*KVH*L, D)
    for row in prange(len(ids)):           # every block, or one per sequence (counting)
        blk = ids[row]
        b = blk // KVH
        n = n_new[b]
        if n == 0:
            continue
        src = blk * T                      # first new row of (b, h)
        dst = blk * L + lens[b]            # first free row of (b, h) in the cache
        count_load_direct(n * D, counters, row, 0, elem_bits)
        count_store_direct(n * D, counters, row, elem_bits)
        count_load_direct(n * D, counters, row, 1, elem_bits)
        count_store_direct(n * D, counters, row, elem_bits)
        if execute:
            copy_rect(k_new, src, 0, n, D, k, dst, 0)
            copy_rect(v_new, src, 0, n, D, v, dst, 0)


class KVCache:
    """One layer's KV cache in the active profile's HBM: k, v (batch, kv_heads, max_len, head_dim).

    ``execute=False`` makes shape-only caches (``tinyml.sim.meta``) for counting
    mode. ``lengths`` (batch,) counts the tokens each sequence holds; it starts
    at 0 and grows with :meth:`append`. Attend with :meth:`attend` or
    ``decode_attention(q, cache.k, cache.v, cache_len=cache.lengths)``.
    """

    def __init__(self, batch: int, kv_heads: int, max_len: int, head_dim: int, *, dtype: str = "fp16",
                 execute: bool = True):
        self.shape = tuple(integer(v, f"KVCache: {name}", lo=1, error=ShapeError)           # (B, KVH, L, d)
                           for name, v in (("batch", batch), ("kv_heads", kv_heads), ("max_len", max_len),
                                           ("head_dim", head_dim)))
        self.dtype = canonical(dtype, FLOAT_DTYPES)
        hbm = current_profile().hbm
        self.k = hbm.new_tensor("k_cache", self.shape, self.dtype, bool(execute))   # (B, KVH, L, d)
        self.v = hbm.new_tensor("v_cache", self.shape, self.dtype, bool(execute))   # (B, KVH, L, d)
        if execute:      # a GPU would leave it uninitialised; no kernel reads past a sequence's length
            self.k.fill(0.0)
            self.v.fill(0.0)
        self.lengths = np.zeros(int(batch), dtype=np.int64)                         # (B,)

    @property
    def execute(self) -> bool:
        return isinstance(self.k, np.ndarray)

    @property
    def max_len(self) -> int:
        return self.shape[2]

    @property
    def nbytes(self) -> int:
        """HBM bytes of k and v together."""
        return 2 * nbytes(math.prod(self.shape), self.dtype)

    def append(self, k_new, v_new, *, n_new=None) -> None:
        """Write new tokens' keys and values after each sequence's last one (one ``kv_append`` launch).

        k_new, v_new: (batch, kv_heads, T, head_dim), or (batch, kv_heads, head_dim)
        for one token (T = 1). ``n_new`` (int or one int per sequence, each in
        [0, T]; default T) is how many of the T tokens each sequence takes: a
        ragged prompt, or 0 for a sequence that is not generating this step.
        Raises :class:`KVCacheFullError` if a sequence would pass max_len.
        """
        B, KVH, L, D = self.shape
        ndim = getattr(k_new, "ndim", np.ndim(k_new))
        if ndim not in (3, 4):
            raise ShapeError(f"{KERNEL}: k_new must be (batch, kv_heads, T, head_dim) or (batch, kv_heads, "
                             f"head_dim), got {ndim}-D shape {tuple(np.shape(k_new))}")
        K = operand(k_new, "k_new", ndim=ndim, dtype=self.dtype, allowed=FLOAT_DTYPES)
        V = operand(v_new, "v_new", ndim=ndim, dtype=self.dtype, allowed=FLOAT_DTYPES)
        execute = same_mode(K, V)
        if execute != self.execute:
            raise DTypeError(f"{KERNEL}: the cache is {'arrays' if self.execute else 'MetaTensors'} but k_new is "
                             f"{'an array' if execute else 'a MetaTensor'}; use the same mode for both")
        if K.shape != V.shape:
            raise ShapeError(f"{KERNEL}: k_new is {K.shape} but v_new is {V.shape}; they must have the same shape")
        shape4 = K.shape if ndim == 4 else (K.shape[0], K.shape[1], 1, K.shape[2])
        T = shape4[2]
        if (shape4[0], shape4[1], shape4[3]) != (B, KVH, D):
            raise ShapeError(f"{KERNEL}: k_new {K.shape} does not fit the cache {self.shape}: (batch, kv_heads, "
                             f"head_dim) must be {(B, KVH, D)}")
        if K.dtype != self.dtype:
            raise DTypeError(f"{KERNEL}: k_new is {K.dtype} but the cache holds {self.dtype}")
        n = cache_lengths(T if n_new is None else n_new, B, T, kernel=KERNEL, lowest=0)
        full = np.flatnonzero(self.lengths + n > L)
        if len(full):
            i = int(full[0])
            raise KVCacheFullError(
                f"{KERNEL}: sequence {i} holds {int(self.lengths[i])} tokens and appends {int(n[i])}, which would "
                f"pass the cache's max_len {L}; {len(full)} of {B} sequences are full. Allocate a KVCache with a "
                f"larger max_len, or stop (or evict) those sequences before appending.")
        prof = current_profile()
        for obj, name in ((self.k, "k_cache"), (self.v, "v_cache"), (K.obj, "k_new"), (V.obj, "v_new")):
            prof.hbm.track(obj, name, self.dtype)
        # counting: the KVH blocks of a sequence append alike, one class per sequence
        ids, run_class, run_length = blocks_to_walk(B, KVH, execute, uniform_runs)
        counters = new_counters(len(ids), n_operands=2)
        _append_body(K.data.reshape(B * KVH * T, D) if execute else stand_in(2),
                     V.data.reshape(B * KVH * T, D) if execute else stand_in(2),
                     self.k.reshape(B * KVH * L, D) if execute else stand_in(2),
                     self.v.reshape(B * KVH * L, D) if execute else stand_in(2),
                     self.lengths, n, B, KVH, T, L, D, execute, ids, counters, bits(self.dtype))
        prof.record(KERNEL, (B, KVH), launch_counters(counters, execute, run_class, run_length), dtype=self.dtype,
                    sram_per_block=0)
        self.lengths = self.lengths + n

    def attend(self, q, **kwargs):
        """``decode_attention(q, self.k, self.v, cache_len=self.lengths, dtype=self.dtype, **kwargs)``."""
        return decode_attention(q, self.k, self.v, cache_len=self.lengths, dtype=self.dtype, **kwargs)

    def __repr__(self) -> str:
        return f"KVCache(shape={self.shape}, dtype={self.dtype!r}, lengths={self.lengths.tolist()})"
