"""tinyml.compiler.tune: auto-tuning tensor programs with a learned cost model (AutoTVM, Ansor).

| module | idea |
|---|---|
| :mod:`.space` | a schedule template's sampling instructions as knobs: sample, mutate, enumerate |
| :mod:`.templates` | the templates: ``matmul_gpu`` (matmul v3's structure), ``matmul_cpu``, ``conv2d_gpu`` |
| :mod:`.measure` | a trial's :class:`Result` (``ok``, ``illegal``, ``failed``, ``wrong``) |
| :mod:`.simulated` | measure on a simulated preset: counting mode, the full kernel record kept |
| :mod:`.cpu` | measure on the real CPU: median of runs after a warm-up, output checked once, noise |
| :mod:`.features` | loop-nest features (bytes per level, reuse, strides, footprints, occupancy) and raw knobs |
| :mod:`.phases` | the phase estimate from the nest and the device: bytes, phase seconds, waves, the prior |
| :mod:`.model`, :mod:`.ridge`, :mod:`.xgb` | ridge (NumPy), XGBoost (rank / regression; the estimate as margin) |
| :mod:`.strategy`, :mod:`.random_search`, :mod:`.annealing`, :mod:`.evolution` | search strategies |
| :mod:`.tuner` | the loop: batches, model retraining, epsilon-greedy, logging, resuming, transfer |
| :mod:`.log` | JSON-lines logs keyed by workload and device hash; :class:`TuningLog` feeds ``compile()`` |
| :mod:`.hand` | the library's hand-picked schedules, the baseline a tuned schedule must beat |
| :mod:`.metrics` | Spearman rank correlation and pairwise ranking accuracy |

    from tinyml.compiler.tensor import matmul
    from tinyml.compiler.tune import SimulatedMeasurer, tune
    res = tune(matmul(1024, 1024, 1024), SimulatedMeasurer("a100-40gb"), trials=64, log="tune.jsonl")
    res.best["result"]["time_s"]

Importing this package loads NumPy only; Numba loads when a candidate is measured and
XGBoost when an XGBoost model is made.
"""

from __future__ import annotations

from .errors import MissingDependencyError, TuneError, TuneLogError
from .log import TuningLog, best_record, read_records
from .measure import Result
from .space import Space
from .templates import TEMPLATES, template_for


def tune(*args, **kwargs):
    """Tune a workload on a measurer; see :func:`.tuner.tune`."""
    from .tuner import tune as _tune
    return _tune(*args, **kwargs)


def SimulatedMeasurer(device="a100-40gb"):  # noqa: N802  (a class, loaded lazily)
    from .simulated import SimulatedMeasurer as _M
    return _M(device)


def CpuMeasurer(**kwargs):  # noqa: N802
    from .cpu import CpuMeasurer as _M
    return _M(**kwargs)


def measurer_for(device: str):
    """``"cpu"``: the real CPU; anything else: a simulated preset (name or .toml file)."""
    return CpuMeasurer() if device == "cpu" else SimulatedMeasurer(device)


__all__ = ["MissingDependencyError", "TuneError", "TuneLogError", "TuningLog", "best_record", "read_records",
           "Result", "Space", "TEMPLATES", "template_for", "tune", "SimulatedMeasurer", "CpuMeasurer",
           "measurer_for"]
