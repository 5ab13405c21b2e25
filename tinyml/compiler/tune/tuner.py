"""The tuning loop: propose a batch, measure it, log every trial, retrain the model, repeat.

    space    = Space(workload, template)                   # the knobs and their choices
    history  = this run's records from the log             # resume: continue where it stopped
    for batch b in (len(history) / batch) .. trials / batch:
        if the trials grew by retrain_growth since the last fit (1.0: every batch):
            model.fit(features(measured so far), -log time)    # retrained from scratch
        before any fit (the first batch): the loop-nest features' phase estimate is the score
                                           # (prior=True, a model and nest features: Triton's perf_model)
        rng = Random(seed, b)                              # per batch: resuming gives the same run
        candidates = strategy.propose(ctx, (1 - epsilon) * batch)   # searches the model, if any
                   + random fresh candidates up to batch   # epsilon-greedy (with a model)
        for each: schedule = space.schedule(decisions); result = measurer.measure(schedule)
                  append the record to the log             # failures too: every trial counts
        strategy.observe(ctx, candidates, times)

The first batch is where a search without a model is blind: with ``prior`` it is the best of a
pool ranked by the phase estimate (:mod:`.phases`, computed from the nest and the device, nothing
measured), as Triton's autotuner prunes its configs with an analytic ``perf_model``; epsilon-greedy
still keeps a random share.

``transfer`` adds the trials of other logs (another device, other shapes) to the model's
training data as their own groups: the model starts the run knowing what they taught it.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...sim import load_device
from ...sim.args import choice, flag, integer, number
from ..tensor import PrimFunc, ScheduleError, replay
from ..tensor import to_json as trace_json
from .annealing import Annealing
from .errors import TuneError, TuneLogError
from .evolution import Evolutionary
from .features import FEATURE_KINDS, PRIOR, UNFIT, knob_features, nest_features
from .log import VERSION, append_to, dumps, read_records
from .measure import Result, failure
from .model import MODELS, make_model, targets
from .random_search import RandomSearch
from .space import Space, from_json, to_json
from .strategy import Context, random_fresh

STRATEGIES = {"random": RandomSearch, "annealing": Annealing, "evolutionary": Evolutionary}


@dataclass
class TuneResult:
    """What a run did: its records (resumed ones included), the best, and where the time went."""

    records: list
    space_size: int
    timing: dict = field(default_factory=dict)     # seconds: measure, model, propose, total

    @property
    def best(self) -> "dict | None":
        from .log import best_record
        return best_record(self.records)

    def curve(self) -> list:
        """Best-so-far time after each trial (None until the first success)."""
        out, best = [], None
        for r in self.records:
            t = r["result"].get("time_s")
            if t is not None and (best is None or t < best):
                best = t
            out.append(best)
        return out


def _no_score(pool):
    """Stands for "a model exists" when a strategy observes (its state must not depend on whether
    the first batch, before any training, had scores: a resumed run replays it with this)."""
    return np.zeros(len(pool))


def _device_for_features(name: str):
    if name == "cpu":
        from .cpu import cpu_device
        return cpu_device()
    return load_device(name)


class Featurizer:
    """Feature vectors of candidates (cached by key): loop-nest features or raw knobs."""

    def __init__(self, space: Space, device, kind: str):
        if kind not in FEATURE_KINDS:
            raise TuneError(f"unknown features {kind!r}; choose one of {', '.join(FEATURE_KINDS)}")
        self.space, self.device, self.kind = space, device, kind
        self.cache: dict = {}
        from .features import NAMES
        self.width = len(NAMES) if kind == "nest" else len(knob_features(space.sample(random.Random(0))))

    def __call__(self, decisions: tuple) -> np.ndarray:
        key = Space.key(decisions)
        v = self.cache.get(key)
        if v is None:
            if self.kind == "knobs":
                v = knob_features(decisions)
            else:
                try:
                    v = nest_features(self.space.schedule(decisions).nest, self.device)
                except ScheduleError:
                    v = None
                if v is None:               # an illegal candidate: a vector no legal one has
                    v = np.full(self.width, -1.0)
                    v[PRIOR] = UNFIT            # and the prior of a candidate that fails
            self.cache[key] = v
        return v


def transfer_data(paths, kind: str) -> tuple:
    """(features, times, groups) of the trials in other logs, for warm-starting a model."""
    xs, ts, gs = [], [], []
    for path in paths:
        records = read_records(path)
        if not any(rec.get("trace") is not None for rec in records):      # nothing to learn from: say so
            raise TuneLogError(f"the transfer log {path} holds {len(records)} trial(s), none with a schedule to "
                               f"learn from; pass a log that tinyml tune ... --log FILE filled, or drop it")
        for rec in records:
            if rec.get("trace") is None:
                continue
            if kind == "knobs":
                v = knob_features(from_json(rec["decisions"]))
            else:
                func = _func_of(rec["trace"]["workload"])
                nest = replay(func, rec["trace"]).nest
                v = nest_features(nest, _device_for_features(rec["device_name"]))
            xs.append(v)
            ts.append(rec["result"].get("time_s"))
            gs.append(f"transfer:{rec['workload']}:{rec['device']}")
    return xs, ts, gs


def _func_of(workload: dict):
    """The PrimFunc a trace's workload dict describes (matmul, conv2d)."""
    from ..tensor import TensorProgramError, conv2d, matmul

    try:
        ext = {a[0]: a[1] for a in workload["axes"]}
        dtype = workload["buffers"][-1][2]
        if workload["name"] == "matmul":
            func = matmul(ext["i"], ext["j"], ext["k"], dtype)
            if func.to_dict() == workload:
                return func
        if workload["name"] == "conv2d":
            (_, xs, _), (_, ws, _) = workload["buffers"][:2]
            n, c, h, w = xs
            f, _, kh, kw = ws
            oh = ext["y"]
            for stride in range(1, max(h, 1) + 1):
                for pad in range(0, max(kh, kw)):
                    if (h + 2 * pad - kh) // stride + 1 == oh and (w + 2 * pad - kw) // stride + 1 == ext["x"]:
                        func = conv2d(n, c, h, w, f, kh, kw, stride=stride, pad=pad, dtype=dtype)
                        if func.to_dict() == workload:
                            return func
    except (KeyError, IndexError, TypeError, ValueError, TensorProgramError):
        pass                               # a workload dict edited by hand: refused below
    name = workload.get("name") if isinstance(workload, dict) else workload
    raise TuneLogError(f"cannot rebuild workload {name!r} from a log record's trace (tinyml rebuilds matmul and "
                       f"conv2d workloads from the dict the tuner wrote); re-tune it, or remove the record")


def _check_targets(func, measurer) -> tuple:
    """A workload (PrimFunc) and a measurer (``SimulatedMeasurer``, ``CpuMeasurer``), or a TuneError."""
    if not isinstance(func, PrimFunc):
        raise TuneError(f"tune takes a workload (a PrimFunc, e.g. tinyml.compiler.tensor.matmul(1024, 1024, 1024)), "
                        f"got {func!r} ({type(func).__name__})")
    if not all(hasattr(measurer, a) for a in ("measure", "name", "hash", "kind", "device")):
        raise TuneError(f"tune measures on a measurer, got {measurer!r} ({type(measurer).__name__}); pass "
                        f"SimulatedMeasurer('a100-40gb'), CpuMeasurer() or measurer_for(device)")
    return func, measurer


def tune(func, measurer, *, strategy: str = "evolutionary", model: str = "xgboost", features: str = "nest",
         trials: int = 64, batch: int = 16, seed: int = 0, epsilon: float = 0.1, log=None, template=None,
         transfer=(), progress=None, retrain_growth: float = 1.0, prior: bool = True,
         margin: bool = True) -> TuneResult:
    """Tune ``func`` on ``measurer`` (module docstring); returns a :class:`TuneResult`.

    ``retrain_growth``: retrain the model only once the measured trials have grown by this factor
    since its last fit (1.0: after every batch; 1.5: about log_1.5(trials / batch) fits in a run, so
    retraining is a small share of a long run's time; the model in between keeps scoring). A resumed
    run refits at its first batch, so resume equals an uninterrupted run only for the default 1.0.

    ``prior``: before the model's first fit, score candidates by the phase estimate (with a model and
    ``features="nest"`` only; ``False``: the first batch is uniformly random, as AutoTVM's is).

    ``margin``: the XGBoost model starts from the phase estimate as its base margin (with
    ``features="nest"``); ``False``: the trees alone, as AutoTVM's are (the ablation that shows
    what a transferred log's trees carry without the estimate).

    ``log``: a path; its records of this run (same workload, device, space and settings) are
    resumed and new trials are appended. ``progress(record, result)`` is called per trial.
    """
    from ..lowering.scheduled import workload_hash, workload_key
    from .templates import template_for

    func, measurer = _check_targets(func, measurer)
    strategy = choice(strategy, "strategy", STRATEGIES, error=TuneError)
    model = choice(model, "cost model", MODELS, error=TuneError)
    features = choice(features, "features", FEATURE_KINDS, error=TuneError)
    trials = integer(trials, "trials", lo=1, error=TuneError, hint="the number of candidates to measure")
    batch = integer(batch, "batch", lo=1, error=TuneError, hint="trials per batch; the model retrains after each")
    seed = integer(seed, "seed", lo=0, error=TuneError, hint="the search's seed: the same seed gives the same log")
    epsilon = number(epsilon, "epsilon", lo=0.0, hi=1.0, error=TuneError,
                     hint="the share of each batch drawn at random when a model picks the rest")
    retrain_growth = number(retrain_growth, "retrain_growth", lo=1.0, error=TuneError,
                            hint="retrain once the trials grew by this factor (1: after every batch)")
    prior = flag(prior, "prior", error=TuneError)
    margin = flag(margin, "margin", error=TuneError)
    if isinstance(transfer, (str, Path)) or not isinstance(transfer, (list, tuple)):
        raise TuneError(f"transfer is a list of tuning-log paths, got {transfer!r}; write [{str(transfer)!r}] "
                        f"for one log")
    if transfer and model == "none":
        raise TuneError(f"transfer warm-starts the cost model, but model='none' has none (its trials would be "
                        f"ignored); pick a model (one of {', '.join(m for m in MODELS if m != 'none')}) or drop "
                        f"transfer")
    if progress is not None and not callable(progress):
        raise TuneError(f"progress is called as progress(record, result) after each trial, got {progress!r}")
    t_start = time.perf_counter()
    space = Space(func, template or template_for(func, measurer.name))
    feat = Featurizer(space, measurer.device, features)
    run = {"strategy": strategy, "model": model, "features": features, "seed": seed, "batch": batch,
           "epsilon": epsilon, **({"retrain_growth": retrain_growth} if retrain_growth != 1.0 else {}),
           **({} if prior else {"prior": False}), **({} if margin else {"margin": False})}
    base = {"version": VERSION, "workload": workload_hash(func), "workload_key": workload_key(func),
            "device": measurer.hash, "device_name": measurer.name, "measurer": measurer.kind, "space": space.name,
            "run": run}
    mine = lambda r: all(r.get(k) == base[k] for k in ("workload", "device", "space", "run"))  # noqa: E731
    path = Path(log).expanduser() if log else None
    history = [r for r in read_records(path) if mine(r)] if path is not None and path.exists() else []
    tx, tt, tg = transfer_data(transfer, features) if transfer else ([], [], [])
    strat = STRATEGIES[strategy]()
    m = make_model(model, seed, prior=PRIOR if features == "nest" and margin else None)
    measured: dict = {}
    timing = {"measure": 0.0, "model": 0.0, "propose": 0.0}
    records = list(history)
    fitted_at = 0                        # trials measured at the model's last fit
    timing["fits"] = 0

    def ctx_for(b: int, what: str, scorer) -> Context:
        return Context(space, random.Random(f"{seed}:{b}:{what}"), measured, scorer)

    batches = {}
    for r in history:                    # resume: replay what the strategy saw, batch by batch
        batches.setdefault(r["batch"], []).append(r)
    for b in sorted(batches):
        cands = [from_json(r["decisions"]) for r in batches[b]]
        times = [r["result"].get("time_s") for r in batches[b]]
        for d, t in zip(cands, times):
            measured[Space.key(d)] = t
        strat.observe(ctx_for(b, "observe", None if m is None else _no_score), cands, times)
    b = max(batches, default=-1) + 1
    out = append_to(path) if path is not None else None
    try:
        scorer_kept = None
        while len(records) < trials:
            n = min(batch, trials - len(records))
            scorer = None
            t0 = time.perf_counter()
            refit = not fitted_at or len(measured) >= retrain_growth * fitted_at
            if m is not None and (measured or tx) and (refit or scorer_kept is None):
                keys = list(measured)
                x = [feat(from_json(json.loads(k))) for k in keys] + tx
                y = targets([measured[k] for k in keys] + tt, ["run"] * len(keys) + tg)
                m.fit(np.array(x), y, ["run"] * len(keys) + tg)
                scorer_kept = lambda pool: m.predict(np.array([feat(d) for d in pool])) if pool else np.zeros(0)  # noqa
                fitted_at, timing["fits"] = len(measured), timing["fits"] + 1
            scorer = scorer_kept
            if scorer is None and m is not None and prior and features == "nest":      # nothing to fit yet
                scorer = lambda pool: np.array([feat(d)[PRIOR] for d in pool]) if pool else np.zeros(0)  # noqa
            timing["model"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            ctx = ctx_for(b, "propose", scorer)
            n_model = n - int(round(epsilon * n)) if scorer is not None else n
            cands = strat.propose(ctx, n_model)
            cands += random_fresh(ctx, n - len(cands))
            timing["propose"] += time.perf_counter() - t0
            if not cands:
                break                   # the space is exhausted
            times = []
            for d in cands:
                t0 = time.perf_counter()
                try:
                    sch = space.schedule(d)
                except ScheduleError as e:
                    sch, res = None, failure("illegal", e)
                else:
                    res = measurer.measure(sch)
                timing["measure"] += time.perf_counter() - t0
                rec = {**base, "batch": b, "trial": len(records), "decisions": to_json(d),
                       "trace": json.loads(trace_json(sch)) if sch is not None else None, "result": res.to_dict()}
                records.append(rec)
                measured[Space.key(d)] = res.time_s if res.ok else None
                times.append(measured[Space.key(d)])
                if out is not None:
                    out.write(dumps(rec) + "\n")
                    out.flush()
                if progress is not None:
                    progress(rec, res)
            strat.observe(ctx_for(b, "observe", None if m is None else _no_score), cands, times)
            b += 1
    finally:
        if out is not None:
            out.close()
    timing["total"] = time.perf_counter() - t_start
    return TuneResult(records, space.size, timing)


__all__ = ["tune", "TuneResult", "STRATEGIES", "Result"]
