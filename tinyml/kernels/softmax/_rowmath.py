"""The arithmetic on a tile already in SRAM, shared by the softmax versions.

Rows of ``t[:rows, :cols]`` (float32) against per-row statistics ``m`` (the
max so far) and ``d`` (the sum of exponentials so far, relative to ``m``).

A row whose entries are all ``-inf`` (fully masked) has ``m = -inf``; the
exponent is then shifted by 0 instead (``shift``), so ``exp(-inf - 0) = 0``,
``d = 0`` and the row normalizes to zeros, never ``exp(-inf + inf) = NaN``.
"""

from __future__ import annotations

import numpy as np

from ...sim.jit import njit


@njit(cache=True)
def shift(mi):
    """The value subtracted before ``exp``: the row max, or 0 for a fully masked row."""
    if mi == -np.inf:
        return np.float32(0.0)
    return mi


@njit(cache=True)
def tile_max(t, rows, cols, m):
    """m[i] = max(m[i], max_j t[i, j])."""
    for i in range(rows):
        mi = m[i]
        for j in range(cols):
            mi = max(mi, t[i, j])
        m[i] = mi


@njit(cache=True)
def tile_sum_exp(t, rows, cols, m, d):
    """d[i] += sum_j exp(t[i, j] - m[i])   (m is final: three-pass, pass 2)."""
    for i in range(rows):
        mi = shift(m[i])
        acc = np.float32(0.0)
        for j in range(cols):
            acc += np.exp(t[i, j] - mi)
        d[i] += acc


@njit(cache=True)
def tile_online(t, rows, cols, m, d):
    """The online update, one tile at a time (v2, pass 1)::

        m_new = max(m, max_j t[i, j])
        d     = d * exp(m - m_new) + sum_j exp(t[i, j] - m_new)
    """
    for i in range(rows):
        m_old = m[i]
        m_new = m_old
        for j in range(cols):
            m_new = max(m_new, t[i, j])
        ms = shift(m_new)
        acc = np.float32(0.0)
        for j in range(cols):
            acc += np.exp(t[i, j] - ms)
        d[i] = d[i] * np.exp(m_old - ms) + acc     # exp(-inf) = 0 rescales an empty d
        m[i] = m_new


@njit(cache=True)
def tile_normalize(t, rows, cols, m, d):
    """t[i, j] = exp(t[i, j] - m[i]) / d[i], in place; 0 where d[i] == 0 (masked rows)."""
    for i in range(rows):
        mi = shift(m[i])
        di = d[i]
        for j in range(cols):
            t[i, j] = np.exp(t[i, j] - mi) / di if di > 0 else np.float32(0.0)


@njit(cache=True)
def tile_exp_inplace(t, rows, cols, m, d):
    """t[i, j] = exp(t[i, j] - m[i]) in place, and d[i] += the row's sum (v3)."""
    for i in range(rows):
        mi = shift(m[i])
        acc = np.float32(0.0)
        for j in range(cols):
            e = np.exp(t[i, j] - mi)
            t[i, j] = e
            acc += e
        d[i] += acc


@njit(cache=True)
def tile_divide(t, rows, cols, d):
    """t[i, j] /= d[i] in place; 0 where d[i] == 0 (v3)."""
    for i in range(rows):
        di = d[i]
        for j in range(cols):
            t[i, j] = t[i, j] / di if di > 0 else np.float32(0.0)
