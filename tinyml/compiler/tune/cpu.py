"""Measuring a candidate on the real CPU: its generated kernel executed, timed, checked.

For each candidate::

    kernel = build(schedule)                     # the grid as prange over the cores with the parallel build
    C = kernel(A, B)                             # warm-up: the first run compiles (once per structure)
    check C against the float64 NumPy reference  # once: a wrong kernel is a failure, never a time
    times = [wall time of kernel(A, B) for _ in range(repeats)]
    time = median(times); noise = (q3 - q1) / median

The inputs are fixed random fp32 arrays (one seed per measurer). The kernel runs inside a
Profile on :func:`cpu_device`, a copy of the A100 preset whose SRAM and HBM are large enough
that no tile is refused: the CPU's caches make big tiles slow, not illegal. Wall time on a
shared machine is noisy; the noise is recorded with every trial and reported by the benchmark.

The kernels are built as every tinyml kernel is (:func:`tinyml.sim.jit.parallel_kernels`): serial by
default, their blocks on every core with ``TINYML_PARALLEL_KERNELS=1``, which ``tinyml tune --device
cpu`` and the tuning benchmark set. The hand-written matmul v3 the tuned kernel is compared with
(:mod:`.hand`) is the same build, so the comparison is like for like either way.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time

import numpy as np

from ...sim import Profile, TinymlError, load_device
from ...sim.host import check_host_memory
from ..tensor import ScheduleError, build
from .measure import Result, digest, failure


def cpu_device():
    """The Profile device CPU runs use: no SRAM / register / HBM limits (only the numbers run)."""
    return load_device("a100-40gb").replace(name="cpu", sm_count=os.cpu_count() or 1, sram_per_sm=1 << 30,
                                            register_bytes=0, max_blocks_per_sm=1, hbm_capacity=1 << 40)


def cpu_identity() -> dict:
    """What identifies this CPU in a log (its hash is the log's device hash)."""
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"kind": "cpu", "model": model, "machine": platform.machine(), "cores": os.cpu_count()}


class CpuMeasurer:
    """``measure(sch)`` -> :class:`~.measure.Result`: the median wall time of ``repeats`` runs."""

    kind = "cpu"

    def __init__(self, repeats: int = 5, seed: int = 0, rtol: float = 1e-3):
        self.name = "cpu"
        self.hash = digest(cpu_identity())
        self.repeats = max(1, int(repeats))
        self.seed = seed
        self.rtol = rtol
        self.device = cpu_device()
        self._data: dict = {}

    def inputs(self, func):
        """(arrays, float64 reference output) for ``func``, made once per workload."""
        key = str(func.to_dict())
        if key not in self._data:
            # float32 inputs (drawn in float64 first), their float64 copies in the reference, its float64
            # output and the kernel's float32 one: about 12 bytes per element of every buffer
            check_host_memory(12 * sum(math.prod(b.shape) for b in func.params),
                              f"measuring {func.name} {' x '.join(str(list(b.shape)) for b in func.inputs)} on the CPU",
                              advice="(every candidate is executed on real float32 inputs and checked against a "
                                     "float64 reference). Tune this shape on a simulated device instead (e.g. "
                                     "--device a100-40gb: counting mode, shapes only), or a smaller shape on the CPU.")
            rng = np.random.default_rng(self.seed)
            arrays = [rng.standard_normal(b.shape).astype(np.float32) for b in func.inputs]
            self._data[key] = (arrays, func.reference(*arrays))
        return self._data[key]

    def measure(self, sch) -> Result:
        arrays, ref = self.inputs(sch.func)
        try:
            kernel = build(sch)                                # the process's build, as matmul v3's
            with Profile(self.device):
                out = kernel(*arrays)                          # warm-up (compiles once per structure)
        except ScheduleError as e:
            return failure("illegal", e)
        except TinymlError as e:
            return failure("failed", e)
        err = float(np.max(np.abs(out - ref))) / max(float(np.max(np.abs(ref))), 1e-30)
        if not err <= self.rtol:                               # NaN fails too
            return Result("wrong", None, "WrongResult",
                          f"max |C - reference| / max |reference| = {err:.3g} > {self.rtol:g}")
        return time_runs(lambda: kernel(*arrays), self.device, self.repeats)


def time_runs(fn, device, repeats: int) -> Result:
    """Median wall time of ``repeats`` calls of ``fn`` (each inside a Profile) and its noise."""
    times = []
    for _ in range(repeats):
        with Profile(device):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    q = np.percentile(times, [25, 75])
    return Result("ok", float(med), profile={"runs_s": [float(t) for t in times]},
                  noise=float((q[1] - q[0]) / med) if med > 0 else 0.0)
