"""Pooling over NCHW tensors: max_pool2d, avg_pool2d, global_avg_pool, global_max_pool.

``max_pool2d(x)`` / ``avg_pool2d(x)``: windows ``kernel`` with ``strides``,
``pads (h0, w0, h1, w1)`` and ``ceil_mode`` (and ``dilations`` for max) as
ONNX's MaxPool / AveragePool define them::

    for n, c, ho, wo:
        y[n, c, ho, wo] = max / mean over i < kh, j < kw of x_pad[n, c, ho*sh + i*dh, wo*sw + j*dw]

Max pooling pads with ``-inf`` (padding never wins). Average pooling divides by
the number of window elements inside the input (``count_include_pad=False``) or
inside the explicitly padded input (``True``); the extra columns ``ceil_mode``
adds never count.

``global_avg_pool(x)`` / ``global_max_pool(x)``: ``(N, C, H, W) -> (N, C, 1, 1)``.

Lowering ``"library"``: reads ``x`` once, writes ``y`` once; FLOPs ``kh kw`` per
output element for the windowed pools (one compare or add per window element),
``H W`` per output element for the global ones. Pattern
``out-elementwise-fusable`` as in TVM.
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphShapeError
from ..types import TensorType, same_dtype
from ._spatial import canon_window, need_nchw, out_hw, windows
from ._util import flag_attr
from .library import numel, register_library


def _canon_max(types, attrs):
    if "kernel" not in attrs:
        raise GraphShapeError("max_pool2d needs kernel=(kh, kw)")
    return canon_window("max_pool2d", attrs)


def _canon_avg(types, attrs):
    if "kernel" not in attrs:
        raise GraphShapeError("avg_pool2d needs kernel=(kh, kw)")
    out = canon_window("avg_pool2d", attrs, dilations=False)
    out["count_include_pad"] = flag_attr("avg_pool2d", "count_include_pad", attrs.get("count_include_pad", False))
    return out


def _pool_rule(name):
    def rule(types, attrs):
        x = types[0]
        same_dtype(name, types)
        need_nchw(name, x)
        kh, kw = attrs["kernel"]
        h0, w0, h1, w1 = attrs["pads"]
        if max(h0, h1) >= kh or max(w0, w1) >= kw:
            raise GraphShapeError(f"{name}: pads {attrs['pads']} must be smaller than the kernel {attrs['kernel']} "
                                  "(a window made only of padding has no value)")
        return TensorType(x.shape[:2] + out_hw(name, x.shape[2], x.shape[3], attrs), x.dtype)
    return rule


def max_pool2d_ref(x, *, kernel, strides, pads, dilations, ceil_mode):
    win = windows(np.asarray(x), {"kernel": kernel, "strides": strides, "pads": pads,
                                  "dilations": dilations, "ceil_mode": ceil_mode}, -np.inf)
    return win.max(axis=(4, 5))                                       # (N, C, Ho, Wo)


def avg_pool2d_ref(x, *, kernel, strides, pads, ceil_mode, count_include_pad):
    x = np.asarray(x)
    attrs = {"kernel": kernel, "strides": strides, "pads": pads, "ceil_mode": ceil_mode}
    total = windows(x, attrs, 0.0).sum(axis=(4, 5))                   # (N, C, Ho, Wo)
    inside = np.ones((1, 1) + x.shape[2:])                            # 1 where a window element counts
    count = windows(inside, attrs, float(count_include_pad), 0.0).sum(axis=(4, 5))   # (1, 1, Ho, Wo)
    return total / count


def _window_flops(in_shapes, out_shape, attrs):
    kh, kw = attrs["kernel"]
    return numel(out_shape) * kh * kw


def _global_rule(name):
    def rule(types, attrs):
        x = types[0]
        same_dtype(name, types)
        need_nchw(name, x)
        return TensorType(x.shape[:2] + (1, 1), x.dtype)
    return rule


def _global_flops(in_shapes, out_shape, attrs):
    return numel(in_shapes[0])


register_library("max_pool2d", 1, _pool_rule("max_pool2d"), max_pool2d_ref, "out-elementwise-fusable",
                 "max over kh x kw windows (NCHW)", flops=_window_flops, canon=_canon_max)
register_library("avg_pool2d", 1, _pool_rule("avg_pool2d"), avg_pool2d_ref, "out-elementwise-fusable",
                 "mean over kh x kw windows (NCHW)", flops=_window_flops, canon=_canon_avg)
register_library("global_avg_pool", 1, _global_rule("global_avg_pool"),
                 lambda x: np.mean(x, axis=(2, 3), keepdims=True), "out-elementwise-fusable",
                 "mean over H and W: (N, C, H, W) -> (N, C, 1, 1)", flops=_global_flops)
register_library("global_max_pool", 1, _global_rule("global_max_pool"),
                 lambda x: np.max(x, axis=(2, 3), keepdims=True), "out-elementwise-fusable",
                 "max over H and W: (N, C, H, W) -> (N, C, 1, 1)", flops=_global_flops)
