"""Block classes and the helpers that pick representative blocks and tiles, by hand on small launches
(pinned by mutation testing, tools/mutate.py): ``tinyml/sim/classes.py``, ``tinyml/kernels/_classes.py``
and ``tinyml/kernels/_counting.py``.

Every number that counting by class relies on: how many blocks a class stands for, the canonical form
(identical rows merged, classes numbered by first appearance, adjacent runs merged, empty runs
dropped), the representative blocks of an edge grid, the representative tiles of a tile loop and
their multiplicities, and the extents of counting mode's one-element buffers. The jitted helpers are
called directly, so the tests hold both jitted and under ``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyml.kernels._classes import (add_scaled, blocks_to_walk, edge_grid, head_edge_grid, launch_counters,
                                     rep_count, rep_tile, row_edge_grid, uniform_runs)
from tinyml.kernels._counting import extent, stand_in
from tinyml.sim.classes import BlockClasses, as_classes

# Equivalent mutants (tools/mutate.py counts them as such):
#
# equivalent mutant tinyml/sim/classes.py:81: 1 -> 2
# equivalent mutant tinyml/sim/classes.py:82: 1 -> 2
# equivalent mutant tinyml/sim/classes.py:96: 1 -> 2
#   ``reshape(-1)`` -> ``reshape(-2)`` of the run classes / run lengths / np.unique's inverse: NumPy (2.4 here) takes any negative
#   size as the one to infer, so both flatten the same way (the same mutant of sim/cost.py's panels).


def listed(launch: BlockClasses):
    return launch.counters.tolist(), launch.run_class.tolist(), launch.run_length.tolist()


# ---- tinyml/sim/classes.py ----------------------------------------------------------------------


def test_sizes_multiplicity_and_totals_of_a_class_used_by_two_runs():
    # blocks: A A A B A  (class 0 in two runs of 3 and 1)
    launch = BlockClasses(np.array([[1, 10], [2, 20]], np.int64), np.array([0, 1, 0]), np.array([3, 1, 1]))
    assert (launch.n_blocks, launch.n_classes, launch.shape) == (5, 2, (5, 2))
    assert launch.multiplicity().tolist() == [4, 1]
    assert launch.totals().tolist() == [4 * 1 + 2, 4 * 10 + 20]
    assert launch.block_class().tolist() == [0, 0, 0, 1, 0]
    assert launch.expand().tolist() == [[1, 10]] * 3 + [[2, 20], [1, 10]]


def test_classes_are_rows_not_columns():
    # 3 classes of 2 counters each (classes != columns): blocks C A B A
    launch = BlockClasses(np.array([[1, 10], [2, 20], [3, 30]], np.int64), np.array([2, 0, 1, 0]),
                          np.array([1, 1, 1, 1]))
    assert (launch.n_classes, launch.shape) == (3, (4, 2))
    assert launch.multiplicity().tolist() == [2, 1, 1]
    assert launch.totals().tolist() == [2 * 1 + 2 + 3, 2 * 10 + 20 + 30]


def test_build_numbers_classes_by_first_appearance_and_merges_rows_and_runs():
    # rows 0 and 2 are equal; np.unique sorts [1] before [5], but [5] appears first in launch order
    launch = BlockClasses.build([[5], [1], [5]], [0, 1, 2], [1, 1, 1])
    assert listed(launch) == ([[5], [1]], [0, 1, 0], [1, 1, 1])
    # adjacent runs of one class merge, their lengths add
    launch = BlockClasses.build([[7], [7], [2]], [0, 1, 2], [2, 3, 1])
    assert listed(launch) == ([[7], [2]], [0, 1], [5, 1])
    assert launch.run_length.dtype == np.int64 and launch.run_class.dtype == np.int64
    # an unused class row is dropped; a class used twice, not adjacent, stays one class in two runs
    launch = BlockClasses.build([[9], [3], [4]], [1, 2, 1], [2, 1, 4])
    assert listed(launch) == ([[3], [4]], [0, 1, 0], [2, 1, 4])


def test_build_drops_empty_runs_and_an_all_empty_launch():
    launch = BlockClasses.build([[1], [2]], [0, 1, 0], [2, 0, 3])       # the empty run between: one run
    assert listed(launch) == ([[1]], [0], [5])
    empty = BlockClasses.build([[1, 2, 3]], [0], [0])
    assert empty.counters.shape == (0, 3) and listed(empty) == ([], [], [])
    assert empty.n_blocks == 0 and empty.shape == (0, 3)
    none = BlockClasses.build(np.zeros((0, 2), np.int64), [], [])
    assert none.counters.shape == (0, 2) and none.run_class.shape == none.run_length.shape == (0,)


def test_build_refuses_what_is_not_a_launch():
    with pytest.raises(ValueError, match="2-D"):
        BlockClasses.build([1, 2, 3], [0], [1])
    with pytest.raises(ValueError, match="2 run classes but 1 run lengths"):
        BlockClasses.build([[1]], [0, 0], [1])
    with pytest.raises(ValueError, match=">= 0"):
        BlockClasses.build([[1]], [0], [-1])
    with pytest.raises(ValueError, match="index the 2 class rows"):
        BlockClasses.build([[1], [2]], [2], [1])                        # one past the last row
    with pytest.raises(ValueError, match="index the 2 class rows"):
        BlockClasses.build([[1], [2]], [-1], [1])
    assert listed(BlockClasses.build([[1], [2]], [1, 0], [1, 1])) == ([[2], [1]], [0, 1], [1, 1])   # both edges legal


def test_from_blocks_and_as_classes():
    rows = np.array([[4], [4], [1], [4], [1], [1]], np.int64)
    launch = BlockClasses.from_blocks(rows)
    assert listed(launch) == ([[4], [1]], [0, 1, 0, 1], [2, 1, 1, 2])
    assert np.array_equal(launch.expand(), rows)
    assert listed(BlockClasses.from_blocks(rows[:1])) == ([[4]], [0], [1])
    empty = BlockClasses.from_blocks(np.zeros((0, 3), np.int64))
    assert empty.counters.shape == (0, 3) and empty.n_blocks == 0
    assert listed(as_classes(rows)) == listed(launch)
    raw = BlockClasses(np.array([[1], [1]], np.int64), np.array([0, 1]), np.array([2, 3]))   # not canonical
    assert listed(as_classes(raw)) == ([[1]], [0], [5])


def test_repeat():
    launch = BlockClasses.build([[1], [2]], [0, 1], [2, 1])
    assert listed(launch.repeat(3)) == ([[1], [2]], [0, 1] * 3, [2, 1] * 3)
    assert listed(launch.repeat(1)) == listed(launch)
    assert BlockClasses.build([[1]], [0], [2]).repeat(3).run_length.tolist() == [6]    # runs of one class merge


# ---- tinyml/kernels/_classes.py: representative tiles -------------------------------------------------


@pytest.mark.parametrize("lo, hi, executing, counting", [
    (3, 3, 0, 0), (5, 3, 0, 0), (3, 4, 1, 1), (3, 5, 2, 2), (3, 9, 6, 2), (0, 1, 1, 1)])
def test_rep_count(lo, hi, executing, counting):
    assert rep_count(lo, hi, True) == executing and rep_count(lo, hi, False) == counting


def test_rep_tile():
    assert [tuple(rep_tile(jr, 3, 9, True)) for jr in range(6)] == [(3 + jr, 1) for jr in range(6)]
    assert tuple(rep_tile(0, 3, 9, False)) == (3, 5) and tuple(rep_tile(1, 3, 9, False)) == (8, 1)
    assert tuple(rep_tile(0, 3, 5, False)) == (3, 1) and tuple(rep_tile(1, 3, 5, False)) == (4, 1)
    assert tuple(rep_tile(0, 3, 4, False)) == (3, 1)              # one tile: the last one, once


def test_add_scaled():
    counters = np.array([[1, 2, 3], [10, 20, 30]], np.int64)
    add_scaled(counters, 1, np.array([[1, 0, 5]], np.int64), 7)
    assert counters.tolist() == [[1, 2, 3], [17, 20, 65]]


# ---- tinyml/kernels/_classes.py: representative blocks ------------------------------------------------


@pytest.mark.parametrize("gm, gn, ids, run_class, run_length", [
    (1, 1, [0], [0], [1]),
    (1, 3, [0, 2], [0, 1], [2, 1]),
    (3, 1, [0, 2], [0, 0, 1], [1, 1, 1]),
    (3, 4, [0, 3, 8, 11], [0, 1, 0, 1, 2, 3], [3, 1, 3, 1, 3, 1]),
    (2, 2, [0, 1, 2, 3], [0, 1, 2, 3], [1, 1, 1, 1]),
])
def test_edge_grid(gm, gn, ids, run_class, run_length):
    got = edge_grid(gm, gn)
    assert [a.tolist() for a in got] == [ids, run_class, run_length]
    assert all(a.dtype == np.int64 for a in got)


# equivalent mutant tinyml/kernels/_classes.py:136: 2 -> 3
#   head_edge_grid's ``grid_n > 2`` -> ``grid_n > 3`` (the condition's 2): at grid_n = 3 both branches give the
#   lengths [1, 1, 1] (grid_n - 2 = 1 interior column).


@pytest.mark.parametrize("gm, gn, ids, run_class, run_length", [
    (1, 1, [0], [0], [1]),                                    # one column: column 0 is also the last
    (1, 2, [0, 1], [0, 1], [1, 1]),                           # columns 0 and 1, no interior
    (1, 3, [0, 1, 2], [0, 1, 2], [1, 1, 1]),                  # an interior of one column
    (3, 1, [0, 2], [0, 0, 1], [1, 1, 1]),
    (2, 2, [0, 1, 2, 3], [0, 1, 2, 3], [1, 1, 1, 1]),
    # 2 x 4: a row is (column 0, 1 block), (columns 1..2, 2 blocks), (column 3, 1 block)
    (2, 4, [0, 1, 3, 4, 5, 7], [0, 1, 2, 3, 4, 5], [1, 2, 1, 1, 2, 1]),
    # 3 x 5: rows 0 and 1 alike (classes 0..2, blocks 0, 1, 4), row 2 its own (blocks 10, 11, 14)
    (3, 5, [0, 1, 4, 10, 11, 14], [0, 1, 2, 0, 1, 2, 3, 4, 5], [1, 3, 1] * 3),
])
def test_head_edge_grid(gm, gn, ids, run_class, run_length):
    got = head_edge_grid(gm, gn)
    assert [a.tolist() for a in got] == [ids, run_class, run_length]
    assert all(a.dtype == np.int64 for a in got)
    assert sum(run_length) == gm * gn                         # the runs cover every block once


@pytest.mark.parametrize("gm, gn, ids, run_class, run_length", [
    (3, 1, [0, 1, 2], [0, 1, 2], [1, 1, 1]),
    (2, 3, [0, 2, 3, 5], [0, 1, 2, 3], [2, 1, 2, 1]),
    (1, 2, [0, 1], [0, 1], [1, 1]),
])
def test_row_edge_grid(gm, gn, ids, run_class, run_length):
    assert [a.tolist() for a in row_edge_grid(gm, gn)] == [ids, run_class, run_length]


def test_uniform_runs():
    assert [a.tolist() for a in uniform_runs(3, 4)] == [[0, 4, 8], [0, 1, 2], [4, 4, 4]]
    assert [a.tolist() for a in uniform_runs(1, 1)] == [[0], [0], [1]]


def test_blocks_to_walk_and_launch_counters():
    ids, run_class, run_length = blocks_to_walk(2, 3, True)
    assert ids.tolist() == list(range(6)) and run_class is None and run_length is None
    assert [a.tolist() for a in blocks_to_walk(2, 3, False)] == [a.tolist() for a in edge_grid(2, 3)]
    assert [a.tolist() for a in blocks_to_walk(2, 3, False, classes=row_edge_grid)] == \
        [a.tolist() for a in row_edge_grid(2, 3)]
    rows = np.array([[1, 2], [3, 4]], np.int64)
    assert launch_counters(rows, True) is rows
    launch = launch_counters(rows, False, np.array([0, 1, 0]), np.array([2, 1, 1]))
    assert isinstance(launch, BlockClasses) and listed(launch) == ([[1, 2], [3, 4]], [0, 1, 0], [2, 1, 1])


# ---- tinyml/kernels/_counting.py ----------------------------------------------------------------------


def test_extent_and_stand_in():
    assert extent(128, True) == 128 and extent(128, False) == 1 and extent(0, True) == 0
    a = stand_in()
    assert a.shape == (1, 1) and a.dtype == np.float32 and a[0, 0] == 0
    b = stand_in(3, np.int64, 7)
    assert b.shape == (1, 1, 1) and b.dtype == np.int64 and b[0, 0, 0] == 7
