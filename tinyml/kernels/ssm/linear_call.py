"""Validation and tiles shared by the linear-attention kernels (recurrent, quadratic, chunked, decode).

Layout: q, k (batch, H, N, d), v (batch, H, N, dv); ``decay`` (H,) per-head
factors in (0, 1] (None: 1, plain causal linear attention). The state of one
head is S (d, dv) fp32::

    S_t = decay S_{t-1} + k_t^T v_t        o_t = q_t S_t
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...sim import FLOAT_DTYPES, DTypeError, ShapeError, TileConfigError, bits
from .._contract import Operand, operand, same_mode
from .._counting import stand_in

DUMMY2 = stand_in(2)     # the linear-attention launchers' stand-in for data in counting mode
OP_Q, OP_K, OP_V, OP_DO = range(4)


@dataclass
class LinearCall:
    q: Operand
    k: Operand
    v: Operand
    batch: int
    heads: int
    length: int
    dk: int
    dv: int
    dtype: str
    execute: bool
    decay: np.ndarray          # (H,) float64 in (0, 1]

    @property
    def elem_bits(self) -> int:
        return bits(self.dtype)

    def flat(self, name: str):
        """(batch * H * N, d) float32 data of q, k or v, or a dummy when counting."""
        op = getattr(self, name)
        return op.data.reshape(-1, op.shape[-1]) if self.execute else DUMMY2


def check_decay(decay, heads: int, kernel: str) -> np.ndarray:
    """(H,) float64 decay factors in (0, 1], or ones for None."""
    if decay is None:
        return np.ones(heads)
    try:
        raw = np.asarray(decay) if not isinstance(decay, (str, bytes)) else None
    except (TypeError, ValueError):                    # a ragged list
        raw = np.asarray(None)
    if raw is None or raw.dtype.kind not in "iuf":       # "0.5", True, 0.5+0j, None inside a list: not parsed
        raise DTypeError(f"{kernel}: decay must be a real number or H real numbers in (0, 1], got {decay!r}"
                         + (f" (dtype {raw.dtype})" if raw is not None else " (str)"))
    g = raw.astype(np.float64).reshape(-1)
    if g.size == 1:
        g = np.full(heads, float(g[0]))
    if g.size != heads:
        raise ShapeError(f"{kernel}: decay has {g.size} values but there are {heads} heads; give one per head")
    bad = ~((g > 0) & (g <= 1))
    if bad.any():
        i = int(np.argmax(bad))
        raise TileConfigError(f"{kernel}: decay[{i}] = {float(g[i]):g}; a decay must be in (0, 1] (1 = no decay, "
                              f"as plain linear attention; RetNet uses 1 - 2^(-5 - h)); larger ones make the "
                              f"state grow without bound")
    return g


def prepare_linear(q, k, v, decay, *, dtype: str, kernel: str) -> LinearCall:
    Q = operand(q, "q", ndim=4, dtype=dtype, allowed=FLOAT_DTYPES)
    K = operand(k, "k", ndim=4, dtype=dtype, allowed=FLOAT_DTYPES)
    V = operand(v, "v", ndim=4, dtype=dtype, allowed=FLOAT_DTYPES)
    execute = same_mode(Q, K, V)
    if len({Q.dtype, K.dtype, V.dtype}) > 1:
        raise DTypeError(f"{kernel}: q, k, v have logical dtypes {Q.dtype}, {K.dtype}, {V.dtype}; use one")
    if Q.shape != K.shape:
        raise ShapeError(f"{kernel}: q is {Q.shape} but k is {K.shape}; both are (batch, heads, N, d)")
    if V.shape[:3] != Q.shape[:3]:
        raise ShapeError(f"{kernel}: v is {V.shape} but q is {Q.shape}; v must be (batch, heads, N, dv) with "
                         f"q's batch, heads and N")
    b, h, n, d = Q.shape
    return LinearCall(Q, K, V, b, h, n, d, V.shape[3], Q.dtype, execute, check_decay(decay, h, kernel))
