"""matmul: ``(..., M, K) @ (..., K, N) -> (..., M, N)``, batch dimensions broadcast.

Pattern ``out-elementwise-fusable``: a matmul can absorb the elementwise ops
after it (bias, activation, residual) into its epilogue, never a second
matmul or a reduction.
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphShapeError
from ..types import TensorType, broadcast_shapes, same_dtype
from .registry import OpDef, register


def matmul_rule(types, attrs):
    a, b = types
    dt = same_dtype("matmul", types)
    if a.rank < 2 or b.rank < 2:
        raise GraphShapeError(f"matmul needs operands of rank >= 2, got {a} and {b}; reshape a vector to (1, K)")
    if a.shape[-1] != b.shape[-2]:
        raise GraphShapeError(
            f"inner dimensions differ ({a.shape[-1]} vs {b.shape[-2]}); "
            "A's last dimension must equal B's second-to-last")
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except GraphShapeError as e:
        raise GraphShapeError(f"batch dimensions: {e}") from None
    return TensorType(batch + (a.shape[-2], b.shape[-1]), dt)


register(OpDef("matmul", 2, matmul_rule, np.matmul, "out-elementwise-fusable", "matmul",
               "A @ B with broadcast batch dimensions"))
