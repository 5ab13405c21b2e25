"""Online softmax's inner loops, vectorised on the CPU: running max, exp(x - m), running sum.

The FlashAttention-2 forward on the CPU holds a score tile transposed, one row
per key and one column per query (see ``flash2.fwd``), so a query's statistics
(its running max m and sum l) sit in one lane of a vector over the tile's
queries, and each key row updates all of them at once: an elementwise max, an
exp with a per-query shift that adds to a per-query sum. These loops run 16 float32
lanes at a time (AVX-512). ``np.exp`` in a Numba loop is a scalar libm call
per element instead, and a running max written with ``if`` stays scalar (see
:mod:`tinyml.kernels._llvm`).

exp(d) for d <= 0, in float32 as a GPU's fast exp computes it::

    k = round(d log2(e))               an integer in [-126, 0]
    r = d - k ln(2)                    |r| <= ln(2)/2; ln 2 split in a short head and a
                                       tail (Cody-Waite), so k ln 2 adds no rounding
    e^r = 1 + r + r^2 P(r)             P of degree 5 (Cephes' expf minimax coefficients)
    e^d = e^r 2^k                      2^k built from its bits, (k + 127) << 23

Relative error <= 2 float32 ulps (tests/test_fastexp.py). Arguments at or
below -87 (e^-87 < 1.2e-38, float32's smallest normal number) and -inf (keys
a mask hides) give exactly 0: no denormals, as GPU kernels flush them.
"""

from __future__ import annotations

import numpy as np

from ...sim.jit import njit
from .._llvm import float32_from_bits, maxnum32

_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)            # 8 significant bits: k * _LN2_HI is exact for |k| <= 2^15
_LN2_LO = np.float32(-2.12194440e-4)         # ln 2 - _LN2_HI
_P0 = np.float32(1.9875691500e-4)            # Cephes expf: e^r ~ 1 + r + r^2 (P5 + r (P4 + ... + r P0))
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)
_FLUSH = np.float32(-87.0)                   # below this, 0
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_NEG_INF = np.float32(-np.inf)

# exp_le0 / tile_exp: no 'reassoc' (it would merge k*_LN2_HI + k*_LN2_LO back into one rounded
# k ln 2) and no 'ninf' / 'nnan' (hidden keys are -inf); 'contract' lets k ln 2 and the polynomial use FMAs.
_EXP_FLAGS = {"contract", "arcp", "nsz", "afn"}
# tile_scale_max: elementwise over the queries; the scores are finite where it is used.
_VECTOR_FLAGS = {"nnan", "nsz", "contract", "arcp"}


@njit(cache=True, fastmath=_EXP_FLAGS)
def exp_le0(d):
    """exp(d) for a float32 d <= 0 (or -inf): the method above; inlined into the loops that call it."""
    dc = max(d, _FLUSH)
    k = np.floor(dc * _LOG2E + _HALF)                 # round to nearest
    t = (dc - k * _LN2_HI) - k * _LN2_LO
    et = _ONE + t + (t * t) * (_P5 + t * (_P4 + t * (_P3 + t * (_P2 + t * (_P1 + t * _P0)))))
    two_k = float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))
    return et * two_k if d > _FLUSH else _ZERO


@njit(cache=True, fastmath=_EXP_FLAGS)
def tile_exp(st, shift, rows, cols, pt, total):
    """pt[c, r] = exp(st[c, r] - shift[r]) and total[r] += pt[c, r], for r < rows, c < cols.

    st, pt: (keys, queries) float32 tiles of scaled scores; shift: float32 and total: float64
    (or float32) vectors over the queries; st - shift <= 0. ``pt`` must not be ``st``: LLVM
    checks at run time whether the rows overlap and runs a scalar loop if they do (in place
    was 4x slower).
    """
    for c in range(cols):
        x = st[c]
        out = pt[c]
        for r in range(rows):
            p = exp_le0(x[r] - shift[r])                  # float32, <= 0 or -inf
            out[r] = p
            total[r] += p


@njit(cache=True, fastmath=_EXP_FLAGS)
def start_tile(m_old, m_new, n, shift, alpha, total):
    """Per query r < n, once the tile's max is known: the shift tile_exp subtracts, the factor
    the running sum and output are rescaled by, and a zeroed sum for the tile.

    shift[r] = m_new[r], or 0 where the query sees no key yet (m_new = -inf: its P are
    exp(-inf - 0) = 0, never exp(-inf + inf) = NaN); alpha[r] = exp(m_old[r] - shift[r]),
    0 on a query's first visible tile, 1 while its max stays; total[r] = 0.
    """
    for r in range(n):
        s = m_new[r] if m_new[r] > _NEG_INF else _ZERO
        shift[r] = s
        alpha[r] = exp_le0(m_old[r] - s)
        total[r] = _ZERO


@njit(cache=True, fastmath=_VECTOR_FLAGS)
def tile_scale_max(st, scale, rows, cols, m):
    """st[c, r] = fl32(st[c, r] * scale) and m[r] = max(m[r], st[c, r]), for r < rows, c < cols.

    The scaled scores are stored, so the exp subtracts the max from exactly the value the max
    was taken of (the key that holds the max gets exp(0) = 1, as a plain float32 softmax gives),
    and the backward recomputes the same fl32(S * scale). st finite.
    """
    for c in range(cols):
        x = st[c]
        for r in range(rows):
            v = x[r] * scale
            x[r] = v
            m[r] = maxnum32(m[r], v)
