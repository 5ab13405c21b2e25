"""Symbolic sizes: polynomials in the shape symbols, such as ``12*n^2`` or ``768*n``.

The number of elements of a ``12 x n x n`` tensor is a product of dimensions,
hence a polynomial with integer coefficients. A memory planner needs two
things from such sizes: their value for a given ``n`` (:meth:`Poly.evaluate`)
and the question "does buffer A fit where buffer B was, for *every* sequence
length the program will see?" (:meth:`Poly.le_for_all`)::

    >>> n = Poly.symbol("n")
    >>> scores, x = 12 * n * n, 768 * n
    >>> str(scores)
    '12*n^2'
    >>> x.le_for_all(scores, {"n": 4096})      # 768 n <= 12 n^2 only from n = 64 on
    False
    >>> x.counterexample(scores, {"n": 4096})
    {'n': 1}

Symbols range over the integers ``1 .. bound``. :meth:`Poly.le_for_all`
decides exactly: a difference whose coefficients are all non-negative is
non-negative for every positive symbol value; anything else is checked at every
point of the (small) box of symbol values, which is exact and, for one symbol
up to a few hundred thousand, fast.
"""

from __future__ import annotations

import itertools
from typing import Mapping

from .errors import BindingError, SymbolicError
from .symbolic import Affine, Dim

Monomial = tuple  # ((symbol, power), ...) sorted by symbol; () is the constant term

#: the most symbol-value points :meth:`Poly.le_for_all` visits before refusing
MAX_POINTS = 2_000_000


def _mono_mul(a: Monomial, b: Monomial) -> Monomial:
    powers = dict(a)
    for s, p in b:
        powers[s] = powers.get(s, 0) + p
    return tuple(sorted(powers.items()))


class Poly:
    """A polynomial with integer coefficients; immutable, hashable, exact."""

    __slots__ = ("coeffs",)

    def __init__(self, coeffs: Mapping[Monomial, int] | None = None):
        clean = tuple(sorted(((m, int(c)) for m, c in (coeffs or {}).items() if c != 0),
                             key=lambda mc: (-sum(p for _, p in mc[0]), mc[0])))
        object.__setattr__(self, "coeffs", clean)    # ((monomial, coeff), ...) highest degree first

    def __setattr__(self, *_):
        raise AttributeError("Poly is immutable")

    # ---- building ---------------------------------------------------------------------
    @staticmethod
    def symbol(name: str) -> "Poly":
        return Poly({((name, 1),): 1})

    @staticmethod
    def of(x: "Dim | Poly") -> "Poly":
        """A dimension (int or Affine) or a Poly, as a Poly."""
        if isinstance(x, Poly):
            return x
        if isinstance(x, Affine):
            c = {((s, 1),): k for s, k in x.terms}
            c[()] = x.const
            return Poly(c)
        if isinstance(x, int) or hasattr(x, "__index__"):
            return Poly({(): int(x)})
        raise SymbolicError(f"cannot make a size polynomial from {x!r}")

    @staticmethod
    def product(dims) -> "Poly":
        """The product of dimensions: the element count of a shape (1 for a scalar)."""
        out = Poly({(): 1})
        for d in dims:
            out = out * d
        return out

    def __add__(self, other) -> "Poly":
        o = Poly.of(other)
        c = dict(self.coeffs)
        for m, k in o.coeffs:
            c[m] = c.get(m, 0) + k
        return Poly(c)

    __radd__ = __add__

    def __neg__(self) -> "Poly":
        return Poly({m: -k for m, k in self.coeffs})

    def __sub__(self, other) -> "Poly":
        return self + (-Poly.of(other))

    def __rsub__(self, other) -> "Poly":
        return Poly.of(other) - self

    def __mul__(self, other) -> "Poly":
        o = Poly.of(other)
        c: dict = {}
        for m1, k1 in self.coeffs:
            for m2, k2 in o.coeffs:
                m = _mono_mul(m1, m2)
                c[m] = c.get(m, 0) + k1 * k2
        return Poly(c)

    __rmul__ = __mul__

    def __eq__(self, other) -> bool:
        try:
            return self.coeffs == Poly.of(other).coeffs
        except SymbolicError:
            return False

    def __hash__(self) -> int:
        return hash(("Poly", self.coeffs))

    # ---- reading ---------------------------------------------------------------------
    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(s for m, _ in self.coeffs for s, _ in m)

    @property
    def degree(self) -> int:
        return max((sum(p for _, p in m) for m, _ in self.coeffs), default=0)

    @property
    def is_const(self) -> bool:
        return not self.symbols

    def exact_div(self, divisor: "Poly | Dim") -> "Poly | None":
        """``self / divisor`` when ``divisor`` is a single term ``k * monomial`` dividing every term; else None."""
        d = Poly.of(divisor)
        if len(d.coeffs) != 1:
            return None if d != self else Poly({(): 1})
        (dm, dk), = d.coeffs
        out = {}
        for m, k in self.coeffs:
            powers = dict(m)
            for s, p in dm:
                if powers.get(s, 0) < p:
                    return None
                powers[s] -= p
            if k % dk:
                return None
            out[tuple(sorted((s, p) for s, p in powers.items() if p))] = k // dk
        return Poly(out)

    def as_dim(self) -> "Dim | None":
        """This polynomial as a dimension (int or Affine) if its degree is at most 1, else None."""
        if self.degree > 1:
            return None
        terms = {m[0][0]: k for m, k in self.coeffs if m}
        const = dict(self.coeffs).get((), 0)
        return Affine._make(terms, const)

    def evaluate(self, bindings: Mapping[str, int]) -> int:
        total = 0
        for m, k in self.coeffs:
            term = k
            for s, p in m:
                if s not in bindings:
                    raise BindingError(f"symbol {s!r} of the size {self} has no binding; "
                                       f"pass bindings={{{s!r}: <int>}}")
                term *= int(bindings[s]) ** p
            total += term
        return total

    # ---- comparing for every symbol value ---------------------------------------------
    def _box(self, other: "Poly", bounds) -> tuple[list[str], list[range]]:
        names = sorted(self.symbols | Poly.of(other).symbols)
        ranges = []
        for s in names:
            b = bounds if isinstance(bounds, int) else (bounds or {}).get(s)
            if b is None:
                raise BindingError(f"no bound for symbol {s!r}: pass bounds={{{s!r}: <max value>}} or one int for all")
            if int(b) < 1:
                raise BindingError(f"the bound of {s!r} must be >= 1 (symbols range over 1..bound), got {b}")
            ranges.append(range(1, int(b) + 1))
        points = 1
        for r in ranges:
            points *= len(r)
        if points > MAX_POINTS:
            raise SymbolicError(
                f"comparing {self} with {other} needs {points} symbol points (> {MAX_POINTS}); give smaller bounds")
        return names, ranges

    def counterexample(self, other: "Poly | Dim", bounds: "int | Mapping[str, int]") -> "dict[str, int] | None":
        """Symbol values in ``[1, bound]`` where ``self > other``, or None if ``self <= other`` everywhere there."""
        diff = Poly.of(other) - self
        if all(k >= 0 for _, k in diff.coeffs):      # every monomial is positive for symbols >= 1
            return None
        names, ranges = self._box(diff, bounds)
        if not names:
            return None if diff.evaluate({}) >= 0 else {}
        for point in itertools.product(*ranges):
            b = dict(zip(names, point))
            if diff.evaluate(b) < 0:
                return b
        return None

    def le_for_all(self, other: "Poly | Dim", bounds: "int | Mapping[str, int]") -> bool:
        """True iff ``self <= other`` for every symbol value in ``1 .. bound`` (exact)."""
        return self.counterexample(other, bounds) is None

    # ---- printing ---------------------------------------------------------------------
    def __str__(self) -> str:
        if not self.coeffs:
            return "0"
        out = ""
        for m, k in self.coeffs:
            body = "*".join(s if p == 1 else f"{s}^{p}" for s, p in m)
            mag = str(abs(k)) if not body else (body if abs(k) == 1 else f"{abs(k)}*{body}")
            if not out:
                out = mag if k > 0 else f"-{mag}"
            else:
                out += f" + {mag}" if k > 0 else f" - {mag}"
        return out

    def __repr__(self) -> str:
        return f"Poly({str(self)!r})"
