"""int4 in groups of g along K, asymmetric: a scale and a zero per group (``int4-asym-g32/64/128``).

The format of gpt-fast's and torchao's int4 weight-only decoding (their ``scales_and_zeros``,
fed to PyTorch's tinygemm kernel ``_weight_int4pack_mm``). Per group of g weights::

    scale = fp16((max(w) - min(w)) / 15)
    zero  = fp16(min(w) + 8 * scale)           # the value code 8 decodes to: the range's middle
    q     = clip(round((w - zero) / scale) + 8, 0, 15)
    w'    = scale * (q - 8) + zero             # decode: levels code - 8, min = zero

Every code 0..15 is used (symmetric int4 leaves one unused and centres the range on 0, so a
group of all-positive weights wastes half its codes). A block is the fp16 scale, the fp16 zero
and g/2 bytes of codes, two per byte (element ``2i`` in the low nibble of byte ``i``), so
``bits per weight = 4 + 32 / g``: 5 for g = 32, 4.5 for g = 64, against 4.5 and 4.25 for the
symmetric ``int4-g<N>``. gpt-fast stores the scale and zero as bf16; the bytes are the same.

The codes are computed from the fp16 scale and zero actually stored, so every weight is within
``scale / 2`` of its decoded value, up to the fp16 rounding of the zero and a clip at the
group's ends when the scale rounded down. A group of equal weights gets ``scale = 0`` and
decodes to ``zero`` (its value, rounded to fp16). A group whose spread / 15 underflows fp16
is refused by ``quantize`` (:class:`~.errors.ScaleUnderflowError`) unless ``underflow="zero"``.
"""

from __future__ import annotations

import numpy as np

from .scheme import Scheme, to_fp16


class Int4GroupedZero(Scheme):
    """Asymmetric int4, an fp16 scale and an fp16 zero per ``group_size`` weights along K."""

    bits = 4
    has_min = True
    split_halves = False

    def __init__(self, group_size: int = 32):
        self.group_size = int(group_size)
        self.name = f"int4-asym-g{self.group_size}"

    def quantize_groups(self, groups):
        lo, hi = groups.min(axis=1), groups.max(axis=1)                  # (n_groups,)
        raw_scale = (hi - lo) / np.float32(15)
        scale = to_fp16(raw_scale)                                       # (n_groups,) fp16 values
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            zero = to_fp16(lo + np.float32(8) * scale)                   # (n_groups,) code 8's value
            ratio = (groups - zero[:, None]) / scale[:, None]            # (n_groups, g)
        ok = (scale > 0)[:, None] & np.isfinite(ratio)
        q = np.where(ok, np.clip(np.rint(np.where(ok, ratio, 0)) + 8, 0, 15), 8).astype(np.uint8)
        # an overflowing scale is reported by quantize() from the unrounded value
        return q, np.where(np.isfinite(scale), scale, raw_scale), zero
