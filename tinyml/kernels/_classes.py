"""Counting by class: one representative block per class, one representative tile per kind.

Counting mode must stay cheap where the answer is a formula of the shapes
(:mod:`tinyml.sim.classes`). Two kinds of repetition make a launch expensive
to walk, and each has its helper here:

* **Many identical blocks.** A body takes ``ids``, the blocks to walk, and
  writes the counters of ``ids[row]`` into row ``row``. Executing mode passes
  every block (``np.arange(n_blocks)``); counting mode passes one block per
  class and describes the launch order as runs (:func:`edge_grid`), and
  :func:`launch_counters` turns the rows into
  :class:`~tinyml.sim.classes.BlockClasses`.
* **Many identical tiles in one block.** A tile loop over ``lo <= j < hi``
  whose tiles are all full except the sequence's last one
  (``cols = min(B, N - j * B)``) visits, in counting mode, only tile ``lo``
  (standing for ``hi - lo - 1`` tiles) and tile ``hi - 1``::

      for jr in range(rep_count(lo, hi, execute)):
          j, mult = rep_tile(jr, lo, hi, execute)     # executing: (lo + jr, 1)
          step[:] = 0
          ... count the tile into step ...
          add_scaled(counters, row, step, mult)

  Executing mode walks every tile with ``mult = 1``, so both modes run the
  same loop and the same counting calls; counters add up, so ``mult`` copies
  of a tile's counts are exactly what ``mult`` identical tiles count.
"""

from __future__ import annotations

import numpy as np

from ..sim.jit import njit  # versioned Numba cache, one compile per argument type
from ..sim.classes import BlockClasses


@njit(cache=True)
def rep_count(lo, hi, execute):
    """How many tiles of ``lo <= j < hi`` the loop visits: all when executing, at most 2 when counting."""
    if execute:
        return max(hi - lo, 0)
    return min(max(hi - lo, 0), 2)


@njit(cache=True)
def rep_tile(jr, lo, hi, execute):
    """(tile index, multiplicity) of the ``jr``-th visited tile (see the module docstring)."""
    if execute:
        return lo + jr, 1
    if jr == 0 and hi - lo > 1:
        return lo, hi - lo - 1           # tiles lo .. hi - 2: all full, all alike
    return hi - 1, 1                     # the last tile (partial if the sequence ends inside it)


@njit(cache=True)
def add_scaled(counters, row, step, mult):
    """``counters[row] += mult * step[0]`` (``step`` is a (1, n_cols) scratch row)."""
    for c in range(step.shape[1]):
        counters[row, c] += mult * step[0, c]


def edge_grid(grid_m: int, grid_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(representative block ids, run classes, run lengths) of a row-major ``grid_m x grid_n`` grid
    whose blocks differ only in the last tile row and the last tile column.

    Class ``k`` is block ``ids[k]``; blocks ``b = bi * grid_n + bj`` of one tile row form a run
    of ``grid_n - 1`` interior blocks and one edge block.
    """
    if grid_n == 1:
        return _tile_row_classes(grid_m, grid_n, [0], [1])
    return _tile_row_classes(grid_m, grid_n, [0, grid_n - 1], [grid_n - 1, 1])


def _tile_row_classes(grid_m: int, grid_n: int, cols: list, lengths: list):
    """(ids, run_class, run_length) of a row-major grid whose tile rows are runs of ``lengths``
    blocks, each run standing for its representative column in ``cols``, and whose rows differ only
    in the last one: classes ``0 .. len(cols) - 1`` for every row but the last, then the last row's."""
    rows = sorted({0, grid_m - 1})
    ids = np.array([r * grid_n + c for r in rows for c in cols], dtype=np.int64)
    nc = len(cols)
    run_class = np.concatenate([np.tile(np.arange(nc), grid_m - 1),
                                (len(rows) - 1) * nc + np.arange(nc)]).astype(np.int64)
    run_length = np.tile(np.array(lengths, dtype=np.int64), grid_m)
    return ids, run_class, run_length


def uniform_runs(n_classes: int, run: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(representative block ids, run classes, run lengths) of a launch whose blocks come in
    ``n_classes`` consecutive runs of ``run`` alike blocks (decoding: the kv heads of one sequence).

    Class ``c`` is block ``c * run``."""
    ids = np.arange(n_classes, dtype=np.int64) * run
    return ids, np.arange(n_classes, dtype=np.int64), np.full(n_classes, run, dtype=np.int64)


def row_edge_grid(grid_m: int, grid_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`edge_grid`, for a grid whose tile rows may all differ (an elementwise kernel reading
    a broadcast operand: which source rows are new to a block depends on its tile row), while the
    blocks of one tile row differ only in the last tile column.

    Class ``2 bi`` is block ``bi * grid_n`` (standing for the ``grid_n - 1`` interior blocks of
    tile row ``bi``), class ``2 bi + 1`` its last block; a one-column grid has one class per row.
    """
    first = np.arange(grid_m, dtype=np.int64) * grid_n
    if grid_n == 1:
        return first, np.arange(grid_m, dtype=np.int64), np.ones(grid_m, dtype=np.int64)
    ids = np.stack([first, first + grid_n - 1], axis=1).ravel()
    run_length = np.tile(np.array([grid_n - 1, 1], dtype=np.int64), grid_m)
    return ids, np.arange(2 * grid_m, dtype=np.int64), run_length


def blocks_to_walk(grid_m: int, grid_n: int, execute: bool, classes=edge_grid):
    """(ids, run_class, run_length) for a body over a ``grid_m x grid_n`` grid (row-major):
    every block when executing (no classes), one per class of ``classes(grid_m, grid_n)`` when counting."""
    if execute:
        return np.arange(grid_m * grid_n, dtype=np.int64), None, None
    return classes(grid_m, grid_n)


def launch_counters(counters: np.ndarray, execute: bool, run_class=None, run_length=None):
    """What a launch records: per-block rows when executing, BlockClasses when counting."""
    if execute:
        return counters
    return BlockClasses.build(counters, run_class, run_length)


def head_edge_grid(grid_m: int, grid_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`edge_grid`, for a grid whose *first* tile column differs too (a K tile that reads
    the header of a group spanning several tiles: a per-row scale sits in tile 0 only).

    A tile row is the runs (column 0, 1 block), (columns 1 .. grid_n - 2, grid_n - 2 blocks),
    (column grid_n - 1, 1 block), fewer when the grid is narrower; rows differ only in the last one.
    """
    cols = sorted({0, min(1, grid_n - 1), grid_n - 1})
    lengths = [1, grid_n - 2, 1][:len(cols)] if grid_n > 2 else [1] * len(cols)
    return _tile_row_classes(grid_m, grid_n, cols, lengths)
