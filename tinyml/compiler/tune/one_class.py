"""Counting a launch whose blocks are all identical by counting one of them.

A generated kernel in counting mode walks the tile loops of *every* block: a 4096^3 matmul
cut into 16 x 16 tiles is 65,536 blocks of 256 K steps, seconds per trial. But when every
access is a plain index (no padding) and every axis is tiled exactly (the pieces of each
axis multiply to its extent: no guard ``if i < M``), every block loads, multiplies and
stores the same amounts: only *where* differs, not *how much*. Then one block's counters
stand for all of them (:class:`~tinyml.sim.classes.BlockClasses` with one class), exactly
as the hand-written kernels count their interior blocks::

    P' = P with every grid loop's extent set to 1     # the kernel runs block 0 only
    counters = kernel(..., P', counting)              # (1, columns)
    record(BlockClasses(counters, run_class=[0], run_length=[blocks]), panels of the full grid)

The same compiled kernel runs (the extents are runtime parameters), so nothing compiles;
the tests check that this record equals the one counting every block.
"""

from __future__ import annotations

import math

import numpy as np

from ...sim import check_registers, check_tiles, current_profile, meta
from ...sim.classes import BlockClasses
from ...sim.counters import new_counters
from ..tensor.launch import compile_source


def identical_blocks(kernel) -> bool:
    """True if every block of ``kernel``'s grid does the same work (module docstring)."""
    nest = kernel.nest
    if not kernel.is_grid:
        return False
    accesses = [nest.access(op) for op in range(len(nest.func.inputs))] + [nest.access(-1)]
    if not all(acc.plain for acc in accesses):
        return False
    for ax in nest.func.block.axes:
        pieces = [p for lp in nest.loops for p in lp.pieces if p.axis == ax.name]
        if math.prod(p.extent for p in pieces) != ax.extent:
            return False
    return True


def count_one_class(kernel):
    """Count ``kernel`` on ``meta`` inputs in the active Profile from one block; its KernelRecord.
    Call only when :func:`identical_blocks` holds."""
    f = kernel.func
    prof = current_profile()
    kernel.check_threads(prof.device)
    tiles = kernel.tiles()
    sram = check_tiles(prof.device, tiles, kernel=kernel.name, suggest=lambda: (
        "Split the loops under the stages into smaller tiles, or compute_at the stages at a deeper loop"))
    regs = check_registers(prof.device, tiles)
    ops = [meta(b.shape, b.dtype) for b in f.inputs]
    for op, b in zip(ops, f.inputs):
        prof.hbm.track(op, b.name, b.dtype)
    prof.hbm.new_tensor(f.output.name, f.output.shape, f.output.dtype, False)
    params = kernel.params.copy()
    for i in kernel.outer:
        params[kernel.param_names.index(f"X_{kernel.nest.loops[i].name}")] = 1
    dummy = [np.zeros((1,) * len(b.shape), dtype=np.float32) for b in f.params]
    counters = new_counters(1, n_operands=len(f.inputs))
    fn = compile_source(kernel.source)
    if kernel.tensorized:                 # the same argument types as a launch (no MMA runs: counting)
        from ...kernels._mma import sgemm
        fn(*dummy, params, False, counters, sgemm())
    else:
        fn(*dummy, params, False, counters, 0)
    n_blocks = math.prod(kernel.grid)
    classes = BlockClasses(counters, np.zeros(1, dtype=np.int64), np.array([n_blocks], dtype=np.int64))
    return prof.record(kernel.name, kernel.grid, classes, dtype=f.dtype, sram_per_block=sram,
                       panels=kernel.panels(), regs_per_block=regs, threads_per_block=kernel.declared_threads)
