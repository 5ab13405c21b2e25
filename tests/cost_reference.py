"""The cost model as it was before block classes: one row per block, every array O(blocks).

Kept verbatim (with the per-block list scheduler it used) as the reference that
tests/test_cost_classes.py compares the segment-based model in tinyml.sim.cost with.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tinyml.sim.cost import BOUND_NAMES, RESOURCES, Cost, Reuse, occupancy  # noqa: F401
from tinyml.sim.counters import FIRST_OPERAND, FLOPS_MATMUL, FLOPS_VECTOR, HBM_READ, HBM_WRITE, SRAM_READ, SRAM_WRITE
from tinyml.sim.device import Device


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


def per_block_cost(device: Device, counters: np.ndarray, *, dtype: str = "fp16",
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
    makespan, slot = list_schedule(duration.astype(np.float64), int(n_slots))
    return float(makespan), slot


@njit(cache=False)
def list_schedule(durations, n_slots):
    """(makespan, slot of each block): blocks in launch order, each to the earliest-free slot."""
    free = np.zeros(n_slots)              # a binary min-heap of slot free times ...
    slot_id = np.arange(n_slots)          # ... and which slot each heap entry is
    where = np.empty(len(durations), dtype=np.int64)
    for b in range(len(durations)):
        where[b] = slot_id[0]
        free[0] += durations[b]           # the root (earliest free) takes the block
        i = 0                             # sift it down
        while True:
            left = 2 * i + 1
            if left >= n_slots:
                break
            child = left
            if left + 1 < n_slots and free[left + 1] < free[left]:
                child = left + 1
            if free[child] >= free[i]:
                break
            free[i], free[child] = free[child], free[i]
            slot_id[i], slot_id[child] = slot_id[child], slot_id[i]
            i = child
    return free.max(), where


def _limiter(times: np.ndarray, duration: np.ndarray) -> str:
    """The resource that limits most of the time, over blocks (or SMs)."""
    t_comp = times[:, 2] + times[:, 3]
    per_block = np.where(
        times[:, 0] > np.maximum(times[:, 1], t_comp), 0,                  # hbm
        np.where(times[:, 1] >= t_comp, 1,                                 # sram
                 np.where(times[:, 2] >= times[:, 3], 2, 3)))              # matmul | vector
    by_resource = np.bincount(per_block, weights=duration, minlength=4)
    return RESOURCES[int(by_resource.argmax())]
