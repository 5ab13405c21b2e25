"""The cost model: per-block counters -> seconds and cycles.

One page of arithmetic, checkable by hand (docs: "How the simulator works")::

    blocks_per_sm = min(max_blocks_per_sm, sram_per_sm // sram_per_block,   # occupancy
                        register_bytes // regs_per_block,
                        threads_per_sm // threads_per_block)            # (kernels that declare threads)
    slots         = sm_count * blocks_per_sm
    work of a set of blocks on one SM, with r of them resident together:
        t_hbm    = HBM bytes   / (hbm_bandwidth  * eff_hbm    / sm_count)
        t_sram   = SRAM bytes  / (sram_bandwidth * eff_sram   / sm_count)
        t_matmul = matmul FLOP / (matmul_rate(dtype, issue.mma) * eff_matmul / sm_count)
        t_vector = max(FMA instr / (vector_flops / 2 * eff_vector / sm_count),  # FMA pipe: instructions,
                       INT ops   / (int_rate     * eff_vector / sm_count),      #   2 FLOPs per FMA
                       CVT ops   / (cvt_rate / sm_count),                       # I2F conversions (spec)
                       SFU ops   / (sfu_rate / sm_count))                       # exp2 on the SFU (spec rate)
           FMA instr = (vector FLOP - RNG INT ops) * issue.vector_ops_per_flop  # 0.5: every FLOP half an FMA
                 + exchange bytes / (sram_bandwidth * eff_sram / sm_count)    # warps meeting at barriers
        t_mem    = t_hbm
        t_comp   = max(t_sram, t_matmul + t_vector)      # (issue.overlap: max(t_matmul, t_vector))
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

Instruction classes (declared by the kernel as an :class:`Issue`): the tensor-core rate depends on
the instruction the kernel issues (an H100 reaches its peak only through Hopper's ``wgmma``;
Ampere-style ``mma.sync`` runs at the device's ``[mma_sync_flops]``), and every exponential is one
op on the special-function unit (16 results per clock per SM on A100 and H100), besides its FLOPs on
the FMA pipe. SFU ops are ``issue.sfu_per_mma_flop`` times the block's matmul FLOPs: attention does
``4 d`` matmul FLOPs (forward) per score and one exp per score, so the declaration is exact for
every tile shape and mask and needs no counter of its own. The FMA and SFU pipes run side by side
(independent instructions of one warp), so the vector phase takes the slower of the two. Likewise
integer work (the Philox RNG of dropout: ``issue.int_per_mma_flop`` of the counted vector FLOPs) issues
on the INT32 pipe where a device has one beside FP32 (Ampere and Hopper: ``[int32]``).

Warps: a kernel whose warps exchange partial results through SRAM between barriers (FlashAttention-1's
split-K: each warp holds a slice of K and V, and their partial outputs are summed in shared memory)
declares ``issue.exchange_per_mma_flop``, the bytes written and read for it per matmul FLOP. No warp
computes while they wait at the barrier, so that SRAM time adds to the vector phase instead of
overlapping the MMAs (the SRAM bytes are in the counters too; this is their serial part).

Two rules decide what overlaps on one SM:

* Tensor-core and vector work add up (``t_matmul + t_vector``): a block's warps
  issue both from one instruction stream, and in attention they depend on each
  other (the softmax needs S, the PV product needs P). FlashAttention-3 overlaps
  them on Hopper with warp specialization and ping-pong scheduling (two warpgroups,
  one in its softmax while the other is in its matmuls): it declares
  ``Issue(overlap=True)`` and ``t_comp = max(t_sram, max(t_matmul, t_vector))``;
  A100-era kernels do not.
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

Block classes: the counters come per block or as :class:`~tinyml.sim.classes.BlockClasses`
(one row per class of identical blocks, the launch order as runs). Either way the model works on
*segments*, runs cut at wave boundaries: blocks of one class in one wave cost the same, so memory
is O(classes + runs + waves), never O(blocks), and every sum above is a sum over segments times
their lengths. Only the list scheduler still places blocks one by one (O(blocks) time, no memory).

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

from .classes import BlockClasses, as_classes
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
    occupancy_limit: str = "blocks"  # what bounds blocks_per_sm: blocks | sram | registers | threads


@dataclass(frozen=True)
class Reuse:
    """A kernel's declaration for the L2 capacity model (see the module docstring).

    ``reads``: {operand index: distinct bytes each block reads of that operand
    and did not write itself} (an int for every block or one per block);
    ``writes``: distinct bytes each block writes.
    """

    reads: Mapping[int, object]
    writes: object = 0


@dataclass(frozen=True)
class Issue:
    """What a kernel issues on one SM (module doc: instruction classes).

    ``mma``: the tensor-core instruction class, ``"peak"`` (whatever reaches the device's peak: cuBLAS),
    ``"mma_sync"`` (Ampere-style warp MMA, FlashAttention-1/2) or ``"wgmma"`` (Hopper warpgroup MMA);
    ``sfu_per_mma_flop``: special-function ops (exp) per matmul FLOP;
    ``int_per_mma_flop``: integer ops (among the vector FLOPs) per matmul FLOP, for the INT32 pipe;
    ``exchange_per_mma_flop``: SRAM bytes the warps exchange between barriers, per matmul FLOP;
    ``overlap``: the matmul and vector phases run concurrently (warp-specialised ping-pong, FA3);
    ``vector_ops_per_flop``: FMA-pipe instructions per counted vector FLOP. The FP32 rate counts an FMA
    as 2 FLOPs in one instruction, so 0.5 (the default) prices every FLOP as half an FMA; a kernel whose
    max / add / mul / select issue one instruction per FLOP declares its mix (1.0 when no FLOP fuses);
    ``cvt_per_vector_flop``: type conversions (int -> float: I2F) per vector FLOP, on the conversion
    unit at ``[convert] ops_per_s`` (on the FMA pipe, one instruction each, where a device has none);
    ``int_per_vector_flop``: integer instructions (unpacking shifts and masks) per vector FLOP that are
    not among the FLOPs, on the INT32 pipe (on the FMA pipe where a device has none).
    """

    mma: str = "peak"
    sfu_per_mma_flop: float = 0.0
    exchange_per_mma_flop: float = 0.0
    int_per_mma_flop: float = 0.0
    overlap: bool = False
    vector_ops_per_flop: float = 0.5
    cvt_per_vector_flop: float = 0.0
    int_per_vector_flop: float = 0.0


PEAK = Issue()


def occupancy_limits(device: Device, sram_per_block: int, regs_per_block: int = 0,
                     threads_per_block: int = 0) -> dict:
    """Resident blocks per SM each resource allows: {"blocks", "sram", "registers", "threads"}.

    ``blocks`` is the hardware limit (``[sm] max_blocks``); a resource a kernel does not declare
    (0 bytes, 0 threads, or a device without a register file) is absent."""
    limits = {"blocks": device.max_blocks_per_sm}
    if sram_per_block > 0:
        limits["sram"] = device.sram_per_sm // int(sram_per_block)
    if regs_per_block > 0 and device.register_bytes > 0:
        limits["registers"] = device.register_bytes // int(regs_per_block)
    if threads_per_block > 0:
        limits["threads"] = device.threads_per_sm // int(threads_per_block)
    return limits


def occupancy_limit(device: Device, sram_per_block: int, regs_per_block: int = 0,
                    threads_per_block: int = 0) -> tuple[int, str]:
    """(resident blocks per SM, the resource that bounds it): the smallest of :func:`occupancy_limits`
    (at least 1; on a tie the first of blocks, sram, registers, threads)."""
    limits = occupancy_limits(device, sram_per_block, regs_per_block, threads_per_block)
    name = min(limits, key=limits.get)
    return max(1, limits[name]), name


def occupancy(device: Device, sram_per_block: int, regs_per_block: int = 0, threads_per_block: int = 0) -> int:
    """Resident blocks per SM, limited by SRAM, by the register file, by threads per SM (kernels that
    declare their threads per block) and by the hardware limit."""
    return occupancy_limit(device, sram_per_block, regs_per_block, threads_per_block)[0]


def _class_reuse(launch: BlockClasses, reuse: "Reuse | None", per_block: bool):
    """The canonical launch and the Reuse declaration as per-class arrays (or None).

    Reuse values are one int for every block, or one per block (per-block counters) or one per
    class (:class:`BlockClasses`); they join the class key, so blocks with different reuse
    values are different classes."""
    if reuse is None:
        return as_classes(launch), None
    n_rows = launch.shape[0] if per_block else launch.counters.shape[0]
    cols = [np.broadcast_to(np.asarray(reuse.writes, dtype=np.int64), (n_rows,))]
    ops = list(reuse.reads)
    cols += [np.broadcast_to(np.asarray(reuse.reads[op], dtype=np.int64), (n_rows,)) for op in ops]
    extra = np.stack(cols, axis=1)                                # (rows, 1 + n_ops)
    if per_block:
        keyed = as_classes(np.concatenate([launch, extra], axis=1))
    else:
        keyed = as_classes(BlockClasses(np.concatenate([launch.counters, extra], axis=1),
                                        launch.run_class, launch.run_length))
    k = keyed.counters.shape[1] - extra.shape[1]
    canon = BlockClasses(keyed.counters[:, :k], keyed.run_class, keyed.run_length)
    tail = keyed.counters[:, k:].astype(np.float64)
    return canon, (tail[:, 0], {op: tail[:, 1 + i] for i, op in enumerate(ops)})


@dataclass(frozen=True)
class _Segments:
    """Runs cut at wave boundaries: ``length`` blocks from ``start``, all of class ``cls`` in ``wave``."""

    start: np.ndarray
    length: np.ndarray
    cls: np.ndarray
    wave: np.ndarray


def _segments(launch: BlockClasses, slots: int, by_wave: bool) -> _Segments:
    """The runs, cut at wave boundaries when ``by_wave`` (only L2 reuse depends on the wave)."""
    ends = np.cumsum(launch.run_length)
    starts = ends - launch.run_length
    if not by_wave:
        return _Segments(starts, launch.run_length, launch.run_class, starts // slots)
    cuts = np.sort(np.concatenate([starts, np.arange(0, int(ends[-1]), slots, dtype=np.int64)]))
    cuts = cuts[np.r_[True, cuts[1:] != cuts[:-1]]]
    length = np.diff(np.append(cuts, ends[-1]))
    run = np.searchsorted(starts, cuts, side="right") - 1
    return _Segments(cuts, length, launch.run_class[run], cuts // slots)


def dram_read_scale(launch: BlockClasses, seg: _Segments, n_waves: int, panels: dict | None) -> np.ndarray:
    """(n_waves,) factor on every block's HBM reads after wave-level L2 reuse of declared panels."""
    if not panels:
        return np.ones(n_waves)
    from .schedule import panel_repeats

    reads = launch.counters[seg.cls, HBM_READ].astype(np.float64) * seg.length
    saved = np.zeros(n_waves)
    for operand, panel in panels.items():
        panel = np.asarray(panel, dtype=np.int64).reshape(-1)
        if len(panel) != launch.n_blocks:
            raise ValueError(f"panels[{operand}] has {len(panel)} entries for {launch.n_blocks} blocks")
        col = launch.counters[seg.cls, FIRST_OPERAND + operand].astype(np.float64)
        saved += panel_repeats(seg.start, seg.length, seg.wave, col, panel, n_waves)
    # Spread each wave's savings evenly over its blocks: the fetch is shared.
    wave_reads = np.bincount(seg.wave, weights=reads, minlength=n_waves)
    return np.divide(wave_reads - saved, wave_reads, out=np.ones(n_waves), where=wave_reads > 0)


def capacity_reuse(device: Device, launch: BlockClasses, seg: _Segments, n_waves: int, reuse):
    """(read bytes saved per block, write bytes saved per block) of each segment, largest wave working set."""
    zeros = np.zeros(len(seg.start))
    if reuse is None:
        return zeros, zeros, 0
    distinct_w, reads = reuse
    footprint = distinct_w.copy()
    saved_r = np.zeros(launch.n_classes)
    for operand, distinct in reads.items():
        col = launch.counters[:, FIRST_OPERAND + operand].astype(np.float64)
        footprint += distinct
        saved_r += np.maximum(col - distinct, 0.0)
    working = np.bincount(seg.wave, weights=footprint[seg.cls] * seg.length, minlength=n_waves)   # bytes per wave
    largest = int(working.max())
    if device.l2_bytes <= 0:
        return zeros, zeros, largest
    fits = (working <= device.l2_bytes)[seg.wave]
    saved_w = np.maximum(launch.counters[:, HBM_WRITE] - distinct_w, 0.0)
    return np.where(fits, saved_r[seg.cls], 0.0), np.where(fits, saved_w[seg.cls], 0.0), largest


def kernel_cost(device: Device, counters, *, dtype: str = "fp16",
                sram_per_block: int = 0, panels: dict | None = None, reuse: "Reuse | None" = None,
                regs_per_block: int = 0, pipelined: bool = False, issue: "Issue | None" = None,
                threads_per_block: int = 0) -> Cost:
    """Turn a launch's counters into time on ``device`` (see module doc).

    ``threads_per_block``: the block's threads, for the threads-per-SM occupancy limit (0: the kernel
    does not declare them, and only SRAM, registers and ``max_blocks`` limit occupancy).

    ``counters``: per-block rows (``(n_blocks, n_cols)``) or :class:`BlockClasses`;
    both are costed from their canonical classes, so equal launches give equal costs.
    """
    issue = PEAK if issue is None else issue
    per_block = not isinstance(counters, BlockClasses)
    launch, reuse_cls = _class_reuse(counters, reuse, per_block)
    n = launch.n_blocks
    bps, occ_limit = occupancy_limit(device, sram_per_block, regs_per_block, threads_per_block)
    if n == 0:
        t = device.launch_overhead_s
        return Cost(t, t * device.clock_hz, 0, bps, "launch", "launch", {r: 0.0 for r in RESOURCES},
                    occupancy_limit=occ_limit)
    slots = device.sm_count * bps
    seg = _segments(launch, slots, by_wave=bool(panels) or reuse_cls is not None)
    n_waves = -(-n // slots)
    cls = launch.counters[seg.cls]                                # (segments, cols): one block of each

    reads = cls[:, HBM_READ] * (dram_read_scale(launch, seg, n_waves, panels)[seg.wave] if panels else 1.0)
    saved_r, saved_w, working_set = capacity_reuse(device, launch, seg, n_waves, reuse_cls)
    reads = reads - saved_r
    writes = cls[:, HBM_WRITE] - saved_w
    per_seg = np.stack([
        reads + writes,
        (cls[:, SRAM_READ] + cls[:, SRAM_WRITE]).astype(np.float64),
        cls[:, FLOPS_MATMUL].astype(np.float64),
        cls[:, FLOPS_VECTOR].astype(np.float64),
    ], axis=1)                                                    # (segments, 4): one block of each
    share = np.array([
        device.hbm_bandwidth * device.eff_hbm,
        device.sram_bandwidth * device.eff_sram,
        device.matmul_rate(dtype, issue.mma) * device.eff_matmul,
        device.vector_rate("fp32") * device.eff_vector,
    ]) / device.sm_count
    times = per_seg / share                                       # (segments, 4) seconds on a whole SM
    times[:, 3] = _vector_time(device, issue, per_seg[:, 2], per_seg[:, 3], share[3])
    if issue.sfu_per_mma_flop > 0 and device.sfu_rate > 0:      # the vector phase: FMA and SFU pipes side by side
        sfu = per_seg[:, 2] * issue.sfu_per_mma_flop / (device.sfu_rate / device.sm_count)   # spec: a fixed-function pipe
        times[:, 3] = np.maximum(times[:, 3], sfu)
    if issue.exchange_per_mma_flop > 0:                           # barrier-separated warp exchanges: serial
        times[:, 3] += per_seg[:, 2] * issue.exchange_per_mma_flop / share[1]
    if n <= slots:       # one wave: block b shares SM b % sm_count with the others placed there
        block_seg = np.repeat(np.arange(len(seg.start)), seg.length)     # n <= slots: small
        sm = np.arange(n) % device.sm_count
        per_sm = np.stack([np.bincount(sm, weights=times[block_seg, i], minlength=device.sm_count)
                           for i in range(4)], axis=1)            # (SMs, 4)
        resident = np.bincount(sm, minlength=device.sm_count)
        t_sm = sm_time(per_sm, np.inf if pipelined else resident, issue.overlap)
        busiest = int(t_sm.argmax())
        makespan = float(t_sm[busiest])
        resource_s = {res: float(per_sm[busiest, i]) for i, res in enumerate(RESOURCES)}
        limiter = _limiter(per_sm, t_sm, issue.overlap)
    else:                # several waves: the block scheduler fills bps slots per SM as they free up
        duration = sm_time(times, np.inf if pipelined else bps, issue.overlap) * bps   # (segments,) each slot holds 1/bps of an SM
        makespan, used = schedule(seg, duration, times, slots, n_waves)
        resource_s = {res: float(bps * used[i]) for i, res in enumerate(RESOURCES)}
        limiter = _limiter(times, duration * seg.length, issue.overlap)
    t_waves = makespan
    if device.launch_overhead_s > t_waves:
        limiter = "launch"
    time_s = device.launch_overhead_s + t_waves
    read_total = int(launch.totals()[HBM_READ])
    dram_read = int(round(float((reads * seg.length).sum())))
    return Cost(
        time_s=time_s, cycles=time_s * device.clock_hz, waves=n_waves, blocks_per_sm=bps,
        bound=BOUND_NAMES[limiter], limiter=limiter, resource_s=resource_s, hbm_read_bytes=dram_read,
        hbm_write_bytes=int(round(float((writes * seg.length).sum()))), l2_hit_bytes=read_total - dram_read,
        l2_write_hit_bytes=int(round(float((saved_w * seg.length).sum()))), l2_working_set_bytes=working_set,
        occupancy_limit=occ_limit,
    )


def _vector_time(device: Device, issue: Issue, mma_flops: np.ndarray, vec_flops: np.ndarray,
                 share: float) -> np.ndarray:
    """Seconds of the FMA, INT32 and conversion pipes of one SM (side by side: the slowest sets the pace).

    FMA pipe: ``vector_ops_per_flop`` instructions per FLOP at ``share / 2`` instructions/s (``share``:
    the SM's FLOP/s, 2 per FMA); integer ops (the RNG's, among the FLOPs, and unpacking, not) and
    conversions leave it for their own pipes where the device has them."""
    fma = vec_flops * issue.vector_ops_per_flop / (share / 2)
    extra = np.zeros_like(vec_flops)                                 # FMA-pipe instructions beyond the FLOPs'
    ints = vec_flops * issue.int_per_vector_flop
    rng = np.minimum(mma_flops * issue.int_per_mma_flop, vec_flops) if issue.int_per_mma_flop > 0 else 0.0
    pipes = []
    if device.int_rate > 0:
        fma = fma - rng * issue.vector_ops_per_flop / (share / 2)   # the RNG's ops leave the FMA pipe
        pipes.append((rng + ints) / (device.int_rate * device.eff_vector / device.sm_count))
    else:
        extra = extra + ints
    cvt = vec_flops * issue.cvt_per_vector_flop
    if device.cvt_rate > 0:
        pipes.append(cvt / (device.cvt_rate / device.sm_count))      # spec: a fixed-function unit
    else:
        extra = extra + cvt
    out = fma + extra / (share / 2)
    for t in pipes:
        out = np.maximum(out, t)
    return out


def compute_time(times: np.ndarray, overlap: bool = False) -> np.ndarray:
    """The matmul and vector phases of ``times`` (..., 4): their sum, or the slower one when they overlap."""
    return np.maximum(times[..., 2], times[..., 3]) if overlap else times[..., 2] + times[..., 3]


def sm_time(times: np.ndarray, resident, overlap: bool = False) -> np.ndarray:
    """Time of an SM doing ``times`` (..., 4) of work with ``resident`` blocks (see module doc)."""
    t_mem = times[..., 0]
    t_comp = np.maximum(times[..., 1], compute_time(times, overlap))
    return np.maximum(t_mem, t_comp) + np.minimum(t_mem, t_comp) / np.maximum(resident, 1)


def schedule(seg: _Segments, duration: np.ndarray, times: np.ndarray, n_slots: int,
             n_waves: int) -> tuple[float, np.ndarray]:
    """(makespan, resource times (4,) of the slot that finishes last) of list scheduling.

    Closed form when all blocks take equally long: block b runs on slot b % n_slots, the
    makespan is ``waves * duration`` and slot 0 (one block per wave) finishes last."""
    if np.all(duration == duration[0]):
        on_slot0 = -(-(seg.start + seg.length) // n_slots) - (-(-seg.start // n_slots))   # blocks b = w * n_slots
        return float(n_waves * duration[0]), (times * on_slot0[:, None]).sum(axis=0)
    from .schedule import list_schedule

    busy, used = list_schedule(seg.length, duration.astype(np.float64), times, int(n_slots))
    last = int(np.argmax(busy))
    return float(busy[last]), used[last]


def _limiter(times: np.ndarray, weight: np.ndarray, overlap: bool = False) -> str:
    """The resource that limits most of the time, over blocks, segments or SMs (``weight``: their time)."""
    t_comp = compute_time(times, overlap)
    per_block = np.where(
        times[:, 0] > np.maximum(times[:, 1], t_comp), 0,                  # hbm
        np.where(times[:, 1] >= t_comp, 1,                                 # sram
                 np.where(times[:, 2] >= times[:, 3], 2, 3)))              # matmul | vector
    by_resource = np.bincount(per_block, weights=weight, minlength=4)
    return RESOURCES[int(by_resource.argmax())]


def waves_for(device: Device, n_blocks: int, sram_per_block: int = 0, regs_per_block: int = 0,
              threads_per_block: int = 0) -> int:
    """Number of waves a grid of ``n_blocks`` takes (closed form)."""
    bps = occupancy(device, sram_per_block, regs_per_block, threads_per_block)
    return math.ceil(n_blocks / (device.sm_count * bps))
