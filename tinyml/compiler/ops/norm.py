"""Normalisations of CNNs: local response normalisation (LRN) and inference batch norm.

``lrn(x)``: AlexNet's cross-channel normalisation, as ONNX's LRN defines it::

    s[n, c, h, w] = sum over c' in [c - floor((size-1)/2), c + ceil((size-1)/2)] of x[n, c', h, w]^2
    y = x / (bias + alpha / size * s) ^ beta

``batchnorm(x, scale, bias, mean, var)``: ``(x - mean) / sqrt(var + eps) * scale + bias``
with the per-channel parameters ``(C,)`` broadcast over axis 1 of ``x (N, C, ...)``
(inference: running statistics, no update). The ONNX importer folds it into a
per-channel ``mul`` + ``add`` when the parameters are constants, as TVM's
``SimplifyInference`` does, so it usually fuses into the convolution before it.

Lowering ``"library"``: reads its inputs once, writes ``y`` once; FLOPs per
element ``2 size + 3`` for lrn (squares, window sum, scale, power, divide), 4 for
batchnorm (subtract, divide, multiply, add). Pattern ``opaque``: tinyml's fused
elementwise kernels have no opcode for them, so they stay kernels of their own.
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphShapeError
from ..types import same_dtype
from ._util import int_attr, need_rank
from .library import numel, register_library


def _canon_lrn(types, attrs):
    if "size" not in attrs:
        raise GraphShapeError("lrn needs size= (the number of channels summed)")
    size = int_attr("lrn", "size", attrs["size"])
    if size < 1:
        raise GraphShapeError(f"lrn: size must be >= 1, got {size}")
    return {"size": size, "alpha": float(attrs.get("alpha", 1e-4)), "beta": float(attrs.get("beta", 0.75)),
            "bias": float(attrs.get("bias", 1.0))}


def _lrn_rule(types, attrs):
    same_dtype("lrn", types)
    need_rank("lrn", "its operand", types[0], 3)
    return types[0]


def lrn_ref(x, *, size, alpha, beta, bias):
    x = np.asarray(x)                                                 # (N, C, ...)
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2              # channels below / above
    sq = np.concatenate([np.zeros_like(x[:, :1]), np.cumsum(x * x, axis=1)], axis=1)   # (N, C+1, ...)
    top = np.minimum(np.arange(c) + hi + 1, c)
    bottom = np.maximum(np.arange(c) - lo, 0)
    s = np.take(sq, top, axis=1) - np.take(sq, bottom, axis=1)       # (N, C, ...) window sums of x^2
    return x / (bias + alpha / size * s) ** beta


def _canon_bn(types, attrs):
    eps = float(attrs.get("eps", 1e-5))
    if not eps > 0:
        raise GraphShapeError(f"batchnorm: eps must be > 0, got {eps}")
    return {"eps": eps}


def _bn_rule(types, attrs):
    x = types[0]
    same_dtype("batchnorm", types)
    need_rank("batchnorm", "x", x, 2)
    for what, t in zip(("scale", "bias", "mean", "var"), types[1:]):
        if t.shape != (x.shape[1],):
            raise GraphShapeError(f"batchnorm: {what} must have shape ({x.shape[1]},) (x's channels), got {t} "
                                  f"for x {x}")
    return x


def batchnorm_ref(x, scale, bias, mean, var, *, eps):
    shape = (1, -1) + (1,) * (np.ndim(x) - 2)                        # (1, C, 1, 1) for NCHW
    inv = (np.asarray(scale) / np.sqrt(np.asarray(var) + eps)).reshape(shape)
    return (x - np.reshape(mean, shape)) * inv + np.reshape(bias, shape)


register_library("lrn", 1, _lrn_rule, lrn_ref, "opaque", "local response normalisation across channels",
                 flops=lambda ins, out, a: numel(out) * (2 * a["size"] + 3), canon=_canon_lrn)
register_library("batchnorm", 5, _bn_rule, batchnorm_ref, "opaque",
                 "inference batch norm over axis 1: (x - mean) / sqrt(var + eps) * scale + bias",
                 flops=lambda ins, out, a: 4 * numel(out), canon=_canon_bn)
