"""Sliding windows over the two spatial axes of an NCHW tensor (shared by conv and pooling).

One window of kernel ``k``, dilation ``d`` spans ``d (k - 1) + 1`` input rows.
With padding ``p0`` before and ``p1`` after and stride ``s``, the output has

    out = floor((size + p0 + p1 - span) / s) + 1          (ceil with ceil_mode)

rows. With ``ceil_mode`` a last window that would start inside the end padding
is dropped (PyTorch's and ONNX's rule), so every window sees some input.

Symbolic spatial sizes are supported at stride 1 only (``out = size + p0 + p1 - span + 1``
stays affine); a batch dimension may always be symbolic.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import GraphShapeError
from ..symbolic import Affine
from ._util import flag_attr, int_attr


def _pair(op: str, what: str, v, default: int, n: int = 2) -> tuple:
    if v is None:
        return (default,) * n
    v = tuple(int_attr(op, what, x) for x in (v if isinstance(v, (tuple, list)) else (v,) * n))
    if len(v) != n:
        raise GraphShapeError(f"{op}: {what} must have {n} entries (one per spatial axis), got {v}")
    return v


def canon_window(op: str, attrs: dict, *, kernel=None, dilations: bool = True, ceil_mode: bool = True) -> dict:
    """Normalised ``kernel, strides, pads (h0, w0, h1, w1), dilations, ceil_mode`` attributes."""
    kernel = _pair(op, "kernel", attrs.get("kernel", kernel), 1)
    strides = _pair(op, "strides", attrs.get("strides"), 1)
    pads = _pair(op, "pads (h_begin, w_begin, h_end, w_end)", attrs.get("pads"), 0, 4)
    dil = _pair(op, "dilations", attrs.get("dilations"), 1)
    for what, vals, low in (("kernel", kernel, 1), ("strides", strides, 1), ("pads", pads, 0), ("dilations", dil, 1)):
        if any(v < low for v in vals):
            raise GraphShapeError(f"{op}: every entry of {what} must be >= {low}, got {vals}")
    out = {"kernel": kernel, "strides": strides, "pads": pads}
    if dilations:
        out["dilations"] = dil
    if ceil_mode:
        out["ceil_mode"] = flag_attr(op, "ceil_mode", attrs.get("ceil_mode", False))
    return out


def out_size(op: str, size, k: int, s: int, d: int, p0: int, p1: int, ceil: bool = False):
    """Output length along one spatial axis (see the module docstring); int or affine."""
    span = d * (k - 1) + 1
    if isinstance(size, Affine):
        if s != 1:
            raise GraphShapeError(
                f"{op}: the spatial size {size} is symbolic and the stride is {s}; symbolic spatial sizes "
                "are supported at stride 1 only (bind the spatial size to a number)")
        return size + (p0 + p1 - span + 1)
    room = size + p0 + p1 - span
    if room < 0:
        raise GraphShapeError(
            f"{op}: a window spanning {span} (kernel {k}, dilation {d}) does not fit a spatial size {size} "
            f"padded by ({p0}, {p1}); use a smaller kernel or more padding")
    out = (room + s - 1) // s + 1 if ceil else room // s + 1
    if ceil and (out - 1) * s >= size + p0:                 # last window would start in the end padding
        out -= 1
    return out


def out_hw(op: str, h, w, attrs: dict) -> tuple:
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel"], attrs["strides"], attrs.get("dilations", (1, 1))
    h0, w0, h1, w1 = attrs["pads"]
    ceil = attrs.get("ceil_mode", False)
    return (out_size(op, h, kh, sh, dh, h0, h1, ceil), out_size(op, w, kw, sw, dw, w0, w1, ceil))


def windows(x: np.ndarray, attrs: dict, fill: float, ceil_fill: "float | None" = None) -> np.ndarray:
    """``x (N, C, H, W)`` -> a view ``(N, C, Ho, Wo, kh, kw)`` of its windows, padding with ``fill``
    (and the extra end rows/columns that ``ceil_mode`` needs with ``ceil_fill``, default ``fill``)."""
    (kh, kw), (sh, sw), (dh, dw) = attrs["kernel"], attrs["strides"], attrs.get("dilations", (1, 1))
    h0, w0, h1, w1 = attrs["pads"]
    n, c, h, w = x.shape
    ho, wo = out_hw("window", h, w, attrs)
    span_h, span_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    extra_h = max(0, (ho - 1) * sh + span_h - (h + h0 + h1))       # ceil_mode: room for the last window
    extra_w = max(0, (wo - 1) * sw + span_w - (w + w0 + w1))
    if h0 or w0 or h1 or w1:
        x = np.pad(x, ((0, 0), (0, 0), (h0, h1), (w0, w1)), constant_values=fill)
    if extra_h or extra_w:
        x = np.pad(x, ((0, 0), (0, 0), (0, extra_h), (0, extra_w)),
                   constant_values=fill if ceil_fill is None else ceil_fill)
    win = sliding_window_view(x, (span_h, span_w), axis=(2, 3))      # (N, C, Hp-span+1, Wp-span+1, sh, sw)
    return win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :ho, :wo]          # (N, C, Ho, Wo, kh, kw)


def need_nchw(op: str, x) -> None:
    if x.rank != 4:
        raise GraphShapeError(f"{op} works on NCHW tensors (rank 4), got {x}; "
                              "1-D and 3-D inputs are not supported")
