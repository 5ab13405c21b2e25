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

Which tiles a mask hides (FlashAttention skips them: no loads, no FLOPs). The keys visible
to the rows of q block i form one contiguous span ``[span_lo[i], span_hi[i])`` (every row's
range starts and ends no earlier than the previous row's, and moves by at most one key), so
tile (i, j) is computed iff that span meets K/V block j (:func:`q_block_spans`,
:func:`k_block_rows`). Key padding never skips a tile: it is applied inside computed tiles.
"""

from __future__ import annotations

import numpy as np

from ...sim.jit import njit


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


# ---- which tiles are computed ---------------------------------------------------------------

@njit(cache=True)
def q_block_spans(n_q, n_k, br, causal, win_left, win_right):
    """(span_lo, span_hi), each (ceil(n_q / br),): the keys visible to some row of each q block."""
    nqb = (n_q + br - 1) // br
    offset = n_k - n_q
    span_lo = np.zeros(nqb, dtype=np.int64)
    span_hi = np.zeros(nqb, dtype=np.int64)              # hi <= lo: nothing visible
    for ib in range(nqb):
        r0 = ib * br
        r1 = min(n_q, r0 + br)
        first = -1
        for r in range(r0, r1):                          # first row that sees any key
            lo, hi = key_range(r, offset, n_k, causal, win_left, win_right)
            if lo < hi:
                first = r
                span_lo[ib] = lo
                break
        if first < 0:
            continue
        for r in range(r1 - 1, first - 1, -1):           # last row that sees any key
            lo, hi = key_range(r, offset, n_k, causal, win_left, win_right)
            if lo < hi:
                span_hi[ib] = hi
                break
    return span_lo, span_hi


@njit(cache=True)
def k_block_rows(span_lo, span_hi, n_k, bc):
    """(i_lo, i_hi), each (ceil(n_k / bc),): the q blocks [i_lo, i_hi) whose span meets K/V block j.

    Spans move right monotonically with i, so those q blocks are contiguous: two binary searches
    per K/V block (O(blocks log blocks); a 10M-token sequence has 78,000 of each). Spans that are
    not monotone (no mask of tinyml's makes them) take the direct O(q blocks) scan per K/V block.
    """
    nkb = (n_k + bc - 1) // bc
    i_lo = np.zeros(nkb, dtype=np.int64)
    i_hi = np.zeros(nkb, dtype=np.int64)
    a = 0                                                # the non-empty spans are [a, z) ...
    while a < len(span_lo) and span_lo[a] >= span_hi[a]:
        a += 1
    z = len(span_lo)
    while z > a and span_lo[z - 1] >= span_hi[z - 1]:
        z -= 1
    monotone = True                                      # ... contiguous, with lo and hi non-decreasing
    for ib in range(a + 1, z):
        if span_lo[ib] >= span_hi[ib] or span_lo[ib] < span_lo[ib - 1] or span_hi[ib] < span_hi[ib - 1]:
            monotone = False
    for jb in range(nkb):
        c0 = jb * bc
        c1 = min(n_k, c0 + bc)
        if monotone:
            first = a + np.searchsorted(span_hi[a:z], c0, side="right")    # first span with hi > c0
            last = a + np.searchsorted(span_lo[a:z], c1, side="left") - 1  # last span with lo < c1
            if first <= last:
                i_lo[jb] = first
                i_hi[jb] = last + 1
            continue
        found = False
        for ib in range(len(span_lo)):
            if span_lo[ib] < span_hi[ib] and span_lo[ib] < c1 and span_hi[ib] > c0:
                if not found:
                    i_lo[jb] = ib
                    found = True
                i_hi[jb] = ib + 1
    return i_lo, i_hi
