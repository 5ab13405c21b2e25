"""Memory-planning benchmark: how close the arena comes to LOAD, and how fast planning is.

For every zoo model and every ONNX model of onnx's backend test data
(``onnx/backend/test/data/light/``: AlexNet, DenseNet-121, Inception v1/v2,
ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512, when the ``onnx`` package
is installed and tinyml's importer exists), fused and planned with
``plan_memory``::

    python benchmarks/bench_memory_plan.py              # full: zoo at GPT-2 small sizes + ONNX models
    python benchmarks/bench_memory_plan.py --quick      # CI smoke: 2-layer tiny GPT, the same targets
    python benchmarks/bench_memory_plan.py --json out.json

Columns: intermediates planned; naive bytes (every intermediate its own
allocation, no reuse); arena bytes; LOAD (the most bytes live at one kernel
launch, a lower bound of any arena); arena / LOAD; planning wall time (best of
3, the liveness analysis included, fusion not). Targets, per model:
arena / LOAD <= 1.05 and planning < 1 s. Zoo models are planned for n up to
``--seq`` (default 2048) with shape-only weights; the ONNX models have fixed shapes.

Every target prints PASS or FAIL; the exit code is 1 if any fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:            # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from tinyml.compiler import cse, dead_code, fuse, rewrite_attention, zoo  # noqa: E402
from tinyml.compiler.passes.plan_memory import build_plan  # noqa: E402

TARGETS = {"ratio": 1.05, "plan_s": 1.0}


def zoo_models(quick: bool) -> list:
    """(name, graph, bounds): the zoo at GPT-2 small sizes (tiny GPT: 12 layers, 2 with --quick)."""
    layers = 2 if quick else 12
    out = []
    for name in zoo.names():
        kw = {"layers": layers} if name == "tiny_gpt" else {}
        g = zoo.get(name, weights="meta", **kw)
        label = f"{name} ({layers} layers)" if name == "tiny_gpt" else name
        out.append((label, fuse(rewrite_attention(dead_code(cse(g))))))
    return out


def onnx_models() -> "tuple[list, str]":
    """(name, fused graph) of every model in onnx's light backend test data, and a note if none."""
    try:
        import onnx
    except ImportError:
        return [], "onnx is not installed (pip install 'tinyml[onnx]'): ONNX models skipped"
    try:
        from tinyml.compiler.onnx import from_onnx
    except ImportError:
        return [], "tinyml.compiler.onnx is missing: ONNX models skipped"
    folder = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "light"
    files = sorted(folder.glob("*.onnx"))
    if not files:
        return [], f"no .onnx files in {folder}: ONNX models skipped"
    return [(f.stem.removeprefix("light_"), fuse(from_onnx(str(f)))) for f in files], ""


def measure(name: str, graph, seq: int, rounds: int) -> dict:
    bounds = {s: seq for s in graph.symbols}
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        plan = build_plan(graph, bounds)
        times.append(time.perf_counter() - t0)
    naive = sum(b.nbytes for b in plan.buffers)
    return {"model": name, "intermediates": len(plan.buffers), "naive_bytes": int(naive),
            "arena_bytes": int(plan.arena_bytes), "load_bytes": int(plan.load_bytes),
            "ratio": plan.ratio, "plan_s": min(times), "bounds": bounds,
            "ok": plan.ratio <= TARGETS["ratio"] and min(times) < TARGETS["plan_s"]}


def _mb(b: int) -> str:
    return f"{b / 1e6:,.2f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2-layer tiny GPT, one timing round (CI smoke)")
    p.add_argument("--seq", type=int, default=2048, help="the bound of n for the zoo models (default 2048)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)

    print(f"tinyml memory-planning benchmark{' (--quick)' if args.quick else ''}: greedy by size, "
          f"zoo models planned for n <= {args.seq}")
    models = zoo_models(args.quick)
    onnx, note = onnx_models()
    rounds = 1 if args.quick else 3
    rows = [measure(name, g, args.seq, rounds) for name, g in models + onnx]
    head = (f"   {'':6}{'model':<26}{'values':>7}{'naive MB':>12}{'arena MB':>11}{'LOAD MB':>11}"
            f"{'arena/LOAD':>11}{'plan ms':>9}")
    print(head)
    for r in rows:
        print(f"   {'PASS' if r['ok'] else 'FAIL':<6}{r['model']:<26}{r['intermediates']:>7}{_mb(r['naive_bytes']):>12}"
              f"{_mb(r['arena_bytes']):>11}{_mb(r['load_bytes']):>11}{r['ratio']:>11.3f}{r['plan_s'] * 1e3:>9.1f}")
    if note:
        print(f"   INFO  {note}")
    failed = sum(not r["ok"] for r in rows)
    print(f"\ntargets: arena/LOAD <= {TARGETS['ratio']} and planning < {TARGETS['plan_s']:g} s for every model: "
          f"{'PASS' if not failed else f'FAIL ({failed} of {len(rows)})'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seq": args.seq, "targets": TARGETS, "models": rows,
                                               "note": note}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
