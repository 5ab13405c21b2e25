"""Plain NumPy references in float64: obviously correct, slow, the ground truth.

Tests and docs compare every tiled kernel against these.

The matmul and attention references (the latter holds whole (B, H, Nq, Nk)
float64 score matrices) check the host's available memory first
(:func:`matmul_host_bytes`, :func:`attention_host_bytes`) and raise
:class:`~tinyml.sim.HostMemoryError` rather than being killed half-way.
"""

from __future__ import annotations

import math

import numpy as np


def matmul_host_bytes(m: int, n: int, k: int) -> int:
    """Host bytes :func:`matmul` needs: float64 copies of A and B, and C: ``8 (MK + KN + MN)``."""
    m, n, k = int(m), int(n), int(k)
    return 8 * (m * k + k * n + m * n)


def matmul(a, b) -> np.ndarray:
    """C = A @ B in float64. a: (M, K), b: (K, N) -> (M, N)."""
    from ..sim import check_host_memory

    sa, sb = np.shape(a), np.shape(b)
    m, k, n = math.prod(sa[:-1]), math.prod(sa[-1:]), (sb[-1] if len(sb) > 1 else 1)
    check_host_memory(matmul_host_bytes(m, n, k), f"the float64 reference matmul of {sa} @ {sb}")
    return np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64)


#: (B, H, Nq, Nk) float64 arrays alive at once at the reference's peak (S, exp(S - m), E, P; the
#: backward adds dP, dS and their temporaries; dropout its keep hash and P_drop), counted from the code below.
_PEAK_SCORE_ARRAYS = {"forward": 4, "backward": 6, "dropout": 4}


def attention_host_bytes(batch: int, heads: int, seq_q: int, seq_k: int, head_dim: int, *,
                         backward: bool = False, dropout: bool = False) -> int:
    """Host bytes the float64 attention reference needs at its peak, about
    ``8 x (B H Nq Nk x arrays + B H d (2 Nq + 2 Nk) x passes)``: the score-sized arrays (4 forward,
    6 with the backward, +4 with dropout) and the float64 copies of q, k, v, O (twice with the backward)."""
    B, H, Nq, Nk, d = (int(x) for x in (batch, heads, seq_q, seq_k, head_dim))
    arrays = _PEAK_SCORE_ARRAYS["backward" if backward else "forward"]
    arrays += _PEAK_SCORE_ARRAYS["dropout"] if dropout else 0
    return 8 * (B * H * Nq * Nk * arrays + B * H * d * (2 * Nq + 2 * Nk) * (2 if backward else 1))


def _attention_probs(q, k, causal, key_padding_mask, dropout_p, seed, scale, window, backward=False):
    """float64 scores -> (P, P after dropout, lse, visible) for every (b, h, i, j)."""
    from ..sim import check_host_memory
    from .attention.masks import visible_matrix
    from .attention.rng import keep_mask

    (b, h, nq, d), nk = np.shape(q), np.shape(k)[2]
    check_host_memory(attention_host_bytes(b, h, nq, nk, d, backward=backward, dropout=dropout_p > 0),
                      f"the float64 reference attention of B={b} H={h} Nq={nq} Nk={nk}")
    q = np.asarray(q, dtype=np.float64)                          # (B, H, Nq, d)
    k = np.asarray(k, dtype=np.float64)                          # (B, KVH, Nk, d)
    b, h, nq, d = q.shape
    k = np.repeat(k, h // k.shape[1], axis=1)                    # (B, H, Nk, d)
    nk = k.shape[2]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    s = scale * (q @ np.swapaxes(k, -1, -2))                     # (B, H, Nq, Nk)
    ok = np.broadcast_to(visible_matrix(nq, nk, causal, window), s.shape)
    if key_padding_mask is not None:
        ok = ok & np.asarray(key_padding_mask, dtype=bool)[:, None, None, :]
    s = np.where(ok, s, -np.inf)
    row_max = s.max(axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)       # fully masked rows
    e = np.where(ok, np.exp(s - row_max), 0.0)
    denom = e.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(denom > 0, e / denom, 0.0)
        lse = np.where(denom[..., 0] > 0, row_max[..., 0] + np.log(denom[..., 0]), -np.inf)
    pd = p
    if dropout_p > 0:
        pd = p * keep_mask(seed, b, h, nq, nk, dropout_p) / (1.0 - dropout_p)
    return p, pd, lse


def _window_pair(window, causal):
    from .attention._common import _window

    return _window(window, causal)


def attention(q, k, v, *, causal=False, key_padding_mask=None, dropout_p=0.0, seed=0, scale=None,
              window=None):
    """Exact attention in float64: returns (O, lse).

    q: (B, H, Nq, d); k, v: (B, KVH, Nk, d), H a multiple of KVH (GQA). Causal
    masks align bottom-right; ``key_padding_mask`` (B, Nk) is True for real keys;
    dropout keeps score (b, h, i, j) by the counter-based hash in
    :mod:`tinyml.kernels.attention.rng`. Fully masked rows give O = 0, lse = -inf.
    """
    _, pd, lse = _attention_probs(q, k, causal, key_padding_mask, dropout_p, seed, scale,
                                  _window_pair(window, causal))
    v = np.asarray(v, dtype=np.float64)
    v = np.repeat(v, np.shape(q)[1] // v.shape[1], axis=1)      # (B, H, Nk, d)
    return pd @ v, lse


def attention_backward(q, k, v, do, *, causal=False, key_padding_mask=None, dropout_p=0.0, seed=0,
                       scale=None, window=None):
    """Gradients (dq, dk, dv) of ``sum(O * do)`` in float64; dk, dv summed over each GQA group."""
    q64 = np.asarray(q, dtype=np.float64)
    b, h, nq, d = q64.shape
    kvh = np.shape(k)[1]
    g = h // kvh
    scale_ = 1.0 / np.sqrt(d) if scale is None else scale
    p, pd, _ = _attention_probs(q, k, causal, key_padding_mask, dropout_p, seed, scale,
                                _window_pair(window, causal), backward=True)
    k64 = np.repeat(np.asarray(k, dtype=np.float64), g, axis=1)  # (B, H, Nk, d)
    v64 = np.repeat(np.asarray(v, dtype=np.float64), g, axis=1)
    do = np.asarray(do, dtype=np.float64)                        # (B, H, Nq, d)
    dv = np.swapaxes(pd, -1, -2) @ do                            # (B, H, Nk, d)
    dpd = do @ np.swapaxes(v64, -1, -2)                          # (B, H, Nq, Nk)
    dp = dpd * (pd / np.where(p > 0, p, 1.0)) if dropout_p > 0 else dpd   # through dropout
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))         # softmax backward
    dq = scale_ * (ds @ k64)                                     # (B, H, Nq, d)
    dk = scale_ * (np.swapaxes(ds, -1, -2) @ q64)                # (B, H, Nk, d)
    dk = dk.reshape(b, kvh, g, -1, d).sum(axis=2)
    dv = dv.reshape(b, kvh, g, -1, d).sum(axis=2)
    return dq, dk, dv


def softmax(x) -> np.ndarray:
    """Row-wise softmax over the last axis in float64: exp(x - max) / sum(exp(x - max)).

    ``-inf`` entries get probability 0; a row that is ``-inf`` everywhere gives
    zeros (not NaN), the convention of tinyml's softmax and attention kernels.
    """
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    m = np.where(np.isneginf(m), 0.0, m)                    # fully masked rows: shift by 0
    e = np.exp(x - m)
    d = e.sum(axis=-1, keepdims=True)
    return np.divide(e, d, out=np.zeros_like(e), where=d > 0)
