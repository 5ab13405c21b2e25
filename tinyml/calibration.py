"""A real GPU's measurements next to what tinyml simulates for the same work.

``benchmarks/gpu_calibration.py`` times, on a CUDA GPU, a large copy, a tiny kernel's launch,
dense matmuls and PyTorch's attention (its ``math`` backend: separate kernels through HBM; its
``flash`` backend: FlashAttention-2), and writes them to a JSON file. This module reads such a
file (or the dict the script builds) and simulates every measured setting on the matching
preset, in counting mode (shapes only)::

    from tinyml.calibration import compare, load
    for row in compare(load("benchmarks/results/gpu_calibration_h200.json")):
        print(row.what, row.measured_s, row.simulated_s, f"{row.error:+.0%}")

What each measurement is compared with:

====================  =======================================================================
measurement           simulated
====================  =======================================================================
HBM copy              its bytes at the preset's achievable bandwidth (spec x ``[efficiency] hbm``)
                      plus one launch: the number the preset *assumes*, so the row checks it
launch                the preset's ``[launch] overhead_s``
graph copy            a copy's bytes at the achievable bandwidth, no launch: a kernel in a CUDA
                      graph costs its work only, as ``tinyml decode``'s graph timing assumes
graph gemv            the decode step's linear (``tinyml.inference.step.linear``, bf16, batch 1)
                      less the launch overhead, as in the decode step's graph timing
matmul fp16/bf16      ``matmul_v4`` (the fidelity table's GEMM: register accumulators,
                      multi-stage loads)
matmul fp32           ``matmul_v4`` in fp32 (PyTorch's default keeps TF32 off: the fp32 rate)
attention ``math``    ``standard_attention`` (forward) and its backward: S and P through HBM
attention ``flash``   ``flash_attention(version=2)`` and ``flash_attention_backward``
====================  =======================================================================

The error of a row is ``simulated / measured - 1`` in *time*: negative means the simulator is
faster than the GPU. Nothing here fits a factor to the measurements; a preset number that the
rows show to be wrong is changed in the preset, with the measurement as its source.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from .sim.errors import TinymlError

#: PyTorch's ``get_device_name`` substrings -> tinyml presets, first match wins. The PCIe and NVL
#: parts have fewer SMs or lower power limits than the SXM boards the presets describe, a GH200 is
#: another part, a MIG slice a fraction of the chip: no preset.
PRESET_FOR = (("PCIe", None), ("PCIE", None), ("NVL", None), ("GH200", None), ("MIG", None), ("H200", "h200"),
              ("H100", "h100-sxm"),
              ("A100-SXM4-80GB", "a100-80gb"), ("A100-SXM4-40GB", "a100-40gb"), ("RTX 4090", "rtx-4090"),
              ("MI300X", "mi300x"))

#: the attention backends the script times, and the tinyml kernel each one is compared with
BACKENDS = {"math": "standard attention (S, P through HBM)", "flash": "FlashAttention-2"}


class CalibrationError(TinymlError, ValueError):
    """A calibration results file that cannot be compared (missing fields, no matching preset)."""


@dataclass(frozen=True)
class CalibrationRow:
    """One measurement on the real GPU and the simulated time of the same work."""

    kind: str            # "hbm", "launch", "graph copy", "graph gemv", "matmul", "attention"
    what: str
    measured_s: float
    simulated_s: float

    @property
    def error(self) -> float:
        return self.simulated_s / self.measured_s - 1


def preset_name(gpu_name: str) -> "str | None":
    """The tinyml preset for a GPU name as PyTorch reports it, or None."""
    for key, preset in PRESET_FOR:
        if key in gpu_name:
            return preset
    return None


def load(path) -> dict:
    """Read a results JSON written by ``benchmarks/gpu_calibration.py``."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CalibrationError(f"no calibration results at {path}: run benchmarks/gpu_calibration.py on a "
                               "GPU machine first (it writes benchmarks/results/gpu_calibration_<preset>.json)")
    except json.JSONDecodeError as exc:
        raise CalibrationError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}): it should be the file "
                               "benchmarks/gpu_calibration.py wrote; rerun the script") from None


def _field(entry: dict, key: str, where: str):
    try:
        return entry[key]
    except (KeyError, TypeError):
        raise CalibrationError(f"calibration results: {where} has no {key!r} (fields: "
                               f"{sorted(entry) if isinstance(entry, dict) else type(entry).__name__}); "
                               "the file should be what benchmarks/gpu_calibration.py wrote") from None


def _simulated_matmul(device: str, m: int, n: int, k: int, dtype: str) -> float:
    from .kernels.matmul import matmul_v4
    from .sim import Profile, meta

    with Profile(device) as prof:
        matmul_v4(meta((m, k), dtype), meta((k, n), dtype), dtype=dtype)      # (m, k) @ (k, n)
    return prof.time_s


def _simulated_decode_linear(device: str, n: int, k: int, dtype: str) -> float:
    """Seconds of the decode step's linear y (1, N) = x (1, K) @ W^T, its block sizes tuned as the step tunes them."""
    from .inference.formats import weight_format
    from .inference.step import linear
    from .sim import Profile

    with Profile(device) as prof:
        linear(weight_format(dtype), 1, n, k)
    return prof.time_s


def _simulated_attention(device: str, backend: str, batch: int, heads: int, seq: int, d: int, causal: bool,
                         dtype: str, backward: bool) -> float:
    """Seconds of PyTorch's ``backend`` at one shape: forward, or forward + backward."""
    from .kernels.attention.flash import flash_attention, flash_attention_backward
    from .kernels.attention.standard import standard_attention, standard_attention_backward
    from .sim import Profile, meta

    with Profile(device) as prof:
        q, k, v = (meta((batch, heads, seq, d), dtype) for _ in range(3))      # (B, H, N, d)
        if backend == "math":
            out = standard_attention(q, k, v, causal=causal, dtype=dtype, return_saved=backward)
            if backward:
                standard_attention_backward(meta((batch, heads, seq, d), dtype), out[1])
        else:
            out = flash_attention(q, k, v, version=2, causal=causal, dtype=dtype, return_saved=backward)
            if backward:
                flash_attention_backward(meta((batch, heads, seq, d), dtype), out[1])
    return prof.time_s


def _row(kind: str, what: str, measured_s: float, simulate) -> CalibrationRow:
    """A row whose simulated time is ``simulate()``, or NaN with the reason in ``what`` when the simulator
    refuses the setting (say, out of HBM on the preset where the GPU had room): one such setting does not
    stop the comparison."""
    try:
        return CalibrationRow(kind, what, measured_s, float(simulate()))
    except TinymlError as exc:
        return CalibrationRow(kind, f"{what} (not simulated: {type(exc).__name__})", measured_s, float("nan"))


def preset_for(results: dict, device: "str | None" = None) -> str:
    """``device`` if given, else the preset the results name or the one matching their GPU."""
    device = device or results.get("preset") or preset_name(str(results.get("gpu", "")))
    if not device:
        raise CalibrationError(f"no tinyml preset matches the GPU {results.get('gpu')!r}: name a preset "
                               "(`tinyml devices` lists them; device= here, --device on gpu_calibration.py) to "
                               "compare with one anyway")
    return device


def compare(results: dict, device: "str | None" = None) -> list[CalibrationRow]:
    """Every measurement in ``results`` next to its simulated time on ``device`` (default: the
    preset matching the measured GPU). What the script recorded as failed is skipped: a whole section
    (``{"error": ...}``), an attention setting with no time (``"error"``: no kernel for the backend, out
    of memory), the forward + backward of one whose forward ran (``"forward_backward_error"``)."""
    from .sim import load_device

    device = preset_for(results, device)
    dev = load_device(device)
    sms = (results.get("device_properties") or {}).get("sm_count")
    if sms and sms != dev.sm_count:
        raise CalibrationError(f"the measured GPU {results.get('gpu')!r} has {sms} SMs, preset {device!r} "
                               f"{dev.sm_count}: not the same chip. Compare with a preset of the same part "
                               "(`tinyml devices`; device= here, --device on gpu_calibration.py), or add one for "
                               "this GPU")
    hbm_rate = dev.hbm_bandwidth * dev.eff_hbm                          # the preset's achievable bytes/s
    rows: list[CalibrationRow] = []
    results = {key: value for key, value in results.items()             # a section that failed on the GPU
               if not (isinstance(value, dict) and "error" in value)}
    if "hbm" in results:
        hbm = results["hbm"]
        moved = _field(hbm, "bytes_moved", "hbm")
        rows.append(CalibrationRow("hbm", f"copy {moved / 2**20:,.0f} MiB (read + write)", _field(hbm, "time_s", "hbm"),
                                   moved / hbm_rate + dev.launch_overhead_s))
    if "launch" in results:
        rows.append(CalibrationRow("launch", "launch overhead, one tiny kernel",
                                   _field(results["launch"], "time_per_launch_s", "launch"), dev.launch_overhead_s))
    graph = results.get("graph") or {}
    for i, cp in enumerate(graph.get("copy", ())):
        moved = _field(cp, "bytes_moved", f"graph.copy[{i}]")
        rows.append(CalibrationRow("graph copy", f"copy {moved / 2**20:,.4g} MiB in a CUDA graph",
                                   _field(cp, "time_s", f"graph.copy[{i}]"), moved / hbm_rate))
    for i, gv in enumerate(graph.get("gemv", ())):
        where = f"graph.gemv[{i}]"
        n, k, dt = (_field(gv, key, where) for key in ("n", "k", "dtype"))
        rows.append(_row("graph gemv", f"gemv {dt} {k}->{n} in a CUDA graph", _field(gv, "time_s", where),
                         lambda: _simulated_decode_linear(device, n, k, dt) - dev.launch_overhead_s))
    for i, mm in enumerate(results.get("matmul", ())):
        where = f"matmul[{i}]"
        m, n, k, dt = (_field(mm, key, where) for key in ("m", "n", "k", "dtype"))
        if dt not in dev.matmul_flops:
            continue
        rows.append(_row("matmul", f"matmul {dt} {m}x{n}x{k}", _field(mm, "time_s", where),
                         lambda: _simulated_matmul(device, m, n, k, dt)))
    for i, att in enumerate(results.get("attention", ())):
        if "forward_s" not in att and "forward_backward_s" not in att:   # failed on the GPU ("error")
            continue
        where = f"attention[{i}]"
        backend = _field(att, "backend", where)
        if backend not in BACKENDS:
            raise CalibrationError(f"{where}: backend {backend!r} is not one of {sorted(BACKENDS)}")
        shape = tuple(_field(att, key, where) for key in ("batch", "heads", "seq", "head_dim"))
        causal, dt = bool(_field(att, "causal", where)), _field(att, "dtype", where)
        dt = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}.get(dt, dt)
        label = (f"attention {backend:5s} b{shape[0]} h{shape[1]} n{shape[2]} d{shape[3]} {dt}"
                 f"{' causal' if causal else ''}")
        for key, backward, part in (("forward_s", False, "fwd"), ("forward_backward_s", True, "fwd+bwd")):
            if key in att:
                rows.append(_row("attention", f"{label} {part}", att[key],
                                 lambda: _simulated_attention(device, backend, *shape, causal, dt, backward)))
    return rows


def graph_fit(results: dict) -> "tuple[float, float] | None":
    """(seconds a kernel costs beyond its bytes, streaming bytes/s): the least-squares line of time
    against bytes over the copies timed inside a CUDA graph; None without at least two of them."""
    copies = (results.get("graph") or {}).get("copy", ())
    if len(copies) < 2:
        return None
    import numpy as np

    moved = np.array([c["bytes_moved"] for c in copies], dtype=np.float64)
    time = np.array([c["time_s"] for c in copies], dtype=np.float64)
    slope, intercept = np.polyfit(moved, time, 1)
    return float(intercept), float(1 / slope)


def measured_efficiencies(results: dict, device: "str | None" = None) -> dict[str, float]:
    """What the preset's ``[efficiency]`` numbers would be if they were these measurements: ``hbm`` =
    the large copy's bandwidth / the spec, ``matmul_<dtype>`` = the best GEMM's FLOP/s / the spec
    (tensor-core rate), and ``clock`` = the SM clock a long GEMM held / its maximum. A preset takes
    them with the results file as their source; nothing is fitted."""
    from .sim import load_device

    dev = load_device(preset_for(results, device))
    out: dict[str, float] = {}
    hbm = results.get("hbm")
    if isinstance(hbm, dict) and "bytes_moved" in hbm and "time_s" in hbm:
        out["hbm"] = hbm["bytes_moved"] / hbm["time_s"] / dev.hbm_bandwidth
    matmuls = results.get("matmul") if isinstance(results.get("matmul"), list) else []
    for row in matmuls:
        dt = row.get("dtype")
        if dt in dev.matmul_flops and "time_s" in row:
            rate = 2 * row["m"] * row["n"] * row["k"] / row["time_s"] / dev.matmul_rate(dt)
            out[f"matmul_{dt}"] = max(out.get(f"matmul_{dt}", 0.0), rate)
        under = row.get("under_load") or {}
        if "clocks.sm_median" in under and under.get("clocks.max.sm_median"):
            out["clock"] = under["clocks.sm_median"] / under["clocks.max.sm_median"]
    return out


def _ms(seconds: float) -> str:
    if seconds != seconds:                              # NaN: not simulated
        return f"{'-':>12s}"
    return f"{seconds * 1e3:9.3f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:9.2f} us"


def summary(rows: list[CalibrationRow]) -> dict[str, tuple[int, float]]:
    """Per kind: (rows, median |error|) over the rows that were simulated."""
    kinds: dict[str, list[float]] = {}
    for row in rows:
        if row.simulated_s == row.simulated_s:          # NaN: not simulated, no error to count
            kinds.setdefault(row.kind, []).append(abs(row.error))
    return {kind: (len(errs), statistics.median(errs)) for kind, errs in kinds.items()}


def table(rows: list[CalibrationRow]) -> str:
    """The rows as aligned text, then the median |error| of each kind."""
    lines = [f"{'what':52s} {'measured':>12s} {'simulated':>12s} {'error':>7s}"]
    for row in rows:
        error = f"{row.error:+7.0%}" if row.error == row.error else f"{'-':>7s}"
        lines.append(f"{row.what:52s} {_ms(row.measured_s)} {_ms(row.simulated_s)} {error}")
    if any(row.kind == "attention" for row in rows):
        lines.append("attention backends: " + "; ".join(f"{b} = {what}" for b, what in BACKENDS.items()))
    for kind, (n, med) in summary(rows).items():
        lines.append(f"median |error| {kind:10s} over {n:3d} rows: {med:.1%}")
    return "\n".join(lines)
