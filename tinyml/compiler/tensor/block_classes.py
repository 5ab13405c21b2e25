"""Counting a launch by counting one block per class (a generated kernel in counting mode).

A generated kernel in counting mode walks the tile loops of *every* block: a 4096^3 matmul
cut into 16 x 16 tiles is 65,536 blocks of 256 K steps, and a padded 3x3 convolution at
224 x 224 hundreds of thousands, seconds per trial. But blocks differ only in *where* they
work, and how much they load, multiply and store depends on where only at the edges:

* every access a plain index and every axis tiled exactly (:func:`identical_blocks`, every
  matmul candidate of the templates): all blocks are alike, one class;
* otherwise (a padded convolution: its input window is clipped at the image border; a split
  that does not divide: the last tile is partial) a block's counts depend only on its *edge
  signature* (:func:`block_signatures`): per axis the number of valid values it covers, and per
  padded access dimension how far its window reaches past the buffer at each end::

      block range of axis a  = [b_a, b_a + valid_a - 1]        # b_a from the grid loops' values,
                                                               # valid_a = min(span_a, E_a - b_a);
                                                               # a loop-only axis: [0, E_a - 1]
      window of a dimension  = [off + sum c * lo_a, off + sum c * hi_a]
      signature              = (valid_a ..., clip_lo, clip_hi of each padded dimension ...)

  Two blocks with one signature load, compute and store the same amounts (an unclipped window
  lies inside the buffer however far it is from the edge; a clipped one starts, or ends, at the
  same place), so the classes of a 3x3 convolution are the 3 x 3 (top, middle, bottom) x (left,
  middle, right) positions, at most, whatever the image size.

The generated kernel walks the blocks whose ids follow ``P[IDS:]`` (``ROWS`` of them, one
counters row each); the classes and the launch order's runs make the record::

    counters = kernel(..., P + [class representatives' ids], counting)   # (classes, columns)
    record(BlockClasses(counters, run_class, run_length), panels of the full grid)

The same kernel runs (every number is a runtime parameter), so nothing new compiles, and a walk
this short runs as plain Python (:mod:`.launch`: two tiers). ``Kernel.__call__`` counts a grid
this way unless called with ``by_class=False``; the tests check that the record equals the one
counting every block, and executing mode.
"""

from __future__ import annotations

import math

import numpy as np

from .ir import as_index


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


def piece_values(kernel) -> dict:
    """{(loop index, piece index): (n_blocks,) the piece's value in each block} for the grid loops,
    blocks in launch order (the last grid loop varies fastest, as the generated kernel decodes them)."""
    rest = np.arange(math.prod(kernel.grid), dtype=np.int64)
    values: dict = {}
    for li in reversed(kernel.outer):
        lp = kernel.nest.loops[li]
        v = rest % lp.extent
        rest = rest // lp.extent
        for q, pc in enumerate(lp.pieces):
            inner = math.prod(p.extent for p in lp.pieces[q + 1:])
            values[(li, q)] = (v // inner) % pc.extent
    return values


def block_bases(kernel) -> dict:
    """{axis: (n_blocks,) first value of the axis each block covers}, for the axes the grid splits,
    blocks in launch order (:func:`piece_values`)."""
    bases: dict = {}
    for (li, q), v in piece_values(kernel).items():
        pc = kernel.nest.loops[li].pieces[q]
        bases[pc.axis] = bases.get(pc.axis, 0) + v * pc.stride
    return bases


def block_signatures(kernel) -> np.ndarray:
    """(n_blocks, columns) int64: each block's edge signature (module docstring)."""
    nest, func = kernel.nest, kernel.func
    n = math.prod(kernel.grid)
    depth = len(kernel.outer)
    lo, hi, cols = {}, {}, []
    bases = block_bases(kernel)
    for ax in func.block.axes:
        if ax.name in bases:
            b = bases[ax.name]
            valid = np.clip(ax.extent - b, 0, nest.span(ax.name, depth))
            lo[ax.name], hi[ax.name] = b, b + valid - 1
            cols.append(valid)
        else:
            lo[ax.name], hi[ax.name] = np.zeros(n, dtype=np.int64), np.full(n, ax.extent - 1, dtype=np.int64)
    n_acc = len(func.block.inputs) + sum(e.access is not None for e in func.block.epilogue)
    for op in [*range(n_acc), -1]:
        acc = nest.access(op)
        shape = func.buffer(acc.buffer).shape
        for dim, size in zip(acc.axes, shape):
            if isinstance(dim, str):
                continue
            idx = as_index(dim)
            first = idx.offset + sum(c * lo[a] for a, c in idx.terms)
            last = idx.offset + sum(c * hi[a] for a, c in idx.terms)
            cols += [np.maximum(-first, 0), np.maximum(last - (size - 1), 0)]
    cols = [np.broadcast_to(np.asarray(c, dtype=np.int64), (n,)) for c in cols]
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0), dtype=np.int64)


def block_classes(kernel) -> tuple:
    """(representative block ids, run classes, run lengths) of ``kernel``'s grid in launch order."""
    n = math.prod(kernel.grid)
    if identical_blocks(kernel):
        return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.array([n], dtype=np.int64)
    sig = block_signatures(kernel)
    _, first, cls = np.unique(sig, axis=0, return_index=True, return_inverse=True)
    cls = cls.reshape(-1)
    starts = np.flatnonzero(np.r_[True, cls[1:] != cls[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return first.astype(np.int64), cls[starts].astype(np.int64), lengths.astype(np.int64)
