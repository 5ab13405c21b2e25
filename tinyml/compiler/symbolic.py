"""Symbolic dimensions: affine expressions such as ``n``, ``2*n`` and ``n + 1``.

One graph serves every sequence length, as TVM's symbolic shapes do: the input
is ``n x 768``, the QKV projection ``n x 2304``, a concatenation of two inputs
``2*n x 768``, and the compiler knows those relations without knowing ``n``.

A dimension is either a plain ``int`` or an :class:`Affine`: integer
coefficients over named symbols plus an integer constant::

    >>> n = sym("n")
    >>> str(2 * n + 1)
    '2*n + 1'
    >>> (2 * n + 1).evaluate({"n": 1024})
    2049
    >>> dim("2*n") == n + n
    True

Arithmetic stays exact: ``+``, ``-`` and multiplication by an ``int``. An
expression with no symbol left collapses to a plain ``int`` (``n - n == 0``),
so code never has to ask "is this an Affine that is really a number?".
Products of dimensions (tensor sizes, ``12*n^2`` for attention scores) are
polynomials, not affine: they live in :mod:`tinyml.compiler.sizes`.

Every symbol stands for a positive integer (a length): ``n >= 1``.
"""

from __future__ import annotations

import re
from typing import Mapping, Union

import numpy as np

from .errors import BindingError, SymbolicError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TERM = re.compile(r"\s*(?:(\d+)\s*\*\s*([A-Za-z_]\w*)|([A-Za-z_]\w*)\s*\*\s*(\d+)|(\d+)|([A-Za-z_]\w*))\s*\Z")


class Affine:
    """``sum(coeff * symbol) + const`` with integer coefficients; immutable and hashable.

    Build one with :func:`sym` or :func:`dim`, never with a constant only (that
    is a plain ``int``).
    """

    __slots__ = ("terms", "const")

    def __init__(self, terms: Mapping[str, int], const: int = 0):
        clean = tuple(sorted((s, int(c)) for s, c in terms.items() if c != 0))
        object.__setattr__(self, "terms", clean)     # ((symbol, coeff), ...) sorted by name
        object.__setattr__(self, "const", int(const))

    def __setattr__(self, *_):
        raise AttributeError("Affine is immutable")

    # ---- building ---------------------------------------------------------------------
    @staticmethod
    def _make(terms: Mapping[str, int], const: int) -> "Dim":
        """An Affine, or a plain int when no symbol is left."""
        if all(c == 0 for c in terms.values()):
            return int(const)
        return Affine(terms, const)

    def _coeffs(self) -> dict[str, int]:
        return dict(self.terms)

    def __add__(self, other: "Dim") -> "Dim":
        if isinstance(other, Affine):
            t = self._coeffs()
            for s, c in other.terms:
                t[s] = t.get(s, 0) + c
            return Affine._make(t, self.const + other.const)
        if _is_int(other):
            return Affine._make(self._coeffs(), self.const + int(other))
        return NotImplemented

    __radd__ = __add__

    def __neg__(self) -> "Dim":
        return Affine._make({s: -c for s, c in self.terms}, -self.const)

    def __sub__(self, other: "Dim") -> "Dim":
        if isinstance(other, Affine) or _is_int(other):
            return self + (-other)
        return NotImplemented

    def __rsub__(self, other: "Dim") -> "Dim":
        if _is_int(other):
            return (-self) + int(other)
        return NotImplemented

    def __mul__(self, other: int) -> "Dim":
        if _is_int(other):
            k = int(other)
            return Affine._make({s: c * k for s, c in self.terms}, self.const * k)
        if isinstance(other, Affine):
            raise SymbolicError(
                f"({self}) * ({other}) is not affine; dimensions multiply by integers only. "
                "Sizes (products of dims) are polynomials: use tinyml.compiler.sizes.Poly")
        return NotImplemented

    __rmul__ = __mul__

    # ---- comparing and evaluating -------------------------------------------------------
    def __eq__(self, other) -> bool:
        return isinstance(other, Affine) and self.terms == other.terms and self.const == other.const

    def __hash__(self) -> int:
        return hash(("Affine", self.terms, self.const))

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(s for s, _ in self.terms)

    def evaluate(self, bindings: Mapping[str, int]) -> int:
        """The integer value with every symbol bound; a missing symbol raises :class:`BindingError`."""
        total = self.const
        for s, c in self.terms:
            if s not in bindings:
                raise BindingError(
                    f"symbol {s!r} of the dimension {self} has no binding; "
                    f"pass bindings={{{s!r}: <int>}}")
            total += c * int(bindings[s])
        return total

    def exact_div(self, k: int) -> "Dim | None":
        """``self / k`` if every coefficient and the constant divide by ``k``, else None."""
        if any(c % k for _, c in self.terms) or self.const % k:
            return None
        return Affine._make({s: c // k for s, c in self.terms}, self.const // k)

    # ---- printing ---------------------------------------------------------------------
    def __str__(self) -> str:
        out = ""
        for s, c in self.terms:
            mag = s if abs(c) == 1 else f"{abs(c)}*{s}"
            if not out:
                out = mag if c > 0 else f"-{mag}"
            else:
                out += f" + {mag}" if c > 0 else f" - {mag}"
        if self.const:
            out += f" + {self.const}" if self.const > 0 else f" - {-self.const}"
        return out

    def __repr__(self) -> str:
        return f"Affine({str(self)!r})"

    @property
    def is_atom(self) -> bool:
        """True for a bare symbol or ``k*symbol`` (prints without parentheses inside a shape)."""
        return len(self.terms) == 1 and self.const == 0


Dim = Union[int, Affine]


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def sym(name: str) -> Affine:
    """The symbol ``name`` as a dimension."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise SymbolicError(f"a symbol name must be an identifier such as 'n' or 'seq', got {name!r}")
    return Affine({name: 1})


def parse(text: str) -> Dim:
    """Parse ``"n"``, ``"2*n"``, ``"n*2"``, ``"n + 1"``, ``"2*n - 3"``, ``"768"`` into a dimension."""
    src = text.strip()
    if not src:
        raise SymbolicError("empty dimension string; write e.g. 'n', '2*n' or 'n + 1'")
    pieces = re.split(r"([+-])", src)
    total: Dim = 0
    sign = 1
    expect_term = True
    for p in pieces:
        if p in ("+", "-"):
            if not expect_term:
                sign = 1 if p == "+" else -1
                expect_term = True
            elif p == "-":
                sign = -sign
            continue
        if not p.strip() and expect_term:
            continue
        m = _TERM.match(p)
        if not m or not expect_term:
            raise SymbolicError(
                f"cannot parse the dimension {text!r}: {p.strip()!r} is not a term like 'n', '2*n' or '3'; "
                "dimensions are affine (integer coefficients, + and -)")
        k1, s1, s2, k2, k3, s3 = m.groups()
        if k3 is not None:
            term: Dim = int(k3)
        else:
            term = int(k1 or k2 or 1) * sym(s1 or s2 or s3)
        total = total + sign * term
        sign, expect_term = 1, False
    if expect_term:
        raise SymbolicError(f"cannot parse the dimension {text!r}: it ends with an operator")
    return total


def dim(x) -> Dim:
    """Normalise ``x`` (int, symbol string, expression string or Affine) to a dimension."""
    if isinstance(x, Affine):
        return x
    if _is_int(x):
        return int(x)
    if isinstance(x, str):
        return parse(x)
    raise SymbolicError(f"a dimension is an int, a symbol such as 'n' or an expression such as '2*n'; got {x!r}")


def evaluate(d: Dim, bindings: Mapping[str, int]) -> int:
    """The integer value of a dimension (ints are returned unchanged)."""
    return d.evaluate(bindings) if isinstance(d, Affine) else int(d)


def symbols_of(d: Dim) -> frozenset[str]:
    return d.symbols if isinstance(d, Affine) else frozenset()


def dim_str(d: Dim) -> str:
    """How a dimension prints inside a shape: ``n``, ``2*n``, ``(n + 1)``, ``768``."""
    if isinstance(d, Affine) and not d.is_atom:
        return f"({d})"
    return str(d)


def solve(d: Affine, value: int) -> "tuple[str, int] | None":
    """If ``d`` has exactly one symbol, the integer value of it that makes ``d == value``, else None.

    >>> solve(2 * sym("n") + 1, 9)
    ('n', 4)
    """
    if len(d.terms) != 1:
        return None
    s, c = d.terms[0]
    q, r = divmod(int(value) - d.const, c)
    return (s, q) if r == 0 else None
