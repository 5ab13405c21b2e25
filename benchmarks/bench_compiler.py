"""Compiler benchmark: what fusion and the attention rewrite buy on a GPT-2 block, and compile speed.

Everything is measured in one run and checked against targets::

    python benchmarks/bench_compiler.py              # full run (about 10 s once Numba's cache is warm)
    python benchmarks/bench_compiler.py --quick      # CI smoke: the same targets, one timing round
    python benchmarks/bench_compiler.py --json out.json

1. GPT-2 small's block (d = 768, 12 heads) at n = 1024 tokens, fp16, on the
   simulated A100 (``a100-40gb``), counting mode: lowered op by op (every node
   its own kernel, as eager PyTorch runs it) vs compiled (cse, dead_code,
   rewrite_attention, fuse: one kernel per fused group), and the numbers after
   every pass. Targets: >= 3x fewer simulated HBM bytes, >= 2x less simulated time.
2. Wall time of ``compile(tiny_gpt(layers=12), explain=False)`` at GPT-2 small
   sizes (passes + lowering; the zoo building its 124M seeded random weights is
   timed apart and reported as INFO). Target: < 5 s.
3. The tiny GPT at GPT-2 small sizes (12 layers, shape-only weights) through
   the whole pipeline (``passes="all"``: fusion, attention rewrite, int4-g32
   weights, memory plan for n <= 1024), at n = 1024 (prefill) and n = 1 (one
   decoding step): kernels, HBM bytes, simulated time, arena and peak HBM after
   every stage. Targets: the pipeline moves >= 2.5x fewer HBM bytes than op by op
   at n = 1024; int4 weights make the n = 1 step >= 2x faster than fp16 ones.

Every target prints PASS or FAIL; the exit code is 1 if any fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:            # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from _report import report_targets, verdict, write_json  # noqa: E402  (benchmarks/ is on sys.path as the script's folder)

from tinyml.compiler import compile, lower, zoo  # noqa: E402
from tinyml.inference.step import graph_seconds  # noqa: E402
from tinyml.sim import load_device  # noqa: E402

DEVICE = "a100-40gb"
SEQ = 1024
TARGETS = {
    "bytes_ratio": 3.0,        # compiled moves >= 3x fewer HBM bytes than op by op
    "time_ratio": 2.0,         # and takes >= 2x less simulated time
    "compile_s": 5.0,          # compiling the 12-layer tiny GPT takes < 5 s
    "pipeline_bytes_ratio": 2.5,   # the whole pipeline vs op by op, tiny GPT at n = 1024
    "decode_quant_speedup": 2.0,   # int4 weights vs fp16 weights, tiny GPT at n = 1, one CUDA graph
}


def gpt2_block() -> dict:
    """Op by op vs compiled, and every step's numbers, at n = SEQ."""
    g = zoo.get("gpt2_block")
    c = compile(g, device=DEVICE, dtype="fp16", bindings={"n": SEQ})
    out = {}
    for label, plan in (("op_by_op", lower(g, fused=False)), ("compiled", c.plan)):
        _, prof = plan.run(bindings={"n": SEQ}, device=DEVICE, dtype="fp16", count=True)
        out[label] = {"kernels": len(prof.records), "hbm_bytes": int(prof.hbm_bytes), "time_s": prof.time_s,
                      "flops": int(prof.flops_matmul + prof.flops_vector), "bound": prof.bound}
    out["steps"] = [s.to_dict() for s in c.steps]
    out["bytes_ratio"] = out["op_by_op"]["hbm_bytes"] / out["compiled"]["hbm_bytes"]
    out["time_ratio"] = out["op_by_op"]["time_s"] / out["compiled"]["time_s"]
    return out


def compile_speed(rounds: int) -> dict:
    t0 = time.perf_counter()
    g = zoo.get("tiny_gpt", layers=12)
    build = time.perf_counter() - t0
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        c = compile(g, device=DEVICE, explain=False)
        times.append(time.perf_counter() - t0)
    prof = c.profile({"n": SEQ})                                       # what the compiled model costs
    return {"layers": 12, "nodes": len(g.nodes), "groups": len(c.graph.groups), "kernels": len(prof.records),
            "hbm_bytes": int(prof.hbm_bytes), "time_s": prof.time_s, "build_s": build,
            "compile_s": min(times), "rounds": rounds}


def pipeline() -> dict:
    """The tiny GPT (GPT-2 small sizes) through passes="all": every stage at n = SEQ and n = 1."""
    g = zoo.get("tiny_gpt", layers=12, weights="meta")
    out = {}
    for n in (SEQ, 1):
        c = compile(g, device=DEVICE, passes="all", bindings={"n": n}, bounds={"n": SEQ})
        out[f"n={n}"] = [s.to_dict() for s in c.steps]
    by = {s["pass"]: s for s in out["n=1"]}
    out["bytes_ratio"] = out[f"n={SEQ}"][0]["hbm_bytes"] / out[f"n={SEQ}"][-1]["hbm_bytes"]
    fp16, int4 = by["rewrite_attention"], by["quantize_weights"]
    # a decoding step of a 124M model is mostly launches when each kernel is launched on its own (87 kernels
    # x 5 us); replayed as one CUDA graph, as gpt-fast and vLLM decode, it is the weights' bytes again
    # (the kernels' times less their launch overhead, plus one: tinyml decode's graph timing)
    launch = load_device(DEVICE).launch_overhead_s

    def graph_s(step):
        return graph_seconds(step["time_s"], step["kernels"], launch)

    out["decode_quant_speedup_eager"] = fp16["time_s"] / int4["time_s"]
    out["decode_launches_s"] = int4["kernels"] * launch                # of the int4 step's eager time
    out["decode_int4_s"] = int4["time_s"]
    out["decode_quant_speedup"] = graph_s(fp16) / graph_s(int4)
    return out


def targets(block: dict, speed: dict, pipe: dict) -> list:
    return [
        ("gpt2 block n=1024: >= 3x fewer HBM bytes than op by op", f"{block['bytes_ratio']:.2f}x",
         block["bytes_ratio"] >= TARGETS["bytes_ratio"], True),
        ("gpt2 block n=1024: >= 2x less simulated time than op by op", f"{block['time_ratio']:.2f}x",
         block["time_ratio"] >= TARGETS["time_ratio"], True),
        ("compile tiny_gpt (12 layers, explain off) < 5 s", f"{speed['compile_s']:.3f} s",
         speed["compile_s"] < TARGETS["compile_s"], True),
        ("tiny_gpt n=1024, all passes: >= 2.5x fewer HBM bytes than op by op", f"{pipe['bytes_ratio']:.2f}x",
         pipe["bytes_ratio"] >= TARGETS["pipeline_bytes_ratio"], True),
        ("tiny_gpt n=1 (decode), as one CUDA graph: int4-g32 weights >= 2x faster than fp16",
         f"{pipe['decode_quant_speedup']:.2f}x", pipe["decode_quant_speedup"] >= TARGETS["decode_quant_speedup"], True),
        (f"the same, a launch per kernel (launches {pipe['decode_launches_s'] * 1e6:.0f} us of the int4 step's "
         f"{pipe['decode_int4_s'] * 1e6:.0f} us)", f"{pipe['decode_quant_speedup_eager']:.2f}x", True, False),
        ("zoo builds tiny_gpt's 124M random weights (not compile)", f"{speed['build_s']:.2f} s", True, False),
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one timing round (CI smoke); the same targets")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)

    print(f"tinyml compiler benchmark{' (--quick)' if args.quick else ''}")
    block = gpt2_block()
    print(f"\n1. GPT-2 block (d=768, 12 heads), n={SEQ}, fp16, {DEVICE}, counting mode")
    print(f"   {'after pass':<20}{'nodes':>7}{'groups':>8}{'kernels':>9}{'HBM MB':>10}{'time us':>10}")
    for s in block["steps"]:
        print(f"   {s['pass']:<20}{s['nodes']:>7}{s['groups']:>8}{s['kernels']:>9}"
              f"{s['hbm_bytes'] / 1e6:>10.1f}{s['time_s'] * 1e6:>10.1f}")
    for label in ("op_by_op", "compiled"):
        r = block[label]
        print(f"   {label:<10} {r['kernels']:>3} kernels  {r['hbm_bytes'] / 1e6:8.1f} MB  "
              f"{r['time_s'] * 1e6:8.1f} us  ({r['bound']}-bound)")
    speed = compile_speed(1 if args.quick else 3)
    print(f"\n2. compile(tiny_gpt(layers=12), explain=False): {speed['nodes']} nodes -> {speed['groups']} groups; "
          f"best of {speed['rounds']}: {speed['compile_s']:.3f} s (building the model: {speed['build_s']:.2f} s)")
    print(f"   compiled, at n={SEQ}: {speed['kernels']} kernels, {speed['hbm_bytes'] / 1e9:.2f} GB, "
          f"{speed['time_s'] * 1e3:.2f} ms on {DEVICE}")

    pipe = pipeline()
    print(f"\n3. tiny GPT (GPT-2 small sizes, 12 layers), passes='all' (int4-g32, plan for n <= {SEQ}), {DEVICE}")
    for key in (f"n={SEQ}", "n=1"):
        print(f"   {key}: {'stage':<18}{'kernels':>8}{'HBM MB':>10}{'time us':>10}{'arena MB':>10}{'peak MB':>9}")
        for s in pipe[key]:
            arena = f"{s['arena_bytes'] / 1e6:.1f}" if "arena_bytes" in s else "-"
            print(f"   {'':<{len(key) + 2}}{s['pass']:<18}{s['kernels']:>8}{s['hbm_bytes'] / 1e6:>10.1f}"
                  f"{s['time_s'] * 1e6:>10.1f}{arena:>10}{s['peak_hbm_bytes'] / 1e6:>9.1f}")

    rows = targets(block, speed, pipe)
    failed = report_targets(rows, width=62)
    print(f"\n{verdict(failed)}")
    if args.json:
        write_json(args.json, {"device": DEVICE, "seq": SEQ, "gpt2_block": block, "compile": speed,
                               "pipeline": pipe}, rows, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
