"""Fused softmax vs the five kernels eager PyTorch launches (the Triton tutorial's example).

``softmax_naive`` is softmax written op by op, each op its own kernel reading
its operands from HBM and writing its result back::

    m = x.max(dim=1, keepdim=True)     # reduce_max        reads M N      writes M
    z = x - m                          # elementwise_sub   reads M N + M  writes M N
    e = z.exp()                        # elementwise_exp   reads M N      writes M N
    d = e.sum(dim=1, keepdim=True)     # reduce_sum        reads M N      writes M
    y = e / d                          # elementwise_div   reads M N + M  writes M N

The broadcasting kernels own whole rows (``block_n = N``), so each row's ``m``
and ``d`` is read once. In total, exactly (``s`` bytes per element)::

    reads  = (5 M N + 2 M) * s
    writes = (3 M N + 2 M) * s
    vector FLOPs = 5 M N          (max, sub, exp, add, div: one each per element)

``softmax_fused`` is :func:`tinyml.kernels.softmax.softmax_v3`: a block keeps
its rows in SRAM, so x is read once and y written once::

    reads  = M N s
    writes = M N s
    vector FLOPs = 5 M N

so fusing cuts the traffic by ``(8 M N + 4 M) / (2 M N)``, about 4x. (The
naive form refuses ``-inf`` entries, as eager would turn a fully masked row into
NaN; the fused form gives such a row zeros.)
"""

from __future__ import annotations

from ...sim import FLOAT_DTYPES, ShapeError
from .._contract import operand
from ..softmax import softmax_v3
from .elementwise import fused_elementwise
from .reduce import row_reduce


def expected_bytes_naive(m: int, n: int, elem_bytes: float) -> tuple[float, float]:
    """(HBM read bytes, HBM write bytes) of the five eager kernels, from the formula above."""
    return (5 * m * n + 2 * m) * elem_bytes, (3 * m * n + 2 * m) * elem_bytes


def expected_bytes_fused(m: int, n: int, elem_bytes: float) -> tuple[float, float]:
    """(HBM read bytes, HBM write bytes) of the fused kernel."""
    return m * n * elem_bytes, m * n * elem_bytes


def softmax_fused(x, *, dtype: str = "fp16", block_rows: "int | None" = None):
    """Softmax over the last axis of ``x`` (M, N) in one kernel (softmax v3). See the module docstring."""
    return softmax_v3(x, dtype=dtype, block_rows=block_rows)


def softmax_naive(x, *, dtype: str = "fp16"):
    """Softmax over the last axis of ``x`` (M, N) as five eager kernels. See the module docstring."""
    try:
        X = operand(x, "x", ndim=2, dtype=dtype, allowed=FLOAT_DTYPES)
    except ShapeError as err:
        raise ShapeError(f"softmax_naive: {err}. Softmax runs over the last axis of a (rows, cols) matrix; "
                         f"for more dimensions pass x.reshape(-1, x.shape[-1])") from None
    n = X.shape[1]
    x = X.obj
    m = row_reduce(x, "max", dtype=dtype)                                          # (M, 1)
    z = fused_elementwise(["sub"], [x, m], dtype=dtype, block_n=n, name="elementwise_sub")   # (M, N)
    del m
    e = fused_elementwise(["exp"], [z], dtype=dtype, name="elementwise_exp")      # (M, N)
    del z
    d = row_reduce(e, "sum", dtype=dtype)                                          # (M, 1)
    return fused_elementwise(["div"], [e, d], dtype=dtype, block_n=n, name="elementwise_div")   # (M, N)
