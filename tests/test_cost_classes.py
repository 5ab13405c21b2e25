"""Block classes (tinyml.sim.classes) and the segment-based cost model.

Counting mode hands the cost model one row per class of identical blocks plus the
launch order as runs; executing mode hands it one row per block. Both must give the
same Cost exactly (counting == executing), and the same Cost, up to float rounding, as
the per-block model the simulator used before (tests/cost_reference.py).
"""

from __future__ import annotations

import math
import resource
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cost_reference import per_block_cost
from strategies import any_devices, block_class_launches, sram_per_block
from tinyml.sim import Profile, Reuse, kernel_cost, load_device
from tinyml.sim.classes import BlockClasses
from tinyml.sim.counters import FIRST_OPERAND, FLOPS_MATMUL, HBM_READ, HBM_WRITE, new_counters


def _per_block_reuse(launch: BlockClasses, reuse):
    """The per-class Reuse of ``launch`` as one value per block."""
    if reuse is None:
        return None
    cls = launch.block_class()
    return Reuse(reads={op: np.asarray(v)[cls] for op, v in reuse.reads.items()},
                 writes=np.asarray(reuse.writes)[cls])


def _close(a, b) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-18)


# ---- the representation ------------------------------------------------------------

@given(launch=block_class_launches())
def test_canonical_form_keeps_every_block(launch):
    launch, _, _ = launch
    canon = BlockClasses.build(launch.counters, launch.run_class, launch.run_length)
    assert np.array_equal(canon.expand(), launch.expand())
    assert np.array_equal(canon.totals(), launch.expand().sum(axis=0))
    assert canon.n_blocks == launch.n_blocks == int(canon.multiplicity().sum())
    # canonical: distinct classes, numbered by first appearance, maximal runs
    assert len(np.unique(canon.counters, axis=0)) == canon.n_classes
    assert np.all(canon.run_class[1:] != canon.run_class[:-1])
    _, first = np.unique(canon.run_class, return_index=True)
    assert np.all(np.diff(first) > 0)
    # the canonical form of the expanded rows is the same object
    again = BlockClasses.from_blocks(launch.expand())
    for field in ("counters", "run_class", "run_length"):
        assert np.array_equal(getattr(again, field), getattr(canon, field))


def test_canonical_form_merges_duplicate_rows_and_drops_unused_ones():
    """Rows 0 and 2 are one class; row 3 is never run; run 2 has length 0 (dropped)."""
    c = np.array([[5, 1], [7, 0], [5, 1], [9, 9]])
    canon = BlockClasses.build(c, [1, 2, 3, 0, 1], [2, 3, 0, 4, 1])
    assert canon.counters.tolist() == [[7, 0], [5, 1]]          # numbered by first appearance
    assert canon.run_class.tolist() == [0, 1, 0]                 # rows 2 and 0 merged into one run
    assert canon.run_length.tolist() == [2, 7, 1]


def test_canonical_form_of_millions_of_runs():
    """A causal attention launch's shape: classes repeat in a pattern over B * H * q-block runs."""
    c = np.array([[1, 0], [2, 0], [3, 0], [1, 0]])               # the last row repeats the first
    pattern = np.array([3, 1, 2, 0])
    times = 500_000
    canon = BlockClasses.build(c, np.tile(pattern, times), np.ones(4 * times, dtype=np.int64))
    assert canon.counters.tolist() == [[1, 0], [2, 0], [3, 0]]
    # rows 3 and 0 are one class A: A B C A | A B C A | ... merges into A B C (A A) B C (A A) ... B C A
    assert np.array_equal(canon.run_class, np.r_[np.tile([0, 1, 2], times), 0])
    lengths = np.r_[1, np.tile([1, 1, 2], times)]
    lengths[-1] = 1
    assert np.array_equal(canon.run_length, lengths)
    assert canon.n_blocks == 4 * times


def test_repeat_tiles_the_launch_order():
    c = np.arange(12, dtype=np.int64).reshape(2, 6)
    launch = BlockClasses.build(c, [0, 1], [3, 1])
    rep = launch.repeat(3)
    assert np.array_equal(rep.expand(), np.tile(launch.expand(), (3, 1)))
    assert list(rep.run_length) == [3, 1] * 3


# ---- classes == blocks, exactly; == the per-block model, to rounding -----------------------

@given(dev=any_devices(), launch=block_class_launches(), data=st.data(), pipelined=st.booleans())
def test_classes_cost_exactly_what_their_blocks_cost(dev, launch, data, pipelined):
    launch, panels, reuse = launch
    spb = data.draw(sram_per_block(dev))
    kw = dict(dtype="fp16", sram_per_block=spb, panels=panels, pipelined=pipelined)
    by_class = kernel_cost(dev, launch, reuse=reuse, **kw)
    by_block = kernel_cost(dev, launch.expand(), reuse=_per_block_reuse(launch, reuse), **kw)
    assert by_class == by_block                     # every field, bit for bit


@given(dev=any_devices(), launch=block_class_launches(), data=st.data(), pipelined=st.booleans())
def test_segment_model_equals_the_per_block_model(dev, launch, data, pipelined):
    launch, panels, reuse = launch
    spb = data.draw(sram_per_block(dev))
    kw = dict(dtype="fp16", sram_per_block=spb, panels=panels, pipelined=pipelined)
    new = kernel_cost(dev, launch, reuse=reuse, **kw)
    old = per_block_cost(dev, launch.expand(), reuse=_per_block_reuse(launch, reuse), **kw)
    assert (new.waves, new.blocks_per_sm, new.l2_working_set_bytes) == (old.waves, old.blocks_per_sm,
                                                                         old.l2_working_set_bytes)
    assert _close(new.time_s, old.time_s) and _close(new.cycles, old.cycles)
    for field in ("hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes", "l2_write_hit_bytes"):
        assert abs(getattr(new, field) - getattr(old, field)) <= 1, field     # rounding of a float sum
    # the limiter and the last slot's resources are decided by comparisons of float sums: equal
    # unless two candidates tie to rounding
    if new.limiter != old.limiter:
        assert new.time_s == pytest.approx(old.time_s)
    else:
        for res, t in old.resource_s.items():
            assert _close(new.resource_s[res], t) or new.time_s == pytest.approx(old.time_s), res


def test_record_of_classes_equals_record_of_blocks():
    c = new_counters(3, n_operands=1)
    c[:, HBM_READ] = c[:, FIRST_OPERAND] = [1000, 3000, 700]
    c[:, HBM_WRITE] = [10, 20, 30]
    c[:, FLOPS_MATMUL] = [10 ** 6, 5 * 10 ** 6, 0]
    launch = BlockClasses.build(c, [0, 1, 0, 2, 1], [500, 7, 300, 1, 40])
    panels = {0: np.arange(launch.n_blocks) % 13}
    recs = []
    for counters in (launch, launch.expand()):
        with Profile("a100-40gb") as p:
            recs.append(p.record("k", (launch.n_blocks,), counters, dtype="fp16", sram_per_block=40_000,
                                 panels=panels))
    assert recs[0] == recs[1]
    assert recs[0].n_blocks == 848
    assert recs[0].flops_matmul == (500 + 300) * 10 ** 6 + 47 * 5 * 10 ** 6


# ---- what classes buy: big launches in seconds and bounded memory ----------------------------

def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_billion_identical_blocks_cost_in_closed_form():
    dev = load_device("a100-40gb")
    c = new_counters(1)
    c[0, HBM_READ] = 4096
    c[0, FLOPS_MATMUL] = 10 ** 6
    launch = BlockClasses.build(c, [0], [10 ** 9])
    before, t0 = _rss_mb(), time.perf_counter()
    cost = kernel_cost(dev, launch, sram_per_block=48 * 1024)
    assert time.perf_counter() - t0 < 5
    assert _rss_mb() - before < 200                 # no per-block array (8 GB for one int64 column)
    slots = dev.sm_count * 4                        # 192 KB / 48 KB
    assert cost.waves == -(-10 ** 9 // slots)
    t_mem = 4096 / (dev.hbm_bandwidth * dev.eff_hbm / dev.sm_count)
    t_mm = 10 ** 6 / (dev.matmul_rate("fp16") * dev.eff_matmul / dev.sm_count)
    per_block = 4 * (max(t_mem, t_mm) + min(t_mem, t_mm) / 4)          # 4 resident blocks share an SM
    assert cost.time_s - dev.launch_overhead_s == pytest.approx(cost.waves * per_block, rel=1e-9)
    assert cost.hbm_read_bytes == 4096 * 10 ** 9


def test_edge_classes_schedule_without_per_block_arrays():
    """Two classes interleaved as a matmul's edge column is: 2,000 runs, 4 million blocks."""
    dev = load_device("a100-40gb")
    c = new_counters(2)
    c[:, FLOPS_MATMUL] = [4 * 10 ** 6, 10 ** 6]
    runs = 2000
    launch = BlockClasses.build(c, np.tile([0, 1], runs // 2), np.tile([1999, 1], runs // 2))
    cost = kernel_cost(dev, launch, dtype="fp16", sram_per_block=96 * 1024)
    assert cost.waves == -(-launch.n_blocks // (2 * dev.sm_count))
    # work conserving: the makespan is at least the average slot's work and at most that plus one block
    mm = dev.matmul_rate("fp16") * dev.eff_matmul / dev.sm_count
    work = (1999 * 4e6 + 1e6) * (runs // 2) / mm * 2            # each slot holds 1/2 of an SM
    t = cost.time_s - dev.launch_overhead_s
    assert work / (2 * dev.sm_count) <= t * (1 + 1e-9)
    assert t <= work / (2 * dev.sm_count) + 2 * 4e6 / mm
