"""Sampling instructions: they turn a schedule into a *space* of schedules.

``sample_perfect_tile`` draws the factors of a split whose product is exactly the loop's
extent (no guard needed); ``sample_categorical`` draws one of a few candidates. The value
drawn is the instruction's *decision*; a trace keeps it, so replaying the trace gives the
same nest, and a search (issue 14) changes a decision to move to a neighbouring schedule.

Values come back as :class:`Sampled` (an ``int`` that remembers which decision made it), so
``split(loop, factors)`` records a reference to the decision, not a copy of the number.
"""

from __future__ import annotations

import random

from .errors import TraceError


class Sampled(int):
    """An int drawn by a sampling instruction; ``var`` names it in the trace (``"t3.1"``)."""

    var: str

    def __new__(cls, value: int, var: str):
        obj = super().__new__(cls, int(value))
        obj.var = var
        return obj


def divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]


def prime_factors(n: int) -> list:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])


def perfect_tile(rng: random.Random, extent: int, n: int, max_innermost: int) -> list:
    """``n`` factors, outermost first, multiplying to ``extent``; the innermost is at most
    ``max_innermost``. Innermost drawn uniformly among the divisors allowed, then each prime
    factor of the rest goes to one of the other positions, uniformly."""
    inner = rng.choice([d for d in divisors(extent) if d <= max_innermost])
    factors = [1] * (n - 1) + [inner]
    for p in prime_factors(extent // inner):
        factors[rng.randrange(n - 1) if n > 1 else 0] *= p
    return factors


def check_perfect_tile(decision, extent: int, n: int, max_innermost: int) -> list:
    """A replayed (or mutated) decision must still be a perfect tiling of the loop."""
    ok = (isinstance(decision, (list, tuple)) and len(decision) == n
          and all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in decision))
    prod = 1
    for f in decision if ok else ():
        prod *= f
    if not ok or prod != extent or decision[-1] > max_innermost:
        raise TraceError(f"sample_perfect_tile decision {decision!r} is not {n} positive factors multiplying to "
                         f"the loop extent {extent} with the innermost <= {max_innermost}")
    return list(decision)


def check_categorical(decision, n_candidates: int) -> int:
    if isinstance(decision, bool) or not isinstance(decision, int) or not 0 <= decision < n_candidates:
        raise TraceError(f"sample_categorical decision {decision!r} is not an index into the "
                         f"{n_candidates} candidates")
    return decision
