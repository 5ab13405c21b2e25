"""Block classes: a launch's counters without one row per block.

Most blocks of a grid do exactly the same work: every interior tile of a
matmul, every (batch, head) of FlashAttention-1. Only edges (a partial last
tile) and masks (causal attention's diagonal) make blocks differ. Counting
mode therefore counts *one representative block per class* and says how the
classes are laid out in launch order::

    counters    (n_classes, n_cols) int64   one row per class (columns of tinyml.sim.counters)
    run_class   (n_runs,)                   launch order as runs: run r is run_length[r]
    run_length  (n_runs,)                   consecutive blocks of class run_class[r]

    blocks = [run_class[0]] * run_length[0] + [run_class[1]] * run_length[1] + ...

A naive 100,000^3 matmul is 39 million blocks but 1 class and 1 run; causal
FlashAttention-2 has one class per q block and B * H * (q blocks) runs.
Host memory is O(classes + runs), never O(blocks) times the columns.

The cost model (:func:`tinyml.sim.cost.kernel_cost`) consumes this form
directly. Executing mode still fills one row per block; :meth:`from_blocks`
turns those rows into the *canonical* form (identical rows merged, classes
numbered by first appearance, adjacent runs of one class merged), and every
launch is costed from its canonical form, so a launch counted by classes and
the same launch executed block by block give bit-identical records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BlockClasses:
    """Counters per class of identical blocks plus the launch order as runs (module doc)."""

    counters: np.ndarray      # (n_classes, n_cols) int64
    run_class: np.ndarray     # (n_runs,) int64, indices into counters
    run_length: np.ndarray    # (n_runs,) int64, >= 1 each

    @property
    def n_blocks(self) -> int:
        return int(self.run_length.sum())

    @property
    def n_classes(self) -> int:
        return int(self.counters.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(blocks, columns): the shape of the per-block counters this stands for."""
        return self.n_blocks, int(self.counters.shape[1])

    def multiplicity(self) -> np.ndarray:
        """(n_classes,) int64: how many blocks each class stands for."""
        mult = np.zeros(self.n_classes, dtype=np.int64)
        np.add.at(mult, self.run_class, self.run_length)
        return mult

    def totals(self) -> np.ndarray:
        """(n_cols,) int64: each column summed over all blocks (what ``counters.sum(axis=0)`` was)."""
        return (self.counters * self.multiplicity()[:, None]).sum(axis=0)

    def block_class(self) -> np.ndarray:
        """(n_blocks,) the class of every block, in launch order (O(blocks): for small launches and tests)."""
        return np.repeat(self.run_class, self.run_length)

    def expand(self) -> np.ndarray:
        """The per-block counters this stands for (O(blocks): for small launches and tests)."""
        return self.counters[self.block_class()]

    # -- construction ---------------------------------------------------------------
    @classmethod
    def build(cls, counters, run_class, run_length) -> "BlockClasses":
        """The canonical form of any classes-and-runs description (duplicate classes allowed,
        runs of length 0 dropped)."""
        counters = np.asarray(counters, dtype=np.int64)
        if counters.ndim != 2:
            raise ValueError(f"class counters must be 2-D (classes, columns), got shape {counters.shape}")
        run_class = np.asarray(run_class, dtype=np.int64).reshape(-1)
        run_length = np.asarray(run_length, dtype=np.int64).reshape(-1)
        if run_class.shape != run_length.shape:
            raise ValueError(f"{len(run_class)} run classes but {len(run_length)} run lengths")
        if len(run_length) and run_length.min() < 0:
            raise ValueError("run lengths must be >= 0")
        if len(run_class) and (run_class.min() < 0 or run_class.max() >= counters.shape[0]):
            raise ValueError(f"run classes must index the {counters.shape[0]} class rows")
        keep = run_length > 0
        run_class, run_length = run_class[keep], run_length[keep]
        if len(run_class) == 0:
            empty = np.zeros((0, counters.shape[1]), dtype=np.int64)
            return cls(empty, np.zeros(0, np.int64), np.zeros(0, np.int64))
        # merge identical rows, then number the classes by first appearance in launch order. No sort
        # of the runs (a causal attention launch has B * H * q-block runs, counted thousands of times
        # per compiled model): rows are merged by their bytes, first appearances found in one pass.
        ids: dict = {}
        inverse = np.array([ids.setdefault(row.tobytes(), len(ids)) for row in counters], dtype=np.int64)
        uniq = counters[np.unique(inverse, return_index=True)[1]]    # row i: the first row of merged class i
        run_class = inverse[run_class]
        first = np.full(len(uniq), len(run_class), dtype=np.int64)  # first run of each merged class
        np.minimum.at(first, run_class, np.arange(len(run_class)))
        used = np.flatnonzero(first < len(run_class))
        order = used[np.argsort(first[used], kind="stable")]     # class ids in order of first appearance
        relabel = np.empty(len(uniq), dtype=np.int64)
        relabel[order] = np.arange(len(order))
        run_class = relabel[run_class]
        # merge adjacent runs of one class
        starts = np.flatnonzero(np.r_[True, run_class[1:] != run_class[:-1]])
        return cls(np.ascontiguousarray(uniq[order]), run_class[starts],
                   np.add.reduceat(run_length, starts).astype(np.int64))

    @classmethod
    def from_blocks(cls, counters: np.ndarray) -> "BlockClasses":
        """The canonical form of per-block counters (one row per block, in launch order)."""
        counters = np.asarray(counters, dtype=np.int64)
        if counters.shape[0] == 0:
            return cls.build(counters, np.zeros(0, np.int64), np.zeros(0, np.int64))
        # runs of equal consecutive rows first (O(blocks)): only their first rows need sorting
        starts = np.flatnonzero(np.r_[True, np.any(counters[1:] != counters[:-1], axis=1)])
        lengths = np.diff(np.append(starts, counters.shape[0]))
        return cls.build(counters[starts], np.arange(len(starts)), lengths)

    def repeat(self, times: int) -> "BlockClasses":
        """The launch order repeated ``times`` times (e.g. the q blocks of one head, for every head)."""
        return BlockClasses.build(self.counters, np.tile(self.run_class, int(times)),
                                  np.tile(self.run_length, int(times)))


def as_classes(counters) -> BlockClasses:
    """``counters`` (per-block rows or :class:`BlockClasses`) in canonical form."""
    if isinstance(counters, BlockClasses):
        return BlockClasses.build(counters.counters, counters.run_class, counters.run_length)
    return BlockClasses.from_blocks(counters)
