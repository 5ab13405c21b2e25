"""Gradient-boosted trees (XGBoost) as the cost model, as AutoTVM uses them.

``objective="rank"``: ``rank:pairwise`` with one query group per workload and device: the
trees learn which of two candidates is faster, not by how much (AutoTVM's default loss).
``objective="reg"``: ``reg:squarederror`` on the centred ``-log(time)``. Both train with
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


PARAMS = {"max_depth": 6, "eta": 0.2, "min_child_weight": 1, "subsample": 1.0, "colsample_bytree": 1.0,
          "lambda": 1.0, "tree_method": "hist", "nthread": 1}


class XGBModel:
    def __init__(self, objective: str = "rank", rounds: int = 60, seed: int = 0):
        self.xgb = import_xgboost()
        self.objective = objective
        self.name = "xgboost" if objective == "rank" else "xgboost-reg"
        self.rounds = rounds
        self.seed = seed
        self.booster = None

    def fit(self, x: np.ndarray, y: np.ndarray, groups=None) -> "XGBModel":
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        params = {**PARAMS, "seed": self.seed, "verbosity": 0}
        if self.objective == "rank":
            g = np.zeros(len(y), dtype=np.int64) if groups is None else np.unique(groups, return_inverse=True)[1]
            order = np.argsort(g, kind="stable")            # XGBoost wants each query group contiguous
            x, y, g = x[order], y[order], g[order]
            dm = self.xgb.DMatrix(x, label=y, qid=g)
            # every pair of a group counts ("mean": sampled pairs, 8 per trial), not only the top-k: the
            # search needs the whole order right, not only the best few (XGBoost's default "topk")
            params.update(objective="rank:pairwise", lambdarank_pair_method="mean", lambdarank_num_pair_per_sample=8)
        else:
            dm = self.xgb.DMatrix(x, label=y)
            params.update(objective="reg:squarederror")
        self.booster = self.xgb.train(params, dm, num_boost_round=self.rounds)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.booster.inplace_predict(np.asarray(x, dtype=np.float64))
