"""Simulated annealing over the sampled decisions (AutoTVM's ``SimulatedAnnealingOptimizer``).

A step moves a point to a neighbour (one knob changed, :meth:`~.space.Space.mutate`) and
keeps it if it is better, or, if worse by ``delta``, with probability ``exp(-delta / T)``;
the temperature ``T`` falls linearly, so the walk explores first and climbs last.

* With a cost model (AutoTVM): ``chains`` points (the best measured so far, then random
  ones) walk ``steps`` steps on the model's score; the best-scored fresh points any walk
  visited are the batch. Nothing is measured during the walk.
* Without a model: every batch is one step of ``n`` chains on *measured* time: each chain
  proposes one neighbour, it is measured, and the chain moves there by the same rule on
  ``log(time)``. A failed neighbour is never accepted.
"""

from __future__ import annotations

import math

import numpy as np

from .strategy import Context, Strategy, random_fresh, top_fresh


class Annealing(Strategy):
    name = "annealing"

    def __init__(self, chains: int = 16, steps: int = 20, temp: tuple = (1.0, 0.0), measured_temp: float = 0.3,
                 cooling: float = 0.9):
        self.chains, self.steps, self.temp = chains, steps, temp
        self.measured_temp, self.cooling = measured_temp, cooling
        self.points: list = []          # model-free: each chain's (decisions, log time)
        self.t = measured_temp

    # -- with a model: anneal on predictions --------------------------------------------------
    def _on_model(self, ctx: Context, n: int) -> list:
        space, rng = ctx.space, ctx.rng
        starts = ctx.best_measured(self.chains // 2)
        points = starts + random_fresh(ctx, self.chains - len(starts))
        ctx.taken.clear()
        scores = ctx.score(points)
        seen = {space.key(p): (s, p) for p, s in zip(points, scores)}
        t0, t1 = self.temp
        for step in range(self.steps):
            temp = t0 + (t1 - t0) * step / max(self.steps - 1, 1)
            new = [space.mutate(p, rng) for p in points]
            new_scores = ctx.score(new)
            for q, (p, s) in enumerate(zip(new, new_scores)):
                seen.setdefault(space.key(p), (s, p))
                delta = scores[q] - s
                if delta <= 0 or (temp > 0 and rng.random() < math.exp(-delta / temp)):
                    points[q], scores[q] = p, s
        pool = [p for _, p in seen.values()]
        return top_fresh(ctx, pool, np.array([s for s, _ in seen.values()]), n)

    # -- without a model: anneal on measurements ------------------------------------------------
    def _on_measured(self, ctx: Context, n: int) -> list:
        if not self.points:
            return random_fresh(ctx, n)
        out = []
        for d, _ in self.points[:n]:
            for _ in range(20):
                cand = ctx.space.mutate(d, ctx.rng)
                if ctx.fresh(cand):
                    ctx.take(cand)
                    out.append(cand)
                    break
            else:
                out += random_fresh(ctx, 1)
        return out + random_fresh(ctx, n - len(out))

    def propose(self, ctx: Context, n: int) -> list:
        return self._on_model(ctx, n) if ctx.score is not None else self._on_measured(ctx, n)

    def observe(self, ctx: Context, candidates: list, times: list) -> None:
        if ctx.score is not None:
            return
        new = [(d, math.log(t) if t else None) for d, t in zip(candidates, times)]
        if not self.points:
            self.points = [(d, lt) for d, lt in new]
            return
        for q, (d, lt) in enumerate(new[:len(self.points)]):
            cur = self.points[q][1]
            if lt is None:
                continue
            if cur is None or lt <= cur or ctx.rng.random() < math.exp(-(lt - cur) / max(self.t, 1e-9)):
                self.points[q] = (d, lt)
        self.t *= self.cooling
