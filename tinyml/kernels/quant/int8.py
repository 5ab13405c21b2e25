"""int8, symmetric, one fp16 scale per output channel (row of W).

Per row: ``s = fp16(max|w| / 127)``, ``q = clip(round(w / s), -127, 127)``
(round half to even), stored as a signed byte (two's complement). A row is
one block: the fp16 scale, then K bytes, so ``bits per weight = 8 + 16 / K``.
Zero rows and fp16 underflow behave as in :mod:`.int4` (scale 0; an underflow is refused
unless ``quantize(..., underflow="zero")``).
"""

from __future__ import annotations

import numpy as np

from .int4 import symmetric_codes
from .scheme import Scheme


class Int8PerChannel(Scheme):
    """Symmetric int8 with a per-output-channel fp16 scale."""

    name = "int8"
    bits = 8
    group_size = None

    def levels(self):
        c = np.arange(256)
        return np.where(c < 128, c, c - 256).astype(np.float32)      # the byte read as int8

    def quantize_groups(self, groups):
        q, raw_scale, scale = symmetric_codes(groups, 127)
        return q.astype(np.int8).view(np.uint8), np.where(np.isfinite(scale), scale, raw_scale), None
