"""conv2d: a 2-D convolution over NCHW tensors, computed as im2col + matmul.

``conv2d(x, w[, b])``: ``x (N, C, H, W)``, ``w (M, C/g, kh, kw)``, ``b (M,)`` ->
``(N, M, Ho, Wo)`` with ``strides``, ``pads (h0, w0, h1, w1)``, ``dilations``
and ``groups = g`` as ONNX's Conv defines them (cross-correlation, no kernel flip)::

    for n, group, m, ho, wo:                           # every output element
        y[n, m, ho, wo] = b[m] + sum_{c, i, j} x_pad[n, c, ho*sh + i*dh, wo*sw + j*dw] * w[m, c, i, j]

The reference gathers every window into columns (im2col, a ``(C/g kh kw, Ho Wo)``
matrix per image and group) and runs one float32 matmul per group, the way
cuDNN's ``IMPLICIT_GEMM`` algorithm sees a convolution.

Lowering ``"library"`` (tinyml has no tiled convolution): reads ``x``, ``w``, ``b``
once, writes ``y`` once, ``2 N M Ho Wo (C/g) kh kw`` FLOPs (+ ``N M Ho Wo`` for
the bias). Pattern ``out-elementwise-fusable`` as in TVM: a bias, batch-norm
scale/shift or ReLU after it joins its kernel as an epilogue.
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphDTypeError, GraphShapeError
from ..types import TensorType
from ._spatial import canon_window, need_nchw, out_hw, windows
from ._util import int_attr
from .library import numel, register_library


def _canon_conv(types, attrs):
    out = canon_window("conv2d", attrs, ceil_mode=False)
    groups = int_attr("conv2d", "groups", attrs.get("groups", 1))
    if groups < 1:
        raise GraphShapeError(f"conv2d: groups must be >= 1, got {groups}")
    w = types[1]
    if w.rank == 4 and tuple(w.shape[2:]) != out["kernel"] and "kernel" in attrs:
        raise GraphShapeError(f"conv2d: kernel {out['kernel']} does not match the weight {w}")
    if w.rank == 4:
        out["kernel"] = tuple(w.shape[2:])
    out["groups"] = groups
    return out


def _conv_rule(types, attrs):
    if len(types) not in (2, 3):
        raise GraphShapeError(f"conv2d takes x, w and an optional bias b, got {len(types)} operands")
    x, w = types[:2]
    need_nchw("conv2d", x)
    if len({t.dtype for t in types}) != 1:
        raise GraphDTypeError(f"conv2d: operands must share a dtype, got {', '.join(map(str, types))}")
    if w.rank != 4 or w.symbols:
        raise GraphShapeError(f"conv2d: the weight must be a concrete (M, C/groups, kh, kw) tensor, got {w}")
    g = attrs["groups"]
    m, cg = w.shape[:2]
    if x.shape[1] != cg * g or m % g:
        raise GraphShapeError(
            f"conv2d with groups={g}: x has {x.shape[1]} channels and the weight {w} expects "
            f"{cg} x {g} = {cg * g}, with {m} output channels divisible by {g}")
    if len(types) == 3 and types[2].shape != (m,):
        raise GraphShapeError(f"conv2d: the bias must have shape ({m},), got {types[2]}")
    ho, wo = out_hw("conv2d", x.shape[2], x.shape[3], attrs)
    return TensorType((x.shape[0], m, ho, wo), x.dtype)


def conv2d_ref(x, w, b=None, *, kernel, strides, pads, dilations, groups):
    """im2col + one float32 matmul per group."""
    x = np.asarray(x, np.float32)                                   # (N, C, H, W)
    w = np.asarray(w, np.float32)                                   # (M, C/g, kh, kw)
    n, c = x.shape[:2]
    m, cg, kh, kw = w.shape
    g = groups
    win = windows(x, {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations}, 0.0)
    ho, wo = win.shape[2:4]                                          # win (N, C, Ho, Wo, kh, kw)
    if (kh, kw) == (1, 1):
        cols = win.reshape(n, g, cg, ho * wo)                        # (N, g, C/g, Ho Wo)
    else:
        cols = win.reshape(n, g, cg, ho, wo, kh, kw).transpose(0, 1, 2, 5, 6, 3, 4)
        cols = cols.reshape(n, g, cg * kh * kw, ho * wo)             # (N, g, C/g kh kw, Ho Wo)
    wg = w.reshape(g, m // g, cg * kh * kw)                          # (g, M/g, C/g kh kw)
    y = np.matmul(wg, cols).reshape(n, m, ho, wo)                    # (N, M, Ho, Wo)
    if b is not None:
        y += np.asarray(b, np.float32).reshape(1, m, 1, 1)
    return y


def _conv_flops(in_shapes, out_shape, attrs):
    n, m, ho, wo = out_shape
    _, cg, kh, kw = in_shapes[1]
    return 2 * n * m * ho * wo * cg * kh * kw + (numel(out_shape) if len(in_shapes) == 3 else 0)


register_library("conv2d", None, _conv_rule, conv2d_ref, "out-elementwise-fusable",
                 "2-D convolution (NCHW, groups, dilations), im2col + matmul",
                 flops=_conv_flops, canon=_canon_conv)
