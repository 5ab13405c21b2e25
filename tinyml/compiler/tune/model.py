"""Cost models: learn from the trials so far which candidates will be fast.

A model is trained on ``(features, time, group)`` and predicts a *score* per candidate,
higher = predicted faster; only the order of the scores matters to a search. The target is
``-log(time)`` centred per group (a group is one workload on one device), so trials of
several shapes, or of another device (transfer), train one model without their absolute
times mixing. A failed trial (illegal, did not fit, wrong) is a target one unit (a factor
of ``e``) below the slowest success of its group: the model learns to avoid failures too.

* :class:`~.ridge.Ridge`: NumPy ridge regression on standardized features, the baseline;
* :class:`~.xgb.XGBModel`: gradient-boosted trees (XGBoost), ``objective="rank"``
  (pairwise ranking within each group, AutoTVM's ``rank`` loss) or ``"reg"`` (squared error).

Models are retrained from scratch after every batch, on everything measured so far.
"""

from __future__ import annotations

import numpy as np

from .errors import TuneError

MODELS = ("none", "ridge", "xgboost", "xgboost-reg")


def targets(times: list, groups: list) -> np.ndarray:
    """``-log(time)`` minus the group's median over successes; failures (None) below the group's worst."""
    y = np.zeros(len(times))
    g = np.asarray(groups)
    for key in dict.fromkeys(groups):
        idx = np.flatnonzero(g == key)
        ok = [i for i in idx if times[i] is not None and times[i] > 0]
        logs = {i: -np.log(times[i]) for i in ok}
        centre = float(np.median(list(logs.values()))) if ok else 0.0
        worst = min(logs.values(), default=centre) - centre
        for i in idx:
            y[i] = logs[i] - centre if i in logs else worst - 1.0
    return y


def make_model(name: str, seed: int = 0, prior: "int | None" = None):
    """A fresh model by name (:data:`MODELS`); ``"none"`` is ``None``. ``prior``: the feature column
    of a prior score the trees start from (:mod:`.xgb`; the loop-nest features' :data:`~.features.PRIOR`)."""
    if name == "none":
        return None
    if name == "ridge":
        from .ridge import Ridge
        return Ridge()
    if name in ("xgboost", "xgboost-reg"):
        from .xgb import XGBModel
        return XGBModel("rank" if name == "xgboost" else "reg", seed=seed, prior=prior)
    raise TuneError(f"unknown cost model {name!r}; choose one of {', '.join(MODELS)}")
