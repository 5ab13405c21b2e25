"""The scheme interface: how every weight format (built-in or yours) is described.

Weights are stored like PyTorch's ``Linear.weight`` and llama.cpp's tensors:
``W`` is ``(N, K)`` = (output channels, input features), row-major, and every
quantization group runs along the input dimension K of one row.

One byte layout covers every scheme, so one fused kernel runs them all. A row
is a sequence of *blocks*, one per group of ``g`` weights::

    row r of .data:  [block 0][block 1] ... [block G-1]       G = ceil(K / g)
    one block:       [scale: fp16, 2 bytes little-endian]
                     [min:   fp16, 2 bytes]                   only if has_min
                     [codes: g * bits / 8 bytes]

and a weight decodes as ``w = scale * levels[code] + min`` (``min`` = 0 when
the scheme has none). ``levels`` is a table of the ``2**bits`` code values
before scaling: ``code - 8`` for symmetric int4, the signed byte for int8,
a 16-entry codebook for NF4. Codes narrower than a byte are packed low bits
first, in one of two orders:

* interleaved (``split_halves=False``): element ``2i`` in the low nibble of
  byte ``i``, element ``2i + 1`` in the high nibble (for 2-bit codes: 4 per
  byte, element ``4i + t`` in bits ``2t .. 2t+1``);
* split halves (``split_halves=True``, llama.cpp's Q4_0): element ``j`` in the
  low nibble of byte ``j`` and element ``j + g/2`` in the high nibble.

Rows whose length is not a multiple of ``g`` are padded with zeros to
``G * g`` (the padding is quantized like any weight and dropped by
``dequantize``), unless the scheme sets ``pad_rows = False``.
``group_size=None`` means one group per row (per-channel scales).

**Bring your own scheme**: subclass :class:`Scheme`, set ``name``, ``bits``,
``group_size`` (and ``has_min``, ``split_halves``, ``levels()`` if the
defaults do not fit), implement :meth:`Scheme.quantize_groups`, and pass an
instance (or ``register`` it, :mod:`.registry`, and pass its name) to ``quantize``. Packing,
``dequantize`` and the fused kernels then work unchanged, because the decode
is always ``scale * levels[code] + min``. That one form covers symmetric and
asymmetric integer schemes and any codebook (lookup-table) scheme; a format
whose decode does not fit it needs its own kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import BlockAlignmentError, ScaleOverflowError, ScaleUnderflowError, SchemeDefinitionError

FP16_MAX = 65504.0


@dataclass(frozen=True)
class Layout:
    """The byte layout of a quantized ``(N, K)`` matrix in one scheme."""

    k: int                  # real row length
    group: int              # weights per group (g)
    groups_per_row: int     # G = ceil(K / g)
    header_bytes: int       # 2 (scale) or 4 (scale, min)
    block_bytes: int        # header + g * bits / 8
    bits: int
    per_row: bool = False   # group_size None: the one group is the row (padded to whole bytes only)

    @property
    def padded_k(self) -> int:
        return self.groups_per_row * self.group

    @property
    def row_bytes(self) -> int:
        return self.groups_per_row * self.block_bytes

    @property
    def codes_per_byte(self) -> int:
        return 8 // self.bits


class Scheme:
    """Base class of a weight format; see the module docstring for the contract.

    Subclasses set the class attributes and implement :meth:`quantize_groups`.
    """

    name: str = "scheme"
    bits: int = 4                       # code width: 2, 4 or 8
    group_size: "int | None" = 32       # weights per group along K; None = one group per row
    has_min: bool = False               # blocks carry an fp16 minimum (asymmetric schemes)
    split_halves: bool = False          # nibble order, see the module docstring
    pad_rows: bool = True               # False: K must be a multiple of group_size

    # -- what a scheme defines -----------------------------------------------------
    def levels(self) -> np.ndarray:
        """Value of each code before scaling, ``(2**bits,)`` float32. Default: ``code - 2**(bits-1)``."""
        return (np.arange(2 ** self.bits) - 2 ** (self.bits - 1)).astype(np.float32)

    def quantize_groups(self, groups: np.ndarray):
        """Quantize ``groups`` ``(n_groups, g)`` float32 (finite).

        Returns ``(codes, scale, min)``: codes ``(n_groups, g)`` integers in
        ``[0, 2**bits)``; scale and min ``(n_groups,)`` float32 (min is None
        without ``has_min``). Scales and mins are stored as fp16 (rounded to
        nearest even); return fp16 values (see :func:`to_fp16`) if the codes
        were computed from them.
        """
        raise NotImplementedError(f"scheme {self.name!r} must implement quantize_groups")

    # -- derived ---------------------------------------------------------------------
    def layout(self, k: int) -> Layout:
        """The byte layout of rows of ``k`` weights (raises if they cannot be stored)."""
        self.check()
        per = 8 // self.bits
        if self.group_size is None:
            g = -(-int(k) // per) * per
        else:
            g = int(self.group_size)
            if not self.pad_rows and k % g:
                raise BlockAlignmentError(
                    f"{self.name} needs a row length K that is a multiple of {g} (it cannot pad, "
                    f"llama.cpp refuses too), got K={k}. Pad the rows to K={-(-k // g) * g} yourself, "
                    f"or use a format that pads, e.g. 'int4-g{g}'.")
        header = 2 * (1 + bool(self.has_min))
        return Layout(int(k), g, -(-int(k) // g), header, header + g * self.bits // 8, int(self.bits),
                      self.group_size is None)

    def bits_per_weight(self, k: "int | None" = None) -> float:
        """Storage bits per weight, scales included.

        With ``k``: exact for rows of ``k`` weights, padding included
        (= 8 * nbytes / numel). Without: the value for long rows,
        ``bits + 16 * (1 + has_min) / g`` (just ``bits`` for one group per row).
        """
        if k is not None:
            lay = self.layout(k)
            return 8 * lay.row_bytes / lay.k
        if self.group_size is None:
            return float(self.bits)
        return self.bits + 16 * (1 + bool(self.has_min)) / self.group_size

    def check(self) -> None:
        """Raise :class:`SchemeDefinitionError` if the class attributes cannot be packed."""
        if self.bits not in (2, 4, 8):
            raise SchemeDefinitionError(f"scheme {self.name!r}: bits must be 2, 4 or 8, got {self.bits!r}")
        per = 8 // self.bits
        g = self.group_size
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1 or g % per):
            raise SchemeDefinitionError(
                f"scheme {self.name!r}: group_size must be None or a positive multiple of {per} "
                f"({per} codes of {self.bits} bits share a byte), got {g!r}")
        lv = np.asarray(self.levels())
        if lv.shape != (2 ** self.bits,) or not np.all(np.isfinite(lv)):
            raise SchemeDefinitionError(
                f"scheme {self.name!r}: levels() must return {2 ** self.bits} finite values, got shape {lv.shape}")

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, bits={self.bits}, group_size={self.group_size}, "
                f"bits_per_weight={self.bits_per_weight():g})")


def to_fp16(values) -> np.ndarray:
    """Round float32 values to the nearest fp16 (ties to even), returned as float32."""
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(values, dtype=np.float32).astype(np.float16).astype(np.float32)


def check_fp16(values: np.ndarray, what: str, scheme: str, groups_per_row: int, amax: np.ndarray) -> None:
    """Raise :class:`ScaleOverflowError` if some ``values`` (one per group) round to fp16 infinity."""
    bad = ~np.isfinite(to_fp16(values))
    if bad.any():
        i = int(np.argmax(bad))
        row, grp = divmod(i, groups_per_row)
        raise ScaleOverflowError(
            f"{scheme}: the {what} of group {grp} of row {row} is {float(values[i]):.6g}, beyond fp16's "
            f"largest value {FP16_MAX:g} (the group's largest |w| is {float(amax[i]):.6g}); "
            f"{int(bad.sum())} group(s) overflow. Rescale the weights (e.g. divide by a power of two "
            f"and fold it into the next layer) before quantizing.")


#: the smallest positive fp16 (a subnormal): a scale below half of it is stored as 0
FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)


def check_fp16_underflow(scale: np.ndarray, spread: np.ndarray, scheme: str, groups_per_row: int,
                         group: int, minimum: "np.ndarray | None" = None) -> None:
    """Raise :class:`ScaleUnderflowError` if a group whose weights differ (``spread`` > 0: max|w|,
    or max - min for a scheme with a ``minimum``) has a ``scale`` that rounds to fp16 zero."""
    lost = (to_fp16(scale) == 0) & (spread > 0)
    if lost.any():
        i = int(np.argmax(lost))
        row, grp = divmod(i, groups_per_row)
        decoded = ("decode to zeros (relative error 1.0)" if minimum is None else
                   f"all decode to one value, {float(to_fp16(minimum[i])):.3g} (their spread lost)")
        raise ScaleUnderflowError(
            f"{scheme}: the scale of group {grp} of row {row} is {float(scale[i]):.3g}, below fp16's smallest "
            f"positive value {FP16_TINY:.3g} (the group's weights span {float(spread[i]):.3g}): it would be "
            f"stored as 0 and the group's {group} weights would {decoded}; "
            f"{int(lost.sum())} group(s) underflow. Rescale the weights (multiply by a power of two such as "
            f"2**16 and fold its inverse into the next layer) before quantizing, or pass underflow='zero' "
            f"to accept zeros as llama.cpp does.")
