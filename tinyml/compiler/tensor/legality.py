"""Legality checks shared by the schedule primitives.

* :func:`check_nest`: invariants every nest keeps (grid loops outermost, threads inside the grid
  and within CUDA's limits, a parallel loop only as the CPU's grid, a vectorized loop innermost);
* :func:`check_attachments`: a new loop order keeps the loops above every stage, the init and the
  tensorized region (moving a loop across one changes the region it covers);
* :func:`check_tensorize`: the loops under a loop are one whole tile product of SRAM tiles into
  an accumulator tile;
* :func:`attachments` / :func:`shift_depths`: where things sit, and moving them when loops split or fuse.
"""

from __future__ import annotations

import math
from dataclasses import replace

from .errors import BindError, ReorderError, ScheduleError, TensorizeError
from .ir import Nest, access_axes
from .limits import GRID_EXTENT, MAX_THREADS_PER_BLOCK, THREAD_EXTENT


def attachments(nest: Nest) -> list:
    """(what, depth) of everything that sits at a depth: stages, the init, the tensorized region."""
    out = [(s.name, s.depth) for s in nest.stages]
    if nest.init_depth is not None:
        out.append(("the init (decompose_reduction)", nest.init_depth))
    if nest.tensorize_depth is not None:
        out.append(("the tensorized region", nest.tensorize_depth))
    return out


def shift_depths(nest: Nest, f) -> Nest:
    stages = tuple(replace(s, depth=f(s.depth)) for s in nest.stages)
    init = None if nest.init_depth is None else f(nest.init_depth)
    tens = None if nest.tensorize_depth is None else f(nest.tensorize_depth)
    return nest.replace(stages=stages, init_depth=init, tensorize_depth=tens)


def check_attachments(nest: Nest, order: tuple, what: str) -> None:
    old = nest.loops
    for name, d in attachments(nest):
        before, after = {x.name for x in old[:d]}, {x.name for x in order[:d]}
        if before == after:
            continue
        moved = sorted(before ^ after)
        red = [m for m in moved if nest.is_reduction(nest.loop(m)) and m in after]
        w = nest.write_stage()
        why = ""
        if red and (name.startswith("the init") or (w is not None and name == w.name)):
            why = (f" Reduction loop {red[0]} would move outside it: the partial sums of "
                   f"{nest.func.block.output.text()} carried across {red[0]} would be "
                   f"{'zeroed' if name.startswith('the init') else 'stored back'} before the sum is complete.")
        raise ReorderError(f"{what}: {', '.join(moved)} would cross {name}, which sits under "
                           f"{old[d - 1].name if d else 'the root'}; the region it covers would change.{why} "
                           f"Reorder first, then compute_at / decompose / tensorize")


def check_nest(nest: Nest, kind: str) -> None:
    """Invariants of every nest: the grid outermost, threads inside it, limits, annotations."""
    loops = nest.loops
    seen_unbound = None
    for lp in loops:
        if lp.thread and lp.thread.startswith("blockIdx"):
            if seen_unbound is not None:
                raise BindError(f"{kind}: blockIdx loop {lp.name} is inside loop {seen_unbound}; the grid's loops "
                                f"must enclose everything else (reorder {lp.name} outwards)")
            if lp.extent > GRID_EXTENT[lp.thread]:
                raise BindError(f"{kind}: {lp.name} has {lp.extent:,} iterations but {lp.thread} allows at most "
                                f"{GRID_EXTENT[lp.thread]:,} blocks (CUDA's grid limit). Bind the longer grid "
                                f"loop to blockIdx.x (up to {GRID_EXTENT['blockIdx.x']:,}), split {lp.name} with a "
                                f"larger tile so fewer blocks cover it, or split it in two and bind the outer part "
                                f"to blockIdx.z")
        else:
            seen_unbound = seen_unbound or lp.name
    threads = [lp for lp in loops if lp.thread and lp.thread.startswith("threadIdx")]
    for lp in threads:
        if lp.extent > THREAD_EXTENT[lp.thread]:
            raise BindError(f"{kind}: {lp.name} has {lp.extent} iterations but {lp.thread} allows at most "
                            f"{THREAD_EXTENT[lp.thread]}")
    total = math.prod(lp.extent for lp in threads)
    if total > MAX_THREADS_PER_BLOCK:
        parts = " x ".join(f"{lp.name}={lp.extent}" for lp in threads)
        raise BindError(f"{kind}: a block would have {parts} = {total} threads; a block holds at most "
                        f"{MAX_THREADS_PER_BLOCK}. Split the thread loops smaller")
    par = [i for i, lp in enumerate(loops) if lp.kind == "parallel"]
    grid = [lp.name for lp in loops if lp.thread and lp.thread.startswith("blockIdx")]
    if par and (par != [0] or grid):
        where = f"grid loops {grid}" if grid else f"position {par}"
        raise BindError(f"{kind}: a parallel loop must be the outermost loop of a nest without blockIdx loops "
                        f"(it is the CPU's grid; here: {where})")
    if nest.func.block.is_softmax:
        check_rows(nest, kind)
    stop = nest.tensorize_depth if nest.tensorize_depth is not None else len(loops)
    for i, lp in enumerate(loops):
        if lp.kind == "vectorized" and i != stop - 1:
            raise ScheduleError(f"{kind}: vectorized loop {lp.name} is not the innermost loop "
                                f"(innermost: {loops[stop - 1].name})")


def check_rows(nest: Nest, kind: str) -> None:
    """A softmax's row loops (its reduction axis) run inside every loop over rows: the row's
    max and sum must be complete before the second pass writes the row."""
    red = [i for i, lp in enumerate(nest.loops) if nest.is_reduction(lp)]
    rows = [i for i, lp in enumerate(nest.loops) if not nest.is_reduction(lp)]
    if red and rows and min(red) < max(rows):
        outer, inner = nest.loops[min(red)].name, nest.loops[max(rows)].name
        blk = nest.func.block
        raise ReorderError(f"{kind}: reduction loop {outer} would run outside row loop {inner}; {blk.name} "
                           f"finishes a row's max and sum over {blk.reduction[0].name} before it writes the row, "
                           f"so every {blk.reduction[0].name} loop must stay inside every "
                           f"{blk.spatial[0].name} loop")
    for s in nest.stages:
        above = [lp.name for lp in nest.loops[:s.depth] if nest.is_reduction(lp)]
        if above:
            raise ReorderError(f"{kind}: {s.name} sits under reduction loop {above[0]}, so it would hold part of "
                               f"a row; both passes over the row must read the same copy. compute_at it at a row "
                               f"loop ({', '.join(lp.name for lp in nest.loops if not nest.is_reduction(lp))})")


def is_conv(blk) -> bool:
    """The conv2d workload's block (axes n, f, y, x, c, r, s; inputs X and W)."""
    return blk.name == "conv2d" and [a.name for a in blk.axes] == ["n", "f", "y", "x", "c", "r", "s"]


def check_tensorize(nest: Nest, i: int, loop: str) -> None:
    blk = nest.func.block
    if blk.is_softmax:
        raise TensorizeError(f"tensorize({loop}): {blk.name} is a row reduction, not a tile product; "
                             f"there is no MMA to hand it to")
    inner = nest.loops[i:]
    if is_conv(blk):                       # implicit GEMM: (f) x (y, x) x (c, r, s), see .implicit_gemm
        mma_axes, whole = ("f", "y", "x", "c", "r", "s"), ("r", "s")
    else:
        out_axes = blk.output.axes
        if len(blk.reduction) != 1 or len(out_axes) < 2:
            raise TensorizeError(f"tensorize: block {blk.name} is not a matmul (one reduction axis, output >= 2-D)")
        m_ax, n_ax, k_ax = out_axes[-2], out_axes[-1], blk.reduction[0].name
        a_acc, b_acc = blk.inputs
        if a_acc.axes[-2:] != (m_ax, k_ax) or b_acc.axes[-2:] != (k_ax, n_ax) or not (a_acc.plain and b_acc.plain):
            raise TensorizeError(f"tensorize: the inputs are {a_acc.text()} and {b_acc.text()}; the MMA multiplies "
                                 f"(.., {m_ax}, {k_ax}) by (.., {k_ax}, {n_ax})")
        mma_axes, whole = (m_ax, n_ax, k_ax), ()
    for lp in inner:
        if lp.thread or lp.kind not in ("serial", "unrolled"):
            raise TensorizeError(f"tensorize({loop}): loop {lp.name} inside it is {lp.label}")
        for p in lp.pieces:
            if p.axis not in mma_axes:
                raise TensorizeError(f"tensorize({loop}): loop {lp.name} walks axis {p.axis}; the MMA covers only "
                                     f"{', '.join(mma_axes)}. Move {lp.name} outside {loop}")
    for ax in whole:                       # the kernel window is one GEMM dimension with the channels
        outside = [lp.name for lp in nest.loops[:i] if ax in lp.axes]
        if outside:
            raise TensorizeError(f"tensorize({loop}): loop {outside[0]} outside it walks {ax}; the implicit GEMM's "
                                 f"K dimension is (c, r, s) with the whole {blk.axis(ax).extent}-wide kernel "
                                 f"window inside. Move {outside[0]} inside {loop}")
    for ax in mma_axes:                    # the pieces inside must be the lowest digits: one contiguous tile
        pieces = sorted((p for lp in inner for p in lp.pieces if p.axis == ax), key=lambda p: p.stride)
        expect = 1
        for p in pieces:
            if p.stride != expect:
                raise TensorizeError(f"tensorize({loop}): the loops inside cover axis {ax} with strides "
                                     f"{[q.stride for q in pieces]}, not one contiguous tile; move the other "
                                     f"pieces of {ax} inside {loop}")
            expect = p.stride * p.extent
    for op, acc in enumerate(blk.inputs):
        st = nest.read_stage(op)
        if st is None or st.scope != "shared":
            raise TensorizeError(f"tensorize({loop}): the MMA reads its operands from SRAM; cache_read "
                                 f"{acc.buffer} into 'shared' and compute_at it at or above {loop}")
    w = nest.write_stage()
    if w is None:
        raise TensorizeError(f"tensorize({loop}): the MMA accumulates in a tile; cache_write the output into "
                             f"'local' (registers) or 'shared' first")
    for st in [nest.read_stage(0), nest.read_stage(1), w]:
        if st.depth > i:
            raise TensorizeError(f"tensorize({loop}): {st.name} sits inside {loop}")
        between = [lp.name for lp in nest.loops[st.depth:i] if any(p.axis in access_axes(nest.access(st.operand))
                                                                   and lp.extent > 1 for p in lp.pieces)]
        if between:
            raise TensorizeError(f"tensorize({loop}): {st.name}'s tile spans loops {between} between it and "
                                 f"{loop}, so it is bigger than one MMA operand; compute_at it at "
                                 f"{nest.loops[i - 1].name if i else 'the root'} or tensorize higher")
    if nest.init_depth is None or nest.init_depth > i:
        zero = " and ".join(f"{a.name} == 0" for a in blk.reduction)
        raise TensorizeError(f"tensorize({loop}): the init (if {zero}: ... = 0) is still in the update; "
                             f"decompose_reduction at or above {loop} first")
