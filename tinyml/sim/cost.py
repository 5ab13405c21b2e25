"""The cost model: per-block counters -> seconds and cycles.

One page of arithmetic, checkable by hand (docs: "How the simulator works")::

    blocks_per_sm = min(max_blocks_per_sm, sram_per_sm // sram_per_block,   # occupancy
                        register_bytes // regs_per_block)
    slots         = sm_count * blocks_per_sm
    work of a set of blocks on one SM, with r of them resident together:
        t_hbm    = HBM bytes   / (hbm_bandwidth  * eff_hbm    / sm_count)
        t_sram   = SRAM bytes  / (sram_bandwidth * eff_sram   / sm_count)
        t_matmul = matmul FLOP / (matmul_flops   * eff_matmul / sm_count)
        t_vector = vector FLOP / (vector_flops   * eff_vector / sm_count)
        t_mem    = t_hbm
        t_comp   = max(t_sram, t_matmul + t_vector)
        t_sm     = max(t_mem, t_comp) + min(t_mem, t_comp) / r     # (pipelined kernel: r = infinity)
    if n_blocks <= slots (one wave): block b runs on SM b % sm_count;
        time = launch_overhead + max over SMs of t_sm
    else: each block holds one of the slots for blocks_per_sm * t_sm(the block alone,
        r = blocks_per_sm); the block scheduler gives each block, in launch order, the
        first slot that frees up (list scheduling);
        time = launch_overhead + when the last slot finishes

For a grid of identical blocks this is the familiar wave formula:
``waves = ceil(n_blocks / slots)`` and ``time = launch_overhead + waves * t_wave``.

Every resource is shared fairly between the SMs: an SM gets 1/sm_count of the
HBM bandwidth, so a grid with fewer blocks than SMs cannot reach full
bandwidth (low occupancy), and a last, partial wave costs a full block
duration (tail effect). Uneven blocks (causal attention) balance across SMs as
they do on a real GPU, instead of waiting at wave boundaries.

Two rules decide what overlaps on one SM:

* Tensor-core and vector work add up (``t_matmul + t_vector``): a block's warps
  issue both from one instruction stream, and in attention they depend on each
  other (the softmax needs S, the PV product needs P). FlashAttention-3 overlaps
  them on Hopper with warp specialization; A100-era kernels do not.
* Memory hides behind compute only as far as other resident blocks can fill
  the gaps (the ``/ r``): with one block per SM (big tiles) memory and compute
  add up, and with many the slower resource alone sets the pace. tinyml's kernels load a tile, then compute on
  it (no double buffering), which is exactly this picture. A kernel modelling a
  *software-pipelined* GPU kernel (one that issues the next tile's loads before
  computing on the current tile, as cuBLAS and the FlashAttention CUDA kernels
  do) declares ``pipelined=True``: its own loads overlap its compute, so
  ``t_sm = max(t_mem, t_comp)`` even with one block per SM (the first tile's
  load, a small prologue, is not charged).

L2 reuse (optional, declared by the kernel): when the blocks of one wave read
the same *panel* of an input (e.g. tiled-matmul blocks in one tile row all read
the same rows of A), the panel comes from HBM once per wave and the other
blocks hit in L2. Blocks of a wave are assumed to stream through their panels
in lockstep, so the live L2 working set is small. Blocks that declare no
panels are charged every byte they load.

L2 capacity (optional, declared by the kernel as a :class:`Reuse`): a block
that sweeps the same data several times (FlashAttention-1 reads its Q and O
rows once per K/V block) re-reads it from L2 instead of HBM *if the working
sets of all the blocks of its wave fit in L2 together*::

    working set of a wave = sum over its blocks of (distinct bytes re-read + distinct bytes written)
    fits:      a re-read operand costs its distinct bytes once; writes cost their distinct bytes once
               (L2 is write-back: a value rewritten in L2 reaches HBM once, when evicted)
    too big:   every byte is charged (a cyclic sweep over more data than an LRU cache
               holds misses every time: there is no partial credit)

Data a block wrote itself before reading it back (FA1's O, l, m) is already in
L2, so its distinct re-read bytes are 0. A device without an L2 capacity
(``l2_bytes = 0``) gets no reuse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .counters import FIRST_OPERAND, FLOPS_MATMUL, FLOPS_VECTOR, HBM_READ, HBM_WRITE, SRAM_READ, SRAM_WRITE
from .device import Device

RESOURCES = ("hbm", "sram", "matmul", "vector")
#: what ``bound`` says when each resource (the ``limiter``) limits a kernel
BOUND_NAMES = {"hbm": "memory", "sram": "sram", "matmul": "compute", "vector": "compute", "launch": "launch"}


@dataclass(frozen=True)
class Cost:
    """What the cost model says about one kernel launch."""

    time_s: float
    cycles: float
    waves: int
    blocks_per_sm: int
    bound: str                      # memory | compute | sram | launch
    limiter: str                    # hbm | sram | matmul | vector | launch
    resource_s: dict = field(default_factory=dict)   # per resource, the slot that finishes last
    hbm_read_bytes: int = 0         # after L2 reuse: what HBM really serves
    hbm_write_bytes: int = 0
    l2_hit_bytes: int = 0           # loads served by L2 instead of HBM
    l2_write_hit_bytes: int = 0     # stores absorbed by L2 (rewritten before they reached HBM)
    l2_working_set_bytes: int = 0   # largest wave working set of a Reuse declaration (0: none)


@dataclass(frozen=True)
class Reuse:
    """A kernel's declaration for the L2 capacity model (see the module docstring).

    ``reads``: {operand index: distinct bytes each block reads of that operand
    and did not write itself} (an int for every block or one per block);
    ``writes``: distinct bytes each block writes.
    """

    reads: Mapping[int, object]
    writes: object = 0


def occupancy(device: Device, sram_per_block: int, regs_per_block: int = 0) -> int:
    """Resident blocks per SM, limited by SRAM, by the register file and by the hardware limit."""
    bps = device.max_blocks_per_sm
    if sram_per_block > 0:
        bps = min(bps, device.sram_per_sm // int(sram_per_block))
    if regs_per_block > 0 and device.register_bytes > 0:
        bps = min(bps, device.register_bytes // int(regs_per_block))
    return max(1, bps)


def dram_reads(counters: np.ndarray, wave: np.ndarray, panels: dict | None) -> np.ndarray:
    """Per-block HBM read bytes after wave-level L2 reuse of declared panels."""
    reads = counters[:, HBM_READ].astype(np.float64)
    if not panels:
        return reads
    saved = np.zeros_like(reads)
    for operand, panel in panels.items():
        col = counters[:, FIRST_OPERAND + operand].astype(np.float64)
        panel = np.asarray(panel, dtype=np.int64)
        key = wave * (int(panel.max()) + 1) + panel
        _, first = np.unique(key, return_index=True)
        repeat = np.ones(len(key), dtype=bool)
        repeat[first] = False
        saved += np.where(repeat, col, 0.0)          # a repeat read hits in L2
    # Spread each wave's savings evenly over its blocks: the fetch is shared.
    n_waves = int(wave.max()) + 1 if len(wave) else 0
    wave_reads = np.bincount(wave, weights=reads, minlength=n_waves)
    wave_saved = np.bincount(wave, weights=saved, minlength=n_waves)
    scale = np.divide(wave_reads - wave_saved, wave_reads, out=np.ones(n_waves), where=wave_reads > 0)
    return reads * scale[wave]


def capacity_reuse(device: Device, counters: np.ndarray, wave: np.ndarray, reuse: "Reuse | None"):
    """(read bytes saved per block, write bytes saved per block, largest wave working set)."""
    n = counters.shape[0]
    none = np.zeros(n), np.zeros(n), 0
    if reuse is None:
        return none
    per_block = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,))  # noqa: E731
    distinct_w = per_block(reuse.writes)
    footprint = distinct_w.copy()
    saved_r = np.zeros(n)
    for operand, distinct in reuse.reads.items():
        distinct = per_block(distinct)
        col = counters[:, FIRST_OPERAND + operand].astype(np.float64)
        footprint += distinct
        saved_r += np.maximum(col - distinct, 0.0)
    n_waves = int(wave.max()) + 1
    working = np.bincount(wave, weights=footprint, minlength=n_waves)     # bytes per wave
    largest = int(working.max())
    if device.l2_bytes <= 0:
        return np.zeros(n), np.zeros(n), largest
    fits = (working <= device.l2_bytes)[wave]
    saved_w = np.maximum(counters[:, HBM_WRITE] - distinct_w, 0.0)
    return np.where(fits, saved_r, 0.0), np.where(fits, saved_w, 0.0), largest


def kernel_cost(device: Device, counters: np.ndarray, *, dtype: str = "fp16",
                sram_per_block: int = 0, panels: dict | None = None, reuse: "Reuse | None" = None,
                regs_per_block: int = 0, pipelined: bool = False) -> Cost:
    """Turn a launch's per-block counters into time on ``device`` (see module doc)."""
    n = counters.shape[0]
    bps = occupancy(device, sram_per_block, regs_per_block)
    if n == 0:
        t = device.launch_overhead_s
        return Cost(t, t * device.clock_hz, 0, bps, "launch", "launch", {r: 0.0 for r in RESOURCES})
    slots = device.sm_count * bps
    idx = np.arange(n, dtype=np.int64)
    wave = idx // slots
    n_waves = int(wave[-1]) + 1

    reads = dram_reads(counters, wave, panels)
    saved_r, saved_w, working_set = capacity_reuse(device, counters, wave, reuse)
    reads = reads - saved_r
    writes = counters[:, HBM_WRITE] - saved_w
    per_block = np.stack([
        reads + writes,
        (counters[:, SRAM_READ] + counters[:, SRAM_WRITE]).astype(np.float64),
        counters[:, FLOPS_MATMUL].astype(np.float64),
        counters[:, FLOPS_VECTOR].astype(np.float64),
    ], axis=1)                                                    # (n, 4)
    share = np.array([
        device.hbm_bandwidth * device.eff_hbm,
        device.sram_bandwidth * device.eff_sram,
        device.matmul_rate(dtype) * device.eff_matmul,
        device.vector_rate("fp32") * device.eff_vector,
    ]) / device.sm_count
    times = per_block / share                                     # (n, 4) seconds on a whole SM
    if n <= slots:       # one wave: block b shares SM b % sm_count with the others placed there
        sm = idx % device.sm_count
        per_sm = np.stack([np.bincount(sm, weights=times[:, i], minlength=device.sm_count)
                           for i in range(4)], axis=1)            # (SMs, 4)
        resident = np.bincount(sm, minlength=device.sm_count)
        t_sm = sm_time(per_sm, np.inf if pipelined else resident)
        busiest = int(t_sm.argmax())
        makespan = float(t_sm[busiest])
        resource_s = {res: float(per_sm[busiest, i]) for i, res in enumerate(RESOURCES)}
        limiter = _limiter(per_sm, t_sm)
    else:                # several waves: the block scheduler fills bps slots per SM as they free up
        duration = sm_time(times, np.inf if pipelined else bps) * bps                      # (n,) each slot holds 1/bps of an SM
        makespan, slot = schedule(duration, slots)
        last = slot == int(np.argmax(np.bincount(slot, weights=duration)))   # the slot finishing last
        resource_s = {res: float(bps * times[last, i].sum()) for i, res in enumerate(RESOURCES)}
        limiter = _limiter(times, duration)
    t_waves = makespan
    if device.launch_overhead_s > t_waves:
        limiter = "launch"
    time_s = device.launch_overhead_s + t_waves
    read_total = int(counters[:, HBM_READ].sum())
    dram_read = int(round(float(reads.sum())))
    return Cost(
        time_s=time_s, cycles=time_s * device.clock_hz, waves=n_waves, blocks_per_sm=bps,
        bound=BOUND_NAMES[limiter], limiter=limiter, resource_s=resource_s, hbm_read_bytes=dram_read,
        hbm_write_bytes=int(round(float(writes.sum()))), l2_hit_bytes=read_total - dram_read,
        l2_write_hit_bytes=int(round(float(saved_w.sum()))), l2_working_set_bytes=working_set,
    )


def sm_time(times: np.ndarray, resident) -> np.ndarray:
    """Time of an SM doing ``times`` (..., 4) of work with ``resident`` blocks (see module doc)."""
    t_mem = times[..., 0]
    t_comp = np.maximum(times[..., 1], times[..., 2] + times[..., 3])
    return np.maximum(t_mem, t_comp) + np.minimum(t_mem, t_comp) / np.maximum(resident, 1)


def schedule(duration: np.ndarray, n_slots: int) -> tuple[float, np.ndarray]:
    """(makespan, slot of each block) of list scheduling; closed form when all blocks are equal."""
    n = len(duration)
    if np.all(duration == duration[0]):
        return float(-(-n // n_slots) * duration[0]), np.arange(n) % n_slots
    from .schedule import list_schedule

    makespan, slot = list_schedule(duration.astype(np.float64), int(n_slots))
    return float(makespan), slot


def _limiter(times: np.ndarray, duration: np.ndarray) -> str:
    """The resource that limits most of the time, over blocks (or SMs)."""
    t_comp = times[:, 2] + times[:, 3]
    per_block = np.where(
        times[:, 0] > np.maximum(times[:, 1], t_comp), 0,                  # hbm
        np.where(times[:, 1] >= t_comp, 1,                                 # sram
                 np.where(times[:, 2] >= times[:, 3], 2, 3)))              # matmul | vector
    by_resource = np.bincount(per_block, weights=duration, minlength=4)
    return RESOURCES[int(by_resource.argmax())]


def waves_for(device: Device, n_blocks: int, sram_per_block: int = 0, regs_per_block: int = 0) -> int:
    """Number of waves a grid of ``n_blocks`` takes (closed form)."""
    return math.ceil(n_blocks / (device.sm_count * occupancy(device, sram_per_block, regs_per_block)))
