"""Validation shared by every attention variant: shapes, GQA, masks, dropout, scale.

Layout (FlashAttention's): q is (batch, heads, seq_q, head_dim), k and v are
(batch, kv_heads, seq_k, head_dim) with ``heads % kv_heads == 0`` (MQA when
kv_heads == 1, GQA in between). Query head ``h`` reads kv head
``h // (heads // kv_heads)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...sim import FLOAT_DTYPES, DTypeError, MetaTensor, ShapeError, TileConfigError, bits
from ...sim.args import INT64_MAX, flag, integer
from .._contract import Operand, operand, same_mode
from .._counting import stand_in


@dataclass
class AttentionCall:
    """A validated attention call (see the module docstring for the layout)."""

    q: Operand
    k: Operand
    v: Operand
    batch: int
    heads: int
    kv_heads: int
    seq_q: int
    seq_k: int
    head_dim: int
    dtype: str
    execute: bool
    causal: bool
    scale: float
    dropout_p: float
    seed: int
    window: tuple            # (left, right), -1 = unbounded
    key_valid: "np.ndarray | None"   # (batch, seq_k) bool, True = a real key
    key_padding_obj: object          # the caller's mask object (for the HBM ledger) or None

    @property
    def elem_bits(self) -> int:
        return bits(self.dtype)

    @property
    def group(self) -> int:
        """Query heads per kv head."""
        return self.heads // self.kv_heads

    @property
    def offset(self) -> int:
        """Bottom-right alignment: query i sits at key position i + offset."""
        return self.seq_k - self.seq_q

    @property
    def masked(self) -> bool:
        return self.causal or self.key_valid is not None or self.key_padding_obj is not None \
            or self.window != (-1, -1)

    def key_valid_array(self) -> np.ndarray:
        """(batch, seq_k) bool for the Numba bodies (all True when there is no padding mask)."""
        if self.key_valid is not None:
            return self.key_valid
        return stand_in(2, np.bool_, fill=1) if not self.execute else np.ones((self.batch, self.seq_k), dtype=np.bool_)

    def data(self, op: Operand) -> np.ndarray:
        return op.data if self.execute else stand_in(4)


def _window(window, causal: bool) -> tuple[int, int]:
    if window is None:
        return (-1, 0) if causal else (-1, -1)
    if isinstance(window, (tuple, list)):
        if len(window) != 2:
            raise TileConfigError(f"window must be an int or a (left, right) pair, got {window!r}")
        left, right = (integer(w, f"window[{i}]", lo=-1, error=TileConfigError,
                               hint="a window side counts keys (-1 = unbounded)") for i, w in enumerate(window))
    else:
        left = integer(window, "window", lo=-1, error=TileConfigError,
                       hint="window is an int or a (left, right) pair of key counts (-1 = unbounded)")
        right = 0 if causal else left
    if causal:
        right = 0 if right == -1 else min(right, 0)
    return left, right


def check_saved(saved, classes: tuple, kernel: str, forward: str) -> None:
    """Refuse a ``saved`` that is not what ``forward(..., return_saved=True)`` returned."""
    if not isinstance(saved, classes):
        names = " or ".join(c.__name__ for c in classes)
        raise DTypeError(f"{kernel}: saved must be the {names} that {forward}(..., return_saved=True) returned "
                         f"(o, saved = {forward}(q, k, v, return_saved=True)), got {type(saved).__name__} "
                         f"{saved!r:.60}")


def attention_seed(seed) -> int:
    """The dropout seed: an integer in [0, 2^63 - 1] (a Numba int64; the reference hashes it as uint64)."""
    return integer(seed, "seed", lo=0, hi=INT64_MAX, hint="the dropout seed is a non-negative int64")


def padding_mask(key_padding_mask, b: int, nk: int, execute: bool, kernel: str):
    """(the mask as a bool array or None when counting, the caller's object) for ``key_padding_mask``."""
    if isinstance(key_padding_mask, MetaTensor):
        if key_padding_mask.shape != (b, nk):
            raise ShapeError(f"{kernel}: key_padding_mask must be (batch, seq_k) = {(b, nk)}, "
                             f"got {key_padding_mask.shape}")
        return None, key_padding_mask
    try:
        arr = np.asarray(key_padding_mask)
    except Exception:                                        # noqa: BLE001  (ragged lists ...)
        raise DTypeError(f"{kernel}: key_padding_mask must be a (batch, seq_k) = {(b, nk)} bool array, "
                         f"got {type(key_padding_mask).__name__}") from None
    if arr.shape != (b, nk):
        raise ShapeError(f"{kernel}: key_padding_mask must be (batch, seq_k) = {(b, nk)}, got {arr.shape}")
    if arr.dtype != np.bool_:
        raise DTypeError(f"{kernel}: key_padding_mask must be a bool array (True = a real key, "
                         f"False = padding), got dtype {arr.dtype}")
    if not isinstance(key_padding_mask, np.ndarray):
        key_padding_mask = arr                               # a list: the array is what HBM holds
    return (np.ascontiguousarray(arr) if execute else None), key_padding_mask


def prepare_attention(q, k, v, *, causal: bool, key_padding_mask, dropout_p: float, seed: int,
                      scale, window, dtype: str, kernel: str, check_finite: bool = True) -> AttentionCall:
    """Validate an attention call; every error names the shapes and says what to do."""
    Q = operand(q, "q", ndim=4, dtype=dtype, allowed=FLOAT_DTYPES, check_finite=check_finite)
    K = operand(k, "k", ndim=4, dtype=dtype, allowed=FLOAT_DTYPES, check_finite=check_finite)
    V = operand(v, "v", ndim=4, dtype=dtype, allowed=FLOAT_DTYPES, check_finite=check_finite)
    execute = same_mode(Q, K, V)
    if len({Q.dtype, K.dtype, V.dtype}) > 1:
        raise DTypeError(f"{kernel}: q, k, v have logical dtypes {Q.dtype}, {K.dtype}, {V.dtype}; use one")
    b, h, nq, d = Q.shape
    bk, hk, nk, dk = K.shape
    if K.shape != V.shape:
        raise ShapeError(f"{kernel}: k is {K.shape} but v is {V.shape}; they must have the same shape")
    if bk != b:
        raise ShapeError(f"{kernel}: q has batch {b} but k/v have batch {bk} (q {Q.shape}, k {K.shape})")
    if dk != d:
        raise ShapeError(f"{kernel}: q has head_dim {d} but k/v have head_dim {dk} (q {Q.shape}, k {K.shape})")
    if h % hk:
        raise ShapeError(f"{kernel}: q has {h} heads, which kv_heads={hk} does not divide (q {Q.shape}, "
                         f"k {K.shape}); GQA needs heads to be a multiple of kv_heads")
    if isinstance(dropout_p, (bool, np.bool_)) or not (isinstance(dropout_p, (int, float, np.integer, np.floating))
                                                       and 0.0 <= dropout_p < 1.0):
        raise TileConfigError(f"{kernel}: dropout_p must be a number in [0, 1), got {dropout_p!r}")
    if scale is None:
        scale = 1.0 / math.sqrt(d)
    elif isinstance(scale, (bool, np.bool_)) or not (isinstance(scale, (int, float, np.integer, np.floating))
                                                     and math.isfinite(scale)):
        raise TileConfigError(f"{kernel}: scale must be a finite number, got {scale!r}")
    causal = flag(causal, "causal")
    seed = attention_seed(seed)
    key_valid, mask_obj = (None, None) if key_padding_mask is None else \
        padding_mask(key_padding_mask, b, nk, execute, kernel)
    return AttentionCall(Q, K, V, b, h, hk, nq, nk, d, Q.dtype, execute, causal, float(scale),
                         float(dropout_p), seed, _window(window, causal), key_valid, mask_obj)
