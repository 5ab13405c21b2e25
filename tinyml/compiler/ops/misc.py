"""Small library ops the ONNX importer needs: clip, sigmoid, pad.

``clip(x, lo, hi)``: ``min(max(x, lo), hi)`` (``lo = -inf``/``hi = inf`` for one side;
ReLU6 is ``clip(x, 0, 6)``). ``sigmoid(x)``: ``1 / (1 + e^-x)``.

``pad(x, pads, mode, value)``: ``pads = (b_0, ..., b_{r-1}, e_0, ..., e_{r-1})``
elements added before / after each axis (ONNX's order), ``mode`` ``constant``
(filled with ``value``), ``reflect`` or ``edge``.

Lowering ``"library"``: reads ``x`` once, writes the output once; FLOPs 2 per
element for clip, 4 for sigmoid, 0 for pad (pure data movement). Pattern
``opaque``: tinyml's fused elementwise kernels have no opcode for them.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GraphShapeError
from ..types import same_dtype
from .library import numel, register_library


def _unary(name):
    def rule(types, attrs):
        same_dtype(name, types)
        return types[0]
    return rule


def _canon_clip(types, attrs):
    lo, hi = float(attrs.get("lo", -math.inf)), float(attrs.get("hi", math.inf))
    if lo > hi:
        raise GraphShapeError(f"clip: lo {lo} is above hi {hi}")
    return {"lo": lo, "hi": hi}


register_library("clip", 1, _unary("clip"), lambda x, lo, hi: np.clip(x, lo, hi), "opaque",
                 "min(max(x, lo), hi)", flops=lambda ins, out, a: 2 * numel(out), canon=_canon_clip)
register_library("sigmoid", 1, _unary("sigmoid"), lambda x: 1.0 / (1.0 + np.exp(-x)), "opaque",
                 "1 / (1 + e^-x)", flops=lambda ins, out, a: 4 * numel(out))

PAD_MODES = ("constant", "reflect", "edge")


def _canon_pad(types, attrs):
    x = types[0]
    pads = tuple(int(p) for p in attrs.get("pads", ()))
    if len(pads) != 2 * x.rank or any(p < 0 for p in pads):
        raise GraphShapeError(f"pad of {x}: pads must be {2 * x.rank} non-negative numbers "
                              f"(before each axis, then after each axis), got {pads}")
    mode = str(attrs.get("mode", "constant"))
    if mode not in PAD_MODES:
        raise GraphShapeError(f"pad: mode {mode!r} is not one of {PAD_MODES}")
    return {"pads": pads, "mode": mode, "value": float(attrs.get("value", 0.0))}


def _pad_rule(types, attrs):
    x = types[0]
    same_dtype("pad", types)
    r, pads = x.rank, attrs["pads"]
    if attrs["mode"] == "reflect":
        for d, b, e in zip(x.shape, pads[:r], pads[r:]):
            if isinstance(d, int) and max(b, e) >= d:
                raise GraphShapeError(f"pad of {x}: reflect padding {max(b, e)} needs a dimension > {max(b, e)}, "
                                      f"got {d}")
    return x.with_shape(tuple(d + b + e for d, b, e in zip(x.shape, pads[:r], pads[r:])))


def pad_ref(x, *, pads, mode, value):
    r = np.ndim(x)
    width = list(zip(pads[:r], pads[r:]))
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=value)
    return np.pad(x, width, mode=mode)


register_library("pad", 1, _pad_rule, pad_ref, "opaque", "pad each axis (constant, reflect or edge)",
                 flops=lambda ins, out, a: 0, canon=_canon_pad)
