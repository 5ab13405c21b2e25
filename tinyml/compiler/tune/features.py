"""What the cost model sees: features of the *lowered loop nest*, not the knob values.

For a candidate's nest (after the template's primitives) and the device it runs on::

    per operand (A, B, output):
        tile elements  = prod(footprint of its stage)          # 1 without a stage: scalar accesses
        runs           = prod(extents of the loops above the stage)
        HBM bytes      = runs * tile elements * element size   # the loads before L2 (output: + writes)
        reuse          = points of the iteration space / elements moved
        innermost stride of the element loop, in elements of the buffer's row-major layout
    SRAM bytes per block (shared tiles), register bytes per block (local tiles)
    blocks (the grid), serial steps per block (the reduction's outer loop), MMA tile (m, n, k)
    arithmetic intensity = FLOPs / HBM bytes
    fits                 = the tiles fit SRAM and the register file (else the trial fails)
    occupancy estimate   = blocks per SM from SRAM and registers (tinyml.sim.occupancy),
                           waves = ceil(blocks / slots), tail = blocks / (waves * slots)
    roofline estimates   = HBM bytes / bandwidth, FLOPs / peak (vector or tensor-core rate)
    phase estimate       = per block: HBM bytes before and after the first wave's L2 panel reuse,
                           SRAM bytes, FLOPs; seconds of the memory, SRAM and compute phases on one
                           SM's share; blocks resident per SM; the estimated kernel time; padding
                           waste of the tiles; each input's L2 share (:mod:`.phases`)

Counts are log-scaled (``log2(1 + x)``) so a tree splits on orders of magnitude. The
features depend only on the nest and the device: not on loop names, not on the order
stages were created in, not on how the trace spelled the splits (the tests check it).
:func:`knob_features` is the ablation: the raw decisions (``log2`` of tile factors,
category indices), what a model that never looks at the program would see.
"""

from __future__ import annotations

import math

import numpy as np

from ...sim import bits
from ...sim.cost import occupancy
from ..tensor.codegen import outer_loops
from .phases import phases

OPERANDS = ("in0", "in1", "out")
_PER_OP = ("tile", "hbm", "reuse", "stride", "scope")
NAMES = ([f"{op}_{f}" for op in OPERANDS for f in _PER_OP]
         + ["sram_per_block", "regs_per_block", "blocks", "serial_steps", "inner_extent", "vectorized",
            "mma", "mma_m", "mma_n", "mma_k", "flops", "hbm_total", "intensity", "blocks_per_sm", "waves",
            "tail", "sm_fill", "t_hbm", "t_compute", "t_ratio", "fits"]
         + ["ph_hbm_block", "ph_hbm_block_l2", "ph_sram_block", "ph_flops_block", "ph_resident", "ph_t_mem",
            "ph_t_sram", "ph_t_compute", "ph_mem_vs_compute", "ph_estimate", "ph_padding", "ph_l2_in0",
            "ph_l2_in1", "ph_estimate_vs_ideal", "ph_mem_vs_ideal", "ph_compute_vs_ideal", "ph_waves_x_resident",
            "ph_prior"])
#: the column of the phase estimate's prior score: ``-log2(estimate / roofline)``, higher = predicted faster,
#: :data:`UNFIT` where the tiles overflow SRAM or the register file (the trial will fail)
PRIOR = len(NAMES) - 1
UNFIT = -64.0


def _log(x: float) -> float:
    return math.log2(1.0 + max(float(x), 0.0))


def _row_major(shape: tuple) -> list:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return out[::-1]


def _innermost_stride(nest, operand: int, loop) -> int:
    """Elements between consecutive iterations of ``loop`` in the operand's buffer (0: not walked)."""
    acc = nest.access(operand)
    buf = nest.func.buffer(acc.buffer)
    strides = _row_major(buf.shape)
    from ..tensor.ir import as_index

    total = 0
    for d, dim in enumerate(acc.axes):
        for a, c in as_index(dim).terms:
            for p in loop.pieces[-1:]:
                if p.axis == a:
                    total += c * p.stride * strides[d]
    return total


def nest_features(nest, device) -> np.ndarray:
    """The feature vector (:data:`NAMES`) of ``nest`` on ``device`` (a :class:`~tinyml.sim.Device`)."""
    func, loops = nest.func, nest.loops
    points = math.prod(a.extent for a in func.block.axes)
    tens = nest.tensorize_depth
    flops = 2 * points
    grid = outer_loops(nest)
    blocks = math.prod(loops[i].extent for i in grid) if grid else 1
    elem_loops = list(loops[:tens]) if tens is not None else list(loops)
    innermost = elem_loops[-1] if elem_loops else loops[-1]
    feats, sram, regs, hbm_total = [], 0, 0, 0
    for op in (0, 1, -1):
        st = nest.write_stage() if op < 0 else nest.read_stage(op)
        acc = nest.access(op)
        size = bits(func.buffer(acc.buffer).dtype) / 8
        if st is not None:
            tile = math.prod(nest.footprint(st))
            runs = math.prod(lp.extent for lp in loops[:st.depth])
            moved = runs * tile
            tile_bytes = tile * bits(st.dtype) / 8
            if st.scope == "shared":
                sram += tile_bytes
            else:
                regs += tile_bytes
            scope = 1.0 if st.scope == "shared" else 2.0
        else:
            tile, moved, scope = 1, points * (2 if op < 0 else 1), 0.0
        hbm = moved * size
        hbm_total += hbm
        stride = _innermost_stride(nest, op, innermost)
        feats += [_log(tile), _log(hbm), _log(points / max(moved, 1)), _log(stride), scope]
    red_outer = [lp for lp in loops[len(grid):(tens if tens is not None else len(loops))]
                 if nest.is_reduction(lp)]
    serial = math.prod(lp.extent for lp in red_outer[:1]) if red_outer else 1
    if tens is not None:
        span = lambda ax: nest.span(ax, tens)  # noqa: E731
        out = func.block.output.axes
        mma = (span(out[-2]), span(out[-1]), span(func.block.reduction[0].name))
    else:
        mma = (0, 0, 0)
    regs_dev = regs if device.register_bytes > 0 else 0
    sram_dev = sram + (regs if device.register_bytes == 0 else 0)
    bps = occupancy(device, int(sram_dev), int(regs_dev))
    slots = device.sm_count * bps
    waves = math.ceil(blocks / slots)
    tail = blocks / (waves * slots)
    rate = device.matmul_rate(func.dtype) if tens is not None else device.vector_rate()
    t_hbm = hbm_total / (device.hbm_bandwidth * device.eff_hbm) * 1e9
    t_comp = flops / rate * 1e9
    fits = sram_dev <= device.sram_per_sm and (device.register_bytes == 0 or regs <= device.register_bytes)
    feats += [_log(sram), _log(regs), _log(blocks), _log(serial), _log(innermost.extent),
              float(innermost.kind == "vectorized"), float(tens is not None), *(_log(x) for x in mma),
              _log(flops), _log(hbm_total), _log(flops / max(hbm_total, 1)), _log(bps), _log(waves), tail,
              min(1.0, blocks / device.sm_count), _log(t_hbm), _log(t_comp), math.log2(max(t_hbm, 1e-9) /
                                                                                        max(t_comp, 1e-9)), float(fits)]
    feats += phase_features(nest, device)
    return np.array(feats, dtype=np.float64)


def phase_features(nest, device) -> list:
    """The :mod:`.phases` estimate as features: bytes and FLOPs log2-scaled, seconds as log2 of
    nanoseconds (``log2(1 + ns)``), the L2 shares of the first two inputs as fractions, and the
    estimate and the phases' total seconds over the workload's roofline (``log2``): a tree cannot
    extrapolate to a held-out shape's absolute times, but "1.3x the roofline" means the same for
    every shape."""
    p = phases(nest, device)
    ns = lambda t: _log(t * 1e9)  # noqa: E731
    share = list(p.l2_share[:2]) + [1.0] * (2 - len(p.l2_share[:2]))
    t_c = max(p.t_sram, p.t_compute)
    return [_log(p.hbm_block), _log(p.hbm_block_l2), _log(p.sram_block), _log(p.flops_block), _log(p.resident),
            ns(p.t_mem), ns(p.t_sram), ns(p.t_compute), math.log2(max(p.t_mem, 1e-15) / max(t_c, 1e-15)),
            ns(p.estimate_s), math.log2(p.padding), *share,
            math.log2(p.estimate_s / p.ideal_s),                                   # comparable across shapes
            math.log2(max(p.t_mem, 1e-15) * p.blocks / device.sm_count / p.ideal_s),
            math.log2(max(t_c, 1e-15) * p.blocks / device.sm_count / p.ideal_s), _log(p.waves * p.resident),
            -math.log2(p.estimate_s / p.ideal_s) if p.fits else UNFIT]


def knob_features(decisions: tuple) -> np.ndarray:
    """The ablation: the decisions themselves (``log2`` of every tile factor, category indices)."""
    out = []
    for d in decisions:
        if isinstance(d, (tuple, list)):
            out += [math.log2(f) for f in d]
        else:
            out.append(float(d))
    return np.array(out, dtype=np.float64)


FEATURE_KINDS = ("nest", "knobs")
