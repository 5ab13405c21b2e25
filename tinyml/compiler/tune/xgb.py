"""Gradient-boosted trees (XGBoost) as the cost model, as AutoTVM uses them.

``objective="rank"``: ``rank:pairwise`` with one query group per workload and device: the
trees learn which of two candidates is faster, not by how much (AutoTVM's default loss).
``objective="reg"``: ``reg:squarederror`` on the centred ``-log(time)``.

``prior``: a feature column holding a prior score in ``log2`` units (the loop-nest features'
phase estimate, :data:`~.features.PRIOR`): it is the trees' *base margin* (``ln 2 * x[prior]``,
in the targets' natural-log units), so the trees start from the estimate and learn only where it
is wrong; without a margin a tree ranks a held-out shape in coarse steps (its leaves are
constants learnt on other shapes). The ranking objective sees the margin times
:data:`PRIOR_SCALE`. Both train with
one thread and a fixed seed, so the same trials give the same model (a tuning log is
byte-identical for one seed).

XGBoost is optional (the ``tune`` extra: ``pip install -e ".[tune]"``, which ``dev``
includes); it is imported when a model is made, and its absence is a
:class:`~.errors.MissingDependencyError` that says how to install it.
"""

from __future__ import annotations

import numpy as np

from .errors import MissingDependencyError


def import_xgboost():
    try:
        import xgboost
    except ImportError:
        raise MissingDependencyError(
            "the XGBoost cost model needs the xgboost package (CPU build: xgboost-cpu); install tinyml's tune "
            "extra with: pip install -e \".[tune]\"  (or choose --model ridge / none)") from None
    return xgboost


#: the ranking loss's temperature on the prior: the pairwise logistic loss of a pair whose estimates
#: differ by a factor f starts at log(1 + f^-4) instead of log(1 + 1/f), so the trees overrule the
#: estimate only where the trials keep contradicting it (held-out a100-40gb GEMMs, bench_tune.py
#: section 4: Spearman 0.949 at 1, 0.992 at 4; 16 is the estimate alone)
PRIOR_SCALE = 4.0
PARAMS = {"max_depth": 4, "eta": 0.1, "min_child_weight": 1, "subsample": 1.0, "colsample_bytree": 1.0,
          "lambda": 1.0, "tree_method": "hist", "nthread": 1}


class XGBModel:
    def __init__(self, objective: str = "rank", rounds: int = 60, seed: int = 0, prior: "int | None" = None):
        self.xgb = import_xgboost()
        self.prior = prior
        self.objective = objective
        self.name = "xgboost" if objective == "rank" else "xgboost-reg"
        self.rounds = rounds
        self.seed = seed
        self.booster = None

    def fit(self, x: np.ndarray, y: np.ndarray, groups=None) -> "XGBModel":
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        margin = self._margin(x)
        params = {**PARAMS, "seed": self.seed, "verbosity": 0}
        if self.objective == "rank":
            g = np.zeros(len(y), dtype=np.int64) if groups is None else np.unique(groups, return_inverse=True)[1]
            order = np.argsort(g, kind="stable")            # XGBoost wants each query group contiguous
            x, y, g = x[order], y[order], g[order]
            dm = self.xgb.DMatrix(x, label=y, qid=g, base_margin=None if margin is None else margin[order])
            # every pair of a group counts ("mean": sampled pairs, 8 per trial), not only the top-k: the
            # search needs the whole order right, not only the best few (XGBoost's default "topk")
            params.update(objective="rank:pairwise", lambdarank_pair_method="mean", lambdarank_num_pair_per_sample=8)
        else:
            dm = self.xgb.DMatrix(x, label=y, base_margin=margin)
            params.update(objective="reg:squarederror")
        self.booster = self.xgb.train(params, dm, num_boost_round=self.rounds)
        return self

    def _margin(self, x: np.ndarray) -> "np.ndarray | None":
        if self.prior is None:
            return None
        scale = PRIOR_SCALE if self.objective == "rank" else 1.0
        return x[:, self.prior] * (np.log(2.0) * scale)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return self.booster.inplace_predict(x, base_margin=self._margin(x))
