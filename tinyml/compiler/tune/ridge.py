"""The baseline cost model: ridge regression in NumPy.

    x' = (x - mean) / std                      # standardized features (constant ones dropped)
    w  = (X'^T X' + lam I)^-1 X'^T (y - mean y)  # closed form
    score = x' . w

A straight line in log space: it learns "more HBM bytes is slower" but not "fast until the
tiles overflow SRAM, then illegal"; the trees of :mod:`.xgb` can.
"""

from __future__ import annotations

import numpy as np


class Ridge:
    name = "ridge"

    def __init__(self, lam: float = 1.0):
        self.lam = lam
        self.w = None

    def fit(self, x: np.ndarray, y: np.ndarray, groups=None) -> "Ridge":
        x = np.asarray(x, dtype=np.float64)
        self.mean = x.mean(axis=0)
        self.std = x.std(axis=0)
        self.std[self.std == 0] = 1.0
        z = (x - self.mean) / self.std
        self.y0 = float(np.mean(y))
        self.w = np.linalg.solve(z.T @ z + self.lam * np.eye(z.shape[1]), z.T @ (np.asarray(y) - self.y0))
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        return z @ self.w + self.y0
