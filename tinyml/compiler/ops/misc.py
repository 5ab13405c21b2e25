"""A small library op the ONNX importer needs: pad.

``pad(x, pads, mode, value)``: ``pads = (b_0, ..., b_{r-1}, e_0, ..., e_{r-1})``
elements added before / after each axis (ONNX's order), ``mode`` ``constant``
(filled with ``value``), ``reflect`` or ``edge``.

Lowering ``"library"``: reads ``x`` once, writes the output once; 0 FLOPs (pure data
movement). Pattern ``opaque``: a fused elementwise kernel reads each element where the
output element is, and a padded output has elements with no input.
(``clip`` and ``sigmoid`` are elementwise ops: :mod:`tinyml.compiler.ops.elementwise`.)
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphShapeError
from ..types import same_dtype
from .library import numel, register_library


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
