"""Profile: the ordered record of every kernel launched on a simulated device.

    with Profile("a100-40gb") as prof:
        c = matmul(a, b)
    print(prof.table())
    prof.to_chrome_trace("trace.json")     # open in ui.perfetto.dev
    prof.roofline("roofline.png")

Kernels record into the innermost active profile. With none active, a kernel
runs in a throwaway profile on the default device (capacity is still checked).

The stack of active profiles is per *context* (:mod:`contextvars`): each thread
starts with none active, and each asyncio task sees the profiles of the code
that created it plus its own, so two threads or tasks each inside their own
``with Profile(...)`` record only their own kernels, costed on their own device.
A worker thread that should record into its caller's profile enters it itself
(``with prof:``) or runs in a copy of the caller's context
(``contextvars.copy_context().run``).
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .classes import BlockClasses
from .cost import kernel_cost
from .counters import FLOPS_MATMUL, FLOPS_VECTOR, SRAM_READ, SRAM_WRITE
from .device import Device, load_device
from .memory import HbmLedger

#: The active profiles of this context, innermost last. A tuple, never mutated in place:
#: entering sets a longer one, so a task that copied the context keeps its own.
_ACTIVE: ContextVar[tuple["Profile", ...]] = ContextVar("tinyml_active_profiles", default=())


@dataclass
class KernelRecord:
    """One kernel launch as the simulator saw it (fields of the JSON schema)."""

    name: str
    grid: tuple
    n_blocks: int
    dtype: str
    start_s: float
    time_s: float
    cycles: float
    bound: str
    limiter: str
    waves: int
    blocks_per_sm: int
    sram_per_block_bytes: int
    hbm_read_bytes: int
    hbm_write_bytes: int
    l2_hit_bytes: int
    l2_write_hit_bytes: int
    sram_read_bytes: int
    sram_write_bytes: int
    flops_matmul: int
    flops_vector: int
    peak_hbm_bytes: int
    stream: int = 0
    resource_s: dict = field(default_factory=dict)
    threads_per_block: int = 0      # declared threads per block (0: not declared)
    occupancy_limit: str = "blocks"  # what bounds blocks_per_sm: blocks | sram | registers | threads
    notes: tuple = ()               # what the kernel decided that the caller asked otherwise (one line each)

    @property
    def hbm_bytes(self) -> int:
        return self.hbm_read_bytes + self.hbm_write_bytes

    @property
    def flops(self) -> int:
        return self.flops_matmul + self.flops_vector

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: FLOPs per HBM byte."""
        return self.flops / self.hbm_bytes if self.hbm_bytes else float("inf")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["grid"] = list(self.grid)
        d["notes"] = list(self.notes)
        return d


class Profile:
    """A context manager that collects :class:`KernelRecord` s on one device."""

    def __init__(self, device: "str | Device | None" = None, name: str = "profile"):
        self.device = load_device(device)
        self.name = name
        self.hbm = HbmLedger(self.device.hbm_capacity, self.device.name)
        self.records: list[KernelRecord] = []

    # -- activation -----------------------------------------------------------
    def __enter__(self) -> "Profile":
        _ACTIVE.set(_ACTIVE.get() + (self,))
        return self

    def __exit__(self, *exc) -> None:
        stack = list(_ACTIVE.get())
        for i in reversed(range(len(stack))):    # its innermost entry (one Profile may be entered twice)
            if stack[i] is self:
                del stack[i]
                break
        _ACTIVE.set(tuple(stack))

    # -- recording --------------------------------------------------------------
    def record(self, name: str, grid: tuple, counters: "np.ndarray | BlockClasses", *, dtype: str,
               sram_per_block: int, panels: dict | None = None, stream: int = 0,
               reuse=None, regs_per_block: int = 0, pipelined: bool = False, issue=None,
               threads_per_block: int = 0, notes: tuple = ()) -> KernelRecord:
        """Cost a launch's counters on this device and append the record.

        ``counters`` are per-block rows or :class:`~tinyml.sim.classes.BlockClasses` (counting
        mode's one representative block per class); both give the same record.

        ``panels`` and ``reuse`` declare L2 reuse (:mod:`tinyml.sim.cost`);
        ``regs_per_block`` is the register-file bytes one block's accumulators take;
        ``pipelined`` says the modelled GPU kernel overlaps its loads with its compute;
        ``issue`` (:class:`~tinyml.sim.cost.Issue`) which instructions it issues (default: the peak);
        ``threads_per_block`` the block's threads, for the threads-per-SM occupancy limit (0: undeclared);
        ``notes`` one line each on what the launch did that its caller asked otherwise (a block size
        clamped to the sequence), shown under :meth:`table`.
        """
        cost = kernel_cost(self.device, counters, dtype=dtype, sram_per_block=sram_per_block, panels=panels,
                           reuse=reuse, regs_per_block=regs_per_block, pipelined=pipelined,
                           issue=issue, threads_per_block=threads_per_block)
        if isinstance(counters, BlockClasses):
            n_blocks, sums = counters.n_blocks, counters.totals()
        else:
            n_blocks, sums = int(counters.shape[0]), counters.sum(axis=0, dtype=np.int64)
        rec = KernelRecord(
            name=name, grid=tuple(int(g) for g in grid), n_blocks=n_blocks, dtype=dtype,
            start_s=self.time_s, time_s=cost.time_s, cycles=cost.cycles, bound=cost.bound, limiter=cost.limiter,
            waves=cost.waves, blocks_per_sm=cost.blocks_per_sm, sram_per_block_bytes=int(sram_per_block),
            hbm_read_bytes=cost.hbm_read_bytes, hbm_write_bytes=cost.hbm_write_bytes,
            l2_hit_bytes=cost.l2_hit_bytes, l2_write_hit_bytes=cost.l2_write_hit_bytes,
            sram_read_bytes=int(sums[SRAM_READ]), sram_write_bytes=int(sums[SRAM_WRITE]),
            flops_matmul=int(sums[FLOPS_MATMUL]), flops_vector=int(sums[FLOPS_VECTOR]),
            peak_hbm_bytes=self.hbm.peak, stream=stream, resource_s=cost.resource_s,
            threads_per_block=int(threads_per_block), occupancy_limit=cost.occupancy_limit,
            notes=tuple(str(n) for n in notes),
        )
        self.records.append(rec)
        return rec

    # -- totals -------------------------------------------------------------------
    def _sum(self, attr: str):
        return sum(getattr(r, attr) for r in self.records)

    @property
    def time_s(self) -> float:
        return self._sum("time_s")

    @property
    def hbm_read_bytes(self) -> int:
        return self._sum("hbm_read_bytes")

    @property
    def hbm_write_bytes(self) -> int:
        return self._sum("hbm_write_bytes")

    @property
    def hbm_bytes(self) -> int:
        return self.hbm_read_bytes + self.hbm_write_bytes

    @property
    def flops_matmul(self) -> int:
        return self._sum("flops_matmul")

    @property
    def flops_vector(self) -> int:
        return self._sum("flops_vector")

    @property
    def peak_hbm_bytes(self) -> int:
        return self.hbm.peak

    @property
    def bound(self) -> str:
        """What limits the whole profile: the bound of the kernels taking most time."""
        by: dict[str, float] = {}
        for r in self.records:
            by[r.bound] = by.get(r.bound, 0.0) + r.time_s
        return max(by, key=by.get) if by else "none"

    def totals(self) -> dict:
        return {
            "kernels": len(self.records), "time_s": self.time_s,
            "hbm_read_bytes": self.hbm_read_bytes, "hbm_write_bytes": self.hbm_write_bytes,
            "flops_matmul": self.flops_matmul, "flops_vector": self.flops_vector,
            "peak_hbm_bytes": self.peak_hbm_bytes, "bound": self.bound,
        }

    # -- outputs ------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"device": self.device.name, "totals": self.totals(),
                "kernels": [r.to_dict() for r in self.records]}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self, width: int = 120) -> str:
        """A plain-text table of the kernels and their totals."""
        from .report import profile_table

        return profile_table(self, width=width)

    def to_chrome_trace(self, path: "str | Path") -> Path:
        """Write a Chrome trace (open it at ui.perfetto.dev or chrome://tracing)."""
        from .report import chrome_trace

        path = Path(path)
        path.write_text(json.dumps(chrome_trace(self)))
        return path

    def roofline(self, path: "str | Path", dtype: str = "fp16"):
        """Draw every kernel against the device's roofs; returns the figure's path."""
        from .roofline import draw_roofline

        return draw_roofline([self], path, dtype=dtype)


def active_profile() -> Profile | None:
    """The innermost profile active in this thread or task, or None."""
    stack = _ACTIVE.get()
    return stack[-1] if stack else None


def current_profile() -> Profile:
    """The active profile, or a throwaway one on the default device."""
    prof = active_profile()
    return prof if prof is not None else Profile()


def clear_active_profiles() -> None:
    """Deactivate every profile of this context (for test harnesses that found a leak)."""
    _ACTIVE.set(())
