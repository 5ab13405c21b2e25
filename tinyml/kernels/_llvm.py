"""Two LLVM instructions Numba does not expose, so that softmax's row loops vectorise.

* :func:`maxnum32` is ``llvm.maxnum.f32``. A running max written as
  ``m = x if x > m else m`` (or Python's ``max``) stays a scalar loop: LLVM
  vectorises a compare-and-select max reduction only when the whole function
  is marked free of NaNs, which Numba does not do. ``maxnum`` is a reduction
  LLVM knows, and a row max becomes 16-lane ``vmaxps``.
* :func:`float32_from_bits` is a bit cast int32 -> float32, the step that
  turns an integer n into 2^n (``(n + 127) << 23`` are the bits of 2^n) in a
  vectorised exp. Doing it through an array ``view`` needs a second pass over a
  buffer; as one instruction it stays inside the loop.

Each has a plain-Python version, used as is under ``NUMBA_DISABLE_JIT=1`` and
in Python callers; jitted callers get the instruction (``numba.extending.overload``).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload


def maxnum32(a, b):
    """max(a, b) of two float32 values; if one is NaN, the other (IEEE maxNum, like ``np.fmax``)."""
    return np.float32(np.fmax(np.float32(a), np.float32(b)))


def float32_from_bits(bits):
    """The float32 whose bit pattern is the int32 ``bits`` (``2^n`` for ``bits = (n + 127) << 23``)."""
    return np.array([bits], dtype=np.int32).view(np.float32)[0]


@intrinsic
def _maxnum32(typingctx, a, b):
    if a != types.float32 or b != types.float32:
        return None

    def codegen(context, builder, sig, args):
        fnty = ir.FunctionType(ir.FloatType(), [ir.FloatType(), ir.FloatType()])
        fn = builder.module.declare_intrinsic("llvm.maxnum", [ir.FloatType()], fnty)
        return builder.call(fn, args, fastmath=("nnan", "nsz"))

    return types.float32(types.float32, types.float32), codegen


@intrinsic
def _float32_from_bits(typingctx, bits):
    if bits != types.int32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@overload(maxnum32)
def _maxnum32_jit(a, b):
    if a == types.float32 and b == types.float32:
        return lambda a, b: _maxnum32(a, b)
    return lambda a, b: _maxnum32(np.float32(a), np.float32(b))


@overload(float32_from_bits)
def _float32_from_bits_jit(bits):
    return lambda bits: _float32_from_bits(np.int32(bits))
