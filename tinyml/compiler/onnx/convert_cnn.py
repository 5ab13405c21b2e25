"""Converters for the CNN ops: Conv, pooling, LRN, BatchNormalization, Dropout.

They become tinyml's library ops (:mod:`tinyml.compiler.ops.conv`, ``.pool``,
``.norm``), except BatchNormalization with constant statistics, which is folded
into a per-channel multiply and add (TVM's ``SimplifyInference``)::

    y = (x - mean) / sqrt(var + eps) * scale + bias  =  x * s + t,
    s = scale / sqrt(var + eps),  t = bias - mean * s              # (C, 1, 1) weights

so it fuses into the convolution before it like any elementwise epilogue.
"""

from __future__ import annotations

import numpy as np

from .context import Unavailable, Unsupported, converter


def _spatial(ctx, x: str, kernel, *, dilations=(1, 1)):
    """``strides, pads`` of a Conv/pool node, ``auto_pad`` resolved."""
    t = ctx.type(x)
    if t.rank != 4:
        raise Unsupported(f"only 2-D (NCHW, rank-4) inputs are supported, got {t}")
    strides = tuple(ctx.attr("strides", (1, 1)))
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        return strides, tuple(ctx.attr("pads", (0, 0, 0, 0)))
    if auto == "VALID":
        return strides, (0, 0, 0, 0)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise Unsupported(f"auto_pad={auto!r} is unknown")
    begin, end = [], []
    for size, k, s, d in zip(t.shape[2:], kernel, strides, dilations):
        span = d * (k - 1) + 1
        if not isinstance(size, int):
            if s != 1:
                raise Unsupported(f"auto_pad={auto} on the symbolic spatial size {size} with stride {s}")
            total = span - 1
        else:
            out = -(-size // s)
            total = max(0, (out - 1) * s + span - size)
        small = total // 2
        begin.append(small if auto == "SAME_UPPER" else total - small)
        end.append(total - begin[-1])
    return strides, tuple(begin + end)


@converter("Conv")
def conv(ctx):
    x, w = ctx.tensor(0), ctx.tensor(1)
    wt = ctx.type(w)
    if wt.rank != 4:
        raise Unsupported(f"only 2-D convolutions are supported (weight {wt})")
    dil = tuple(ctx.attr("dilations", (1, 1)))
    strides, pads = _spatial(ctx, x, wt.shape[2:], dilations=dil)
    b = ctx.tensor(2) if ctx.has(2) else None
    return [ctx.emit("conv2d", x, w, b, strides=strides, pads=pads, dilations=dil,
                     groups=ctx.attr("group", 1))]


def _extra_outputs(ctx, what: str) -> list:
    return [Unavailable(what)] * (len(ctx.node.output) - 1)


def _ceil_mode(ctx) -> bool:
    """ceil_mode, and if set: skip the check against ONNX shape inference, which keeps a last window
    that starts past the input and its begin padding; the ONNX spec text ("sliding windows that would
    start in the right padded region are ignored"), PyTorch and ONNX Runtime drop it, as tinyml does."""
    ceil = bool(ctx.attr("ceil_mode", 0))
    ctx.unchecked = ceil
    return ceil


@converter("MaxPool")
def max_pool(ctx):
    x = ctx.tensor(0)
    kernel = tuple(ctx.attr("kernel_shape"))
    dil = tuple(ctx.attr("dilations", (1, 1)))
    strides, pads = _spatial(ctx, x, kernel, dilations=dil)
    y = ctx.emit("max_pool2d", x, kernel=kernel, strides=strides, pads=pads, dilations=dil,
                 ceil_mode=_ceil_mode(ctx))
    return [y] + _extra_outputs(ctx, "MaxPool's Indices output is not computed")


@converter("AveragePool")
def avg_pool(ctx):
    x = ctx.tensor(0)
    kernel = tuple(ctx.attr("kernel_shape"))
    if any(d != 1 for d in ctx.attr("dilations", (1, 1))):
        raise Unsupported("dilated average pooling is not supported")
    strides, pads = _spatial(ctx, x, kernel)
    return [ctx.emit("avg_pool2d", x, kernel=kernel, strides=strides, pads=pads,
                     ceil_mode=_ceil_mode(ctx),
                     count_include_pad=bool(ctx.attr("count_include_pad", 0)))]


@converter("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx):
    x = ctx.tensor(0)
    if ctx.type(x).rank != 4:
        raise Unsupported(f"only NCHW (rank-4) inputs are supported, got {ctx.type(x)}")
    op = "global_avg_pool" if ctx.node.op_type == "GlobalAveragePool" else "global_max_pool"
    return [ctx.emit(op, x)]


@converter("LRN")
def lrn(ctx):
    return [ctx.emit("lrn", ctx.tensor(0), size=ctx.attr("size"), alpha=ctx.attr("alpha", 1e-4),
                     beta=ctx.attr("beta", 0.75), bias=ctx.attr("bias", 1.0))]


@converter("BatchNormalization")
def batchnorm(ctx):
    if ctx.attr("training_mode", 0):
        raise Unsupported("training_mode=1 (batch statistics) is not supported; export the model in eval mode")
    if ctx.opset < 9 and not ctx.attr("spatial", 1):
        raise Unsupported("spatial=0 (per-activation statistics) is not supported")
    eps = float(ctx.attr("epsilon", 1e-5))
    x = ctx.tensor(0)
    params = [ctx.maybe_const(i) for i in range(1, 5)]
    extra = _extra_outputs(ctx, "BatchNormalization's running statistics are not computed (inference)")
    if ctx.fold_batchnorm and all(p is not None for p in params):
        scale, bias, mean, var = (p.astype(np.float64) for p in params)
        rank = ctx.type(x).rank
        shape = (-1,) + (1,) * (rank - 2)                                # (C, 1, 1) for NCHW
        s = scale / np.sqrt(var + eps)
        t = bias - mean * s
        base = ctx.node.output[0]
        sw = ctx.weight(s.astype(np.float32).reshape(shape), f"{base}_bn_scale", key=("bn_s", base))
        tw = ctx.weight(t.astype(np.float32).reshape(shape), f"{base}_bn_shift", key=("bn_t", base))
        return [ctx.emit("add", ctx.emit("mul", x, sw), tw)] + extra
    return [ctx.emit("batchnorm", x, *[ctx.tensor(i) for i in range(1, 5)], eps=eps)] + extra


@converter("Dropout")
def dropout(ctx):
    if ctx.opset >= 12 and ctx.has(2):
        mode = ctx.maybe_const(2)
        if mode is None or bool(np.asarray(mode).ravel()[0]):
            raise Unsupported("training_mode must be a constant False (tinyml runs inference)")
    if ctx.opset < 7 and not ctx.attr("is_test", 0):
        raise Unsupported("is_test=0 (training) is not supported")
    return [ctx.raw(0)] + _extra_outputs(ctx, "Dropout's mask is not computed (inference)")
