"""``quantize(w, fmt)`` and the :class:`QuantizedTensor` it returns."""

from __future__ import annotations

import numpy as np

from ...sim import DTypeError, MetaTensor, NonFiniteError, ShapeError
from .errors import ScaleUnderflowError, SchemeDefinitionError
from .pack import pack, unpack
from .registry import get_scheme
from .scheme import Layout, Scheme, check_fp16, check_fp16_underflow, to_fp16


class QuantizedTensor:
    """A weight matrix ``W`` ``(N, K)`` in a quantized format.

    ``data`` is ``(N, row_bytes)`` uint8 in the scheme's exact byte layout
    (for q4_0/q8_0, ``data.tobytes()`` is what llama.cpp's reference
    quantizer writes for the row-major matrix). In counting mode
    (:meth:`meta`) there is no data, only the shape and the byte count.
    """

    def __init__(self, scheme: Scheme, shape: tuple, data: "np.ndarray | None", layout: Layout):
        self.scheme = scheme
        self.shape = (int(shape[0]), int(shape[1]))
        self.layout = layout
        self.data = data
        # what the HBM ledger tracks: the packed bytes (or their shape in counting mode)
        self.storage = data if data is not None else MetaTensor((self.shape[0], layout.row_bytes), "int8")

    @classmethod
    def meta(cls, shape, fmt) -> "QuantizedTensor":
        """A shape-only quantized weight for counting mode, e.g. ``QuantizedTensor.meta((4096, 4096), "q4_0")``."""
        scheme = get_scheme(fmt)
        shape = tuple(int(s) for s in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ShapeError(f"a quantized weight is 2-D (N, K) with N, K >= 1, got shape {shape}")
        return cls(scheme, shape, None, scheme.layout(shape[1]))

    # -- properties -------------------------------------------------------------------
    @property
    def fmt(self) -> str:
        return self.scheme.name

    @property
    def execute(self) -> bool:
        return self.data is not None

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the packed weights, scales included (what a kernel reads from HBM)."""
        return self.shape[0] * self.layout.row_bytes

    @property
    def bits_per_weight(self) -> float:
        """``8 * nbytes / numel``: storage bits per real weight, padding and scales included."""
        return 8 * self.nbytes / self.numel

    def levels(self) -> np.ndarray:
        return np.ascontiguousarray(self.scheme.levels(), dtype=np.float32)

    # -- views of the packed bytes ------------------------------------------------------
    def unpacked(self):
        """(codes (N, G, g) uint8, scales (N, G) float32, mins (N, G) float32 or None)."""
        self._need_data("unpacked")
        return unpack(self.data, self.layout, self.scheme.split_halves, self.scheme.has_min)

    def dequantize(self) -> np.ndarray:
        """W as float32 ``(N, K)``: ``scale * levels[code] + min`` per weight, padding dropped."""
        codes, scale, minimum = self.unpacked()
        w = self.levels()[codes] * scale[:, :, None]                 # (N, G, g)
        if minimum is not None:
            w = w + minimum[:, :, None]
        return np.ascontiguousarray(w.reshape(self.shape[0], -1)[:, :self.shape[1]], dtype=np.float32)

    def _need_data(self, what: str) -> None:
        if self.data is None:
            raise DTypeError(f"{what}() needs data, but this QuantizedTensor is shape-only (counting mode); "
                             f"use quantize(w, {self.fmt!r}) on a real array")

    def __repr__(self) -> str:
        kind = "" if self.execute else ", meta"
        return (f"QuantizedTensor(shape={self.shape}, fmt={self.fmt!r}, nbytes={self.nbytes}, "
                f"bits_per_weight={self.bits_per_weight:.4g}{kind})")


def quantize(w, fmt, *, underflow: str = "raise") -> QuantizedTensor:
    """Quantize a weight matrix ``w`` ``(N, K)`` (out, in) into ``fmt``.

    ``fmt``: 'int8', 'int4-g32', 'int4-g64', 'int4-g128' (any 'int4-g<N>'),
    'int4-asym-g32/64/128' (a scale and a zero per group, any 'int4-asym-g<N>'),
    'q8_0', 'q4_0', another registered name, or a :class:`Scheme` instance.
    NaN/Inf weights are refused with their position; a scale that overflows
    fp16 is refused (:class:`~.errors.ScaleOverflowError`), and so is one that
    underflows it (a group whose max|w| is below ~4e-6 for int8 would decode
    to zeros; :class:`~.errors.ScaleUnderflowError`) unless ``underflow="zero"``,
    which stores the zero scale as llama.cpp does.
    """
    if underflow not in ("raise", "zero"):
        raise ScaleUnderflowError(f"underflow must be 'raise' or 'zero', got {underflow!r}")
    scheme = get_scheme(fmt)
    w = _weights(w)
    n, k = w.shape
    lay = scheme.layout(k)
    padded = np.zeros((n, lay.padded_k), np.float32)              # (N, G*g): zeros past K
    padded[:, :k] = w
    groups = padded.reshape(n * lay.groups_per_row, lay.group)     # (N*G, g)
    codes, scale, minimum = _checked(scheme, groups, *scheme.quantize_groups(groups))
    amax = np.abs(groups).max(axis=1)
    check_fp16(scale, "scale", scheme.name, lay.groups_per_row, amax)
    if underflow == "raise":
        spread = amax if minimum is None else groups.max(axis=1) - groups.min(axis=1)
        check_fp16_underflow(scale, spread, scheme.name, lay.groups_per_row, lay.group, minimum)
    if minimum is not None:
        check_fp16(minimum, "min", scheme.name, lay.groups_per_row, amax)
        minimum = to_fp16(minimum).reshape(n, lay.groups_per_row)
    data = pack(codes.reshape(n, lay.groups_per_row, lay.group), to_fp16(scale).reshape(n, lay.groups_per_row),
                minimum, lay, scheme.split_halves)
    return QuantizedTensor(scheme, (n, k), data, lay)


def _weights(w) -> np.ndarray:
    if isinstance(w, (MetaTensor, QuantizedTensor)):
        raise DTypeError(f"quantize() needs real weights, got {type(w).__name__}; for counting mode "
                         f"use QuantizedTensor.meta(shape, fmt)")
    try:
        w = np.asarray(w)
    except Exception:
        raise DTypeError(f"weights must be a NumPy array, got {type(w).__name__}") from None
    if w.dtype.kind not in "fiu":
        raise DTypeError(f"weights have NumPy dtype {w.dtype}; quantize() takes real numbers")
    if w.ndim != 2 or 0 in w.shape:
        raise ShapeError(f"weights must be a non-empty 2-D matrix (N out, K in), got shape {w.shape}; "
                         f"reshape a vector to (1, K)")
    if w.dtype.kind == "f":
        bad = ~np.isfinite(w)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise NonFiniteError(
                f"weights hold {int(bad.sum())} NaN/Inf value(s), the first at (row, col) = {first} "
                f"(value {w[first]}); a quantization scale cannot represent them. Clean them first.")
    return np.ascontiguousarray(w, dtype=np.float32)


def _checked(scheme: Scheme, groups: np.ndarray, codes, scale, minimum):
    """Check what a scheme's quantize_groups returned; names the scheme when it is wrong."""
    n_groups, g = groups.shape
    codes = np.asarray(codes)
    scale = np.asarray(scale, dtype=np.float32).reshape(-1)
    if codes.shape != (n_groups, g):
        raise SchemeDefinitionError(f"{scheme.name}.quantize_groups returned codes of shape {codes.shape}, "
                                    f"expected {(n_groups, g)}")
    if codes.size and (codes.min() < 0 or codes.max() >= 2 ** scheme.bits):
        raise SchemeDefinitionError(f"{scheme.name}.quantize_groups returned codes in "
                                    f"[{codes.min()}, {codes.max()}], outside [0, {2 ** scheme.bits - 1}]")
    if scale.shape != (n_groups,):
        raise SchemeDefinitionError(f"{scheme.name}.quantize_groups returned {scale.size} scales for "
                                    f"{n_groups} groups")
    if scheme.has_min != (minimum is not None):
        raise SchemeDefinitionError(f"{scheme.name} has has_min={scheme.has_min} but quantize_groups returned "
                                    f"min={'None' if minimum is None else 'an array'}")
    if minimum is not None:
        minimum = np.asarray(minimum, dtype=np.float32).reshape(-1)
        if minimum.shape != (n_groups,):
            raise SchemeDefinitionError(f"{scheme.name}.quantize_groups returned {minimum.size} mins for "
                                        f"{n_groups} groups")
    return codes.astype(np.uint8), scale, minimum
