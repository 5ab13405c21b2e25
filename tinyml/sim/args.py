"""Scalar arguments checked one way everywhere: integers and flags, never truncated.

Python's own conversions are silent where a learner needs a refusal: ``int(2.7)``
is 2, ``int("abc")`` raises a bare ValueError, ``bool("no")`` is True, ``float("0.5")``
is 0.5 and ``"greedy" in {...}`` with a list raises ``TypeError: unhashable``. Every
public entry point (kernels, ``meta``, the compiler's bindings, tensor programs,
tuning) takes its integer, boolean, real and named arguments through :func:`integer`,
:func:`flag`, :func:`number` and :func:`choice`, so a float where an integer is meant,
a string, a bool, NaN, or a value out of range is an
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

import difflib
import math
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


def number(value, name: str, *, lo: "float | None" = None, hi: "float | None" = None, lo_open: bool = False,
           hi_open: bool = False, error: type = ArgumentError, hint: str = "") -> float:
    """``value`` as a Python float, if it is a finite real number (Python or NumPy, int or float) in the
    range ``lo .. hi`` (each end closed unless ``lo_open`` / ``hi_open``); else ``error``.

    A bool (``True`` is not 1.0 here), a string (``"0.5"`` is not parsed for you), a complex
    number, NaN or an infinity is refused; the message names the argument, the value and the range.
    """
    tail = f"; {hint}" if hint else ""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise error(f"{name} must be a real number, got {value!r} ({type(value).__name__}){tail}")
    v = float(value)
    below = lo is not None and (v <= lo if lo_open else v < lo)
    above = hi is not None and (v >= hi if hi_open else v > hi)
    if math.isfinite(v) and not below and not above:
        return v
    span = " and ".join(part for part in (
        None if lo is None else f"{'>' if lo_open else '>='} {lo:g}",
        None if hi is None else f"{'<' if hi_open else '<='} {hi:g}") if part) or "finite"
    raise error(f"{name} must be a finite number {span}, got {v!r}{tail}")


def choice(value, name: str, options, *, error: type = ArgumentError, hint: str = "") -> str:
    """``value`` if it is one of the names ``options`` (strings); else ``error`` naming them all and
    the closest one (``"evolutionnary"``: did you mean 'evolutionary'?). A list, None or any other
    non-string is refused the same way, never a ``TypeError: unhashable``."""
    names = list(options)
    tail = f"; {hint}" if hint else ""
    if isinstance(value, str) and value in names:
        return value
    close = difflib.get_close_matches(value, names, n=1) if isinstance(value, str) else []
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    got = repr(value) if isinstance(value, str) else f"{value!r} ({type(value).__name__})"
    raise error(f"unknown {name} {got}{guess}; choose one of {', '.join(names)}{tail}")
