"""Counter-based dropout randomness: the same mask in forward and backward, never stored.

FlashAttention regenerates its dropout mask in the backward pass from the
seed and each element's coordinates (Philox in CUDA). tinyml does the same with
SplitMix64, a small hash with good statistics: the keep decision for score
(b, h, i, j) is a pure function of (seed, b, h, i, j). The NumPy version below
gives bit-identical results, so the float64 reference and every kernel drop
exactly the same elements.
"""

from __future__ import annotations

import numba
import numpy as np

from ...sim.jit import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TO_UNIT = 1.0 / 9007199254740992.0      # 2^-53

#: Vector ops charged per generated random number: Philox4x32-10 does 10 rounds of
#: 2 mul-hi/lo pairs (4 int ops) + 2 xors = 6 ops, for 4 numbers: 60 / 4 = 15.
RNG_OPS = 15


@njit(cache=True)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def uniform(seed, b, h, i, j):
    """A number in [0, 1) that depends only on (seed, b, h, i, j)."""
    z = _mix(np.uint64(seed) * _GOLDEN + np.uint64(b))
    z = _mix(z + np.uint64(h) * _GOLDEN)
    z = _mix(z + np.uint64(i) * _GOLDEN)
    z = _mix(z + np.uint64(j) * _GOLDEN)
    return float(z >> _S11) * _TO_UNIT


if numba.config.DISABLE_JIT:          # plain NumPy scalars warn when the hash wraps around (it must)
    _uniform_jit = uniform

    def uniform(seed, b, h, i, j):
        """A number in [0, 1) that depends only on (seed, b, h, i, j)."""
        with np.errstate(over="ignore"):
            return _uniform_jit(seed, b, h, i, j)


@njit(cache=True)
def keep(seed, b, h, i, j, p):
    """Dropout keeps score (b, h, i, j) iff its uniform number is >= p."""
    return uniform(seed, b, h, i, j) >= p


def _mix_np(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def keep_mask(seed: int, batch: int, heads: int, n_q: int, n_k: int, p: float) -> np.ndarray:
    """The whole (batch, heads, n_q, n_k) keep mask, vectorised (for references and tests)."""
    b = np.arange(batch, dtype=np.uint64)[:, None, None, None]
    h = np.arange(heads, dtype=np.uint64)[None, :, None, None]
    i = np.arange(n_q, dtype=np.uint64)[None, None, :, None]
    j = np.arange(n_k, dtype=np.uint64)[None, None, None, :]
    with np.errstate(over="ignore"):
        z = _mix_np(np.uint64(seed) * _GOLDEN + b)
        z = _mix_np(z + h * _GOLDEN)
        z = _mix_np(z + i * _GOLDEN)
        z = _mix_np(z + j * _GOLDEN)
    return (z >> _S11).astype(np.float64) * _TO_UNIT >= p
