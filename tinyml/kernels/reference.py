"""Plain NumPy references in float64: obviously correct, slow, the ground truth.

Tests and docs compare every tiled kernel against these.
"""

from __future__ import annotations

import numpy as np


def matmul(a, b) -> np.ndarray:
    """C = A @ B in float64. a: (M, K), b: (K, N) -> (M, N)."""
    return np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64)
