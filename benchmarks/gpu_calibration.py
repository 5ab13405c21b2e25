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

On a lent machine where only one folder comes back (``$OUT``) and the output is cut to its tail,
measure there and compare here (the comparison compiles the simulator's kernels: ~30 s cold)::

    timeout 420 python -W ignore benchmarks/gpu_calibration.py --no-compare --out "$OUT/cal.json" 2>&1 | tee "$OUT/log.txt"
    python benchmarks/gpu_calibration.py --compare cal.json          # back on this machine

The JSON is rewritten after every section, so a section that fails (recorded as ``{"error": ...}``)
or a run cut short keeps what was measured before it.

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
    """A one-element op issued back to back from eager PyTorch: what an eager step pays per kernel (the
    CPU's dispatch and the driver's launch; tinyml's ``[launch] overhead_s``), not the GPU's own latency."""
    x = torch.zeros(1, device=device)
    launches = 100 if dry else 2000

    def many():
        for _ in range(launches):
            x.add_(1.0)

    t = timer(many, warmup=1, reps=3 if dry else 5)
    return {"launches": launches, "time_per_launch_s": t / launches}


class ClockSampler:
    """``nvidia-smi`` sampling SM clock, power and temperature every 100 ms while a workload runs."""

    def __init__(self, gpu: str = "0"):
        self.gpu, self.proc, self.lines, self.error = gpu, None, [], None

    def __enter__(self):
        cmd = ["nvidia-smi", "-i", self.gpu, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits",
               "-lms", "100"]
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as exc:
            self.error = f"nvidia-smi not available: {exc}"
            return self
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()
        deadline = time.time() + 3.0                 # nvidia-smi's start-up must not eat the window
        while not self.lines and time.time() < deadline and self.proc.poll() is None:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.reader.join(timeout=5)

    def summary(self) -> dict:
        if self.error:
            return {"error": self.error}
        samples = []
        for line in self.lines:
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != len(SMI_FIELDS):        # a header or an error line
                continue
            row = {}
            for key, text in zip(SMI_FIELDS, parts):
                try:
                    row[key] = float(text)
                except ValueError:                   # "[N/A]" (power under vGPU or MIG): that field only
                    pass
            if row:
                samples.append(row)
        if not samples:
            return {"error": "nvidia-smi printed no samples: " + "".join(self.lines)[:200]}
        busy = samples[len(samples) // 4:]          # the first quarter is the clock ramping up
        out = {"samples": len(samples)}
        for key in SMI_FIELDS:
            values = [row[key] for row in busy if key in row]
            if values:
                out[f"{key}_median"] = statistics.median(values)
                if key == "clocks.sm":
                    out["clocks.sm_min"] = min(values)
        return out


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
                uuid = getattr(torch.cuda.get_device_properties(0), "uuid", None)
                with ClockSampler(f"GPU-{uuid}" if uuid else "0") as smi:
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
    time a kernel costs beyond its bytes (the intercept of time against bytes) and the streaming rate.

    The copy is ``torch.mul(x, 1, out=y)``, an elementwise kernel (``y.copy_(x)`` would be a memcpy node).
    Each call of a graph reads its own slice of a buffer at least 4x the L2, so no call finds its data
    in L2 from the call before (the same 32 MiB replayed would be read from the 50 MB L2)."""
    if device != "cuda":
        return {"skipped": "CUDA graphs need a CUDA GPU"}
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 << 20)
    out = {"l2_bytes": l2, "copy": [], "gemv": []}
    for log2 in range(16, 21 if dry else 31, 2):
        nbytes = 1 << log2                                       # bytes read per call (fp32)
        calls = max(8, min(4096, -(-4 * l2 // nbytes)))
        x = torch.empty(calls, nbytes // 4, dtype=torch.float32, device=device)     # (calls, n)
        y = torch.empty_like(x)
        slices = iter(range(10 ** 9))

        def copy(x=x, y=y, slices=slices, calls=calls):
            i = next(slices) % calls
            torch.mul(x[i], 1.0, out=y[i])

        out["copy"].append({"bytes_moved": 2 * nbytes, "calls": calls,
                            "time_s": graph_time(torch, timer, copy, calls)})
        del x, y
    for n, k in [(256, 128)] if dry else DECODE_GEMVS:
        copies = max(1, -(-4 * l2 // (2 * n * k)))
        x = torch.randn(1, k, device=device, dtype=torch.bfloat16)                  # (1, K)
        w = torch.randn(copies, n, k, device=device, dtype=torch.bfloat16)          # (copies, N, K)
        slices = iter(range(10 ** 9))
        calls = max(10, copies)

        def gemv(x=x, w=w, slices=slices, copies=copies):
            torch.nn.functional.linear(x, w[next(slices) % copies])

        out["gemv"].append({"dtype": "bf16", "n": n, "k": k, "weight_copies": copies,
                            "time_s": graph_time(torch, timer, gemv, calls)})
        del x, w
    return out


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"


def measure_attention(torch, timer, device, dry):
    """PyTorch's SDPA, math vs flash backend, forward and forward + backward, at Figure 2's shape and the
    FlashAttention-2 paper's sweep. The math backend keeps fp16 (``allow_fp16_bf16_reduction_math_sdp``:
    since torch 2.5 it upcasts to fp32 by default), as standard attention ran when the papers measured it."""
    import torch.nn.functional as F

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # older torch
        return [{"error": "torch.nn.attention.sdpa_kernel not available"}]
    if hasattr(torch.backends.cuda, "allow_fp16_bf16_reduction_math_sdp"):
        torch.backends.cuda.allow_fp16_bf16_reduction_math_sdp(True)
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
                failed = False
                try:
                    with sdpa_kernel(backend), torch.no_grad():
                        row["forward_s"] = timer(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
                except RuntimeError as exc:                # no kernel for this backend, out of memory ...
                    row["error"], failed = _first_line(exc), True
                if not failed:
                    def fwd_bwd():                          # gradients returned, never accumulated into .grad
                        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                        torch.autograd.grad(o, (q, k, v), grad)

                    try:
                        with sdpa_kernel(backend):
                            row["forward_backward_s"] = timer(fwd_bwd, warmup=2, reps=5)
                    except RuntimeError as exc:
                        row["forward_backward_error"], failed = _first_line(exc), True
                if failed and device == "cuda":
                    torch.cuda.empty_cache()               # after the except: its traceback held the tensors
                rows.append(row)
    return rows


def print_comparison(results: dict, device: "str | None" = None) -> None:
    """Each measurement next to tinyml's simulated time on the matching preset, or on ``device``."""
    try:
        from tinyml.calibration import compare, graph_fit, measured_efficiencies, preset_for, table
        from tinyml.sim import load_device
    except ImportError as exc:
        print(f"(tinyml not importable here, {exc}: measure with --no-compare, then run "
              f"`python benchmarks/gpu_calibration.py --compare FILE` where tinyml is installed)")
        return
    name = preset_for(results, device)
    dev = load_device(name)
    rows = compare(results, name)
    print(f"\nmeasured on {results['gpu']} vs simulated on preset {name} (error = simulated / measured time - 1):")
    print(table(rows))
    fit = graph_fit(results)
    if fit:
        print(f"a kernel in a CUDA graph: {fit[0] * 1e6:.2f} us + bytes / {fit[1] / 1e12:.2f} TB/s measured (copies); "
              f"the preset: 0 us + bytes / {dev.hbm_bandwidth * dev.eff_hbm / 1e12:.2f} TB/s")
    eff = measured_efficiencies(results, name)
    if eff:
        def preset(key):                     # what the preset assumes now, where it has such a number
            value = dev.eff_hbm if key == "hbm" else dev.eff_matmul if key.startswith("matmul") else None
            return "" if value is None else f" (preset {value:.2f})"

        print("measured efficiencies (a preset's [efficiency] numbers would be these, sourced to this file): "
              + ", ".join(f"{key} {value:.2f}{preset(key)}" for key, value in eff.items()))
    matmuls = results.get("matmul") if isinstance(results.get("matmul"), list) else []
    under = next((r["under_load"] for r in matmuls if "under_load" in r), None)
    if under and "error" not in under:
        def value(key, unit):
            return f"{under[key]:.0f} {unit}" if key in under else "n/a"

        print(f"under a long bf16 GEMM ({under['samples']} samples): SM clock median {value('clocks.sm_median', 'MHz')} "
              f"(max {value('clocks.max.sm_median', 'MHz')}), power {value('power.draw_median', 'W')} of "
              f"{value('power.limit_median', 'W')}")


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
                                        "capability": f"{props.major}.{props.minor}",
                                        "l2_bytes": getattr(props, "L2_cache_size", None)}
        results["settings"] = {
            "allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            # measure_attention turns this on where torch has it (math backend in fp16, not upcast to fp32)
            "math_sdp_fp16_reduction": hasattr(torch.backends.cuda, "allow_fp16_bf16_reduction_math_sdp"),
        }
    slug = (results["preset"] or gpu).replace(" ", "_").lower()
    out = args.out or RESULTS / f"gpu_calibration_{slug}{'_dry' if args.dry_run else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    # the CUDA-graph section last: a capture that fails cannot take the others with it; the file is
    # rewritten after every section, so a run cut short keeps what it measured
    for key, measure in (("hbm", measure_bandwidth), ("launch", measure_launch), ("matmul", measure_matmul),
                         ("attention", measure_attention), ("graph", measure_graph)):
        try:
            results[key] = measure(torch, timer, device, args.dry_run)
        except Exception as exc:            # noqa: BLE001 - record it and go on to the next section
            results[key] = {"error": _first_line(exc)}
        results["wall_s"] = time.time() - t0
        out.write_text(json.dumps(results, indent=2))
        print(f"{key}: {'FAILED ' + results[key]['error'] if isinstance(results[key], dict) and 'error' in results[key] else 'measured'}"
              f" ({time.time() - t0:.0f} s)", flush=True)
    print(f"GPU: {gpu} (torch {torch.__version__}), {results['wall_s']:.0f} s; wrote {out}")
    if isinstance(results["matmul"], list):
        for row in results["matmul"]:
            print(f"matmul {row['dtype']} {row['m']}^3: {row['time_s'] * 1e3:.3f} ms = "
                  f"{row['flops_per_s'] / 1e12:.1f} TFLOP/s")
    if isinstance(results["attention"], list):
        for row in results["attention"]:
            for key in ("error", "forward_backward_error"):
                if key in row:
                    print(f"attention {row.get('shape')} {row.get('backend')} causal={row.get('causal')} "
                          f"{'fwd' if key == 'error' else 'fwd+bwd'}: {row[key]}")
    if args.no_compare:
        return 0
    if not results["preset"]:
        print(f"no tinyml preset matches {gpu!r}: compare later with --compare {out} --device PRESET")
        return 0
    from tinyml.sim.errors import TinymlError

    try:
        print_comparison(results)
    except TinymlError as exc:              # e.g. a MIG slice: fewer SMs than the preset
        print(f"not compared: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
