"""Greedy by size on *symbolic* sizes: offsets are polynomials, and every placement is proved.

The concrete planner (:mod:`.arena`) plans at the bound, ``n = 4096`` say,
and that plan is valid for every smaller ``n`` because sizes grow with ``n``.
But it reserves the bound's bytes at every ``n`` and cannot say *why* two
buffers may share bytes for every sequence length. TVM's storage planner works
on the symbolic sizes instead: a buffer reuses another's bytes only where it
provably fits, for every ``n``.

Here every buffer gets an offset that is a polynomial in the symbols: ``0``,
or the end of a buffer below it (``P(c) + size(c)``). The algorithm is the
concrete one, with each "fits" replaced by a proof over ``n = 1 .. bound``
(:meth:`~tinyml.compiler.sizes.Poly.le_for_all`, exact)::

    order the buffers by size at the bound, largest first (ties: earlier start, then name)
        (the pass also tries the ranking at n = 1 and keeps the smaller arena at the bound)
    for each buffer b in that order:
        live = the buffers already placed whose intervals overlap b's
        candidates = 0, the end P(c) + size(c) of each c in live, and their
                     coefficient-wise maximum (above every c in live, for every n)
        P(b) = the first candidate, lowest at the bound first, such that for every c in live one of
            x + size(b) <= P(c)            (b below c, for every n)
            P(c) + size(c) <= x            (b above c, for every n)
        is proved (the last candidate always is)

So "``b`` goes where ``a`` was, below ``c``" needs ``P(a) + size(b) <= P(c)``:
with ``c`` right on top of ``a``, exactly ``size(b) <= size(a)`` for every
``n``. ``n*12`` bytes fits where ``2*n*12`` were (``12 n <= 24 n`` always);
``2*n*12`` does not fit where ``n*12`` were (at ``n = 1``, ``24 > 12``); and
``768*n`` bytes do not fit where ``4*n^2`` were, though they do at the bound
``n = 1024``: only from ``n = 192`` on. A failed proof is kept, with the ``n``
that refutes it, as a :class:`Refusal`.

**Alignment.** Sizes enter the offsets *padded*: ``size + alignment - 1``,
or ``size`` itself when it is a multiple of the alignment for every ``n`` (all
its coefficients are: ``1536*n`` with 256-byte alignment). At a given ``n`` a
buffer sits at ``align_up(P(b)(n))``; the padding guarantees that rounding up
never pushes a buffer into the one above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sizes import Poly
from .greedy import align_up, overlaps


@dataclass(frozen=True)
class Refusal:
    """A placement that fitted at the bound but could not be proved: ``value`` at ``offset``
    would collide with ``blocker`` at ``at`` (symbol values)."""

    value: str
    offset: Poly
    blocker: str
    at: dict


def pad(size: Poly, alignment: int) -> int:
    """0 if ``size`` is a multiple of ``alignment`` for every symbol value, else ``alignment - 1``."""
    return 0 if all(k % alignment == 0 for _, k in size.coeffs) else alignment - 1


def coefficient_max(polys: list) -> Poly:
    """The coefficient-wise maximum (and 0): ``>= p(n)`` for every ``p`` in ``polys`` and every
    ``n >= 1``, since each monomial is positive there."""
    out: dict = {}
    for p in polys:
        for m, k in p.coeffs:
            out[m] = max(out.get(m, 0), k)
    return Poly(out)


def _clash(x: Poly, s: Poly, c_off: Poly, c_size: Poly, bounds: dict, bound_only: bool):
    """None if ``[x, x+s)`` is below or above ``[c_off, c_off+c_size)`` for every n (at the bound
    only, when ``bound_only``); else symbol values where it is neither."""
    below, above = x + s - c_off, c_off + c_size - x                 # fits if below <= 0 or above <= 0
    if bound_only:
        return None if below.evaluate(bounds) <= 0 or above.evaluate(bounds) <= 0 else dict(bounds)
    if below.le_for_all(Poly(), bounds) or above.le_for_all(Poly(), bounds):
        return None
    return below.counterexample(Poly(), bounds) or {}


def plan_offsets(sizes: list, intervals: list, bounds: dict, alignment: int,
                 names: "list | None" = None, rank_at: "dict | None" = None) -> tuple[list, list]:
    """``(offsets, refusals)``: an offset polynomial per buffer (pseudocode in the module doc).

    ``rank_at``: the symbol values at which sizes are ranked (default: the bounds)."""
    names = names or [str(i) for i in range(len(sizes))]
    padded = [s + pad(s, alignment) for s in sizes]
    rank = [s.evaluate(rank_at or bounds) for s in sizes]
    order = sorted(range(len(sizes)), key=lambda i: (-rank[i], intervals[i][0], names[i]))
    offsets: list = [None] * len(sizes)
    placed: list[int] = []
    refusals: list[Refusal] = []
    for i in order:
        live = [j for j in placed if overlaps(intervals[i], intervals[j])]
        ends = [offsets[j] + padded[j] for j in live]
        cands = dict.fromkeys([Poly(), *ends, coefficient_max(ends)])
        chosen = None
        for x in sorted(cands, key=lambda p: (p.evaluate(bounds), str(p))):
            blocked = None
            for j in live:                       # cheap test at the bound first, then the proof
                if _clash(x, padded[i], offsets[j], padded[j], bounds, True) is not None:
                    blocked = (j, None)
                    break
            if blocked is None:
                for j in live:
                    where = _clash(x, padded[i], offsets[j], padded[j], bounds, False)
                    if where is not None:
                        blocked = (j, where)
                        refusals.append(Refusal(names[i], x, names[j], where))
                        break
            if blocked is None:
                chosen = x
                break
        offsets[i] = chosen
        placed.append(i)
    return offsets, refusals


def concrete_offsets(offsets: list, bindings: dict, alignment: int) -> list:
    """Byte offsets at ``bindings``: ``align_up(P(b)(n))``."""
    return [align_up(p.evaluate(bindings), alignment) for p in offsets]


def arena_at(offsets: list, sizes: list, bindings: dict, alignment: int) -> int:
    """The arena's bytes at ``bindings``: the highest end of a buffer (0 without buffers)."""
    offs = concrete_offsets(offsets, bindings, alignment)
    return max((o + s.evaluate(bindings) for o, s in zip(offs, sizes)), default=0)


def arena_bound(offsets: list, sizes: list, bounds: dict, alignment: int) -> "Poly | None":
    """A polynomial ``A`` with ``arena(n) <= A(n)`` for every ``n`` up to the bound, when one
    buffer provably ends last (its end, plus ``alignment - 1`` for the rounding); else None."""
    if not sizes:
        return Poly()
    ends = [p + s for p, s in zip(offsets, sizes)]
    top = max(range(len(ends)), key=lambda k: ends[k].evaluate(bounds))
    if all(e.le_for_all(ends[top], bounds) for e in ends):
        return ends[top] + (alignment - 1)
    return None
