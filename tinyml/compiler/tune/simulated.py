"""Measuring a candidate on a simulated device: its generated kernel in counting mode.

The kernel walks its tile loops on ``meta`` inputs (no data), the simulator turns the
per-block counters into time, and the whole :class:`~tinyml.sim.KernelRecord` is kept:
bytes per level, L2 hits, occupancy, waves and which resource bounds it. Counting is
deterministic, so a simulated trial needs one run and has no noise.

Compiling is per *structure*: the generated source depends on the loop order, stages and
bindings, and every number (tile sizes, extents) arrives at run time, so the candidates of
one template compile a handful of kernels and each further trial only counts (a few ms for
a 4096^3 matmul; ``benchmarks/bench_tune.py`` reports it). A structure's first trials run
its source interpreted, compiling nothing, until they have taken half a second
(:mod:`tinyml.compiler.tensor.launch`: two tiers). A grid of identical blocks
(plain accesses, exact tiles: every matmul candidate of the templates) is counted from one
block, and a padded convolution from one block per edge class (:mod:`.one_class`), so a trial
costs about the same for 16 blocks or 65,536.
"""

from __future__ import annotations

from ...sim import Profile, TinymlError, load_device, meta
from ..tensor import ScheduleError, build
from .measure import Result, digest, failure
from .one_class import count_by_class


class SimulatedMeasurer:
    """``measure(sch)`` -> :class:`~.measure.Result` on the preset ``device``."""

    kind = "simulated"

    def __init__(self, device="a100-40gb", one_class: bool = True):
        self.one_class = one_class          # count one block per class (.one_class)
        self.device = load_device(device)
        self.name = self.device.name
        self.hash = digest(self.device.to_dict())

    def measure(self, sch) -> Result:
        try:
            kernel = build(sch, parallel=False)
            with Profile(self.device) as prof:
                if self.one_class and kernel.is_grid:
                    count_by_class(kernel)
                else:
                    kernel(*(meta(b.shape, b.dtype) for b in kernel.func.inputs))
        except ScheduleError as e:
            return failure("illegal", e)
        except TinymlError as e:           # SRAM / register overflow, out of HBM, a lowering refusal
            return failure("failed", e)
        rec = prof.records[0]
        return Result("ok", float(rec.time_s), profile=profile_dict(rec))


def profile_dict(rec) -> dict:
    """The kernel record as plain JSON numbers (what a log keeps of a simulated trial)."""
    d = rec.to_dict()
    d["hbm_bytes"] = int(rec.hbm_bytes)
    return {k: v for k, v in d.items() if k not in ("name", "start_s", "stream")}
