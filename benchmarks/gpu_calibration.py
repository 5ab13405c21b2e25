"""Calibrate tinyml's GPU presets against a real GPU (run only on a machine with CUDA).

Times, on the real device, the quantities the simulator's presets claim:

* HBM bandwidth: a large device-to-device copy (read + write bytes / time);
* launch overhead: a tiny kernel launched many times back to back;
* dense matmul throughput: fp16/bf16 GEMMs at 4096^3, 8192^3 and 16384^3 (and fp32);
* attention, PyTorch's math backend vs its flash backend (scaled_dot_product_attention),
  forward and forward+backward, at the FlashAttention paper's GPT-2 medium shape
  (batch 64, 16 heads, seq 1024, head dim 64, fp16) and at the FlashAttention-2 paper's
  sweep (batch x seq = 16k tokens, 2048 hidden, head dim 64 and 128, seq 512..16k).

Writes ``benchmarks/results/gpu_calibration_<device>.json`` and prints a table that
puts each measurement next to what the matching tinyml preset assumes (spec x efficiency)
and, for matmul, next to the simulated time of tinyml's tiled kernel.

    python benchmarks/gpu_calibration.py                 # on the GPU machine
    python benchmarks/gpu_calibration.py --dry-run       # tiny shapes on the CPU: checks the script runs

Nothing in the test suite depends on this script or on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PRESET_FOR = {"H200": "h200", "H100": "h100-sxm", "A100-SXM4-80GB": "a100-80gb", "A100": "a100-40gb",
              "RTX 4090": "rtx-4090", "MI300X": "mi300x"}


def preset_name(gpu_name: str) -> str | None:
    for key, preset in PRESET_FOR.items():
        if key in gpu_name:
            return preset
    return None


class Timer:
    """Median wall time of a CUDA (or CPU) callable, events on the GPU."""

    def __init__(self, torch, device: str):
        self.torch, self.device = torch, device

    def __call__(self, fn, warmup: int = 3, reps: int = 10) -> float:
        torch = self.torch
        for _ in range(warmup):
            fn()
        if self.device == "cuda":
            torch.cuda.synchronize()
            times = []
            for _ in range(reps):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            return statistics.median(times)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)


def measure_bandwidth(torch, timer, device, dry):
    n = (1 << 20) if dry else (1 << 30)              # elements of fp32: 4 GiB on the GPU
    x = torch.empty(n, dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    t = timer(lambda: y.copy_(x))
    return {"bytes_moved": 2 * 4 * n, "time_s": t, "bandwidth_Bps": 2 * 4 * n / t}


def measure_launch(torch, timer, device, dry):
    x = torch.zeros(1, device=device)
    launches = 100 if dry else 2000

    def many():
        for _ in range(launches):
            x.add_(1.0)

    t = timer(many, warmup=1, reps=3 if dry else 5)
    return {"launches": launches, "time_per_launch_s": t / launches}


def measure_matmul(torch, timer, device, dry):
    out = []
    sizes = [256] if dry else [4096, 8192, 16384]
    dtypes = [("fp32", torch.float32)] if dry else [("fp16", torch.float16), ("bf16", torch.bfloat16),
                                                    ("fp32", torch.float32)]
    for name, dt in dtypes:
        for n in sizes:
            if name == "fp32" and n > 8192:
                continue
            a = torch.randn(n, n, device=device, dtype=dt)
            b = torch.randn(n, n, device=device, dtype=dt)
            t = timer(lambda: a @ b)
            out.append({"dtype": name, "m": n, "n": n, "k": n, "time_s": t, "flops_per_s": 2 * n ** 3 / t})
    return out


def measure_attention(torch, timer, device, dry):
    import torch.nn.functional as F

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older torch
        return [{"error": "torch.nn.attention.sdpa_kernel not available"}]
    shapes = []
    if dry:
        shapes.append(("tiny", 2, 2, 128, 32))
    else:
        shapes.append(("gpt2-medium (FlashAttention paper Fig. 2)", 64, 16, 1024, 64))
        for d in (64, 128):
            heads = 2048 // d
            for seq in (512, 1024, 2048, 4096, 8192, 16384):
                shapes.append((f"fa2-sweep d={d}", 16384 // seq, heads, seq, d))
    dtype = torch.float32 if dry else torch.float16
    rows = []
    for label, batch, heads, seq, d in shapes:
        q, k, v = (torch.randn(batch, heads, seq, d, device=device, dtype=dtype, requires_grad=True)
                   for _ in range(3))
        grad = torch.randn_like(q)
        for causal in (False, True):
            for backend_name, backend in (("math", SDPBackend.MATH), ("flash", SDPBackend.FLASH_ATTENTION)):
                row = {"shape": label, "batch": batch, "heads": heads, "seq": seq, "head_dim": d,
                       "causal": causal, "backend": backend_name, "dtype": str(dtype).split(".")[-1]}
                try:
                    with sdpa_kernel(backend):
                        fwd = timer(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))

                        def fwd_bwd():
                            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                            o.backward(grad)

                        both = timer(fwd_bwd, warmup=2, reps=5)
                    row.update(forward_s=fwd, forward_backward_s=both)
                except (RuntimeError, torch.cuda.OutOfMemoryError if device == "cuda" else RuntimeError) as exc:
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                    if device == "cuda":
                        torch.cuda.empty_cache()
                rows.append(row)
                q.grad = k.grad = v.grad = None
    return rows


def compare_with_preset(results: dict) -> list[str]:
    """Lines comparing measurements with the preset's achievable numbers (spec x efficiency)."""
    try:
        from tinyml.kernels.matmul import matmul
        from tinyml.sim import Profile, load_device, meta
    except ImportError:
        return ["(tinyml not importable: no comparison)"]
    name = results.get("preset")
    if not name:
        return [f"no tinyml preset for GPU {results['gpu']!r}"]
    dev = load_device(name)
    lines = [f"preset {name}: measured vs assumed (spec x efficiency)"]
    bw = results["hbm"]["bandwidth_Bps"]
    lines.append(f"  HBM bandwidth   measured {bw / 1e12:7.2f} TB/s   preset {dev.hbm_bandwidth * dev.eff_hbm / 1e12:7.2f} TB/s"
                 f"   -> eff_hbm would be {bw / dev.hbm_bandwidth:.2f}")
    lo = results["launch"]["time_per_launch_s"]
    lines.append(f"  launch overhead measured {lo * 1e6:6.2f} us     preset {dev.launch_overhead_s * 1e6:6.2f} us")
    for row in results["matmul"]:
        if row["dtype"] not in dev.matmul_flops:
            continue
        with Profile(dev) as prof:
            matmul(meta((row["m"], row["k"]), row["dtype"]), meta((row["k"], row["n"]), row["dtype"]), version=3)
        sim = prof.time_s
        spec = dev.matmul_rate(row["dtype"])
        lines.append(f"  matmul {row['dtype']} {row['m']}^3  measured {row['time_s'] * 1e3:8.3f} ms "
                     f"({row['flops_per_s'] / 1e12:6.1f} TFLOP/s)   tinyml v3 {sim * 1e3:8.3f} ms   "
                     f"-> eff_matmul would be {row['flops_per_s'] / spec:.2f}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes; runs on the CPU when there is no GPU")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: this script runs on the GPU calibration machine only; nothing to do.")
        return 0
    cuda = torch.cuda.is_available()
    if not cuda and not args.dry_run:
        print("No CUDA GPU here: nothing to calibrate (run it on the GPU machine, or pass --dry-run "
              "to check the script on the CPU).")
        return 0
    device = "cuda" if cuda else "cpu"
    gpu = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    timer = Timer(torch, device)
    results = {
        "gpu": gpu, "preset": preset_name(gpu), "dry_run": args.dry_run,
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d"),
    }
    t0 = time.time()
    results["hbm"] = measure_bandwidth(torch, timer, device, args.dry_run)
    results["launch"] = measure_launch(torch, timer, device, args.dry_run)
    results["matmul"] = measure_matmul(torch, timer, device, args.dry_run)
    results["attention"] = measure_attention(torch, timer, device, args.dry_run)
    results["wall_s"] = time.time() - t0
    slug = (results["preset"] or gpu).replace(" ", "_").lower()
    out = args.out or RESULTS / f"gpu_calibration_{slug}{'_dry' if args.dry_run else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"GPU: {gpu} (torch {torch.__version__}), {results['wall_s']:.0f} s")
    print(f"HBM copy: {results['hbm']['bandwidth_Bps'] / 1e12:.2f} TB/s; launch: "
          f"{results['launch']['time_per_launch_s'] * 1e6:.2f} us")
    for row in results["matmul"]:
        print(f"matmul {row['dtype']} {row['m']}^3: {row['time_s'] * 1e3:.3f} ms = {row['flops_per_s'] / 1e12:.1f} TFLOP/s")
    for row in results["attention"]:
        if "error" in row:
            print(f"attention {row.get('shape')} {row.get('backend')} causal={row.get('causal')}: {row['error']}")
        else:
            print(f"attention {row['shape']} seq={row['seq']} d={row['head_dim']} causal={row['causal']} "
                  f"{row['backend']:5s}: fwd {row['forward_s'] * 1e3:8.3f} ms, fwd+bwd {row['forward_backward_s'] * 1e3:8.3f} ms")
    for line in compare_with_preset(results):
        print(line)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
