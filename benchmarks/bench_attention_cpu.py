"""Attention on the CPU: tinyml's kernels next to NumPy and PyTorch, and counting-mode wall time.

Everything is measured side by side in one run and checked against targets::

    python benchmarks/bench_attention_cpu.py                # full run (about 35 s on 2 cores)
    python benchmarks/bench_attention_cpu.py --quick        # CI smoke: small shapes, 3 rounds
    python benchmarks/bench_attention_cpu.py --json out.json

1. CPU, forward only, fp32 numerics, batch 4 x 16 heads (64 heads in all),
   sequence 1024, head dim 64, no mask, no dropout. Wall time of the whole
   public call (validation, HBM ledger, Numba body, cost model) of

   * ``flash_attention(q, k, v, version=2, dtype="fp32")`` (FA2),
   * ``flash_attention(q, k, v, version=1, dtype="fp32")`` (FA1),
   * ``standard_attention(q, k, v, dtype="fp32")`` (QK^T, softmax, PV: three
     kernels with S and P through "HBM"),

   next to a plain NumPy attention written here (``q @ k^T``, softmax, ``@ v``
   in float32, vectorised over batch and heads, as one would write it), the
   same with in-place softmax (INFO), and PyTorch's CPU
   ``torch.nn.functional.scaled_dot_product_attention`` when ``import torch``
   works (the column is skipped with a note otherwise; PyTorch is never a
   dependency). Also timed, as INFO: FA2's loop without its softmax (same
   tiles, copies and BLAS tile products, no exp/max/sum), the floor that the
   kernel's structure sets.

   Each variant is called once first (JIT compile or cache load excluded, and
   its output checked against the float64 reference on the first batch); then
   all run interleaved, in an order that rotates every round, each after a
   short pause (``--settle``) that lets the previous variant's spinning
   BLAS/OpenMP worker threads go idle; best of N rounds. "x FA2" is the ratio
   of best times; "per-round" the median over rounds of the ratio within one
   round.

   Threads: Numba's ``prange`` (FA1, FA2, standard's kernels) uses
   ``numba.get_num_threads()`` threads (all cores unless ``NUMBA_NUM_THREADS``
   or ``--threads``), with BLAS pinned to one thread inside (the kernels do
   that themselves); PyTorch gets ``torch.set_num_threads`` to the same count;
   NumPy's BLAS keeps its own thread count (printed), as a user would have it.
   PyTorch is imported before Numba starts its OpenMP pool: the other way
   round, PyTorch binds to the system libgomp that Numba loaded instead of its
   own, and its SDPA ran 4-5x slower on the benchmark machine.

   Memory: glibc is told to keep freed memory in the process (``mallopt``,
   see ``keep_freed_memory``), so the (B, H, N, N) temporaries of the NumPy
   baselines and of standard attention reuse pages instead of faulting in
   fresh ones every call; ``--system-malloc`` turns that off. The "sys ms"
   column shows the kernel time a call still spends.
2. Wall time of counting the FlashAttention paper's Figure 2 configuration
   (batch 64, 16 heads, N 1024, d 64, fp16, causal, dropout 0.1), forward +
   backward, ``paper.run_variant`` for standard, flash1 and flash2 (JIT warm,
   best of 3 each).

Targets: FA2 >= 2x faster than the plain NumPy attention; FA2 at least as fast
as PyTorch's SDPA (when PyTorch is there); counting all three variants < 2 s.
Each prints PASS or FAIL and the exit code is 1 if any fails. With ``--quick``
the CPU speed ratios print as INFO (small shapes on a shared CI runner say
little about speed); the counting target still counts.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):          # run from a checkout without installing; share bench_matmul's helpers
    if p not in sys.path:
        sys.path.insert(0, p)

from _report import build_line, parallel_build, report_targets, verdict, write_json  # noqa: E402

parallel_build(__name__ == "__main__")  # full runs: the kernels run on every core, as PyTorch does

import numba  # noqa: E402
from numba import njit, prange  # noqa: E402

from bench_matmul import environment, print_environment, timed  # noqa: E402
from tinyml.kernels._contract import blas_single_thread  # noqa: E402
from tinyml.kernels._mma import mma_acc_at, mma_set, sgemm  # noqa: E402
from tinyml.kernels.attention import paper  # noqa: E402
from tinyml.kernels.attention.flash import flash_attention  # noqa: E402
from tinyml.kernels.attention.flash2 import choose_blocks  # noqa: E402
from tinyml.kernels.attention.standard import standard_attention  # noqa: E402
from tinyml.kernels.reference import attention as reference_attention  # noqa: E402
from tinyml.sim import load_device  # noqa: E402
from tinyml.sim.tiles import copy_rect_t  # noqa: E402

DEVICE = "a100-40gb"

TARGETS = {
    "fa2_vs_numpy": 2.0,        # FA2 at least 2x faster than the plain NumPy attention
    "fa2_vs_torch": 1.0,        # FA2 at least as fast as PyTorch's CPU SDPA
    "counting_s": 2.0,          # counting Figure 2 fwd + bwd, all three variants, < 2 s
}

LABELS = {
    "fa2": "tinyml FA2 (version=2)",
    "fa1": "tinyml FA1 (version=1)",
    "standard": "tinyml standard_attention",
    "numpy": "NumPy naive",
    "numpy_inplace": "NumPy naive, in-place softmax",
    "torch": "PyTorch SDPA (CPU)",
    "fa2_floor": "FA2 loop without softmax",
}


# ---------------------------------------------------------------------------- the NumPy baselines

def numpy_attention(q, k, v, scale):
    """Plain attention in float32, vectorised over batch and heads: what one writes first."""
    s = (q @ np.swapaxes(k, -1, -2)) * scale               # (B, H, N, N)
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)) @ v


def numpy_attention_inplace(q, k, v, scale):
    """The same with the softmax done in place (one (B, H, N, N) buffer instead of four)."""
    s = q @ np.swapaxes(k, -1, -2)
    s *= scale
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    return s @ v


# ---------------------------------------------------------------------------- FA2's floor

@njit(parallel=True, cache=True)
def _fa2_floor(q, k, v, o, BH, N, D, BR, BC, gemm):
    """FA2 forward's loop with the softmax taken out: per (head, q block) load Q_i, then per K/V
    block S^T = K_j Q_i^T and O += (S^T)^T V_j with K_j, V_j read in place, through the same copy
    and BLAS tile products (``copy_rect_t`` for Q_i^T, ``mma_set``, ``mma_acc_at``) as ``flash2.fwd._body``. q, k, v, o: (BH*N, D). Not attention: S is
    used as P unnormalised; only the time means something."""
    nqb = (N + BR - 1) // BR
    for blk in prange(BH * nqb):
        bh = blk // nqb
        r0 = (blk % nqb) * BR
        rows = min(BR, N - r0)
        qt_s = np.zeros((D, BR), dtype=np.float32)
        st = np.empty((BC, BR), dtype=np.float32)
        o_acc = np.zeros((BR, D), dtype=np.float32)
        copy_rect_t(q, bh * N + r0, 0, rows, D, qt_s)
        for c0 in range(0, N, BC):
            cols = min(BC, N - c0)
            k_j = k[bh * N + c0:bh * N + c0 + cols]         # (cols, D) in place, as the kernel reads it
            v_j = v[bh * N + c0:bh * N + c0 + cols]
            mma_set(k_j, qt_s, st[:cols], gemm)
            mma_acc_at(st[:cols], v_j, o_acc, gemm)
        for r in range(rows):
            for dd in range(D):
                o[bh * N + r0 + r, dd] = o_acc[r, dd]


# ---------------------------------------------------------------------------- 1. CPU speed

def keep_freed_memory() -> str:
    """Make glibc keep freed memory in the process (no mmap for big blocks, no trimming); returns a note.

    Without it every (B, H, N, N) temporary is a fresh mmap whose pages the kernel must fault in and
    zero on first touch, and munmap on free. On the benchmark VM (a virtio balloon with free page
    reporting) freed pages go back to the host, so touching them again costs host faults too: the
    plain NumPy attention, which allocates four 268 MB temporaries a call, spent 0.1 to 1.0 s of its
    0.3 to 1.4 s in the kernel, depending on timing. With the heap kept, the same memory is reused
    with no faults (as PyTorch's caching allocator does), so the baselines measure arithmetic, not
    the allocator. ``--system-malloc`` leaves glibc as it is.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4                      # glibc's mallopt parameters
        ok = libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 2 ** 31 - 1) == 1
    except (OSError, AttributeError):
        ok = False
    return ("glibc malloc keeps freed memory (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD=2^31-1)" if ok
            else "allocator as is (no glibc mallopt here)")


class ForeignLoad:
    """CPU time other processes used while we timed: /proc/stat's busy time minus this process's own.

    On a shared machine that is what makes a best-of-N time move; the benchmark prints it so that a
    run taken under load is recognisable. 0 where /proc/stat is missing (not Linux).
    """

    def __init__(self):
        self.foreign_s = 0.0
        self.wall_s = 0.0
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _busy(self) -> "float | None":
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)        # idle + iowait
        return (sum(fields[:8]) - idle) / self.hz                          # user..steal, without guest

    def timed(self, fn, settle: float) -> "tuple[float, float]":
        """(wall time of one call, this process's kernel-mode CPU time during it)."""
        b0, (u0, s0) = self._busy(), os.times()[:2]
        t = timed(fn, settle)
        b1, (u1, s1) = self._busy(), os.times()[:2]
        if b0 is not None and b1 is not None:
            self.foreign_s += max(0.0, (b1 - b0) - (u1 - u0 + s1 - s0))
            self.wall_s += t + settle
        return t, s1 - s0

    def share(self, cores: int) -> float:
        """Other processes' CPU time as a share of the machine's during the timed calls (0..1)."""
        return self.foreign_s / (self.wall_s * cores) if self.wall_s else 0.0


def numpy_blas_threads() -> str:
    """NumPy's BLAS and its thread count, e.g. 'openblas 0.3.31, 2 threads'."""
    from threadpoolctl import threadpool_info

    for info in threadpool_info():
        if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
            return f"{info.get('internal_api')} {info.get('version')}, {info.get('num_threads')} threads"
    return "unknown BLAS"


def load_torch(threads: int):
    """(torch, note): PyTorch with ``threads`` intra-op threads, or (None, why not)."""
    try:
        import torch
        import torch.nn.functional  # noqa: F401
    except Exception as e:               # ImportError, or a broken install
        return None, f"PyTorch not importable ({type(e).__name__}: {e}); SDPA column skipped"
    torch.set_num_threads(threads)
    return torch, (f"PyTorch {torch.__version__}, torch.set_num_threads({threads}) -> "
                   f"{torch.get_num_threads()} intra-op threads")


def cpu_speed(batch: int, heads: int, seq: int, head_dim: int, rounds: int, settle: float, torch,
              only: "set | None" = None) -> dict:
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((batch, heads, seq, head_dim), dtype=np.float32) for _ in range(3))
    scale = np.float32(1.0 / math.sqrt(head_dim))
    blocks = choose_blocks(load_device(DEVICE), "fwd", seq, seq, head_dim, "fp32", "bench")
    bh = batch * heads
    flat = [x.reshape(bh * seq, head_dim) for x in (q, k, v)]
    floor_out = np.empty_like(flat[0])
    gemm = sgemm()

    def floor():
        with blas_single_thread():
            _fa2_floor(*flat, floor_out, bh, seq, head_dim, blocks.block_q, blocks.block_k, gemm)

    variants = {
        "fa2": lambda: flash_attention(q, k, v, version=2, dtype="fp32"),
        "fa1": lambda: flash_attention(q, k, v, version=1, dtype="fp32"),
        "standard": lambda: standard_attention(q, k, v, dtype="fp32"),
        "numpy": lambda: numpy_attention(q, k, v, scale),
        "numpy_inplace": lambda: numpy_attention_inplace(q, k, v, scale),
    }
    if torch is not None:
        tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def run_torch():
            with torch.inference_mode():
                return sdpa(tq, tk, tv).numpy()
        variants["torch"] = run_torch
    variants["fa2_floor"] = floor
    if only:                                  # --variants: FA2 always runs (the ratios are to it)
        variants = {name: fn for name, fn in variants.items() if name in only or name == "fa2"}

    # warm-up (JIT compile / cache load), and a check against the float64 reference on batch 0
    ref, _ = reference_attention(q[:1], k[:1], v[:1])
    errors = {}
    for name, fn in variants.items():
        out = fn()
        if name == "fa2_floor":
            continue
        errors[name] = float(np.abs(np.asarray(out)[:1] - ref).max())
        if errors[name] > 1e-4:
            raise SystemExit(f"{name} gives wrong results: max |error| {errors[name]:.3g} vs the float64 reference")

    times = {name: [] for name in variants}
    sys_s = {name: [] for name in variants}
    names = list(variants)
    load = ForeignLoad()
    gc.collect()
    gc.disable()
    try:
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]      # rotate who goes first
            for name in order:
                t, kernel_s = load.timed(variants[name], settle)
                times[name].append(t)
                sys_s[name].append(kernel_s)
    finally:
        gc.enable()

    flops = 4.0 * bh * seq * seq * head_dim                               # QK^T and PV
    best_fa2 = min(times["fa2"])
    out = {"batch": batch, "heads": heads, "seq": seq, "head_dim": head_dim, "rounds": rounds, "settle_s": settle,
           "fa2_blocks": [blocks.block_q, blocks.block_k], "flops": flops, "max_abs_error": errors,
           "foreign_cpu_s": load.foreign_s, "timed_wall_s": load.wall_s,
           "foreign_share": load.share(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                       else os.cpu_count() or 1), "variants": {}}
    for name, ts in times.items():
        best = min(ts)
        out["variants"][name] = {
            "best_s": best, "median_s": statistics.median(ts), "gflops": flops / best / 1e9,
            "sys_s_median": statistics.median(sys_s[name]),
            "fa2_speedup": best / best_fa2,
            "fa2_speedup_per_round": statistics.median(t / f for t, f in zip(ts, times["fa2"])),
        }
    return out


def print_cpu(res: dict, threads_note: str, malloc_note: str) -> None:
    print(f"\n== 1. CPU, forward, fp32: batch {res['batch']} x {res['heads']} heads, seq {res['seq']}, head dim "
          f"{res['head_dim']}, no mask; best of {res['rounds']} interleaved rounds after warm-up,\n"
          f"   {res['settle_s']} s pause before each timed call; FA2 blocks block_q={res['fa2_blocks'][0]} "
          f"block_k={res['fa2_blocks'][1]} (chosen for {DEVICE} fp32)")
    print(f"   threads: {threads_note}")
    print(f"   memory: {malloc_note}")
    print(f"   {'variant':<32}{'best ms':>10}{'median ms':>11}{'GFLOP/s':>9}{'x FA2':>8}{'per-round':>11}"
          f"{'sys ms':>8}{'max |err|':>11}")
    for name, v in res["variants"].items():
        err = res["max_abs_error"].get(name)
        print(f"   {LABELS[name]:<32}{v['best_s'] * 1e3:>10.1f}{v['median_s'] * 1e3:>11.1f}{v['gflops']:>9.1f}"
              f"{v['fa2_speedup']:>8.2f}{v['fa2_speedup_per_round']:>11.2f}{v['sys_s_median'] * 1e3:>8.0f}"
              f"{'' if err is None else format(err, '.1e'):>11}")
    share = res["foreign_share"]
    print(f"   other processes used {res['foreign_cpu_s']:.1f} CPU-s during the {res['timed_wall_s']:.1f} s of timed "
          f"calls and pauses: {share:.0%} of the machine"
          + ("  ** busy machine: these times are not reliable **" if share > 0.05 else ""))
    print("   (x FA2 = this variant's best time / FA2's: > 1 means FA2 is faster; per-round = median of the ratio "
          "within each round;\n    GFLOP/s counts 4 B H N^2 d; sys ms = median kernel-mode CPU time of this process "
          "per call (page faults);\n    max |err| vs the float64 reference on batch 0; the last row is FA2's tiles, "
          "copies and BLAS tile products\n    without the softmax: INFO, the floor of the kernel's structure)")


# ---------------------------------------------------------------------------- 2. counting

def counting_time(repeats: int) -> dict:
    out = {}
    for variant in ("standard", "flash1", "flash2"):
        paper.run_variant(variant, DEVICE)                               # JIT warm-up
        out[variant] = min(timed(lambda: paper.run_variant(variant, DEVICE)) for _ in range(repeats))
    out["total"] = sum(out[v] for v in ("standard", "flash1", "flash2"))
    return out


# ---------------------------------------------------------------------------- targets

def targets(cpu: dict, counting: dict, quick: bool, torch_why: str) -> list:
    """[(name, measured text, ok or None (skipped), counts?)]."""
    v = cpu["variants"]
    name = f"cpu: FA2 >= {TARGETS['fa2_vs_numpy']:.0f}x faster than the plain NumPy attention"
    if "numpy" in v:
        rows = [(name, f"{v['numpy']['fa2_speedup']:.2f}x (per-round {v['numpy']['fa2_speedup_per_round']:.2f}x)",
                 v["numpy"]["fa2_speedup"] >= TARGETS["fa2_vs_numpy"], not quick)]
    else:
        rows = [(name, "not timed (--variants)", None, False)]
    if "torch" in v:
        rows.append(("cpu: FA2 at least as fast as PyTorch's CPU SDPA",
                     f"{v['torch']['fa2_speedup']:.2f}x (per-round {v['torch']['fa2_speedup_per_round']:.2f}x)",
                     v["torch"]["fa2_speedup"] >= TARGETS["fa2_vs_torch"], not quick))
    else:
        rows.append(("cpu: FA2 at least as fast as PyTorch's CPU SDPA", f"skipped: {torch_why}", None, False))
    rows.append((f"counting Figure 2 fwd+bwd, standard + flash1 + flash2, < {TARGETS['counting_s']:.0f} s",
                 f"{counting['total']:.3f} s", counting["total"] < TARGETS["counting_s"], True))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small shapes and few rounds (CI smoke)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--rounds", type=int, help="timing rounds (default 7, quick 3)")
    p.add_argument("--batch", type=int, help="batch (default 4, quick 1)")
    p.add_argument("--heads", type=int, help="heads (default 16, quick 4)")
    p.add_argument("--seq", type=int, help="sequence length (default 1024, quick 256)")
    p.add_argument("--head-dim", type=int, default=64, help="head dim (default 64)")
    p.add_argument("--threads", type=int, help="Numba and PyTorch threads (default: numba.get_num_threads())")
    p.add_argument("--settle", type=float, default=0.2,
                   help="seconds to sleep before each timed call (default 0.2; 0 to disable)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    p.add_argument("--system-malloc", action="store_true",
                   help="leave glibc malloc as is (default: keep freed memory in the process; see keep_freed_memory)")
    p.add_argument("--variants", help="comma-separated subset to time (fa2 always runs): " + ",".join(LABELS)
                   + "; the targets need numpy (and torch)")
    args = p.parse_args(argv)

    batch = args.batch or (1 if args.quick else 4)
    heads = args.heads or (4 if args.quick else 16)
    seq = args.seq or (256 if args.quick else 1024)
    rounds = args.rounds or (3 if args.quick else 7)
    # PyTorch first: numba.get_num_threads() / set_num_threads() start Numba's OpenMP pool, which loads the
    # system's libgomp; a later `import torch` then binds to that libgomp instead of the one it ships, and
    # its SDPA took 4-5x longer here (user CPU time 4x). numba.config only reads the setting.
    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    torch, torch_note = (None, "--no-torch: SDPA column skipped") if args.no_torch else load_torch(threads)
    if args.threads:
        numba.set_num_threads(args.threads)
    assert numba.get_num_threads() == threads

    malloc_note = "allocator as is (--system-malloc)" if args.system_malloc else keep_freed_memory()
    env = environment()
    env["numba_threads"] = threads
    env["torch"] = torch_note
    env["malloc"] = malloc_note
    print(f"tinyml attention CPU benchmark{' (--quick)' if args.quick else ''}")
    print(build_line())
    print_environment(env)

    only = set(args.variants.split(",")) if args.variants else None
    if only and not only <= set(LABELS):
        p.error(f"--variants: unknown {', '.join(sorted(only - set(LABELS)))}; choose from {', '.join(LABELS)}")
    cpu = cpu_speed(batch, heads, seq, args.head_dim, rounds, args.settle, torch, only)
    env["numba_threading_layer"] = numba.threading_layer()
    threads_note = (f"Numba prange {threads} ({env['numba_threading_layer']} layer; BLAS pinned to 1 thread inside "
                    f"the kernels); {torch_note}; NumPy's BLAS as is ({numpy_blas_threads()})")
    print_cpu(cpu, threads_note, malloc_note)
    counting = counting_time(3)
    print(f"\n== 2. Wall time of counting the Figure 2 configuration (B 64, H 16, N 1024, d 64, fp16, causal, "
          f"dropout 0.1),\n   forward + backward, paper.run_variant on {DEVICE}, JIT warm, best of 3 each")
    for v in ("standard", "flash1", "flash2"):
        print(f"   {v:<10}{counting[v]:.3f} s")
    print(f"   {'total':<10}{counting['total']:.3f} s")
    if env["loadavg_start"]:
        env["loadavg_end"] = list(os.getloadavg())

    torch_why = ("not in --variants" if torch is not None else "--no-torch" if args.no_torch
                 else "PyTorch is not installed" if "ModuleNotFoundError" in torch_note else torch_note)
    rows = targets(cpu, counting, args.quick, torch_why)
    failed = report_targets(rows, width=70, note="--quick: CPU speed ratios are INFO only; run without --quick to "
                                                  "check them" if args.quick else None)
    print(f"\n{verdict(failed)}")

    if args.json:
        write_json(args.json, {"args": vars(args), "thresholds": TARGETS, "environment": env, "cpu": cpu,
                               "counting_s": counting, "threads": threads_note}, rows, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
