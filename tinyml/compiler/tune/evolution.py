"""Evolutionary search over traces (Ansor / MetaSchedule, scaled down).

A population of candidates (each one trace's decisions) breeds children by *mutation*
(one sampled decision re-drawn: a tile factorisation, a categorical choice) and
*crossover* (each decision from one of two parents); parents are picked by tournament.

* With a cost model (Ansor): the population starts from the best measured candidates and
  random ones, evolves ``generations`` generations on the model's score (keeping the best
  ``population``), and the batch is its best-scored fresh members.
* Without a model: one generation per batch, on measured time: the parents are the best
  measured so far, and the children are measured.
"""

from __future__ import annotations

import numpy as np

from .strategy import Context, Strategy, random_fresh, top_fresh


class Evolutionary(Strategy):
    name = "evolutionary"

    def __init__(self, population: int = 32, generations: int = 4, crossover: float = 0.3):
        self.population, self.generations, self.crossover = population, generations, crossover

    def _child(self, ctx: Context, parents: list, fitness) -> tuple:
        rng, space = ctx.rng, ctx.space

        def pick():
            a, b = rng.randrange(len(parents)), rng.randrange(len(parents))
            return parents[a] if fitness[a] >= fitness[b] else parents[b]
        p = pick()
        if rng.random() < self.crossover and len(parents) > 1:
            p = space.crossover(p, pick(), rng)
        return space.mutate(p, rng)

    def _on_model(self, ctx: Context, n: int) -> list:
        space = ctx.space
        pop = ctx.best_measured(self.population // 2)
        pop += random_fresh(ctx, self.population - len(pop))
        ctx.taken.clear()
        if not pop:                  # nothing succeeded and the space is exhausted: nothing to breed from
            return []
        scores = list(ctx.score(pop))
        seen = {space.key(p): (s, p) for p, s in zip(pop, scores)}
        for _ in range(self.generations):
            kids = [self._child(ctx, pop, scores) for _ in range(self.population)]
            kid_scores = ctx.score(kids)
            for k, s in zip(kids, kid_scores):
                seen.setdefault(space.key(k), (s, k))
            merged = {space.key(p): (s, p) for p, s in zip(pop + kids, scores + list(kid_scores))}
            best = sorted(merged.values(), key=lambda sp: -sp[0])[:self.population]
            pop, scores = [p for _, p in best], [s for s, _ in best]
        pool = [p for _, p in seen.values()]
        return top_fresh(ctx, pool, np.array([s for s, _ in seen.values()]), n)

    def _on_measured(self, ctx: Context, n: int) -> list:
        parents = ctx.best_measured(self.population)
        if len(parents) < 2:
            return random_fresh(ctx, n)
        fitness = list(range(len(parents), 0, -1))          # fastest first: rank as fitness
        out = []
        for _ in range(n):
            for _ in range(20):
                c = self._child(ctx, parents, fitness)
                if ctx.fresh(c):
                    ctx.take(c)
                    out.append(c)
                    break
        return out + random_fresh(ctx, n - len(out))

    def propose(self, ctx: Context, n: int) -> list:
        return self._on_model(ctx, n) if ctx.score is not None else self._on_measured(ctx, n)
