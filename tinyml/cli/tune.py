"""``tinyml tune matmul|conv2d|show``: search a workload's schedule space with a learned cost model.

``tinyml tune matmul ...`` samples candidates from the workload's template (tile sizes,
accumulator scope, grid order, tensor cores; :mod:`tinyml.compiler.tune.templates`),
measures them in batches on ``--device`` (a simulated preset in counting mode, or ``cpu``:
the generated kernel executed on this machine), retrains the cost model after every batch,
and appends every trial to ``--log`` (JSON lines; a second run with the same settings resumes
it). The end is a table: the tuned schedule against the library's hand-picked tiles (matmul
v3's, or the best blocked conv2d). ``tinyml tune show LOG`` prints a log's best trace, its
loop nest and generated source; ``tinyml compile MODEL --tune-log LOG`` runs a model with them.
"""

from __future__ import annotations

import json
import sys

from . import _workloads as workloads
from ._args import positive_int, probability, readable_file, seed, writable_file
from ._out import console, emit_json, table

HELP = """examples:
  tinyml tune matmul --m 4096 --n 4096 --k 4096 --device a100-40gb --trials 256 --strategy evolutionary \\
                     --model xgboost --log tune.jsonl
  tinyml tune matmul --m 1024 --n 1024 --k 1024 --device cpu --trials 32 --log cpu.jsonl
  tinyml tune conv2d --channels 64 --size 56 --filters 64 --device toy --trials 64 --json
  tinyml tune matmul --m 4096 --n 4096 --k 4096 --device m2-max --transfer tune.jsonl   warm-start from an A100 log
  tinyml tune show tune.jsonl --show source
"""


def register(sub) -> None:
    p = sub.add_parser("tune", help="auto-tune a matmul or conv2d schedule (search + learned cost model)",
                       epilog=HELP, description=__doc__)
    wl = p.add_subparsers(dest="workload", metavar="WORKLOAD", required=True)
    m = wl.add_parser("matmul", help="tune C (M x N) = A (M x K) @ B (K x N)", epilog=HELP)
    workloads.add_matmul(m)
    _common(m)
    c = wl.add_parser("conv2d", help="tune an NCHW 2-D convolution", epilog=HELP)
    workloads.add_conv2d(c)
    _common(c)
    s = wl.add_parser("show", help="print a tuning log's best trace, loop nest and generated source", epilog=HELP)
    s.add_argument("log", type=readable_file, help="a tuning log (JSON lines) written by tinyml tune --log")
    s.add_argument("--device", default=None, help="only trials on this device (name), default: all")
    s.add_argument("--show", choices=("tree", "nest", "source", "all"), default="all",
                   help="what to print of the best schedule: loop tree, NumPy-style nest, generated source, all")
    s.add_argument("--json", action="store_true", help="print the best record per workload as JSON")
    s.set_defaults(func=show)


def _common(p) -> None:
    from ..compiler.tune.model import MODELS
    from ..compiler.tune.tuner import STRATEGIES

    p.add_argument("--dtype", default=None, help="logical dtype bytes are counted in (default fp16; fp32 on cpu)")
    p.add_argument("--device", default="a100-40gb", help="preset name or .toml file, or cpu (this machine)")
    p.add_argument("--trials", type=positive_int, default=64, help="trials to measure (failed ones count)")
    p.add_argument("--batch-trials", type=positive_int, default=16, dest="batch_trials",
                   help="trials per batch; the cost model retrains after each batch")
    p.add_argument("--strategy", choices=tuple(STRATEGIES), default="evolutionary", help="the search strategy")
    p.add_argument("--model", choices=MODELS, default="xgboost",
                   help="the cost model that pre-screens candidates (none: measure what the search proposes)")
    p.add_argument("--features", choices=("nest", "knobs"), default="nest",
                   help="what the model sees: loop-nest features, or the raw knob values (the ablation)")
    p.add_argument("--epsilon", type=probability, default=0.1,
                   help="share of each batch drawn at random when a model picks the rest, in [0, 1)")
    p.add_argument("--seed", type=seed, default=0, help="the search's seed: the same seed gives the same log")
    p.add_argument("--log", type=writable_file, default=None, metavar="FILE.jsonl",
                   help="append every trial here; an existing log of the same run is resumed (default: none)")
    p.add_argument("--transfer", type=readable_file, action="append", default=[], metavar="LOG",
                   help="warm-start the cost model with another log's trials (another device); repeatable")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    p.set_defaults(func=run)


def workload(args):
    return workloads.build(args, args.dtype or ("fp32" if args.device == "cpu" else "fp16"))


class Bar:
    """A progress bar on a terminal (rich), else one line per batch: trials done and the best so far."""

    def __init__(self, total: int, batch: int, quiet: bool):
        self.total, self.batch, self.quiet = total, batch, quiet
        self.best = None
        self.done = 0
        self.failed = 0
        self.tty = sys.stderr.isatty() and not quiet
        self.bar = None
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("tuning"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[best]}"), TimeElapsedColumn(),
                                console=Console(file=sys.stderr))
            self.task = self.bar.add_task("tune", total=total, best="")
            self.bar.start()

    def __call__(self, rec, res) -> None:
        from ..sim.units import fmt_time

        self.done += 1
        self.failed += not res.ok
        if res.ok and (self.best is None or res.time_s < self.best):
            self.best = res.time_s
        text = f"best {fmt_time(self.best)}" if self.best is not None else "no success yet"
        text += f", {self.failed} failed" if self.failed else ""
        if self.bar is not None:
            self.bar.update(self.task, completed=rec["trial"] + 1, best=text)
        elif not self.quiet and (self.done % self.batch == 0):
            print(f"  trial {rec['trial'] + 1}/{self.total}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _summary(res) -> dict:
    d = {"status": res.status, "time_s": res.time_s}
    if not res.ok:
        d.update(error=res.error, message=res.message)
    if res.noise is not None:
        d["noise"] = res.noise
    if res.profile:
        d["profile"] = res.profile
    return d


def parallel_build_for_cpu(device: str) -> None:
    """``--device cpu`` times kernels on this machine's cores: ask for the parallel build of every kernel
    (``TINYML_PARALLEL_KERNELS=1``, :func:`tinyml.sim.jit.parallel_kernels`), so the tuned kernel and
    matmul v3 beside it both run their blocks on every core. Only in a process that has loaded no kernel
    yet, and never over a user's own setting; a simulated device only counts and keeps the default."""
    import os

    if device == "cpu" and "tinyml.sim.jit" not in sys.modules:
        os.environ.setdefault("TINYML_PARALLEL_KERNELS", "1")


def run(args) -> int:
    parallel_build_for_cpu(args.device)
    from ..compiler.tune import measurer_for, tune
    from ..compiler.tune.hand import hand_baseline
    from ..compiler.tune.measure import Result

    func = workload(args)
    meas = measurer_for(args.device)
    bar = Bar(args.trials, args.batch_trials, quiet=args.json)
    try:
        result = tune(func, meas, strategy=args.strategy, model=args.model, features=args.features,
                      trials=args.trials, batch=args.batch_trials, seed=args.seed, epsilon=args.epsilon,
                      log=args.log, transfer=args.transfer, progress=bar)
    finally:
        bar.close()
    label, hand = hand_baseline(func, meas)
    best = result.best
    tuned = Result.from_dict(best["result"]) if best else None
    speedup = hand.time_s / tuned.time_s if tuned and hand.ok else None
    statuses: dict = {}
    for r in result.records:
        statuses[r["result"]["status"]] = statuses.get(r["result"]["status"], 0) + 1
    if args.json:
        emit_json({"workload": func.to_dict(), "device": meas.name, "space_size": result.space_size,
                   "trials": len(result.records), "statuses": statuses, "strategy": args.strategy,
                   "model": args.model, "features": args.features, "seed": args.seed, "log": args.log,
                   "best": None if best is None else {"decisions": best["decisions"], "trace": best["trace"],
                                                      **_summary(tuned)},
                   "hand": {"schedule": label, **_summary(hand)}, "speedup_vs_hand": speedup,
                   "best_so_far_s": result.curve(), "timing_s": result.timing})
        return 0
    _print(func, meas, result, statuses, best, tuned, label, hand, speedup)
    return 0


def _row(name: str, res, meas) -> list:
    from ..sim.units import fmt_bytes, fmt_time

    if res is None or not res.ok:
        return [name, "-", "-", "-", res.error if res else "no success"]
    p = res.profile
    if meas.kind == "cpu":
        return [name, fmt_time(res.time_s), "-", "-", f"noise {res.noise:.1%}"]
    return [name, fmt_time(res.time_s), fmt_bytes(p["hbm_bytes"]), fmt_bytes(p["sram_per_block_bytes"]),
            f"{p['bound']} ({p['blocks_per_sm']} blocks/SM"
            + (f" by {p['occupancy_limit']}" if "occupancy_limit" in p else "") + f", {p['waves']} waves)"]


def _print(func, meas, result, statuses, best, tuned, label, hand, speedup) -> None:
    c = console()
    shape = "x".join(str(a.extent) for a in func.block.axes)
    c.print(f"{func.name} ({shape}) {func.dtype} on {meas.name}: {len(result.records)} trials of a space of "
            f"{result.space_size:,} candidates; " + ", ".join(f"{n} {k}" for k, n in sorted(statuses.items())),
            markup=False)
    rows = [_row("tuned", tuned, meas), _row(label, hand, meas)]
    c.print(table("tuned vs hand-picked", ["schedule", "time", "HBM traffic", "SRAM/block", "bound"], rows,
                  {"time", "HBM traffic", "SRAM/block"}))
    if not hand.ok and hand.message:
        c.print(f"{label}: {hand.status}: {hand.message}", markup=False)
    if best is not None:
        c.print(f"tuned decisions: {json.dumps(best['decisions'])} (trial {best['trial']})", markup=False)
    if speedup is not None:
        c.print(f"speed-up over the hand-picked schedule: {speedup:.2f}x", markup=False)
    t = result.timing
    c.print(f"time: {t['total']:.1f} s (measuring {t['measure']:.1f} s, training the model {t['model']:.1f} s, "
            f"proposing {t['propose']:.1f} s)", markup=False)


def show(args) -> int:
    from ..compiler.tensor import build, loop_tree, numpy_source, replay
    from ..compiler.tune.errors import TuneLogError
    from ..compiler.tune.log import TuningLog
    from ..compiler.tune.tuner import _func_of

    log = TuningLog(args.log, device=args.device)
    if not log.records:                  # an empty file: say so rather than print nothing
        raise TuneLogError(f"the tuning log {args.log} holds no trials; fill it with tinyml tune matmul ... "
                           f"--log {args.log}")
    out = []
    for wh, key in log.workloads().items():
        rec = log.best(wh)
        n = sum(r["workload"] == wh and (args.device is None or args.device in (r["device"], r["device_name"]))
                for r in log.records)
        if rec is None:
            out.append({"workload": wh, "workload_key": key, "trials": n, "best": None})
            continue
        sch = replay(_func_of(rec["trace"]["workload"]), rec["trace"])
        views = {"tree": loop_tree(sch.nest), "nest": numpy_source(sch.nest),
                 "source": build(sch, parallel=False).source}
        out.append({"workload": wh, "workload_key": key, "trials": n, "device": rec["device_name"],
                    "best": {k: rec[k] for k in ("trial", "decisions", "trace", "result")}, **views})
    if args.json:
        emit_json({"log": args.log, "workloads": out})
        return 0
    c = console()
    forms = ("tree", "nest", "source") if args.show == "all" else (args.show,)
    for w in out:
        c.print(f"{w['workload_key']} ({w['workload']}): {w['trials']} trials", style="bold", markup=False)
        if w["best"] is None:
            c.print("  no successful trial", markup=False)
            continue
        r = w["best"]["result"]
        c.print(f"  best: trial {w['best']['trial']} on {w['device']}, {r['time_s']:.4g} s, decisions "
                f"{json.dumps(w['best']['decisions'])}", markup=False)
        c.print("  trace: " + "; ".join(f"{i['kind']}({', '.join(map(json.dumps, i['args']))})"
                                      for i in w["best"]["trace"]["instructions"]), markup=False)
        for form in forms:
            c.print(f"\n{form}:", style="bold", markup=False)
            c.print(w[form], markup=False)
    return 0
