"""Converters for arithmetic, activations, matmul/Gemm, softmax and layout ops.

These map onto ops tinyml already has (``add``, ``relu``, ``matmul``, ``softmax``,
``reshape``, ``transpose``, ``concat`` ...), so they lower to tinyml's own tiled
and fused kernels. Notable translations:

* ``Gemm(A, B, C)`` = ``alpha A' B' + beta C``: ``matmul`` (+ ``scale``) + ``add``;
  a constant ``B`` is transposed at import (``transB=1``), never at run time;
* ``Softmax`` before opset 13 flattens its input to 2-D at ``axis`` (default 1)
  and normalises each row: ``reshape -> softmax -> reshape``; from opset 13 it
  normalises along ``axis`` (default -1): ``softmax`` (through a ``transpose``
  if ``axis`` is not the last);
* ``Flatten``, ``Squeeze``, ``Unsqueeze`` and ``Reshape`` are all ``reshape``;
  ``Reshape``'s target must be known at import (a constant, or computed from
  ``Shape`` of a value with a static or symbolic shape); ``0`` copies the input
  dimension, ``-1`` is inferred;
* ``Sum`` of k inputs is k-1 ``add`` s; ``Identity`` (and ``Dropout``) emit nothing;
* ``Clip(0, inf)`` is ``relu``; other bounds ``clip`` (elementwise: it fuses with its neighbours).
"""

from __future__ import annotations

import math

import numpy as np

from ..sizes import Poly
from .context import Unsupported, converter

_UNARY = {"Relu": "relu", "Tanh": "tanh", "Exp": "exp", "Sigmoid": "sigmoid"}
_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div"}


@converter(*_UNARY)
def unary(ctx):
    return [ctx.emit(_UNARY[ctx.node.op_type], ctx.tensor(0))]


@converter(*_BINARY)
def binary(ctx):
    return [ctx.emit(_BINARY[ctx.node.op_type], ctx.tensor(0), ctx.tensor(1))]


@converter("Sum")
def sum_(ctx):
    out = ctx.tensor(0)
    for i in range(1, len(ctx.node.input)):
        out = ctx.emit("add", out, ctx.tensor(i))
    return [out]


@converter("Identity")
def identity(ctx):
    return [ctx.raw(0)]


@converter("Cast")
def cast(ctx):
    from onnx import TensorProto

    to = ctx.attr("to")
    if to not in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE):
        raise Unsupported(f"a cast of a computed tensor to {TensorProto.DataType.Name(to)}; "
                          "tinyml computes on floating-point tensors only")
    return [ctx.tensor(0)]                           # logical dtypes are the model's; numerics are float


@converter("Shape")
def shape(ctx):
    dims = ctx.type(ctx.tensor(0)).shape
    start, end = ctx.attr("start", 0), ctx.attr("end", None)
    return [np.array(list(dims)[start:end], dtype=object)]     # folded: normalised by the importer


def _reshape(ctx, x: str, shape) -> str:
    t = ctx.type(x)
    if tuple(shape) == t.shape:
        return x
    return ctx.emit("reshape", x, shape=tuple(shape))


@converter("Reshape")
def reshape(ctx):
    x = ctx.tensor(0)
    target = list(ctx.const(1, "target shape").ravel())
    src = ctx.type(x).shape
    if not ctx.attr("allowzero", 0):
        target = [src[i] if isinstance(d, (int, np.integer)) and d == 0 else d for i, d in enumerate(target)]
    return [_reshape(ctx, x, [int(d) if isinstance(d, (int, np.integer)) else d for d in target])]


def _product(dims):
    d = Poly.product(dims).as_dim()
    if d is None:
        raise Unsupported(f"the product of the symbolic dimensions {tuple(map(str, dims))} is not a dimension")
    return d


@converter("Flatten")
def flatten(ctx):
    x = ctx.tensor(0)
    shape = ctx.type(x).shape
    axis = ctx.attr("axis", 1) % (len(shape) + 1) if shape else 0
    return [_reshape(ctx, x, (_product(shape[:axis]), _product(shape[axis:])))]


def _axes(ctx):
    if ctx.opset < 13 or ctx.attr("axes") is not None:
        axes = ctx.attr("axes")
    else:
        axes = ctx.const(1, "axes").ravel().tolist() if ctx.has(1) else None
    return None if axes is None else [int(a) for a in axes]


@converter("Unsqueeze")
def unsqueeze(ctx):
    x = ctx.tensor(0)
    shape = list(ctx.type(x).shape)
    axes = _axes(ctx)
    rank = len(shape) + len(axes)
    for ax in sorted(a % rank for a in axes):
        shape.insert(ax, 1)
    return [_reshape(ctx, x, shape)]


@converter("Squeeze")
def squeeze(ctx):
    x = ctx.tensor(0)
    shape = ctx.type(x).shape
    axes = _axes(ctx)
    axes = [i for i, d in enumerate(shape) if d == 1] if axes is None else [a % len(shape) for a in axes]
    if any(shape[a] != 1 for a in axes):
        raise Unsupported(f"squeezing axes {axes} of shape {tuple(map(str, shape))}: not all are 1")
    if len(axes) == len(shape):
        raise Unsupported("squeezing to a scalar (rank 0) is not supported")
    return [_reshape(ctx, x, [d for i, d in enumerate(shape) if i not in axes])]


@converter("Transpose")
def transpose(ctx):
    perm = ctx.attr("perm")
    return [ctx.emit("transpose", ctx.tensor(0), perm=None if perm is None else tuple(perm))]


@converter("Concat")
def concat(ctx):
    ins = [ctx.tensor(i) for i in range(len(ctx.node.input)) if ctx.has(i)]
    if len(ins) == 1:
        return ins
    return [ctx.emit("concat", *ins, axis=ctx.attr("axis"))]


@converter("MatMul")
def matmul(ctx):
    a, b = ctx.tensor(0), ctx.tensor(1)
    ta, tb = ctx.type(a), ctx.type(b)
    if ta.rank == 1 and tb.rank == 1:
        raise Unsupported("a dot product of two vectors (a rank-0 result) is not supported")
    if ta.rank == 1:                                     # (K,) @ (..., K, N): a one-row matrix
        a = _reshape(ctx, a, (1,) + ta.shape)
    if tb.rank == 1:                                     # (..., M, K) @ (K,): a one-column matrix
        b = _reshape(ctx, b, tb.shape + (1,))
    y = ctx.emit("matmul", a, b)
    shape = ctx.type(y).shape
    if ta.rank == 1:
        shape = shape[:-2] + shape[-1:]
    if tb.rank == 1:
        shape = shape[:-1]
    return [_reshape(ctx, y, shape)]


@converter("Gemm")
def gemm(ctx):
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    a = ctx.tensor(0)
    if ctx.attr("transA", 0):
        a = ctx.emit("transpose", a, perm=(1, 0))
    bc = ctx.maybe_const(1)
    if ctx.attr("transB", 0):
        if bc is not None:
            b = ctx.weight(bc.T, f"{ctx.node.input[1]}_t", key=("T", ctx.node.input[1]))
        else:
            b = ctx.emit("transpose", ctx.tensor(1), perm=(1, 0))
    else:
        b = ctx.tensor(1)
    y = ctx.emit("matmul", a, b)
    if alpha != 1.0:
        y = ctx.emit("scale", y, factor=alpha)
    if ctx.has(2) and beta != 0.0:
        cc = ctx.maybe_const(2)
        if cc is not None and beta != 1.0:
            c = ctx.weight((cc * beta).astype(cc.dtype), f"{ctx.node.input[2]}_beta",
                           key=("beta", ctx.node.input[2], beta))
        else:
            c = ctx.tensor(2)
            if beta != 1.0:
                c = ctx.emit("scale", c, factor=beta)
        y = ctx.emit("add", y, c)
    return [y]


@converter("Softmax")
def softmax(ctx):
    x = ctx.tensor(0)
    shape = ctx.type(x).shape
    rank = len(shape)
    if ctx.opset < 13:                                   # coerce to 2-D at axis, softmax each row
        axis = ctx.attr("axis", 1) % rank
        if axis == rank - 1:
            return [ctx.emit("softmax", x)]
        flat = _reshape(ctx, x, (_product(shape[:axis]), _product(shape[axis:])))
        return [_reshape(ctx, ctx.emit("softmax", flat), shape)]
    axis = ctx.attr("axis", -1) % rank
    if axis == rank - 1:
        return [ctx.emit("softmax", x)]
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    y = ctx.emit("softmax", ctx.emit("transpose", x, perm=tuple(perm)))
    return [ctx.emit("transpose", y, perm=tuple(perm))]


@converter("Clip")
def clip(ctx):
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", -math.inf), ctx.attr("max", math.inf)
    else:
        lo = float(ctx.const(1, "min").ravel()[0]) if ctx.has(1) else -math.inf
        hi = float(ctx.const(2, "max").ravel()[0]) if ctx.has(2) else math.inf
    x = ctx.tensor(0)
    if lo == 0.0 and hi == math.inf:
        return [ctx.emit("relu", x)]
    return [ctx.emit("clip", x, lo=lo, hi=hi)]


@converter("Pad")
def pad(ctx):
    x = ctx.tensor(0)
    rank = ctx.type(x).rank
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads, value = list(ctx.attr("pads")), float(ctx.attr("value", 0.0))
    else:
        pads = [int(p) for p in ctx.const(1, "pads").ravel()]
        value = float(ctx.const(2, "constant_value").ravel()[0]) if ctx.has(2) else 0.0
        if ctx.has(3):                                   # opset 18: pads only for some axes
            axes = [int(a) % rank for a in ctx.const(3, "axes").ravel()]
            full = [0] * (2 * rank)
            for k, ax in enumerate(axes):
                full[ax], full[rank + ax] = pads[k], pads[len(axes) + k]
            pads = full
    if any(p < 0 for p in pads):
        raise Unsupported(f"negative pads {pads} (cropping) are not supported")
    if mode not in ("constant", "reflect", "edge"):
        raise Unsupported(f"mode {mode!r} is not supported (constant, reflect, edge)")
    if not any(pads):
        return [x]
    return [ctx.emit("pad", x, pads=tuple(pads), mode=mode, value=value)]
