"""Online softmax's row loops, vectorised on the CPU: row max, exp(x - m), row sum.

``np.exp`` inside a Numba loop is a scalar libm call per element, and a
running max (``m = x if x > m else m``) stays scalar too (see
:mod:`tinyml.kernels._llvm`). These three loops run 16 float32 lanes at a time
(AVX-512), which is what the FlashAttention-2 forward spends its non-matmul
time on: per score, one multiply-and-max, one exp, one add.

exp(d) for d <= 0, in float32 as a GPU's fast exp computes it::

    k = round(d log2(e))               an integer in [-126, 0]
    r = d - k ln(2)                    |r| <= ln(2)/2; ln 2 split in a short head and a
                                       tail (Cody-Waite), so k ln 2 adds no rounding
    e^r = 1 + r + r^2 P(r)             P of degree 5 (Cephes' expf minimax coefficients)
    e^d = e^r 2^k                      2^k built from its bits, (k + 127) << 23

Relative error <= 2 float32 ulps (tests/test_fastexp.py). Arguments below
-87 (e^-87 < 1.2e-38, float32's smallest normal number) and -inf (keys a mask
hides) give exactly 0: no denormals, as GPU kernels flush them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

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

# exp_row: no 'reassoc' (it would merge k*_LN2_HI + k*_LN2_LO back into one rounded k ln 2) and no
# 'ninf' / 'nnan' (hidden keys are -inf); 'contract' lets k ln 2 and the polynomial use FMAs.
_EXP_FLAGS = {"contract", "arcp", "nsz", "afn"}
# row_max / row_sum: the scores of one row are finite where these are used; 'reassoc' lets the
# sum be summed in 16 lanes (a different, equally valid rounding order).
_REDUCE_FLAGS = {"reassoc", "nnan", "nsz", "contract", "arcp"}


@njit(cache=True, fastmath=_EXP_FLAGS)
def exp_row(x, scale, shift, n, out):
    """out[c] = exp(x[c] * scale - shift) for c < n, where x[c] * scale - shift <= 0 (up to rounding).

    x, out: float32 rows (out may be x); scale, shift: float32. ``x * scale - shift`` is one FMA
    (one rounding), as FlashAttention computes ``exp2(x * scale_log2 - max)``. Pass scale = 1 for
    scores already scaled.
    """
    for c in range(n):
        d = x[c] * scale - shift                          # float32 (an FMA), <= 0 or -inf
        dc = max(d, _FLUSH)
        k = np.floor(dc * _LOG2E + _HALF)                 # round to nearest
        r = (dc - k * _LN2_HI) - k * _LN2_LO
        er = _ONE + r + (r * r) * (_P5 + r * (_P4 + r * (_P3 + r * (_P2 + r * (_P1 + r * _P0)))))
        two_k = float32_from_bits((np.int32(k) + np.int32(127)) << np.int32(23))
        out[c] = er * two_k if d > _FLUSH else _ZERO


@njit(cache=True, fastmath=_REDUCE_FLAGS)
def row_max(x, scale, n, mx):
    """max(mx, max_c fl32(x[c] * scale)) over c < n (x finite)."""
    for c in range(n):
        mx = maxnum32(mx, x[c] * scale)
    return mx


@njit(cache=True, fastmath=_REDUCE_FLAGS)
def row_sum(x, n):
    """sum(x[:n]) in float32, 16 lanes at a time."""
    acc = np.float32(0.0)
    for c in range(n):
        acc += x[c]
    return acc
