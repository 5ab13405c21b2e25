"""Which keys a query may see: causal, sliding window, key padding.

Queries and keys are aligned bottom-right, as FlashAttention does when
``seq_q != seq_k``: query ``i`` sits at key position ``i + (seq_k - seq_q)``
(the last query sees the last key). With that position ``p``:

* causal: key ``j`` is visible iff ``j <= p``;
* window ``(left, right)``: visible iff ``p - left <= j <= p + right``
  (``-1`` means unbounded on that side);
* key padding: visible iff ``key_valid[b, j]`` (False marks a padding token).

A query that sees no key at all (a fully masked row) outputs zeros and has
log-sum-exp ``-inf``; it never produces NaN.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def visible(i, j, offset, causal, win_left, win_right):
    """True if query ``i`` may attend to key ``j`` (ignoring key padding)."""
    p = i + offset
    if causal and j > p:
        return False
    if win_left >= 0 and j < p - win_left:
        return False
    if win_right >= 0 and j > p + win_right:
        return False
    return True


@njit(cache=True)
def key_range(i, offset, n_k, causal, win_left, win_right):
    """[lo, hi): the keys query ``i`` can see at all (before padding). Empty if lo >= hi."""
    p = i + offset
    lo = 0
    hi = n_k
    if causal:
        hi = min(hi, p + 1)
    if win_left >= 0:
        lo = max(lo, p - win_left)
    if win_right >= 0:
        hi = min(hi, p + win_right + 1)
    return lo, max(lo, hi)


def visible_matrix(n_q: int, n_k: int, causal: bool, window: tuple[int, int]) -> np.ndarray:
    """(n_q, n_k) bool: the structural mask (vectorised, for references and tests)."""
    p = np.arange(n_q)[:, None] + (n_k - n_q)
    j = np.arange(n_k)[None, :]
    ok = np.ones((n_q, n_k), dtype=bool)
    if causal:
        ok &= j <= p
    left, right = window
    if left >= 0:
        ok &= j >= p - left
    if right >= 0:
        ok &= j <= p + right
    return ok
