"""The cost model: per-block counters -> seconds and cycles.

One page of arithmetic, checkable by hand (docs: "How the simulator works")::

    blocks_per_sm = min(max_blocks_per_sm, sram_per_sm // sram_per_block)   # occupancy
    slots         = sm_count * blocks_per_sm
    work of a set of blocks on one SM, with r of them resident together:
        t_hbm    = HBM bytes   / (hbm_bandwidth  * eff_hbm    / sm_count)
        t_sram   = SRAM bytes  / (sram_bandwidth * eff_sram   / sm_count)
        t_matmul = matmul FLOP / (matmul_flops   * eff_matmul / sm_count)
        t_vector = vector FLOP / (vector_flops   * eff_vector / sm_count)
        t_mem    = t_hbm
        t_comp   = max(t_sram, t_matmul + t_vector)
        t_sm     = max(t_mem, t_comp) + min(t_mem, t_comp) / r
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
  it (no double buffering), which is exactly this picture.

L2 reuse (optional, declared by the kernel): when the blocks of one wave read
the same *panel* of an input (e.g. tiled-matmul blocks in one tile row all read
the same rows of A), the panel comes from HBM once per wave and the other
blocks hit in L2. Blocks of a wave are assumed to stream through their panels
in lockstep, so the live L2 working set is small. Blocks that declare no
panels are charged every byte they load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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


def occupancy(device: Device, sram_per_block: int) -> int:
    """Resident blocks per SM, limited by SRAM and by the hardware limit."""
    if sram_per_block <= 0:
        return device.max_blocks_per_sm
    return max(1, min(device.max_blocks_per_sm, device.sram_per_sm // int(sram_per_block)))


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


def kernel_cost(device: Device, counters: np.ndarray, *, dtype: str = "fp16",
                sram_per_block: int = 0, panels: dict | None = None) -> Cost:
    """Turn a launch's per-block counters into time on ``device`` (see module doc)."""
    n = counters.shape[0]
    bps = occupancy(device, sram_per_block)
    if n == 0:
        t = device.launch_overhead_s
        return Cost(t, t * device.clock_hz, 0, bps, "launch", "launch", {r: 0.0 for r in RESOURCES})
    slots = device.sm_count * bps
    idx = np.arange(n, dtype=np.int64)
    wave = idx // slots
    n_waves = int(wave[-1]) + 1

    reads = dram_reads(counters, wave, panels)
    per_block = np.stack([
        reads + counters[:, HBM_WRITE],
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
        t_sm = sm_time(per_sm, resident)
        busiest = int(t_sm.argmax())
        makespan = float(t_sm[busiest])
        resource_s = {res: float(per_sm[busiest, i]) for i, res in enumerate(RESOURCES)}
        limiter = _limiter(per_sm, t_sm)
    else:                # several waves: the block scheduler fills bps slots per SM as they free up
        duration = sm_time(times, bps) * bps                      # (n,) each slot holds 1/bps of an SM
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
        hbm_write_bytes=int(counters[:, HBM_WRITE].sum()), l2_hit_bytes=read_total - dram_read,
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


def waves_for(device: Device, n_blocks: int, sram_per_block: int = 0) -> int:
    """Number of waves a grid of ``n_blocks`` takes (closed form)."""
    return math.ceil(n_blocks / (device.sm_count * occupancy(device, sram_per_block)))
