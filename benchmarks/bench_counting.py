"""Counting-mode benchmark: shapes at the limit of a simulated GPU, costed in seconds and bounded memory.

Counting mode (``tinyml.sim.meta`` inputs) walks one representative block per
class of identical blocks and one tile of each kind, and the cost model works on
runs of identical blocks (``tinyml.sim.classes``), so its time and host memory
follow the number of *distinct* blocks, not the grid or the sequence::

    python benchmarks/bench_counting.py            # full: + a 113,000^3 naive matmul (edge blocks)
    python benchmarks/bench_counting.py --quick    # CI smoke: the same targets, fewer cases
    python benchmarks/bench_counting.py --json out.json

Cases (each in a fresh process, after a small warm-up call of the same kernel
so that Numba's compile or cache load is not timed):

* attention, 10,000,000 tokens, batch 1, 4 heads, head_dim 64, fp16 on
  a100-40gb, causal and not: FlashAttention-1 and -2 must be costed; standard
  attention must stop with a clean ``HbmOutOfMemoryError`` (its N x N scores
  need 800 TB);
* matmul 100,000^3 fp16 on a100-80gb (three 20 GB matrices fit in 80 GB):
  naive (39 million blocks), SRAM-tiled and tensor-core versions;
* softmax (fused, v3) over 1,000,000 rows of 2,048, fused elementwise
  ``gelu(x + bias)`` over 65,536 x 16,384 (its classes are per tile row: a
  broadcast operand's reads depend on the row), and decoding attention of 4
  sequences over a 1,000,000-token KV cache (32 heads, 8 kv heads, d = 128),
  all fp16 on a100-80gb;
* backward passes whose small kernels once filled a counter row per block:
  standard attention's row kernels (mask, softmax, dropout) over 64 x 128
  (batch, head) pairs of 500 x 500 scores in row blocks of 3 (1.4 million
  blocks each), and FlashAttention-2's backward at 2,000,003 tokens, 16 query
  heads on 4 kv heads, 16 x 16 tiles (preprocess and dq-convert 2.0 million
  blocks each, the GQA reduction 0.5 million), fp16 on a100-80gb. A case's
  record sums every kernel it launched (blocks, simulated time).

Measured per case: wall time of the call and the process's peak resident set
(``resource.getrusage``), also as the growth over the peak after the warm-up.
Targets: every case within ``TIME_BUDGET_S`` seconds and ``RSS_BUDGET_MB`` of
peak RSS. Every target prints PASS or FAIL; the exit code is 1 if any fails.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:            # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from _report import report_targets, verdict, write_json  # noqa: E402

TIME_BUDGET_S = 10.0
RSS_BUDGET_MB = 1024.0
SEQ = 10_000_000
HEADS = 4
HEAD_DIM = 64
MATMUL = 100_000

CASES = {
    # name: (kernel, shape, causal, device, expected outcome)
    "standard 10M tokens": ("standard", SEQ, False, "a100-40gb", "oom"),
    "flash1 10M tokens": ("flash1", SEQ, False, "a100-40gb", "cost"),
    "flash1 10M tokens causal": ("flash1", SEQ, True, "a100-40gb", "cost"),
    "flash2 10M tokens": ("flash2", SEQ, False, "a100-40gb", "cost"),
    "flash2 10M tokens causal": ("flash2", SEQ, True, "a100-40gb", "cost"),
    "matmul naive 100000^3": ("naive", MATMUL, False, "a100-80gb", "cost"),
    "matmul tiled 100000^3": ("tiled", MATMUL, False, "a100-80gb", "cost"),
    "matmul mma 100000^3": ("mma", MATMUL, False, "a100-80gb", "cost"),
    "matmul naive 113000^3": ("naive", 113_000, False, "a100-80gb", "cost"),
    "softmax 1M rows": ("softmax", 1_000_000, False, "a100-80gb", "cost"),
    "elementwise 65536 x 16384": ("elementwise", 65_536, False, "a100-80gb", "cost"),
    "decode 1M-token cache": ("decode", 1_000_000, False, "a100-80gb", "cost"),
    "standard fwd+bwd 1.4M row blocks": ("standard_bwd", 500, True, "a100-80gb", "cost"),
    "flash2 fwd+bwd GQA 2M tokens": ("flash2_bwd", 2_000_003, False, "a100-80gb", "cost"),
}
QUICK = [name for name in CASES if "113000" not in name]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # Linux: kilobytes


def _call(kernel: str, size: int, causal: bool):
    from tinyml.sim import meta

    if kernel in ("naive", "tiled", "mma"):
        from tinyml.kernels.matmul import matmul

        return matmul(meta((size, size)), meta((size, size)), version=kernel)
    if kernel == "softmax":
        from tinyml.kernels.softmax import softmax

        return softmax(meta((size, 2048)), version=3)
    if kernel == "elementwise":
        from tinyml.kernels.fusion import fused_elementwise

        return fused_elementwise(["add", "gelu"], [meta((size, 16_384)), meta((16_384,))])
    if kernel == "decode":
        from tinyml.kernels.attention import decode_attention

        return decode_attention(meta((4, 32, 1, 128)), meta((4, 8, size, 128)), meta((4, 8, size, 128)),
                                cache_len=size, split_kv=1)
    from tinyml.kernels.attention.flash import flash_attention, flash_attention_backward
    from tinyml.kernels.attention.standard import standard_attention, standard_attention_backward

    if kernel == "standard_bwd":            # 64 x 128 heads, row blocks of 3 rows
        shape = (64, 128, size, 8)
        o, saved = standard_attention(meta(shape), meta(shape), meta(shape), causal=causal, dropout_p=0.1,
                                      return_saved=True, block_rows=3)
        return standard_attention_backward(meta(o.shape), saved)
    if kernel == "flash2_bwd":              # 16 query heads on 4 kv heads, 16 x 16 tiles
        q, kv = meta((1, 16, size, HEAD_DIM)), meta((1, 4, size, HEAD_DIM))
        o, saved = flash_attention(q, kv, kv, version=2, causal=causal, block_q=16, block_k=16, return_saved=True)
        return flash_attention_backward(meta(o.shape), saved)

    shape = (1, HEADS, size, HEAD_DIM)
    q, k, v = meta(shape), meta(shape), meta(shape)
    if kernel == "standard":
        return standard_attention(q, k, v, causal=causal)
    return flash_attention(q, k, v, version=int(kernel[-1]), causal=causal)


def run_case(name: str) -> dict:
    """Run one case in this process (the child's side) and return what it measured."""
    from tinyml.sim import HbmOutOfMemoryError, Profile

    kernel, size, causal, device, expect = CASES[name]
    with Profile(device):
        _call(kernel, 64, causal)                      # warm-up: Numba compile / cache load
    warm_rss = _rss_mb()
    t0 = time.perf_counter()
    outcome, record = "cost", None
    try:
        with Profile(device) as prof:
            _call(kernel, size, causal)
        recs = prof.records                            # one kernel, or a forward and backward's several
        record = {"kernel": recs[0].name if len(recs) == 1 else f"{len(recs)} kernels",
                  "n_blocks": sum(r.n_blocks for r in recs), "time_s": sum(r.time_s for r in recs),
                  "bound": recs[0].bound, "hbm_bytes": sum(r.hbm_bytes for r in recs),
                  "flops": sum(r.flops for r in recs)}
    except HbmOutOfMemoryError as err:
        outcome, record = "oom", {"error": str(err).splitlines()[0]}
    wall = time.perf_counter() - t0
    peak = _rss_mb()
    return {"case": name, "expect": expect, "outcome": outcome, "wall_s": wall, "peak_rss_mb": peak,
            "rss_growth_mb": peak - warm_rss, "record": record}


def measure(name: str) -> dict:
    """Run one case in a fresh process (so its peak RSS is its own)."""
    out = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        return {"case": name, "expect": CASES[name][4], "outcome": "crash", "wall_s": float("nan"),
                "peak_rss_mb": float("nan"), "rss_growth_mb": float("nan"),
                "record": {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "no output"}}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke: skip the 113,000^3 case")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    ap.add_argument("--case", help=argparse.SUPPRESS)                # the child's side
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0

    names = QUICK if args.quick else list(CASES)
    print(f"Counting mode at the limit: attention {SEQ:,} tokens x {HEADS} heads x d={HEAD_DIM} (a100-40gb), "
          f"matmul {MATMUL:,}^3 (a100-80gb); fp16\n")
    print(f"{'case':<34} {'outcome':>8} {'wall s':>8} {'peak RSS MB':>12} {'growth MB':>10} "
          f"{'blocks':>12} {'simulated s':>12}")
    results, rows = [], []
    for name in names:
        r = measure(name)
        results.append(r)
        rec = r["record"] or {}
        print(f"{name:<34} {r['outcome']:>8} {r['wall_s']:>8.2f} {r['peak_rss_mb']:>12.0f} "
              f"{r['rss_growth_mb']:>10.0f} {rec.get('n_blocks', '-'):>12} "
              f"{rec['time_s'] if 'time_s' in rec else '-':>12}", flush=True)
        if r["outcome"] != "cost":
            print(f"{'':<34} {rec.get('error', '')}")
        rows.append((f"{name}: {'HbmOutOfMemoryError' if r['expect'] == 'oom' else 'costed'}", r["outcome"],
                     r["outcome"] == r["expect"], True))
        rows.append((f"{name}: wall <= {TIME_BUDGET_S:g} s", f"{r['wall_s']:.2f} s",
                     r["wall_s"] <= TIME_BUDGET_S, True))
        rows.append((f"{name}: peak RSS <= {RSS_BUDGET_MB:g} MB", f"{r['peak_rss_mb']:.0f} MB",
                     r["peak_rss_mb"] <= RSS_BUDGET_MB, True))
    failed = report_targets(rows)
    print(f"\n{verdict(failed)}")
    if args.json:
        write_json(args.json, {"cases": results}, rows, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
