"""What the two decoding kernels share: the validated call, the cache lengths, the K/V tile step.

The plain kernel (:mod:`.decode`) and Flash-Decoding (:mod:`.decode_split`)
run the same online-softmax step over a cache's K/V tiles (:func:`attend_tiles`);
the KV cache (:mod:`.kv_cache`) validates its lengths as they do
(:func:`cache_lengths`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...sim.jit import njit
from ...sim import DTypeError, NonFiniteError, ShapeError, bits
from ...sim.tiles import count_mma, count_vector, load_tile
from .._contract import Operand, refuse_float32_overflow
from .._mma import mma_acc, mma_set_bt
from .flash2.fwd import RESCALE_PER_ROW, fwd_per_score

OP_Q, OP_K, OP_V = 0, 1, 2
#: vector FLOPs per computed score: scale, max, exp (2), sum (no mask, no dropout, P unnormalised)
PER_SCORE = fwd_per_score(False, False)

class CacheLengthError(ShapeError):
    """A sequence length is outside [1, max_len], or the lengths do not match the batch."""


# ---- per-sequence lengths --------------------------------------------------------------------

def cache_lengths(cache_len, batch: int, max_len: int, *, kernel: str, lowest: int = 1) -> np.ndarray:
    """``cache_len`` (an int, or one int per sequence) as a (batch,) int64 array in [lowest, max_len]."""
    if isinstance(cache_len, (bool, np.bool_)):
        raise DTypeError(f"{kernel}: cache_len must be an int or {batch} ints (one per sequence), got {cache_len!r}")
    if isinstance(cache_len, (int, np.integer)):
        lens = np.full(batch, int(cache_len), dtype=np.int64)
    else:
        arr = np.asarray(cache_len)
        if arr.dtype.kind not in "iu":
            raise DTypeError(f"{kernel}: cache_len must hold integers (one length per sequence), "
                             f"got dtype {arr.dtype}: {cache_len!r}")
        if arr.shape != (batch,):
            raise CacheLengthError(f"{kernel}: cache_len must be an int or {batch} ints (one per sequence of "
                                   f"the batch), got shape {arr.shape}")
        lens = arr.astype(np.int64)
    bad = np.flatnonzero((lens < lowest) | (lens > max_len))
    if len(bad):
        i = int(bad[0])
        raise CacheLengthError(
            f"{kernel}: sequence {i} has cache_len {int(lens[i])}, outside [{lowest}, {max_len}] "
            f"(max_len is the cache's third dimension); {len(bad)} of {batch} lengths are out of range. "
            f"A length counts the tokens already in the cache, the new one included.")
    return lens


def check_prefix_finite(op: Operand, lens: np.ndarray, *, check_finite: bool = True) -> None:
    """Check the rows a kernel will read (position < len of its sequence) of cache operand ``op``:
    a float64 value beyond float32's range is always refused, NaN/Inf when ``check_finite``.

    Rows past a sequence's length are never read, so whatever they hold is allowed.
    """
    x = np.asarray(op.obj)                                  # the caller's array (float64 stays float64)
    for b, n in enumerate(lens):
        refuse_float32_overflow(x[b, :, :n], op.data[b, :, :n], op.name, offset=(b,))
        if not check_finite:
            continue
        bad = ~np.isfinite(op.data[b, :, :n])               # (KVH, n, d)
        if bad.any():
            h, t, c = (int(i) for i in np.argwhere(bad)[0])
            raise NonFiniteError(
                f"{op.name} holds {int(bad.sum())} NaN/Inf value(s) in the first {int(n)} positions of sequence "
                f"{b}, the first at index {(b, h, t, c)} (value {op.data[b, h, t, c]}); attention would spread "
                f"them silently. Clean the input first, e.g. np.nan_to_num({op.name}).")


# ---- the call -----------------------------------------------------------------------------------

@dataclass
class DecodeCall:
    """A validated decode call (see the module docstring for the layout)."""

    q: Operand
    k: Operand
    v: Operand
    batch: int
    heads: int
    kv_heads: int
    max_len: int
    head_dim: int
    dtype: str
    execute: bool
    scale: float
    lengths: np.ndarray        # (B,) int64, each in [1, max_len]

    @property
    def group(self) -> int:
        """Query heads per kv head (the rows of one block's Q tile)."""
        return self.heads // self.kv_heads

    @property
    def elem_bits(self) -> int:
        return bits(self.dtype)

    def n_tiles(self, block_k: int) -> np.ndarray:
        """(B,) K/V tiles of B_c rows each sequence's cache spans."""
        return -(-self.lengths // block_k)


# ---- the tile loop both kernels share -----------------------------------------------------------------

@njit(cache=True)
def attend_tiles(q_s, k, v, kv0, t0, t1, length, G, D, BC, scale, k_s, v_s, s_t, p_t, o_acc, m_i, l_i,
                 execute, counters, blk, elem_bits, gemm):
    """Online softmax of the (group, d) Q tile over K/V tiles [t0, t1) of one cache; updates O, m, l.

    k, v: (rows, D) with this (sequence, kv head)'s cache starting at row kv0.
    """
    for jb in range(t0, t1):
        c0 = jb * BC
        cols = min(BC, length - c0)
        if execute and cols < BC:              # the last, partial tile: zero padding
            k_s[:] = 0.0
            v_s[:] = 0.0
        load_tile(k, kv0 + c0, 0, cols, D, k_s, execute, counters, blk, OP_K, elem_bits)
        load_tile(v, kv0 + c0, 0, cols, D, v_s, execute, counters, blk, OP_V, elem_bits)
        count_mma(G, cols, D, counters, blk, elem_bits)                   # S = Q K_j^T
        count_vector(G * cols * PER_SCORE, counters, blk)
        count_vector(G * (D + RESCALE_PER_ROW), counters, blk)
        count_mma(G, D, cols, counters, blk, elem_bits)                   # O += P V_j
        if not execute:
            continue
        mma_set_bt(q_s, k_s, s_t, gemm)                                   # S = (G, D) @ (BC, D)^T
        for r in range(G):
            mx = m_i[r]
            for c in range(cols):
                s_t[r, c] *= scale
                if s_t[r, c] > mx:
                    mx = s_t[r, c]
            alpha = np.exp(m_i[r] - mx)            # 0 on the first tile (m = -inf)
            row_sum = 0.0
            for c in range(cols):
                p = np.exp(s_t[r, c] - mx)
                p_t[r, c] = p
                row_sum += p
            for c in range(cols, BC):
                p_t[r, c] = 0.0
            l_i[r] = alpha * l_i[r] + row_sum
            m_i[r] = mx
            for dd in range(D):
                o_acc[r, dd] *= alpha
        mma_acc(p_t, v_s, o_acc, gemm)                                    # (G, BC) @ (BC, D)


