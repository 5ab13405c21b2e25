"""quantized_matmul: ``x (..., K) @ W^T`` for a quantized weight ``W (N, K) -> (..., N)``.

The ``quantize_weights`` pass (:mod:`tinyml.compiler.passes.quantize_weights`)
puts it where a ``matmul`` read a weight. Its second operand is a quantized
weight (:class:`~tinyml.compiler.passes.quantize_weights.QuantizedWeight`):
type ``(N, K)`` (out, in; PyTorch's ``Linear.weight`` layout) in the code
width's dtype (``int4``, ``int8``), data the *dequantized* values, so the
reference interpreter computes exactly what the fused dequantize kernel does.

Attribute ``fmt``: the scheme's name (``"q4_0"``, ``"int4-g32"``, ...).
Pattern ``out-elementwise-fusable``, as ``matmul``: the bias, activation and
residual after it join its group. The dequantize kernels have no epilogue, so
lowering runs the group as two kernels, the second (one fused elementwise
kernel) updating the first one's output in place.
Lowering: ``quantized_gemv`` when the rows fold to 1 (decoding one token),
``quantized_matmul`` otherwise.
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphDTypeError, GraphShapeError
from ..types import INDEX_DTYPES, TensorType
from .registry import OpDef, register


def _canon(types, attrs):
    fmt = attrs.get("fmt")
    if not isinstance(fmt, str) or not fmt:
        raise GraphShapeError(f"quantized_matmul needs fmt=<scheme name>, e.g. fmt='q4_0'; got {fmt!r}")
    return {"fmt": fmt}


def quantized_matmul_rule(types, attrs):
    x, w = types
    if x.dtype in INDEX_DTYPES:
        raise GraphDTypeError(f"quantized_matmul computes on floating-point activations, got {x}")
    if w.rank != 2:
        raise GraphShapeError(f"quantized_matmul's weight is 2-D (N out, K in), got {w}")
    if x.rank < 1 or x.shape[-1] != w.shape[1]:
        raise GraphShapeError(f"x {x} has K={x.shape[-1] if x.rank else '?'} but the weight {w} is (N, K) "
                              f"with K={w.shape[1]}; y = x @ W^T needs x's last dimension == W's columns")
    return TensorType(x.shape[:-1] + (w.shape[0],), x.dtype)


def _reference(x, w, fmt):
    return np.matmul(x, np.swapaxes(w, -1, -2))


register(OpDef("quantized_matmul", 2, quantized_matmul_rule, _reference, "out-elementwise-fusable", "matmul",
               "x @ W^T with W (N, K) quantized (fused dequantize matmul/gemv)", canon=_canon))
