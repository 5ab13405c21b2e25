"""How well a cost model ranks: Spearman's rank correlation and pairwise accuracy.

    spearman(pred, true)  = Pearson correlation of the ranks (ties get their mean rank)
    pairwise(pred, true)  = share of pairs (a, b) with true[a] != true[b] that the prediction
                            orders the same way (0.5 = a coin, 1.0 = every pair right)

Both take *scores* where higher means faster (pass ``-time`` for measured times).
"""

from __future__ import annotations

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for v in np.unique(x):                       # ties: the mean of their ranks
        idx = x == v
        if idx.sum() > 1:
            ranks[idx] = ranks[idx].mean()
    return ranks


def spearman(pred, true) -> float:
    a, b = _ranks(pred), _ranks(true)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def pairwise(pred, true) -> float:
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    dp = np.sign(p[:, None] - p[None, :])
    dt = np.sign(t[:, None] - t[None, :])
    mask = dt != 0
    return float((dp[mask] == dt[mask]).mean()) if mask.any() else 1.0
