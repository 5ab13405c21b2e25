"""Auto-tuning benchmark: search strategies, cost models, transfer and devices, side by side.

    python benchmarks/bench_tune.py --quick      # CI smoke (< ~30 s): cost, hand tiles, efficiency, quality
    python benchmarks/bench_tune.py              # the issue's targets (long: minutes to hours on 2 cores)
    python benchmarks/bench_tune.py --json benchmarks/results/tune.json   # the docs' figures read this

1. Cost: 512 simulated trials of one 4096^3 GEMM (evolutionary + XGBoost): total, and the split
   between measuring (counting mode), retraining the model and proposing.
2. Beat the hand-picked tiles: tuned vs matmul v3's tiles on GEMM shapes (M in {1, 16, 128, 2048};
   N, K from Llama-2-7B and GPT-2) and ResNet-50's 23 distinct conv2d layers (vs the best blocked
   conv2d), per preset; every loss is listed with what bounds the hand and the tuned schedule.
3. Search efficiency: trials until within 5% of the best known (exhaustive over the space), median
   over seeds, random search vs annealing and evolution, with and without the cost model; on a GEMM
   (where many candidates are near the best) and, in the full run, on a conv2d on ``toy`` (where most
   candidates overflow SRAM and the good region is rare).
4. Model quality on held-out shapes: Spearman and pairwise accuracy of XGBoost (rank, with the phase
   estimate as its base margin, and without), XGBoost (regression), ridge, XGBoost on raw knobs (the
   ablation) and the phase estimate alone, trained on the trials of other shapes (GEMMs; in the full
   run also ResNet-50 conv layers held out from 8 others).
5. Transfer: tuning m2-max from scratch vs warm-started from an a100-40gb log.
6. Hardware matters: a100-40gb's best on m2-max and m2-max's best on a100-40gb.
7. (full only) The real CPU: tuned generated matmul vs matmul v3 at 1024^3 and 2048x2048x512 fp32.

Random searches use several seeds (10 in the full run, 3 with --quick). Targets print PASS / FAIL;
rows the issue asks for that this run did not measure print SKIP. Exit code 1 if a counted target fails.

The full run can be measured in pieces and merged (each piece its own process; any order):

    python benchmarks/bench_tune.py --sections hand-gemm --presets a100-40gb,rtx-4090 --json /tmp/p1.json
    python benchmarks/bench_tune.py --sections transfer,cross,cpu --json /tmp/p2.json
    python benchmarks/bench_tune.py --merge /tmp/p1.json /tmp/p2.json ... --json benchmarks/results/tune.json

Sections: cost, hand-gemm, hand-conv (section 2), efficiency, efficiency-rare, efficiency-conv (3),
quality, quality-conv (4), transfer (5), cross (6), cpu (7). ``--merge`` measures nothing: it joins the
parts (a later part wins for the same section, or the same device and workload in section 2), prints the
losses and the targets over all of them, and writes ``--json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from _report import parallel_build, report_targets, verdict, write_json  # noqa: E402

parallel_build(__name__ == "__main__")  # full runs: section 7 times kernels on every core

from tinyml.compiler.tensor import conv2d, matmul, replay  # noqa: E402
from tinyml.compiler.tensor.resnet import RESNET50_CONVS  # noqa: E402
from tinyml.compiler.tune import Space, tune  # noqa: E402
from tinyml.compiler.tune import templates as T  # noqa: E402
from tinyml.compiler.tune.hand import hand_baseline  # noqa: E402
from tinyml.compiler.tune.metrics import pairwise, spearman  # noqa: E402
from tinyml.compiler.tune.simulated import SimulatedMeasurer  # noqa: E402

LLAMA = [(4096, 4096), (11008, 4096), (4096, 11008)]       # (N, K): q/k/v/o, gate/up, down
GPT2 = [(2304, 768), (3072, 768), (768, 3072)]             # (N, K): qkv, fc, proj
GEMMS = [(m, n, k) for m in (1, 16, 128, 2048) for n, k in LLAMA + GPT2]
#: ResNet-50's 23 distinct conv2d layers at batch 1: (C, H, F, K, stride, pad) (the issue says 12; the ONNX
#: model zoo's ResNet-50 v1 has 23 distinct shapes among its 53 convolutions: tensor/resnet.py)
RESNET = [row[:6] for row in RESNET50_CONVS]
PRESETS = ("a100-40gb", "rtx-4090", "m2-max", "toy")
RETRAIN_GROWTH = 1.5          # section 1's second run: refit the model only as the trials grow by 1.5x


def conv_func(c, h, f, k, stride, pad):
    return conv2d(1, c, h, h, f, k, k, stride=stride, pad=pad)


# ---- 1. cost ------------------------------------------------------------------------------------

def cost(trials: int) -> dict:
    func = matmul(4096, 4096, 4096)
    meas = SimulatedMeasurer("a100-40gb")
    space = Space(func, T.matmul_gpu)                             # JIT warm: compile every structure once
    tiles = [q for q, k in enumerate(space.knobs) if k.kind == "sample_perfect_tile"]
    for d in space.all():
        if all(d[q] == space.knobs[q].choices[0] for q in tiles):
            meas.measure(space.schedule(d))
    print(f"\n== 1. Cost: {trials} simulated trials of 4096^3 fp16 on a100-40gb, evolutionary + XGBoost, JIT warm "
          f"(wall time on a shared machine; retrain_growth = 1: the model refitted after every batch, "
          f"{RETRAIN_GROWTH}: only once the trials grew by that factor)")
    out = {}
    for growth in (1.0, RETRAIN_GROWTH):
        t0, c0 = time.perf_counter(), time.process_time()
        res = tune(func, meas, strategy="evolutionary", model="xgboost", trials=trials, batch=16, seed=0,
                   retrain_growth=growth)
        total, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        t = res.timing
        best = res.best["result"]["time_s"] if res.best else float("nan")
        print(f"   retrain_growth {growth}: total {total:.1f} s ({cpu_s:.1f} CPU s): measuring {t['measure']:.1f} s "
              f"({t['measure'] / trials * 1e3:.1f} ms/trial), training the model {t['model']:.1f} s "
              f"({t['model'] / total:.0%}, {t['fits']} fits), proposing {t['propose']:.1f} s; best {best * 1e6:.1f} us")
        out[growth] = {"trials": trials, "total_s": total, "cpu_s": cpu_s, "best_s": best, "fits": t["fits"],
                      **{f"{k}_s": v for k, v in t.items() if k != "fits"}}
    return {**out[1.0], "sparse": out[RETRAIN_GROWTH]}


# ---- 2. beat the hand tiles -------------------------------------------------------------------------

def beat_hand(workloads: list, presets, trials: int) -> list:
    """Tuned vs hand on every (preset, workload). A row's ``outcome``: ``both`` (a speed-up), ``hand failed``
    (the tuned schedule runs, the hand tiles do not: a win without a ratio), ``tuned failed`` (a loss),
    ``neither`` (the workload does not run on the device at all, e.g. out of toy's 1 MiB HBM: not measured)."""
    print(f"\n== 2. Tuned ({trials} trials, evolutionary + XGBoost) vs the hand-picked tiles")
    print(f"   {'device':<10} {'workload':<34} {'hand':>10} {'tuned':>10} {'speed-up':>9}")
    rows = []
    for dev in presets:
        meas = SimulatedMeasurer(dev)
        for label, func in workloads:
            kind = "gemm" if func.block.name == "matmul" else "conv"
            try:
                res = tune(func, meas, trials=trials, batch=16, seed=0)
                hl, hand = hand_baseline(func, meas)
            except Exception as e:  # noqa: BLE001  (reported, not fatal)
                rows.append({"device": dev, "workload": label, "kind": kind, "outcome": "neither",
                             "error": f"{type(e).__name__}: {e}"[:160]})
                print(f"   {dev:<10} {label:<34} {'-':>10} {'-':>10}   {type(e).__name__}")
                continue
            best = res.best
            tuned = best["result"]["time_s"] if best else None
            h = hand.time_s if hand.ok else None
            sp = h / tuned if (h and tuned) else None
            outcome = ("both" if sp else "hand failed" if tuned else "tuned failed" if h else "neither")
            row = {"device": dev, "workload": label, "kind": kind, "outcome": outcome, "hand_s": h, "tuned_s": tuned,
                   "speedup": sp, "hand": hl, "hand_status": hand.status,
                   "decisions": best["decisions"] if best else None,
                   "hand_profile": _brief(hand.profile), "tuned_profile": _brief(best["result"].get("profile")
                                                                                 if best else None)}
            if outcome != "both":
                errs = [r["result"] for r in res.records if r["result"].get("error")]
                kinds = Counter(e["error"] for e in errs)
                row["tuned_errors"] = dict(kinds)
                row["error"] = ((f"hand ({hl}): {hand.error}: {hand.message}"[:240] if not hand.ok else "hand ok")
                                + " | " + (f"tuned: all {len(res.records)} trials failed ("
                                           + ", ".join(f"{k} {v}" for k, v in kinds.most_common())
                                           + f"), e.g. {errs[-1]['error']}: {errs[-1]['message']}"[:240]
                                           if not tuned and errs else "tuned ok"))
            rows.append(row)
            fmt = lambda x: f"{x * 1e6:9.1f}us" if x else f"{'failed':>10}"  # noqa: E731
            print(f"   {dev:<10} {label:<34} {fmt(h)} {fmt(tuned)} {(f'{sp:8.2f}x' if sp else '      -'):>9}")
    _print_losses(rows)
    return rows


def _print_losses(rows: list) -> None:
    losses = [r for r in rows if r.get("speedup") and r["speedup"] < 1 - 1e-9]
    print(f"   losses ({len(losses)}): what bounds each (bound, waves x blocks/SM, HBM MB, SRAM MB)")
    for r in losses:
        print(f"   {r['device']:<10} {r['workload']:<34} {r['speedup']:.3f}x  hand {r['hand']}: "
              f"{_show(r['hand_profile'])}"
              f"  | tuned {r['decisions']}: {_show(r['tuned_profile'])}")
    one = [r for r in rows if r.get("outcome") in ("hand failed", "tuned failed")]
    for r in one:
        print(f"   {r['device']:<10} {r['workload']:<34} {r['outcome']}: {' '.join(r.get('error', '').split())[:200]}")
    neither = [r for r in rows if r.get("outcome", "both" if r.get("speedup") else "neither") == "neither"]
    if neither:
        print(f"   not measured ({len(neither)}: hand and tuned both fail): " + "; ".join(
            f"{r['device']} {r['workload']}" for r in neither[:8]) + (" ..." if len(neither) > 8 else ""))
        print(f"      e.g. {' '.join((neither[0].get('error') or '').split())[:240]}")


def _brief(profile) -> "dict | None":
    """What explains a time: the bound, waves, blocks per SM, HBM and SRAM bytes."""
    if not profile:
        return None
    sram = profile.get("sram_read_bytes", 0) + profile.get("sram_write_bytes", 0)
    return {"bound": profile.get("bound"), "waves": profile.get("waves"), "blocks_per_sm": profile.get("blocks_per_sm"),
            "hbm_mb": profile.get("hbm_bytes", 0) / 1e6, "sram_mb": sram / 1e6}


def _show(b) -> str:
    return "-" if not b else (f"{b['bound']}, {b['waves']}x{b['blocks_per_sm']}, {b['hbm_mb']:.1f} MB, "
                              f"{b['sram_mb']:.0f} MB")


# ---- 3. search efficiency -----------------------------------------------------------------------

SETTINGS = [("random", "none"), ("random", "xgboost"), ("annealing", "none"), ("annealing", "xgboost"),
            ("evolutionary", "none"), ("evolutionary", "xgboost"), ("evolutionary", "xgboost", False)]
"""(strategy, model[, prior]): the last runs the model with a uniformly random first batch (``tune(prior=False)``,
as AutoTVM starts), to show what ranking the first batch by the phase estimate adds."""


def efficiency(func, device: str, seeds: int, trials: int, batch: int = 16) -> dict:
    meas = SimulatedMeasurer(device)
    space = Space(func, T.template_for(func, device))
    t0 = time.perf_counter()
    best = min(t for t in (meas.measure(space.schedule(d)).time_s for d in space.all()) if t is not None)
    print(f"\n== 3. Search efficiency on {func.name} "
          f"{'x'.join(str(a.extent) for a in func.block.axes)}, {device}: exhaustive best "
          f"{best * 1e6:.1f} us over {space.size} candidates ({time.perf_counter() - t0:.1f} s); trials until "
          f"within 5% (median of {seeds} seeds, > {trials} = not reached)")
    out = {"best_s": best, "space": space.size, "curves": {}, "median_trials": {},
           "label": f"{func.name} {'x'.join(str(a.extent) for a in func.block.axes)} on {device}"}
    for strat, model, *prior in SETTINGS:
        hits, curves = [], []
        prior = prior[0] if prior else True
        for seed in range(seeds):
            curve = tune(func, meas, strategy=strat, model=model, trials=trials, batch=batch, seed=seed,
                         prior=prior).curve()
            curves.append([c / best if c else None for c in curve])
            hit = next((i + 1 for i, c in enumerate(curve) if c and c <= best * 1.05), trials + 1)
            hits.append(hit)
        med = statistics.median(hits)
        key = f"{strat}+{model}" + ("" if prior else " (random first batch)")
        out["curves"][key] = curves
        out["median_trials"][key] = med
        print(f"   {key.replace('+', ' + '):<46} median {med:>6.1f}   per seed {hits}")
    return out


# ---- 4. model quality on held-out shapes ---------------------------------------------------------

def quality(device: str, train_shapes, test_shapes, n_per_shape: int, build=None) -> dict:
    """Train on the trials of ``train_shapes``, rank those of ``test_shapes`` (``build(shape)`` -> workload:
    a matmul by default)."""
    from tinyml.compiler.tune.features import PRIOR, knob_features, nest_features
    from tinyml.compiler.tune.model import make_model, targets
    import random

    meas = SimulatedMeasurer(device)

    def data(shapes, seed):
        xs, ks, ts, gs = [], [], [], []
        for q, shape in enumerate(shapes):
            func = (build or (lambda sh: matmul(*sh)))(shape)
            space = Space(func, T.template_for(func, device))
            rng = random.Random(seed + q)
            for _ in range(n_per_shape):
                d = space.sample(rng)
                sch = space.schedule(d)
                r = meas.measure(sch)
                if not r.ok:
                    continue
                xs.append(nest_features(sch.nest, meas.device))
                ks.append(knob_features(d))
                ts.append(r.time_s)
                gs.append(q)
        return np.array(xs), np.array(ks), ts, gs

    xtr, ktr, ttr, gtr = data(train_shapes, 0)
    xte, kte, tte, gte = data(test_shapes, 100)
    y = targets(ttr, gtr)
    out = {}
    kind = "matmul" if build is None else "conv2d"
    print(f"\n== 4. Model quality ({kind}) on {device}: trained on {len(ttr)} trials of {len(train_shapes)} shapes, "
          f"tested on "
          f"{len(tte)} of {len(test_shapes)} held-out shapes (per shape, then the median)")
    for name, model, feats in [("xgboost (rank), nest features", "xgboost", "nest"),
                               ("xgboost (rank), nest, no prior", "xgboost", "nest-np"),
                               ("xgboost (reg), nest features", "xgboost-reg", "nest"),
                               ("ridge, nest features", "ridge", "nest"),
                               ("xgboost (rank), raw knobs", "xgboost", "knobs"),
                               ("phase estimate alone (no model)", "estimate", "nest")]:
        xa, xb = (xtr, xte) if feats.startswith("nest") else (ktr, kte)
        if model == "estimate":
            pred = xb[:, PRIOR]
        else:
            m = make_model(model, prior=PRIOR if feats == "nest" else None).fit(xa, y, gtr)
            pred = m.predict(xb)
        sp, pw = [], []
        for g in sorted(set(gte)):
            idx = [i for i, x in enumerate(gte) if x == g]
            sp.append(spearman(pred[idx], [-tte[i] for i in idx]))
            pw.append(pairwise(pred[idx], [-tte[i] for i in idx]))
        out[name] = {"spearman": statistics.median(sp), "pairwise": statistics.median(pw)}
        print(f"   {name:<32} Spearman {out[name]['spearman']:.3f}   pairwise {out[name]['pairwise']:.3f}")
    return out


# ---- 5. transfer and 6. hardware matters ----------------------------------------------------------

def transfer(func, src: str, dst: str, trials: int, seeds: int, tmp: Path) -> dict:
    """Trials for ``dst`` to reach its from-scratch quality at ``trials`` (the default settings' median final
    best), from scratch and warm-started from a ``src`` log, three ways: the default (the phase estimate ranks
    the first batch); ``prior=False`` (AutoTVM's random first batch: the transferred model, margin included,
    ranks the warm run's first batch); and ``prior=False, margin=False`` (the trees alone: what the other
    device's trials carry without the estimate)."""
    log = tmp / f"transfer-{src}.jsonl"
    log.unlink(missing_ok=True)
    tune(func, SimulatedMeasurer(src), trials=trials, batch=16, seed=0, log=log)
    meas = SimulatedMeasurer(dst)
    label = f"{func.name} {'x'.join(str(a.extent) for a in func.block.axes)}"
    print(f"\n== 5. Transfer {src} -> {dst} ({label}, batches of 16): trials to reach the from-scratch quality "
          f"at {trials} trials (median of {seeds} seeds' final best), median over seeds")
    out = {"label": label, "src": src, "dst": dst, "budget": trials}
    goal = None
    for name, key, kw in (("prior", None, {}), ("random first batch", "random_first_batch", {"prior": False}),
                          ("trees alone", "trees_alone", {"prior": False, "margin": False})):
        scratch = [tune(func, meas, trials=trials, batch=16, seed=s, **kw).curve() for s in range(seeds)]
        warm = [tune(func, meas, trials=trials, batch=16, seed=s, transfer=[log], **kw).curve()
                for s in range(seeds)]
        if goal is None:                          # the default's from-scratch quality at the budget, for all three
            goal = statistics.median(c[-1] for c in scratch)
        hits = lambda cs: [next((i + 1 for i, c in enumerate(cv) if c and c <= goal), trials + 1)  # noqa: E731
                           for cv in cs]
        hs, hw = hits(scratch), hits(warm)
        r = {"goal_s": goal, "scratch_trials": statistics.median(hs), "warm_trials": statistics.median(hw),
             "scratch_per_seed": hs, "warm_per_seed": hw,
             "first_trial_ratio": {"scratch": _median_or_none([c[0] / goal for c in scratch if c[0]]),
                                   "warm": _median_or_none([c[0] / goal for c in warm if c[0]])}}
        if key is None:
            out.update(r)
        else:
            out[key] = r
        print(f"   {name:<20} goal {goal * 1e6:8.1f} us: from scratch {r['scratch_trials']:>5} (per seed {hs}), "
              f"warm-started {r['warm_trials']:>5} (per seed {hw}); first trial / goal (median of the seeds whose "
              f"first trial ran): scratch {_x(r['first_trial_ratio']['scratch'])}, "
              f"warm {_x(r['first_trial_ratio']['warm'])}")
    return out


def _median_or_none(xs) -> "float | None":
    return statistics.median(xs) if xs else None


def _x(v) -> str:
    return f"{v:.2f}x" if v is not None else "-"


def cross(func, a: str, b: str, trials: int) -> dict:
    ma, mb = SimulatedMeasurer(a), SimulatedMeasurer(b)
    ra, rb = tune(func, ma, trials=trials, batch=16).best, tune(func, mb, trials=trials, batch=16).best
    a_on_b = mb.measure(replay(func, ra["trace"]))
    b_on_a = ma.measure(replay(func, rb["trace"]))
    out = {"best": {a: ra["decisions"], b: rb["decisions"]},
           a: {"own_s": ra["result"]["time_s"], "other_s": b_on_a.time_s},
           b: {"own_s": rb["result"]["time_s"], "other_s": a_on_b.time_s}}
    print(f"\n== 6. Hardware matters ({func.name} {'x'.join(str(x.extent) for x in func.block.axes)}): best "
          f"decisions {a}: {ra['decisions']}, {b}: {rb['decisions']}")
    for dev, other in ((a, b), (b, a)):
        o = out[dev]["other_s"]
        print(f"   on {dev:<10} its own best {out[dev]['own_s'] * 1e6:9.1f} us; {other}'s best "
              + (f"{o * 1e6:9.1f} us ({o / out[dev]['own_s']:.2f}x)" if o else "fails (does not fit)"))
    return out


# ---- 7. the CPU ---------------------------------------------------------------------------------

def cpu(trials: int, rounds: int = 5) -> list:
    """Tune on the CPU, then re-measure the best and matmul v3 alternately ``rounds`` times (5 runs each):
    the ratio of the medians, and the noise = the larger spread (IQR / median) of the two sets of rounds."""
    from tinyml.compiler.tune.cpu import CpuMeasurer

    meas = CpuMeasurer(repeats=5)
    rows = []
    print(f"\n== 7. The real CPU: tuned generated matmul ({trials} trials) vs matmul v3, fp32; then {rounds} "
          f"alternating rounds of 5 runs each")
    for shape in ((1024, 1024, 1024), (2048, 2048, 512)):
        func = matmul(*shape, "fp32")
        t0, c0 = time.perf_counter(), time.process_time()
        res = tune(func, meas, trials=trials, batch=8, model="xgboost")
        best = res.best
        sch = replay(func, best["trace"])
        tt, tv = [], []
        for _ in range(rounds):
            tt.append(meas.measure(sch).time_s)
            tv.append(hand_baseline(func, meas)[1].time_s)
        spread = lambda xs: float((np.percentile(xs, 75) - np.percentile(xs, 25)) / np.median(xs))  # noqa: E731
        tuned, v3 = float(np.median(tt)), float(np.median(tv))
        noise = max(spread(tt), spread(tv))
        rows.append({"shape": shape, "tuned_s": tuned, "v3_s": v3, "noise": noise, "decisions": best["decisions"],
                     "tuned_rounds_s": tt, "v3_rounds_s": tv, "tuning_best_s": best["result"]["time_s"],
                     "tuning_noise": best["result"].get("noise"), "wall_s": time.perf_counter() - t0,
                     "cpu_s": time.process_time() - c0})
        print(f"   {'x'.join(map(str, shape)):<16} tuned {tuned * 1e3:8.1f} ms  matmul v3 {v3 * 1e3:8.1f} ms  "
              f"ratio {v3 / tuned:.2f}x  noise {noise:.1%}  (rounds: tuned "
              f"{', '.join(f'{x * 1e3:.0f}' for x in tt)}; v3 {', '.join(f'{x * 1e3:.0f}' for x in tv)} ms)")
    return rows


def _geomean(xs) -> "float | None":
    return float(np.exp(np.mean(np.log(xs)))) if xs else None


def hand_summary(hand: list, dev: str, kind: "str | None" = None) -> dict:
    """Wins / measured / geomean on ``dev`` (``kind``: gemm, conv or both). A workload counts as measured
    when either schedule runs: a tuned schedule that runs where the hand tiles fail is a win, the reverse
    a loss; where neither runs (out of toy's HBM) it is not measured."""
    hs = [h for h in hand if h["device"] == dev and (kind is None or _kind(h) == kind)]
    both = [h for h in hs if h.get("speedup")]
    hand_failed = [h for h in hs if h.get("outcome") == "hand failed"]
    tuned_failed = [h for h in hs if h.get("outcome") == "tuned failed"]
    wins = [h for h in both if h["speedup"] >= 1 - 1e-9] + hand_failed
    return {"rows": len(hs), "measured": len(both) + len(hand_failed) + len(tuned_failed), "wins": len(wins),
            "losses": [h["workload"] for h in both if h["speedup"] < 1 - 1e-9] + [h["workload"] for h in tuned_failed],
            "geomean": _geomean([h["speedup"] for h in both]),
            "range": (min(h["speedup"] for h in both), max(h["speedup"] for h in both)) if both else None}


def _kind(h) -> str:
    return h.get("kind") or ("gemm" if h["workload"].startswith("matmul") else "conv")


def targets_rows(c, hand, eff, q, tr, cr, cpu_rows, quick, qc=None) -> list:
    """The target table; a section this run (or the merged parts) did not measure is a SKIP row."""
    # judged on the run's own CPU seconds: the tuner is single-threaded (XGBoost with one thread, serial
    # kernels), so on 2 idle cores its wall time is its CPU time; on a shared machine the wall time is not
    rows = []
    if c:
        rows += [("512 simulated trials of one GEMM < 60 s (CPU s of the run)" if c["trials"] >= 512 else
                  f"{c['trials']} simulated trials (512 in the full run) < 60 s x {c['trials']}/512 (CPU s)",
                  f"{c['cpu_s']:.1f} CPU s (wall {c['total_s']:.1f} s)", c["cpu_s"] < 60 * c["trials"] / 512, True),
                 ("model retraining share of the run (issue: a small fraction)", f"{c['model_s'] / c['total_s']:.0%}",
                  c["model_s"] / c["total_s"] < 0.25, False),
                 (f"retraining share with retrain_growth {RETRAIN_GROWTH} (< 25%)",
                  f"{c['sparse']['model_s'] / c['sparse']['total_s']:.0%}",
                  c["sparse"]["model_s"] / c["sparse"]["total_s"] < 0.25, False)]
    else:
        rows.append(("cost: 512 simulated trials of one GEMM < 60 s", "not measured", None, False))
    hand = hand or []
    devs = [d for d in PRESETS if any(h["device"] == d for h in hand)]
    for dev in devs:
        s = hand_summary(hand, dev)
        parts = []
        for kind in ("gemm", "conv"):
            k = hand_summary(hand, dev, kind)
            if k["rows"]:
                parts.append(f"{kind} {k['wins']}/{k['measured']}" + (f" of {k['rows']}" if k["measured"] < k["rows"]
                                                                      else ""))
        gm = f", geomean {s['geomean']:.2f}x" if s["geomean"] else ""
        rows.append((f"{dev}: tuned >= hand on 90% of the {s['measured']} measured of {s['rows']} workloads",
                     f"{s['wins']}/{s['measured']} ({', '.join(parts)}){gm}" if s["measured"] else "none measured",
                     (s["wins"] >= 0.9 * s["measured"]) if s["measured"] else None, bool(s["measured"])))
    gms = {d: hand_summary(hand, d)["geomean"] for d in devs}
    gms = {d: g for d, g in gms.items() if g}
    best = max(gms, key=gms.get) if gms else None
    rows.append(("geomean speed-up >= 1.2x on at least one preset",
                 f"max {gms[best]:.2f}x ({best})" if gms else "not measured", (gms[best] >= 1.2) if gms else None,
                 bool(gms)))
    effs = [e for e in ([eff] + [eff[k] for k in ("rare", "conv") if eff.get(k)] if eff else [])
            if e.get("median_trials")]
    for e in effs:
        mt = e["median_trials"]
        rows.append((f"XGBoost needs <= 1/4 of random's trials to within 5% ({e['label']})",
                     f"evolutionary+xgboost {mt['evolutionary+xgboost']} vs random {mt['random+none']}"
                     + (f" (random first batch: {mt[k]})" if (k := "evolutionary+xgboost (random first batch)") in mt
                        else ""),
                     mt["evolutionary+xgboost"] * 4 <= mt["random+none"], not quick))
    if not effs:
        rows.append(("search efficiency", "not measured", None, False))
    if q:
        xq, kq = q["xgboost (rank), nest features"], q["xgboost (rank), raw knobs"]
        rows.append(("held-out Spearman >= 0.9 (xgboost rank, nest features)", f"{xq['spearman']:.3f}",
                     xq["spearman"] >= 0.9, not quick))
        rows.append(("held-out pairwise accuracy >= 0.85", f"{xq['pairwise']:.3f}", xq["pairwise"] >= 0.85,
                     not quick))
        rows.append(("nest features beat raw knobs (pairwise)", f"{xq['pairwise']:.3f} vs {kq['pairwise']:.3f}",
                     xq["pairwise"] > kq["pairwise"], not quick))
    else:
        rows.append(("held-out model quality (GEMMs)", "not measured", None, False))
    if qc:
        xc, kc = qc["xgboost (rank), nest features"], qc["xgboost (rank), raw knobs"]
        rows.append(("held-out conv2d layers: Spearman >= 0.9, pairwise >= 0.85; nest beats knobs",
                     f"{xc['spearman']:.3f} / {xc['pairwise']:.3f} (knobs {kc['spearman']:.3f} / {kc['pairwise']:.3f})",
                     xc["spearman"] >= 0.9 and xc["pairwise"] >= 0.85 and xc["pairwise"] > kc["pairwise"], True))
    if tr:
        # with the phase estimate ranking the first batch, a from-scratch run that needs 1 trial leaves
        # nothing to halve (INFO); the counted row is AutoTVM's setting, a random first batch, where the
        # transferred model is what ranks the first batch
        rows.append(("transfer, estimate-ranked first batch: warm <= half of from-scratch (INFO: "
                     "scratch needs 1)" if tr["scratch_trials"] <= 1 else
                     "transfer, estimate-ranked first batch: warm <= half of from-scratch trials",
                     f"{tr['warm_trials']} vs {tr['scratch_trials']}", tr["warm_trials"] * 2 <= tr["scratch_trials"],
                     False))
        rf = tr.get("random_first_batch")
        if rf:
            rows.append(("transfer, random first batch (prior=False): warm <= half of from-scratch trials",
                         f"{rf['warm_trials']} vs {rf['scratch_trials']}",
                         rf["warm_trials"] * 2 <= rf["scratch_trials"], True))
        ta = tr.get("trees_alone")
        if ta:
            rows.append(("transfer, trees alone (prior=False, margin=False): warm <= half of from-scratch",
                         f"{ta['warm_trials']} vs {ta['scratch_trials']}",
                         ta["warm_trials"] * 2 <= ta["scratch_trials"], False))
    else:
        rows.append(("transfer", "not measured (--quick)" if quick else "not measured", None, False))
    if cr:
        devs = [k for k in cr if k != "best"]
        differ = cr["best"][devs[0]] != cr["best"][devs[1]]
        costs = [cr[d]["other_s"] / cr[d]["own_s"] if cr[d]["other_s"] else float("inf") for d in devs]
        rows.append(("a100-40gb and m2-max bests differ; the other's best costs more",
                     f"differ: {differ}, {costs[0]:.2f}x / {costs[1]:.2f}x", differ and min(costs) > 1.0, True))
    else:
        rows.append(("hardware matters", "not measured", None, False))
    if cpu_rows:
        for r in cpu_rows:
            ok = r["tuned_s"] <= r["v3_s"] * (1 + r["noise"])
            rows.append((f"cpu {'x'.join(map(str, r['shape']))}: tuned <= matmul v3 within noise",
                         f"{r['v3_s'] / r['tuned_s']:.2f}x (noise {r['noise']:.0%})", ok, True))
    else:
        rows.append(("cpu 1024^3, 2048x2048x512: tuned vs matmul v3", "not run (--quick)" if quick else "not measured",
                     None, False))
    return rows


SECTIONS = ("cost", "hand-gemm", "hand-conv", "efficiency", "efficiency-rare", "efficiency-conv", "quality",
            "quality-conv", "transfer", "cross", "cpu")
QUICK_SECTIONS = ("cost", "hand-gemm", "hand-conv", "efficiency", "quality", "cross")
"""Sections ``--quick`` runs (small budgets); the others are full-mode only."""


def run_sections(sections, quick: bool, seeds: int, trials: int, presets, tmp: Path) -> dict:
    """Measure ``sections``; the result dict holds only what was measured, plus each section's cost."""
    out: dict = {"quick": quick, "seeds": seeds, "trials": trials, "sections": {}}
    for name in sections:
        t0, c0 = time.perf_counter(), time.process_time()
        if name == "cost":
            out["cost"] = cost(64 if quick else 512)
        elif name == "hand-gemm":
            gemms = [(f"matmul {m}x{n}x{k}", matmul(m, n, k)) for m, n, k in
                     ([(1, 4096, 4096), (128, 3072, 768), (2048, 11008, 4096)] if quick else GEMMS)]
            out.setdefault("hand", []).extend(beat_hand(gemms, presets, trials))
        elif name == "hand-conv":
            convs = [(f"conv2d C{cc} {h}x{h} F{f} k{k}/{s}", conv_func(cc, h, f, k, s, pd))
                     for cc, h, f, k, s, pd in (RESNET[2:3] if quick else RESNET)]
            out.setdefault("hand", []).extend(beat_hand(convs, presets, trials))
        elif name == "efficiency":
            out.setdefault("efficiency", {}).update(
                efficiency(matmul(512, 512, 512) if quick else matmul(2048, 2048, 2048), "a100-40gb", seeds,
                           48 if quick else 192))
        elif name == "efficiency-rare":      # toy: 934 of this space's 1,200 conv2d candidates overflow SRAM
            out.setdefault("efficiency", {})["rare"] = efficiency(conv2d(1, 32, 28, 28, 64, 3, 3, pad=1), "toy",
                                                                  seeds, 96, batch=8)
        elif name == "efficiency-conv":      # the full conv2d space of a ResNet-50 3x3 layer (2,520 candidates;
            # countable exhaustively since padded convolutions are counted one block per edge class)
            out.setdefault("efficiency", {})["conv"] = efficiency(conv2d(1, 64, 56, 56, 64, 3, 3, pad=1),
                                                                  "a100-40gb", seeds, 128, batch=8)
        elif name == "quality":
            shapes = [(128, 3072, 768), (2048, 4096, 4096), (16, 11008, 4096), (128, 768, 3072),
                      (2048, 2304, 768), (16, 4096, 11008)]
            out["quality"] = quality("a100-40gb", shapes[:2] if quick else shapes[:4],
                                     shapes[4:5] if quick else shapes[4:], 60 if quick else 150)
        elif name == "quality-conv":         # trained on 8 of ResNet-50's layers, tested on 4 others
            out["quality_conv"] = quality("a100-40gb", [RESNET[i] for i in (1, 2, 3, 6, 8, 10, 13, 16)],
                                          [RESNET[i] for i in (4, 12, 17, 22)], 100, build=lambda r: conv_func(*r))
        elif name == "transfer":
            out["transfer"] = transfer(matmul(2048, 2048, 2048), "a100-40gb", "m2-max", 96, seeds, tmp)
        elif name == "cross":
            out["cross"] = cross(matmul(1024, 1024, 1024) if quick else matmul(2048, 2048, 2048), "a100-40gb",
                                 "m2-max", 64 if quick else 192)
        elif name == "cpu":
            out["cpu"] = cpu(24)
        out["sections"][name] = {"cpu_s": round(time.process_time() - c0, 1),
                                 "wall_s": round(time.perf_counter() - t0, 1),
                                 "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                 **({"presets": list(presets)} if name.startswith("hand") else {})}
    return out


def compact_efficiency(eff: dict) -> dict:
    """Section 3 as the JSON keeps it: every space's trials to within 5% per seed; the curves (best so far
    over the best known, per trial) of the main space only (the docs plot them), to 4 decimals."""
    def one(e: dict, curves: bool) -> dict:
        e = dict(e)
        if "curves" in e:
            e["per_seed"] = {k: [next((i + 1 for i, c in enumerate(cv) if c and c <= 1.05), len(cv) + 1) for cv in cs]
                             for k, cs in e["curves"].items()}
            if curves:
                e["curves"] = {k: [[round(c, 4) if c else None for c in cv] for cv in cs]
                               for k, cs in e["curves"].items()}
            else:
                del e["curves"]
        return e

    out = one(eff, True)
    for k in ("rare", "conv"):
        if eff.get(k):
            out[k] = one(eff[k], False)
    return out


def merge(parts: list) -> dict:
    """Results of several ``--sections`` runs as one: sections merged (a later part wins on the same
    section; hand rows keyed by device and workload), every part of the same mode."""
    out: dict = {"sections": {}}
    hand: dict = {}
    for part in parts:
        for k in ("quick", "seeds", "trials"):
            if k in out and k in part and out[k] != part[k] and k != "trials":
                raise SystemExit(f"cannot merge: one part has {k}={out[k]!r}, another {part[k]!r}; "
                                 f"rerun the parts with the same settings")
            if k in part:
                out.setdefault(k, part[k])
        for k, v in part.items():
            if k in ("quick", "seeds", "trials", "targets", "failed", "note") or v is None or v == []:
                continue
            if k == "hand":
                for h in v:
                    hand[(h["device"], h["workload"])] = h
            elif k == "sections" and isinstance(v, dict):      # section 2's pieces keyed by their presets
                out[k].update({(f"{n} ({','.join(x['presets'])})" if x.get("presets") else n): x for n, x in v.items()})
            elif k == "efficiency" and isinstance(v, dict):
                out.setdefault(k, {}).update(v)
            else:
                out[k] = v
    order = {w: i for i, w in enumerate([f"matmul {m}x{n}x{k}" for m, n, k in GEMMS] + [
        f"conv2d C{cc} {h}x{h} F{f} k{k}/{s}" for cc, h, f, k, s, _ in RESNET])}
    out["hand"] = sorted(hand.values(), key=lambda h: (PRESETS.index(h["device"]) if h["device"] in PRESETS else 9,
                                                       order.get(h["workload"], 1 << 20)))
    return out


def main(argv=None) -> int:
    import json
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI smoke: small budgets, a few workloads, 3 seeds")
    p.add_argument("--seeds", type=int, default=None, help="seeds per random search (default 10, quick 3)")
    p.add_argument("--trials", type=int, default=None, help="trials per tuning in section 2 (default 128, quick 32)")
    p.add_argument("--sections", default=None,
                   help=f"comma-separated sections to run (default: all; quick: {','.join(QUICK_SECTIONS)}); "
                        f"of {','.join(SECTIONS)}")
    p.add_argument("--presets", default=None,
                   help=f"presets for hand-gemm / hand-conv (default {','.join(PRESETS)}; quick a100-40gb)")
    p.add_argument("--skip-cpu", action="store_true", help="skip section 7 (the real CPU)")
    p.add_argument("--merge", nargs="+", metavar="PART", help="merge the JSON of --sections runs (no measuring), "
                   "print the targets over all of them, and write --json")
    p.add_argument("--note", default=None, help="a note stored in the JSON (the docs page prints it)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)
    if args.merge:
        res = merge([json.loads(Path(f).read_text()) for f in args.merge])
        quick = bool(res.get("quick"))
        print(f"merged {len(args.merge)} part(s): sections " + ", ".join(
            f"{k} ({v.get('cpu_s', '?')} CPU s, {v.get('finished', '?')})" for k, v in res["sections"].items()))
        if res.get("hand"):
            _print_losses(res["hand"])
    else:
        quick = args.quick
        seeds = args.seeds or (3 if quick else 10)
        trials = args.trials or (32 if quick else 128)
        sections = [x.strip() for x in args.sections.split(",")] if args.sections else list(
            QUICK_SECTIONS if quick else SECTIONS)
        bad = [x for x in sections if x not in SECTIONS]
        if bad:
            p.error(f"unknown section(s) {', '.join(bad)}; choose from {','.join(SECTIONS)}")
        if quick:
            sections = [x for x in sections if x in QUICK_SECTIONS]
        if args.skip_cpu:
            sections = [x for x in sections if x != "cpu"]
        presets = [x.strip() for x in args.presets.split(",")] if args.presets else (
            ["a100-40gb"] if quick else list(PRESETS))
        bad = [x for x in presets if x not in PRESETS]
        if bad:
            p.error(f"unknown preset(s) {', '.join(bad)}; choose from {','.join(PRESETS)}")
        res = run_sections(sections, quick, seeds, trials, presets, Path(tempfile.mkdtemp(prefix="bench-tune-")))
    if args.note:
        res["note"] = args.note
    rows = targets_rows(res.get("cost"), res.get("hand"), res.get("efficiency"), res.get("quality"),
                        res.get("transfer"), res.get("cross"), res.get("cpu"), quick, res.get("quality_conv"))
    failed = report_targets(rows, width=78, note="quick mode: efficiency and model-quality rows are INFO "
                                                 "(budgets too small to judge)" if quick else None)
    print(f"\n{verdict(failed)}")
    if args.json:                            # every section's key present (None / [] where not measured)
        keys = ("cost", "hand", "efficiency", "quality", "quality_conv", "transfer", "cross", "cpu")
        res = {**{k: [] if k in ("hand", "cpu") else None for k in keys}, **res}
        if res["efficiency"]:
            res["efficiency"] = compact_efficiency(res["efficiency"])
        write_json(args.json, {k: v for k, v in res.items() if k not in ("targets", "failed")}, rows, failed)
        _one_line_number_lists(Path(args.json))
    return 1 if failed else 0


def _one_line_number_lists(path: Path) -> None:
    """Rewrite ``path`` with every list of numbers on one line (the curves are ~13,000 numbers: one per
    line, the file would be ~4x larger); the JSON is the same."""
    import json
    import re

    text = path.read_text()
    num = r"(?:-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|null)"
    out = re.sub(rf"\[\s*{num}(?:\s*,\s*{num})*\s*\]", lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "),
                 text)
    assert json.loads(out) == json.loads(text)
    path.write_text(out)


if __name__ == "__main__":
    sys.exit(main())
