"""Calibrate tinyml's GPU presets against a real GPU (run only on a machine with CUDA).

Times, on the real device, the quantities the simulator's presets claim:

* HBM bandwidth: a large device-to-device copy (read + write bytes / time);
* launch overhead: a tiny kernel launched many times back to back;
* inside a CUDA graph (as decoding runs): copies from 64 KiB to 1 GiB and Llama-2-7B's bf16 decode
  GEMVs, so time against bytes gives what a kernel costs beyond its bytes and the streaming rate;
* dense matmul throughput: fp16/bf16 GEMMs at 4096^3, 8192^3 and 16384^3 (and fp32), with the
  SM clock and power sampled by ``nvidia-smi`` while the largest one runs (the clock a GEMM
  really holds, which the presets' matmul efficiency stands in for);
* attention, PyTorch's math backend vs its flash backend (scaled_dot_product_attention),
  forward and forward+backward, at the FlashAttention paper's GPT-2 medium shape
  (batch 64, 16 heads, seq 1024, head dim 64, fp16) and at the FlashAttention-2 paper's
  sweep (batch x seq = 16k tokens, 2048 hidden, head dim 64 and 128, seq 512..16k).

Writes ``benchmarks/results/gpu_calibration_<preset>.json`` and prints every measurement next to
what tinyml simulates for the same work on the matching preset (``tinyml.calibration``: the
copy at the preset's achievable bandwidth, matmul v4, standard attention for the math backend,
FlashAttention-2 for the flash backend).

    python benchmarks/gpu_calibration.py                 # on the GPU machine (about 2 minutes)
    python benchmarks/gpu_calibration.py --no-compare    # measure only (compare later, anywhere)
    python benchmarks/gpu_calibration.py --compare benchmarks/results/gpu_calibration_h200.json
    python benchmarks/gpu_calibration.py --dry-run       # tiny shapes on the CPU: checks the script runs

Nothing in the test suite depends on this script or on a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))          # the checkout's tinyml, installed or not

SMI_FIELDS = ("clocks.sm", "clocks.max.sm", "clocks.mem", "power.draw", "power.limit", "temperature.gpu")


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


class ClockSampler:
    """``nvidia-smi`` sampling SM clock, power and temperature every 100 ms while a workload runs."""

    def __init__(self):
        self.proc, self.lines, self.error = None, [], None

    def __enter__(self):
        cmd = ["nvidia-smi", f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits", "-lms", "100"]
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as exc:
            self.error = f"nvidia-smi not available: {exc}"
            return self
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            self.reader.join(timeout=5)

    def summary(self) -> dict:
        if self.error:
            return {"error": self.error}
        samples = []
        for line in self.lines:
            parts = [p.strip() for p in line.split(",")]
            try:
                samples.append({k: float(v) for k, v in zip(SMI_FIELDS, parts, strict=True)})
            except ValueError:          # a header, "[N/A]" or an error line
                continue
        if not samples:
            return {"error": "nvidia-smi printed no samples: " + "".join(self.lines)[:200]}
        busy = samples[len(samples) // 4:]          # the first quarter is the clock ramping up
        return {"samples": len(samples),
                **{f"{k}_median": statistics.median(s[k] for s in busy) for k in SMI_FIELDS},
                "clocks.sm_min": min(s["clocks.sm"] for s in busy)}


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
            row = {"dtype": name, "m": n, "n": n, "k": n, "time_s": t, "flops_per_s": 2 * n ** 3 / t}
            if device == "cuda" and name == "bf16" and n == max(sizes):
                # the clock a long GEMM holds: about 3 s of back-to-back matmuls under nvidia-smi
                reps = max(1, int(3.0 / t))
                with ClockSampler() as smi:
                    for _ in range(reps):
                        a @ b
                    torch.cuda.synchronize()
                row["under_load"] = smi.summary()
            out.append(row)
    return out


#: Llama-2-7B's decode linears, (out N, in K): the bf16 GEMVs a decoding step streams
DECODE_GEMVS = [(12288, 4096), (4096, 4096), (22016, 4096), (4096, 11008), (32000, 4096)]


def graph_time(torch, timer, fn, calls: int) -> float:
    """Seconds per call of ``fn`` replayed ``calls`` times back to back inside one CUDA graph (as a
    decoding step runs in gpt-fast or vLLM: no CPU launch per kernel, each kernel still dispatched,
    ramped up and drained on the GPU)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return timer(graph.replay) / calls


def measure_graph(torch, timer, device, dry):
    """Copies from 64 KiB to 1 GiB and Llama-2-7B's bf16 decode GEMVs, each inside a CUDA graph: the
    time a kernel costs beyond its bytes (the intercept of time against bytes) and the streaming rate."""
    if device != "cuda":
        return {"skipped": "CUDA graphs need a CUDA GPU"}
    out = {"copy": [], "gemv": []}
    for log2 in range(16, 31, 2):
        n = (1 << log2) // 4                                    # fp32 elements: 2^log2 bytes read
        x = torch.empty(n, dtype=torch.float32, device=device)
        y = torch.empty_like(x)
        out["copy"].append({"bytes_moved": 2 * 4 * n, "time_s": graph_time(torch, timer, lambda: y.copy_(x), 20)})
    for n, k in DECODE_GEMVS:
        x = torch.randn(1, k, device=device, dtype=torch.bfloat16)            # (1, K)
        w = torch.randn(n, k, device=device, dtype=torch.bfloat16)            # (N, K), as Linear.weight
        t = graph_time(torch, timer, lambda: torch.nn.functional.linear(x, w), 10)
        out["gemv"].append({"dtype": "bf16", "n": n, "k": k, "time_s": t})
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
    dtype_name, dtype = ("fp32", torch.float32) if dry else ("fp16", torch.float16)
    rows = []
    for label, batch, heads, seq, d in shapes:
        q, k, v = (torch.randn(batch, heads, seq, d, device=device, dtype=dtype, requires_grad=True)
                   for _ in range(3))
        grad = torch.randn_like(q)
        for causal in (False, True):
            for backend_name, backend in (("math", SDPBackend.MATH), ("flash", SDPBackend.FLASH_ATTENTION)):
                row = {"shape": label, "batch": batch, "heads": heads, "seq": seq, "head_dim": d,
                       "causal": causal, "backend": backend_name, "dtype": dtype_name}
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


def print_comparison(results: dict, device: "str | None" = None) -> None:
    """Each measurement next to tinyml's simulated time on the matching preset, or on ``device``."""
    try:
        from tinyml.calibration import compare, graph_fit, preset_for, table
        from tinyml.sim import load_device
    except ImportError as exc:
        print(f"(tinyml not importable here, {exc}: measure with --no-compare, then run "
              f"`python benchmarks/gpu_calibration.py --compare FILE` where tinyml is installed)")
        return
    rows = compare(results, device)
    print(f"\nmeasured on {results['gpu']} vs simulated on preset {preset_for(results, device)} "
          "(error = simulated / measured time - 1):")
    print(table(rows))
    fit = graph_fit(results)
    if fit:
        dev = load_device(preset_for(results, device))
        print(f"a kernel in a CUDA graph: {fit[0] * 1e6:.2f} us + bytes / {fit[1] / 1e12:.2f} TB/s measured (copies); "
              f"the preset: 0 us + bytes / {dev.hbm_bandwidth * dev.eff_hbm / 1e12:.2f} TB/s")
    under = next((r["under_load"] for r in results.get("matmul", []) if "under_load" in r), None)
    if under and "error" not in under:
        print(f"SM clock under a long bf16 GEMM: median {under['clocks.sm_median']:.0f} MHz "
              f"(max {under['clocks.max.sm_median']:.0f}), power {under['power.draw_median']:.0f} / "
              f"{under['power.limit_median']:.0f} W, {under['samples']} samples")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes; runs on the CPU when there is no GPU")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument("--no-compare", action="store_true", help="measure and write the JSON only")
    parser.add_argument("--compare", type=Path, metavar="JSON", default=None,
                        help="measure nothing: compare a results file written earlier with tinyml's presets")
    parser.add_argument("--device", default=None, help="with --compare: the preset to compare with (default: "
                        "the one matching the measured GPU)")
    args = parser.parse_args(argv)
    if args.compare is not None:
        from tinyml.calibration import load
        from tinyml.sim.errors import TinymlError

        try:
            print_comparison(load(args.compare), args.device)
        except TinymlError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
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
    from tinyml.calibration import preset_name

    device = "cuda" if cuda else "cpu"
    gpu = torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu"
    timer = Timer(torch, device)
    results = {
        "gpu": gpu, "preset": preset_name(gpu), "dry_run": args.dry_run,
        "torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d"),
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        results["device_properties"] = {"sm_count": props.multi_processor_count,
                                        "total_memory_bytes": props.total_memory,
                                        "capability": f"{props.major}.{props.minor}"}
    t0 = time.time()
    for key, measure in (("hbm", measure_bandwidth), ("launch", measure_launch), ("graph", measure_graph),
                         ("matmul", measure_matmul), ("attention", measure_attention)):
        results[key] = measure(torch, timer, device, args.dry_run)
        print(f"{key}: measured ({time.time() - t0:.0f} s)", flush=True)
    results["wall_s"] = time.time() - t0
    slug = (results["preset"] or gpu).replace(" ", "_").lower()
    out = args.out or RESULTS / f"gpu_calibration_{slug}{'_dry' if args.dry_run else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"GPU: {gpu} (torch {torch.__version__}), {results['wall_s']:.0f} s; wrote {out}")
    print(f"HBM copy: {results['hbm']['bandwidth_Bps'] / 1e12:.2f} TB/s; launch: "
          f"{results['launch']['time_per_launch_s'] * 1e6:.2f} us")
    for row in results["matmul"]:
        print(f"matmul {row['dtype']} {row['m']}^3: {row['time_s'] * 1e3:.3f} ms = {row['flops_per_s'] / 1e12:.1f} TFLOP/s")
    for row in results["attention"]:
        if "error" in row:
            print(f"attention {row.get('shape')} {row.get('backend')} causal={row.get('causal')}: {row['error']}")
    if not args.no_compare and results["preset"]:
        print_comparison(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
