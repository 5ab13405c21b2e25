"""int4 in groups of g along K: symmetric, fp16 scale per group (``int4-g32/64/128``).

Per group: ``s = fp16(max|w| / 7)``, ``q = clip(round(w / s), -7, 7)``
(round half to even), stored as the nibble ``q + 8`` (1 .. 15; 0 is unused),
two per byte, element ``2i`` in the low nibble of byte ``i`` and ``2i + 1`` in
the high nibble. A block is the fp16 scale followed by g/2 bytes, so
``bits per weight = 4 + 16 / g`` (4.5 for g = 32). Rows are padded with zeros
to a multiple of g.

The codes are computed from the fp16 scale ``s`` actually stored, so every
weight is within ``s / 2`` of its decoded value except that ``max|w|`` itself
may be clipped by ``7 |s - max|w|/7|`` (the fp16 rounding of the scale).
An all-zero group gets ``s = 0`` and codes 0 (decodes to exact zeros). If
``max|w| / 7`` underflows fp16 (below ~3e-8) the stored scale would be 0 and
the group would decode to zeros: ``quantize`` refuses it
(:class:`~.errors.ScaleUnderflowError`) unless ``underflow="zero"``; no NaN either way.
"""

from __future__ import annotations

import numpy as np

from .scheme import Scheme, to_fp16


def symmetric_codes(groups: np.ndarray, qmax: int):
    """(q in [-qmax, qmax] as int32, fp16 scale as float32) for ``scale = max|w| / qmax``."""
    amax = np.abs(groups).max(axis=1)                              # (n_groups,)
    scale = to_fp16(amax / np.float32(qmax))                      # (n_groups,) fp16 values
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = groups / scale[:, None]                           # (n_groups, g)
    ok = (scale > 0)[:, None] & np.isfinite(ratio)
    q = np.where(ok, np.clip(np.rint(np.where(ok, ratio, 0)), -qmax, qmax), 0).astype(np.int32)
    return q, amax / np.float32(qmax), scale


class Int4Grouped(Scheme):
    """Symmetric int4, one fp16 scale per ``group_size`` weights along K."""

    bits = 4
    has_min = False
    split_halves = False

    def __init__(self, group_size: int = 32):
        self.group_size = int(group_size)
        self.name = f"int4-g{self.group_size}"

    def quantize_groups(self, groups):
        q, raw_scale, scale = symmetric_codes(groups, 7)
        # an overflowing scale is reported by quantize() from the unrounded value
        return (q + 8).astype(np.uint8), np.where(np.isfinite(scale), scale, raw_scale), None
