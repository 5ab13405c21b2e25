"""Matmul benchmark: real CPU speed, simulated A100 traffic, counting and import time.

Everything is measured side by side in one run and checked against targets::

    python benchmarks/bench_matmul.py                # full run (about 30 s on 2 cores)
    python benchmarks/bench_matmul.py --quick        # CI smoke: small CPU sizes
    python benchmarks/bench_matmul.py --json out.json

1. CPU: GFLOP/s of ``tinyml.kernels.matmul.matmul(a, b, version=v, dtype="fp32")``
   for v = 1, 2, 3 (the whole public call: validation, HBM ledger, Numba body,
   cost model) next to NumPy's BLAS ``a @ b``, at 1024^3 fp32. Best of N rounds
   after a warm-up call (JIT compile / cache load excluded); the variants run
   interleaved, in a rotating order, so machine noise hits them all alike, each
   after a short pause (``--settle``) that lets the previous variant's spinning
   BLAS/OpenMP worker threads go idle. The ratios to BLAS are given from the
   best times and as the median of the per-round ratios. v1 takes seconds, so
   it is timed once (stated in the output).
2. Simulated A100 (``Profile("a100-40gb")``), counting mode, 4096^3 fp16:
   time, HBM bytes (after L2 reuse, and the raw pre-L2 reads), bound.
3. Wall time of counting a 16384^3 fp16 matmul with each version.
4. Wall time of ``python -c "import tinyml"`` in a subprocess.

Then every target prints PASS or FAIL; the exit code is 1 if any fails.
With ``--quick`` the CPU speed ratios are printed as INFO (small sizes on a
shared CI runner say little about speed); the other targets still count.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:            # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from _report import build_line, parallel_build, report_targets, verdict, write_json  # noqa: E402  (benchmarks/ is on sys.path as the script's folder)

parallel_build(__name__ == "__main__")  # full runs: its CPU section times the kernels on every core

from tinyml.kernels.matmul import choose_tiles, matmul  # noqa: E402
from tinyml.sim import Profile, TinymlError, load_device, meta  # noqa: E402

DEVICE = "a100-40gb"
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_DISABLE_JIT")

# thresholds of the targets, checked in ``targets``
TARGETS = {
    "v3_vs_blas": 0.70,        # v3 GFLOP/s >= 70% of BLAS
    "v2_vs_blas": 0.25,        # v2 GFLOP/s >= 25% of BLAS
    "v1_vs_blas": 1 / 50,      # v1 GFLOP/s <= 1/50 of BLAS
    "hbm_reduction": 50.0,     # tiled moves >= 50x fewer HBM bytes than naive
    "count_16384_s": 1.0,      # counting a 16384^3 matmul takes < 1 s
    "import_s": 1.0,           # python -c "import tinyml" takes < 1 s
}


# ---------------------------------------------------------------------------- environment

def cpu_model() -> str:
    model, family, mod = platform.processor() or "unknown CPU", None, None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name":
                model = value
            elif key == "cpu family" and family is None:
                family = value
            elif key == "model" and mod is None:
                mod = value
    except OSError:
        pass
    return f"{model} (family {family}, model {mod})" if family else model


def print_environment(env: dict, numba_note: str = "") -> None:
    """The header every CPU benchmark prints: CPU, library versions, BLAS, thread variables, load."""
    print(f"   CPU: {env['cpu']}, {env['cores']} cores; Python {env['python']}, NumPy {env['numpy']}, "
          f"SciPy {env['scipy']}, Numba {env['numba']}{numba_note}")
    for line in env["blas"]:
        print(f"   BLAS: {line}")
    set_vars = ", ".join(f"{k}={v}" for k, v in env["env"].items() if v is not None)
    print(f"   env: {set_vars or 'none of ' + ', '.join(ENV_VARS) + ' is set'}")
    if env["loadavg_start"]:
        print(f"   load average at start: {', '.join(f'{x:.2f}' for x in env['loadavg_start'])}")


def environment() -> dict:
    import numba
    import scipy
    from threadpoolctl import threadpool_info

    try:                                     # load the BLAS v3 calls (SciPy's), so it is listed too
        from tinyml.kernels._mma import sgemm
        sgemm()
    except ImportError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    blas = []
    for info in threadpool_info():
        if info.get("user_api") == "blas":
            lib = Path(info.get("filepath", ""))
            blas.append(f"{info.get('internal_api')} {info.get('version')} ({info.get('architecture')}, "
                        f"{info.get('num_threads')} threads, {lib.parent.name}/{lib.name})")
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "blas": blas,
        "env": {k: os.environ.get(k) for k in ENV_VARS},
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# ---------------------------------------------------------------------------- 1. CPU speed

def timed(fn, settle: float = 0.0) -> float:
    """Wall time of one call of ``fn``, after ``settle`` seconds of sleep (see ``cpu_speed``)."""
    if settle:
        time.sleep(settle)
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def mma_shape(blocks: dict) -> str:
    """The sgemm sub-product v3 issues for one tile product, e.g. '128x128x32'."""
    from tinyml.kernels import _mma
    return "x".join(str(x) for x in _mma.sub_shape(blocks["block_m"], blocks["block_n"], blocks["block_k"]))


def cpu_speed(n: int, rounds: int, v1_n: int, blocks: "dict | None", settle: float) -> dict:
    """Best-of-``rounds`` GFLOP/s of BLAS, v2, v3 at n^3; v1 once at v1_n^3.

    Each timed call starts after ``settle`` seconds of sleep: after a call,
    OpenBLAS's worker threads busy-wait for about 0.1 s and GNU OpenMP's (Numba's
    prange) for a few ms, and on a 2-core machine a spinning pool steals a core
    from whichever variant runs next. The pause lets them go idle first.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    blocks = blocks or {}
    tiles = choose_tiles(load_device(DEVICE), n, n, n, "fp32")
    used = {"block_m": blocks.get("block_m", tiles.block_m), "block_n": blocks.get("block_n", tiles.block_n),
            "block_k": blocks.get("block_k", tiles.block_k)}
    variants = {
        "blas": lambda: a @ b,
        "v2": lambda: matmul(a, b, version=2, dtype="fp32", **blocks),
        "v3": lambda: matmul(a, b, version=3, dtype="fp32", **blocks),
    }
    ref = a.astype(np.float64) @ b.astype(np.float64)
    for name, fn in variants.items():          # warm-up: JIT compile / cache load, and a sanity check
        err = float(np.abs(fn() - ref).max())
        if err > 1e-3 * n ** 0.5:
            raise SystemExit(f"{name} gives wrong results at {n}^3: max error {err:.3g}")
    a1 = rng.standard_normal((v1_n, v1_n), dtype=np.float32)
    b1 = rng.standard_normal((v1_n, v1_n), dtype=np.float32)
    matmul(a1[:8, :8].copy(), b1[:8, :8].copy(), version=1, dtype="fp32")   # v1 JIT warm-up

    times = {name: [] for name in variants}
    v1_time = None
    names = list(variants)
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]     # rotate who goes first
            for name in order:
                times[name].append(timed(variants[name], settle))
            if r == rounds // 2:                                         # v1 once, mid-run
                v1_time = timed(lambda: matmul(a1, b1, version=1, dtype="fp32"), settle)
    finally:
        gc.enable()

    flops = 2.0 * n ** 3
    out = {"n": n, "rounds": rounds, "settle_s": settle, "blocks": used, "mma_shape": mma_shape(used), "blocks_source":
           "given (--blocks)" if blocks else f"choose_tiles({DEVICE!r}, fp32)", "variants": {}}
    blas_best = min(times["blas"])
    for name, ts in times.items():
        best = min(ts)
        per_round = [tb / t for tb, t in zip(times["blas"], ts)]
        out["variants"][name] = {
            "best_s": best, "median_s": statistics.median(ts), "gflops": flops / best / 1e9,
            "ratio_best": blas_best / best, "ratio_median_per_round": statistics.median(per_round),
            "measured": f"best of {rounds} at {n}^3",
        }
    v1_flops = 2.0 * v1_n ** 3
    v1_gflops = v1_flops / v1_time / 1e9
    out["variants"]["v1"] = {
        "best_s": v1_time, "median_s": v1_time, "gflops": v1_gflops,
        "ratio_best": v1_gflops / out["variants"]["blas"]["gflops"], "ratio_median_per_round": None,
        "measured": f"once at {v1_n}^3" + ("" if v1_n == n else f" (BLAS at {n}^3 is the reference)"),
    }
    return out


def print_cpu(res: dict) -> None:
    n, bl = res["n"], res["blocks"]
    print(f"\n== 1. CPU: {n}^3 fp32, GFLOP/s (whole matmul() call vs NumPy a @ b), best of {res['rounds']} "
          f"interleaved rounds after warm-up,\n   {res['settle_s']} s pause before each timed call "
          f"(lets OpenBLAS/OpenMP spinning worker threads go idle)")
    print(f"   v2/v3 block sizes: block_m={bl['block_m']} block_n={bl['block_n']} block_k={bl['block_k']} "
          f"({res['blocks_source']}); v3 hands each tile product to BLAS in sub-products of at most "
          f"{res['mma_shape']}")
    print(f"   {'variant':<12}{'best ms':>10}{'median ms':>11}{'GFLOP/s':>10}{'vs BLAS':>9}"
          f"{'per-round':>11}  measured")
    labels = {"blas": "numpy a@b", "v1": "v1 naive", "v2": "v2 tiled", "v3": "v3 mma"}
    for name in ("blas", "v1", "v2", "v3"):
        v = res["variants"][name]
        med = "" if v["ratio_median_per_round"] is None else f"{v['ratio_median_per_round']:.3f}"
        print(f"   {labels[name]:<12}{v['best_s'] * 1e3:>10.2f}{v['median_s'] * 1e3:>11.2f}{v['gflops']:>10.2f}"
              f"{v['ratio_best']:>9.3f}{med:>11}  {v['measured']}")
    print("   (vs BLAS: ratio of best times; per-round: median over rounds of the ratio measured in that round)")


# ---------------------------------------------------------------------------- 2. simulated A100

def simulated(n: int) -> dict:
    out = {"n": n, "dtype": "fp16", "device": DEVICE, "versions": {}}
    for v in (1, 2, 3):
        with Profile(DEVICE) as prof:
            x = meta((n, n), "fp16")
            matmul(x, meta((n, n), "fp16"), version=v)
        r = prof.records[-1]
        out["versions"][v] = {
            "kernel": r.name, "grid": list(r.grid), "time_s": r.time_s, "bound": r.bound, "limiter": r.limiter,
            "hbm_read_bytes": r.hbm_read_bytes, "hbm_write_bytes": r.hbm_write_bytes,
            "l2_hit_bytes": r.l2_hit_bytes, "hbm_bytes": r.hbm_read_bytes + r.hbm_write_bytes,
            "raw_read_bytes": r.hbm_read_bytes + r.l2_hit_bytes,
            "flops": r.flops, "sram_per_block_bytes": r.sram_per_block_bytes,
        }
    naive = out["versions"][1]
    for v in (2, 3):
        t = out["versions"][v]
        t["hbm_reduction"] = naive["hbm_bytes"] / t["hbm_bytes"]
        t["raw_read_reduction"] = naive["raw_read_bytes"] / t["raw_read_bytes"]
    return out


def print_sim(res: dict) -> None:
    n = res["n"]
    print(f"\n== 2. Simulated {res['device']}, {n}^3 fp16, counting mode (tinyml.sim.meta)")
    print(f"   {'version':<16}{'grid':>11}{'time ms':>10}{'HBM GB':>10}{'L2 hit GB':>11}{'pre-L2 rd GB':>14}"
          f"{'x fewer':>9}{'x fewer rd':>12}  bound")
    for v, t in res["versions"].items():
        red = f"{t['hbm_reduction']:.0f}" if "hbm_reduction" in t else "1"
        rred = f"{t['raw_read_reduction']:.0f}" if "raw_read_reduction" in t else "1"
        grid = "x".join(map(str, t["grid"]))
        print(f"   {t['kernel']:<16}{grid:>11}{t['time_s'] * 1e3:>10.3f}{t['hbm_bytes'] / 1e9:>10.3f}"
              f"{t['l2_hit_bytes'] / 1e9:>11.3f}{t['raw_read_bytes'] / 1e9:>14.3f}{red:>9}{rred:>12}  "
              f"{t['bound']} ({t['limiter']})")
    print("   (HBM = hbm_read_bytes + hbm_write_bytes after L2 reuse; pre-L2 rd = hbm_read_bytes + l2_hit_bytes;"
          " x fewer = naive / this)")


# ---------------------------------------------------------------------------- 3. counting, 4. import

def counting_time(n: int, repeats: int) -> dict:
    out = {}
    for v in (1, 2, 3):
        small = meta((64, 64), "fp16")
        with Profile(DEVICE):
            matmul(small, small, version=v)                  # JIT warm-up
            x = meta((n, n), "fp16")
            out[v] = min(timed(lambda: matmul(x, x, version=v)) for _ in range(repeats))
    return out


def import_time(repeats: int) -> dict:
    def run(code: str) -> float:
        return min(timed(lambda: subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT))
                   for _ in range(repeats))
    return {"import_tinyml_s": run("import tinyml"), "python_startup_s": run("pass")}


# ---------------------------------------------------------------------------- targets

def targets(cpu: dict, sim: dict, counting: dict, imp: dict, quick: bool) -> list:
    """[(name, measured text, ok, counts?)]; counts=False prints INFO instead of FAIL/PASS."""
    rows = []
    s = sim["versions"]
    for v in (2, 3):
        rows.append((f"sim: v{v} moves >= 50x fewer HBM bytes than v1 (read+write, after L2)",
                     f"{s[v]['hbm_reduction']:.0f}x", s[v]["hbm_reduction"] >= TARGETS["hbm_reduction"], True))
        rows.append((f"sim: v{v} reads >= 50x fewer pre-L2 bytes than v1 (hbm_read+l2_hit)",
                     f"{s[v]['raw_read_reduction']:.0f}x", s[v]["raw_read_reduction"] >= TARGETS["hbm_reduction"],
                     True))
    rows.append(("sim: v1 naive bound == memory", s[1]["bound"], s[1]["bound"] == "memory", True))
    rows.append(("sim: v3 bound == compute", s[3]["bound"], s[3]["bound"] == "compute", True))
    c = cpu["variants"]
    rows.append(("cpu: v3 >= 70% of BLAS GFLOP/s", f"{c['v3']['ratio_best']:.1%}",
                 c["v3"]["ratio_best"] >= TARGETS["v3_vs_blas"], not quick))
    rows.append(("cpu: v2 >= 25% of BLAS GFLOP/s", f"{c['v2']['ratio_best']:.1%}",
                 c["v2"]["ratio_best"] >= TARGETS["v2_vs_blas"], not quick))
    rows.append(("cpu: v1 <= 1/50 of BLAS GFLOP/s", f"1/{1 / c['v1']['ratio_best']:.0f}",
                 c["v1"]["ratio_best"] <= TARGETS["v1_vs_blas"], not quick))
    for v, t in counting.items():
        rows.append((f"counting a 16384^3 matmul, v{v}, < 1 s", f"{t:.3f} s", t < TARGETS["count_16384_s"], True))
    rows.append(("python -c 'import tinyml' < 1 s", f"{imp['import_tinyml_s']:.3f} s",
                 imp["import_tinyml_s"] < TARGETS["import_s"], True))
    return rows


def parse_blocks(text: str) -> dict:
    try:
        bm, bn, bk = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--blocks wants BMxBNxBK such as 128x128x128, got {text!r}") from None
    return {"block_m": bm, "block_n": bn, "block_k": bk}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small CPU sizes and few rounds (CI smoke)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--rounds", type=int, help="timing rounds per CPU variant (default 15, quick 3)")
    p.add_argument("--size", type=int, help="CPU matmul size n for n^3 (default 1024, quick 256)")
    p.add_argument("--v1-size", type=int, help="size v1 is timed at, once (default: --size)")
    p.add_argument("--settle", type=float, default=0.2,
                   help="seconds to sleep before each timed CPU call (default 0.2; 0 to disable)")
    p.add_argument("--blocks", type=parse_blocks, metavar="BMxBNxBK",
                   help="block sizes for v2/v3 on the CPU (must fit the A100's SRAM); default: choose_tiles")
    args = p.parse_args(argv)

    n = args.size or (256 if args.quick else 1024)
    rounds = args.rounds or (3 if args.quick else 15)
    v1_n = args.v1_size or n
    env = environment()
    print(f"tinyml matmul benchmark{' (--quick)' if args.quick else ''}")
    print(build_line())
    print_environment(env, f" ({env['numba_threads']} threads)")

    try:
        cpu = cpu_speed(n, rounds, v1_n, args.blocks, args.settle)
    except TinymlError as e:                 # e.g. --blocks that do not fit the A100's SRAM
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_cpu(cpu)
    sim = simulated(4096)
    print_sim(sim)
    counting = counting_time(16384, 1 if args.quick else 3)
    print(f"\n== 3. Wall time of counting a 16384^3 fp16 matmul (meta tensors, JIT warm), best of "
          f"{1 if args.quick else 3}")
    for v, t in counting.items():
        print(f"   v{v}: {t:.3f} s")
    imp = import_time(3 if args.quick else 5)
    print(f"\n== 4. python -c 'import tinyml' in a subprocess: {imp['import_tinyml_s']:.3f} s "
          f"(python -c pass: {imp['python_startup_s']:.3f} s)")
    if env["loadavg_start"]:
        env["loadavg_end"] = list(os.getloadavg())

    rows = targets(cpu, sim, counting, imp, args.quick)
    failed = report_targets(rows, note="--quick: CPU speed ratios are INFO only; run without --quick to check them"
                            if args.quick else None)
    print(f"\n{verdict(failed)}")

    if args.json:
        write_json(args.json, {"args": vars(args), "thresholds": TARGETS, "environment": env, "cpu": cpu,
                               "simulated": sim, "counting_16384_s": counting, "import": imp}, rows, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
