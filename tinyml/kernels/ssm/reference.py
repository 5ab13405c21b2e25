"""Plain NumPy float64 references for the recurrent kernels: slow, obviously correct, the ground truth.

Selective scan (Mamba, diagonal A, input-dependent step and projections)::

    u, delta: (batch, L, D)     B, C: (batch, L, N)     A: (D, N)     D_skip: (D,) or None
    h_0 = 0
    h_t[d, n] = exp(delta_t[d] A[d, n]) h_{t-1}[d, n] + delta_t[d] B_t[n] u_t[d]
    y_t[d]    = sum_n C_t[n] h_t[d, n] + D_skip[d] u_t[d]

Linear attention with a decay (RetNet / RWKV-style; decay 1 is plain linear attention)::

    q, k, v: (batch, H, N, d)   decay: (H,) in (0, 1]
    S_0 = 0  (d x d per head)
    S_t = decay S_{t-1} + k_t^T v_t          o_t = q_t S_t        (causal: token t sees s <= t)
    equivalently o_t = sum_{s <= t} decay^(t - s) (q_t . k_s) v_s   (the quadratic form)
"""

from __future__ import annotations

import numpy as np


def _f64(*xs):
    return [None if x is None else np.asarray(x, dtype=np.float64) for x in xs]


def selective_scan(u, delta, A, B, C, D=None, *, return_states: bool = False):
    """y (batch, L, D) of the selective scan above, one time step at a time (and the states
    (batch, L, D, N) if ``return_states``)."""
    u, delta, A, B, C, D = _f64(u, delta, A, B, C, D)
    bt, L, dm = u.shape
    h = np.zeros((bt, dm, A.shape[1]))
    y = np.empty((bt, L, dm))
    states = np.empty((bt, L, dm, A.shape[1])) if return_states else None
    for t in range(L):
        dA = np.exp(delta[:, t, :, None] * A)                                  # (batch, D, N)
        h = dA * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]    # (batch, D, N)
        y[:, t] = np.einsum("bdn,bn->bd", h, C[:, t])
        if states is not None:
            states[:, t] = h
    if D is not None:
        y += D * u
    return (y, states) if return_states else y


def selective_scan_loss_grads(u, delta, A, B, C, D, dy):
    """Gradients of ``sum(selective_scan(...) * dy)`` with respect to (u, delta, A, B, C, D), in float64,
    by back-propagating through the time loop (checked against finite differences in the tests)."""
    u, delta, A, B, C, D, dy = _f64(u, delta, A, B, C, D, dy)
    bt, L, dm = u.shape
    _, hs = selective_scan(u, delta, A, B, C, None, return_states=True)
    du, dd, dB, dC = np.zeros_like(u), np.zeros_like(delta), np.zeros_like(B), np.zeros_like(C)
    dA = np.zeros_like(A)
    dh = np.zeros((bt, dm, A.shape[1]))
    for t in range(L - 1, -1, -1):
        h_t = hs[:, t]
        h_prev = hs[:, t - 1] if t > 0 else np.zeros_like(h_t)
        dC[:, t] = np.einsum("bd,bdn->bn", dy[:, t], h_t)
        dh = dh + dy[:, t, :, None] * C[:, t, None, :]                         # dL/dh_t
        abar = np.exp(delta[:, t, :, None] * A)
        g = dh * h_prev * abar                                                 # d/d(delta A)
        dA += np.einsum("bdn,bd->dn", g, delta[:, t])
        dd[:, t] = np.einsum("bdn,dn->bd", g, A) + np.einsum("bdn,bn->bd", dh, B[:, t]) * u[:, t]
        dB[:, t] = np.einsum("bdn,bd->bn", dh, delta[:, t] * u[:, t])
        du[:, t] = np.einsum("bdn,bn->bd", dh, B[:, t]) * delta[:, t]
        dh = dh * abar                                                         # dL/dh_{t-1}
    dD = None
    if D is not None:
        du += D * dy
        dD = np.einsum("bld,bld->d", dy, u)
    return du, dd, dA, dB, dC, dD


def linear_attention(q, k, v, decay=None):
    """o (batch, H, N, d) of causal linear attention with per-head ``decay``, the quadratic form."""
    q, k, v = _f64(q, k, v)
    n = q.shape[2]
    gam = np.ones(q.shape[1]) if decay is None else np.asarray(decay, dtype=np.float64)
    t = np.arange(n)
    diff = t[:, None] - t[None, :]                                             # (N, N) t - s
    mask = np.where(diff >= 0, gam[:, None, None] ** np.maximum(diff, 0)[None], 0.0)   # (H, N, N)
    s = np.einsum("bhtd,bhsd->bhts", q, k) * mask[None]
    return np.einsum("bhts,bhse->bhte", s, v)


def linear_attention_recurrent(q, k, v, decay=None, state=None):
    """The same output one token at a time with the (d, d) state per head; returns (o, final state)."""
    q, k, v = _f64(q, k, v)
    bt, H, n, d = q.shape
    gam = np.ones(H) if decay is None else np.asarray(decay, dtype=np.float64)
    S = np.zeros((bt, H, d, v.shape[-1])) if state is None else np.asarray(state, dtype=np.float64).copy()
    o = np.empty(q.shape[:3] + (v.shape[-1],))
    for t in range(n):
        S = gam[None, :, None, None] * S + np.einsum("bhd,bhe->bhde", k[:, :, t], v[:, :, t])
        o[:, :, t] = np.einsum("bhd,bhde->bhe", q[:, :, t], S)
    return o, S


def linear_attention_grads(q, k, v, decay, do):
    """(dq, dk, dv) of ``sum(linear_attention(q, k, v, decay) * do)`` in float64 (quadratic form)."""
    q, k, v, do = _f64(q, k, v, do)
    n = q.shape[2]
    gam = np.ones(q.shape[1]) if decay is None else np.asarray(decay, dtype=np.float64)
    t = np.arange(n)
    diff = t[:, None] - t[None, :]
    mask = np.where(diff >= 0, gam[:, None, None] ** np.maximum(diff, 0)[None], 0.0)[None]   # (1, H, N, N)
    dp = np.einsum("bhte,bhse->bhts", do, v) * mask                          # dL/d(q_t . k_s)
    s = np.einsum("bhtd,bhsd->bhts", q, k) * mask
    dq = np.einsum("bhts,bhsd->bhtd", dp, k)
    dk = np.einsum("bhts,bhtd->bhsd", dp, q)
    dv = np.einsum("bhts,bhte->bhse", s, do)
    return dq, dk, dv
