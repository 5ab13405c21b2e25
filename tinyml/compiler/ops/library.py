"""Library ops: the ops tinyml has no tiled kernel for, costed as a vendor library call.

A real compiler does not write every kernel itself: TVM, XLA and ONNX Runtime
hand convolutions, pooling and normalisations to cuDNN / oneDNN / MIOpen. tinyml
does the same. An op registered here has the lowering kind ``"library"`` and a
stated cost, the cost of a good library kernel:

* it reads each input from HBM once and writes its output to HBM once
  (``HBM bytes = sum(numel(inputs)) * bytes + numel(output) * bytes``);
* it performs ``flops(in_shapes, out_shape, attrs)`` floating-point operations,
  a closed-form formula each op states (:data:`FLOPS`), e.g. for a convolution
  ``2 N M Ho Wo (C/g) kh kw``.

``flops(op, in_shapes, out_shape, attrs)`` evaluates that formula on concrete
shapes (tuples of ints); an op without a formula raises :class:`GraphError`.
"""

from __future__ import annotations

import math
from typing import Callable

from ..errors import GraphError
from .registry import OpDef, register

#: op name -> ``flops(in_shapes, out_shape, attrs) -> int`` (concrete shapes)
FLOPS: dict[str, Callable] = {}


def register_library(name: str, arity, shape_rule, reference, pattern: str, doc: str, *,
                     flops: Callable, canon: "Callable | None" = None) -> OpDef:
    """Register ``name`` with lowering kind ``"library"`` and its FLOP formula."""
    op = register(OpDef(name, arity, shape_rule, reference, pattern, "library", doc, canon=canon))
    FLOPS[name] = flops
    return op


def flops(op: str, in_shapes, out_shape, attrs: "dict | None" = None) -> int:
    """FLOPs of one library op on concrete shapes (see :data:`FLOPS`)."""
    if op not in FLOPS:
        raise GraphError(f"op {op!r} has no library FLOP formula; library ops are {', '.join(sorted(FLOPS))}")
    return int(FLOPS[op](tuple(tuple(s) for s in in_shapes), tuple(out_shape), dict(attrs or {})))


def numel(shape) -> int:
    return math.prod(shape)
