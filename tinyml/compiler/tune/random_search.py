"""Random search, the baseline: uniformly random candidates.

With a cost model it becomes *pre-screened* random search: draw a pool of random fresh
candidates (``pool`` times the batch), score them with the model, measure the best.
"""

from __future__ import annotations

from .strategy import Context, Strategy, random_fresh, top_fresh


class RandomSearch(Strategy):
    name = "random"

    def __init__(self, pool: int = 8):
        self.pool = pool

    def propose(self, ctx: Context, n: int) -> list:
        if ctx.score is None:
            return random_fresh(ctx, n)
        pool = random_fresh(ctx, self.pool * n)
        ctx.taken.clear()
        return top_fresh(ctx, pool, ctx.score(pool), n)
