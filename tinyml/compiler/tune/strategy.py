"""What every search strategy shares: the context it proposes in, and fresh candidates.

A strategy proposes a *batch* of candidates not measured before; the tuner measures them
and tells the strategy what came back (:meth:`Strategy.observe`). With a cost model the
context's ``score`` ranks candidates without measuring them (higher = predicted faster):
the strategy then searches the *model* and proposes its best, and the tuner keeps a share
``epsilon`` of every batch for uniformly random candidates (epsilon-greedy), so a wrong
model cannot trap the search. Randomness comes from ``ctx.rng`` (seeded per batch), so a
run is reproducible and a resumed run continues exactly as the uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .space import Space


@dataclass
class Context:
    space: Space
    rng: object                                  # random.Random, seeded per batch
    measured: dict                               # candidate key -> time (None: failed)
    score: object = None                         # list of candidates -> np.ndarray, or None (no model)
    taken: set = field(default_factory=set)      # keys proposed in this batch

    def fresh(self, d: tuple) -> bool:
        k = Space.key(d)
        return k not in self.measured and k not in self.taken

    def take(self, d: tuple) -> None:
        self.taken.add(Space.key(d))

    def best_measured(self, k: int) -> list:
        """The ``k`` fastest successful candidates measured so far, fastest first."""
        from .space import from_json
        import json

        ok = sorted(((t, key) for key, t in self.measured.items() if t is not None))
        return [from_json(json.loads(key)) for _, key in ok[:k]]


def random_fresh(ctx: Context, n: int, tries: int = 20) -> list:
    """Up to ``n`` uniformly random candidates not measured or taken (fewer when the space runs out)."""
    out = []
    misses = 0
    while len(out) < n and misses < tries * max(n, 1):
        d = ctx.space.sample(ctx.rng)
        if ctx.fresh(d):
            ctx.take(d)
            out.append(d)
        else:
            misses += 1
    if len(out) < n and ctx.space.size <= 100_000:        # a small space: take what is left, in order
        for d in ctx.space.all():
            if len(out) >= n:
                break
            if ctx.fresh(d):
                ctx.take(d)
                out.append(d)
    return out


def top_fresh(ctx: Context, pool: list, scores, n: int) -> list:
    """The ``n`` best-scored candidates of ``pool`` that are fresh (ties keep pool order)."""
    import numpy as np

    out = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        d = pool[int(i)]
        if ctx.fresh(d):
            ctx.take(d)
            out.append(d)
            if len(out) == n:
                break
    return out


class Strategy:
    """``propose(ctx, n)`` -> candidates; ``observe(ctx, candidates, times)`` after measuring."""

    name = "strategy"

    def propose(self, ctx: Context, n: int) -> list:
        raise NotImplementedError

    def observe(self, ctx: Context, candidates: list, times: list) -> None:
        pass
