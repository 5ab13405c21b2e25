"""A vectorisable exp for the non-positive arguments of softmax (x - rowmax <= 0).

``np.exp`` inside a Numba loop is a scalar libm call per element; this one is
plain arithmetic that LLVM turns into SIMD code. Method: exp(x) = 2^y with
y = x log2(e) = n + f, n an integer and f in [-0.5, 0.5]; 2^f by a degree-6
Taylor polynomial in f ln 2 (relative error ~1e-7 after float64 rounding),
2^n by writing n + 1023 into the exponent bits of a float64. Arguments below
-100 (and -inf, the hidden keys) give exactly 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_LOG2E = 1.4426950408889634
_MAGIC = 6755399441055744.0          # 1.5 * 2**52: y + MAGIC rounds y to an integer held in the low mantissa bits
_MAGIC_BITS = np.int64(0x4338000000000000)   # the bit pattern of MAGIC
# Taylor coefficients of 2^f = exp(f ln 2): ln(2)^k / k!
_C1 = 0.6931471805599453
_C2 = 0.2402265069591007
_C3 = 0.05550410866482158
_C4 = 0.009618129107628477
_C5 = 0.0013333558146428443
_C6 = 0.00015403530393381608
# No 'reassoc' (it would fold (y + MAGIC) - MAGIC back to y) and no 'ninf' / 'nnan'
# (the argument is -inf for hidden keys); the rest lets LLVM fuse and vectorise.
_FLAGS = {"contract", "arcp", "nsz", "afn"}


@njit(cache=True, fastmath=_FLAGS)
def exp_shifted(x, shift, n, out, t_buf, p_buf):
    """out[c] = exp(x[c] - shift) for c < n, where x[c] - shift <= 0.

    t_buf, p_buf: float64 scratch of length >= n (reused across calls, no allocation here).
    """
    t_bits = t_buf.view(np.int64)
    # pass 1: n = round(y) via the magic-number trick, and 2^f
    for c in range(n):
        y = max(np.float64(x[c] - shift), -104.0) * _LOG2E   # clamp: keeps 2^n a normal float64
        t = y + _MAGIC
        f = y - (t - _MAGIC)                                   # in [-0.5, 0.5]
        p_buf[c] = 1.0 + f * (_C1 + f * (_C2 + f * (_C3 + f * (_C4 + f * (_C5 + f * _C6)))))
        t_buf[c] = t
    # pass 2: 2^n from the integer bits (n + 1023 in the exponent field)
    for c in range(n):
        t_bits[c] = (t_bits[c] - _MAGIC_BITS + 1023) << 52
    # pass 3: scale, and flush arguments below -100 (and -inf) to 0
    for c in range(n):
        d = np.float64(x[c] - shift)
        out[c] = p_buf[c] * t_buf[c] if d >= -100.0 else 0.0
