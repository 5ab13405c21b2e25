"""A phase estimate of a candidate, read off its lowered loop nest and the device description.

The cost model's strongest features: what a reader of the nest would estimate with the
device's data sheet in hand, *without running the kernel or the simulator* (which would be the
measurement itself). Per block of the grid (totals divided by the blocks: exact for the
templates' matmuls, whose tiles divide the shape, and close for a padded convolution)::

    hbm        = sum over operands of (loads of its stage * stage tile bytes)   # no stage: every point
    l2 share   = distinct panels of the operand in the first wave / blocks in the wave
                 (a panel: the blocks with the same grid values on the operand's axes; the first
                 wave = the first min(blocks, SMs * blocks per SM) blocks in launch order)
    hbm after L2 = sum over input operands of (bytes * l2 share) + output bytes
    sram       = bytes loaded into shared stages
                 + the output tile's store (read from either scope, as tiles.store_tile counts it)
                 + a shared accumulator's zeroing by a decomposed init
                 + the compute's reads (MMA: m*k + k*n elements per tile product; scalar: one
                   element per point per shared operand, two for a shared accumulator)
                 (elements in the global buffer's dtype, as the generated kernel counts them)
    t_mem      = hbm after L2 / (bandwidth * eff / SMs)          # one SM's share of every resource
    t_sram     = sram / (SRAM bandwidth * eff / SMs)
    t_compute  = FLOPs / (tensor-core or vector rate * eff / SMs)    # MMA when tensorized
    t_block    = max(t_mem, max(t_sram, t_compute))
    r          = blocks resident per SM in a full wave (occupancy), or ceil(blocks / SMs) in a single wave
    t_wave     = r * (max(t_mem, t_c) + min(t_mem, t_c) / r)   # memory hides behind other blocks' compute
    estimate   = launch overhead + waves * t_wave
    padding    = points the tiles cover (blocks * block region) / points of the workload
    ideal      = max(bytes of every buffer once / bandwidth, FLOPs / the faster of MMA and vector rate)
                 (the workload's roofline: dividing by it makes estimates of different shapes comparable)

All the numbers are from the nest (footprints, loop extents, stage scopes, the tensorized tile)
and the device (bandwidths, rates, efficiencies, SM count, SRAM and register file, L2): the
estimate is the teaching model's own arithmetic, so the learned model mostly has to learn
where the estimate is wrong (edge classes, L2 capacity, what the nest does not show).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...sim import bits
from ...sim.cost import occupancy
from ..tensor.codegen import outer_loops
from ..tensor.ir import access_axes


@dataclass(frozen=True)
class Phases:
    """Per block: bytes, FLOPs and seconds of each phase; for the grid: waves and the estimate."""

    blocks: int
    hbm_block: float            # bytes per block before L2
    hbm_block_l2: float         # after the first wave's panel reuse
    sram_block: float
    flops_block: float
    sram_tiles: float           # on-chip bytes per block (SRAM; registers on a device without a file)
    regs_tiles: float
    blocks_per_sm: int
    resident: int               # blocks sharing an SM in a wave
    waves: int
    t_mem: float                # seconds per block on one SM's share
    t_sram: float
    t_compute: float
    estimate_s: float
    ideal_s: float              # the workload's roofline on the device: every buffer moved once, peak rate
    padding: float              # covered points / workload points (>= 1)
    l2_share: tuple             # per input operand: distinct panels / blocks in the first wave
    fits: bool


def _first_wave_panels(nest, grid: list, n_wave: int) -> list:
    """Per input operand: distinct panel keys among the first ``n_wave`` blocks (launch order)."""
    loops = nest.loops
    rest = np.arange(n_wave)
    values = {}
    for li in reversed(grid):
        lp = loops[li]
        v = rest % lp.extent
        rest = rest // lp.extent
        for q, pc in enumerate(lp.pieces):
            inner = math.prod(p.extent for p in lp.pieces[q + 1:])
            values[(li, q)] = (v // inner) % pc.extent
    out = []
    for op in range(len(nest.func.inputs)):
        axes = access_axes(nest.access(op))
        key = np.zeros(n_wave, dtype=np.int64)
        for (li, q), v in sorted(values.items()):
            pc = loops[li].pieces[q]
            if pc.axis in axes:
                key = key * pc.extent + v
        out.append(len(np.unique(key)))
    return out


def phases(nest, device) -> Phases:
    """The :class:`Phases` of ``nest`` on ``device`` (a :class:`~tinyml.sim.Device`): module docstring."""
    func, loops = nest.func, nest.loops
    points = math.prod(a.extent for a in func.block.axes)
    tens = nest.tensorize_depth
    grid = outer_loops(nest)
    blocks = math.prod(loops[i].extent for i in grid) if grid else 1
    covered = blocks * math.prod(lp.extent for i, lp in enumerate(loops) if i not in grid)
    hbm_in, sram, sram_tiles, regs_tiles, hbm_out = [], 0.0, 0.0, 0.0, 0.0
    for op in list(range(len(func.inputs))) + [-1]:
        st = nest.write_stage() if op < 0 else nest.read_stage(op)
        size = bits(func.buffer(nest.access(op).buffer).dtype) / 8
        if st is not None:
            tile = math.prod(nest.footprint(st))
            moved = math.prod(lp.extent for lp in loops[:st.depth]) * tile
            tbytes = tile * bits(st.dtype) / 8
            if st.scope == "shared":
                sram_tiles += tbytes
                sram += moved * size                           # the load's writes (or the store's reads)
                if op < 0 and nest.init_depth is not None:
                    sram += moved * size                       # a decomposed init zeroes the tile in SRAM
            else:
                regs_tiles += tbytes
                if op < 0:
                    sram += moved * size                       # the store reads the tile as from SRAM
            shared = st.scope == "shared"
        else:
            moved, shared = points * (2 if op < 0 else 1), False
        if op < 0:
            hbm_out = moved * size
        else:
            hbm_in.append(moved * size)
        if tens is None and shared:
            sram += points * (2 if op < 0 else 1) * size            # counted in the global buffer's dtype
    if tens is not None:
        out = func.block.output.axes
        m, n = nest.span(out[-2], tens), nest.span(out[-1], tens)
        k = nest.span(func.block.reduction[0].name, tens)
        calls = points / max(m * n * k, 1)
        st0 = nest.read_stage(0)
        elem = bits(st0.dtype if st0 is not None else func.dtype) / 8
        sram += calls * (m * k + k * n) * elem
        rate = device.matmul_rate(func.dtype) * device.eff_matmul
    else:
        rate = device.vector_rate("fp32") * device.eff_vector
    if device.register_bytes == 0:              # no register file: local tiles live in SRAM too
        sram_tiles, regs_tiles = sram_tiles + regs_tiles, 0.0
    bps = max(1, occupancy(device, int(sram_tiles), int(regs_tiles)))   # 0: does not fit (see fits)
    slots = device.sm_count * bps
    waves = math.ceil(blocks / slots)
    resident = bps if blocks > slots else math.ceil(blocks / device.sm_count)
    n_wave = min(blocks, slots)
    share = _first_wave_panels(nest, grid, n_wave) if grid else [n_wave] * len(hbm_in)
    l2_share = tuple(d / n_wave for d in share)
    hbm_block = (sum(hbm_in) + hbm_out) / blocks
    hbm_l2 = (sum(b * s for b, s in zip(hbm_in, l2_share)) + hbm_out) / blocks
    per_sm = 1.0 / device.sm_count
    t_mem = hbm_l2 / (device.hbm_bandwidth * device.eff_hbm * per_sm)
    t_sram = sram / blocks / (device.sram_bandwidth * device.eff_sram * per_sm)
    t_comp = 2 * points / blocks / (rate * per_sm)
    t_c = max(t_sram, t_comp)
    t_wave = resident * (max(t_mem, t_c) + min(t_mem, t_c) / resident)
    moved_once = sum(math.prod(b.shape) * bits(b.dtype) / 8 for b in list(func.inputs) + [func.output])
    peak = max(device.matmul_rate(func.dtype) * device.eff_matmul, device.vector_rate("fp32") * device.eff_vector)
    ideal = max(moved_once / (device.hbm_bandwidth * device.eff_hbm), 2 * points / peak)
    fits = sram_tiles <= device.sram_per_sm and (device.register_bytes == 0 or regs_tiles <= device.register_bytes)
    return Phases(blocks=blocks, hbm_block=hbm_block, hbm_block_l2=hbm_l2, sram_block=sram / blocks,
                  flops_block=2 * points / blocks, sram_tiles=sram_tiles, regs_tiles=regs_tiles, blocks_per_sm=bps,
                  resident=resident, waves=waves, t_mem=t_mem, t_sram=t_sram, t_compute=t_comp,
                  estimate_s=device.launch_overhead_s + waves * t_wave, ideal_s=ideal, padding=covered / points,
                  l2_share=l2_share, fits=bool(fits))
