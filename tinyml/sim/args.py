"""Scalar arguments checked one way everywhere: integers and flags, never truncated.

Python's own conversions are silent where a learner needs a refusal: ``int(2.7)``
is 2, ``int("abc")`` raises a bare ValueError, ``bool("no")`` is True. Every
public entry point (kernels, ``meta``, the compiler's bindings) takes its
integer and boolean arguments through :func:`integer` and :func:`flag`, so a
float where an integer is meant, a string, or an integer out of range is an
:class:`~tinyml.sim.errors.ArgumentError` (or the caller's own error class)
that names the argument, the value, and the range.

>>> integer(3, "seed")
3
>>> integer(2.7, "window")
Traceback (most recent call last):
...
tinyml.sim.errors.ArgumentError: window must be an integer, got 2.7 (float); a float is not truncated for you: pass round(x) or int(x) if that is what you mean
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import ArgumentError

#: the int64 range: what a Numba kernel argument (and a NumPy index) can hold
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def integer(value, name: str, *, lo: "int | None" = None, hi: "int | None" = INT64_MAX,
            error: type = ArgumentError, hint: str = "") -> int:
    """``value`` as a Python int, if it is an integer (Python or NumPy) in ``[lo, hi]``; else ``error``.

    A bool, a float (even 2.0: the rule is the type, as for Python's ``range``), a
    string or anything else is refused; so is an integer outside ``[lo, hi]``
    (``hi`` defaults to the int64 maximum: kernels pass integers to Numba as int64).
    ``hint`` is appended to the message (what the argument means, what to pass).
    """
    tail = f"; {hint}" if hint else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        why = ("; a float is not truncated for you: pass round(x) or int(x) if that is what you mean"
               if isinstance(value, (float, np.floating)) else "")
        raise error(f"{name} must be an integer, got {value!r} ({type(value).__name__}){why}{tail}")
    v = int(value)
    big = " (2**63 - 1, the int64 maximum)" if hi == INT64_MAX else ""
    if lo is not None and v < lo:
        span = f">= {lo}" + ("" if hi is None or big else f" and <= {hi}")
    elif hi is not None and v > hi:
        span = (f"in [{lo}, {hi}]" if lo is not None else f"<= {hi}") + big
    else:
        return v
    raise error(f"{name} must be an integer {span}, got {v}{tail}")


def flag(value, name: str, *, error: type = ArgumentError) -> bool:
    """``value`` as a bool, if it is one (Python or NumPy bool, or the integers 0 and 1, as ONNX
    writes flags); else ``error``.

    Python's ``bool("no")`` is True and ``bool(None)`` is False; neither is what
    a caller of ``causal="no"`` meant, so anything else is refused.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (numbers.Integral, np.integer)) and value in (0, 1):
        return bool(value)
    raise error(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
