"""Retraining the cost model less often (``tune(..., retrain_growth=g)``): the model is refitted only
once the measured trials have grown by g since its last fit, the run stays deterministic, and the
default (1.0) still refits after every batch."""

from __future__ import annotations

import math

import pytest

from tinyml.compiler.tensor import matmul
from tinyml.compiler.tune import TuneError, tune
from tinyml.compiler.tune.simulated import SimulatedMeasurer


def _run(growth, tmp_path=None, name="log.jsonl"):
    log = None if tmp_path is None else tmp_path / name
    res = tune(matmul(256, 256, 256), SimulatedMeasurer("a100-40gb"), strategy="evolutionary", model="ridge",
               trials=64, batch=4, seed=3, retrain_growth=growth, log=log)
    return res, log


def test_fits_follow_the_growth_factor_and_the_run_is_deterministic(tmp_path):
    every, _ = _run(1.0)
    assert every.timing["fits"] == 64 // 4 - 1                # after each batch but the first
    sparse, a = _run(2.0, tmp_path, "a.jsonl")
    # fits at 4, 8, 16, 32 trials measured (doubling): log2(64 / 4) of them
    assert sparse.timing["fits"] == int(math.log2(64 // 4))
    _, b = _run(2.0, tmp_path, "b.jsonl")
    assert a.read_bytes() == b.read_bytes()                   # same seed, same log
    assert '"retrain_growth":2.0' in a.read_text().splitlines()[0]      # part of the run's key


def test_a_growth_below_one_is_refused():
    with pytest.raises(TuneError, match="retrain_growth must be a finite number >= 1, got 0.5"):
        _run(0.5)
