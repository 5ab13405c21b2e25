"""The row reduction (softmax): random legal schedules == the float64 reference, counting ==
executing, the bytes of the hand schedule == the closed form, illegal requests refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from strategies import examples
from tinyml.compiler.tensor import (ComputeAtError, ReorderError, Schedule, ScheduleError, TensorizeError, build,
                                    replay, simulate, softmax, to_json)
from tinyml.compiler.tensor.examples import row_softmax
from tinyml.sim import Profile, meta

ELEM = {"fp16": 2, "fp32": 4}
FIELDS = ("hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes", "sram_read_bytes", "sram_write_bytes",
          "flops_vector", "time_s")
FLOPS_PER_ELEMENT = 4 + 3            # the online pass, then the writing pass


def schedule(f, rows, cols, how):
    """One of a few structures (each compiles once, but cpu_rows once per ``cols``: it unrolls the
    column loop): rows per block, the row split in ``cols``."""
    s = Schedule(f)
    i0, i1 = s.split("i", [None, rows])
    j0, j1 = s.split("j", [None, cols])
    if how in ("grid_shared", "grid_local"):
        s.bind(i0, "blockIdx.x")
        s.compute_at(s.cache_read("X", how.split("_")[1]), i0)
    elif how == "cpu_rows":
        s.parallel(i0)
        s.compute_at(s.cache_read("X", "shared"), i1)
        s.unroll(j1)
    elif how == "threads":
        s.bind(i0, "blockIdx.x")
        s.bind(i1, "threadIdx.x")
    return s


SIZES = dict(m=st.integers(1, 20), n=st.integers(1, 40), rows=st.integers(1, 6), cols=st.integers(1, 9),
             seed=st.integers(0, 2 ** 16))


@pytest.mark.parametrize("how", ["naive", "grid_shared", "grid_local", "threads"])
@settings(max_examples=examples(5))
@given(**SIZES)
def test_random_schedules_equal_the_reference_and_count_what_they_execute(how, m, n, rows, cols, seed):
    check_random_schedule(how, m, n, rows, cols, seed)


@settings(max_examples=examples(2))          # the unrolled column loop's extent is in the source: a compile per example
@given(**SIZES)
def test_random_cpu_rows_schedules_equal_the_reference_and_count_what_they_execute(m, n, rows, cols, seed):
    check_random_schedule("cpu_rows", m, n, rows, cols, seed)


def check_random_schedule(how, m, n, rows, cols, seed):
    f = softmax(m, n, "fp32")
    k = build(schedule(f, rows, cols, how), parallel=False)
    x = (np.random.default_rng(seed).standard_normal((m, n)) * 4).astype(np.float32)
    with Profile("a100-40gb") as prof:
        y = k(x)
        k(meta((m, n), "fp32"))
    np.testing.assert_allclose(y, f.reference(x), rtol=1e-5, atol=1e-6)
    ex, co = prof.records
    for field in FIELDS:
        assert getattr(ex, field) == getattr(co, field), field
    s = ELEM["fp32"]
    cached = how.startswith("grid_") or how == "cpu_rows"
    assert ex.hbm_read_bytes + ex.l2_hit_bytes == (1 if cached else 2) * m * n * s
    assert ex.hbm_write_bytes == m * n * s
    assert ex.flops_vector == FLOPS_PER_ELEMENT * m * n


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_hand_schedule_bytes_equal_the_closed_form(dtype):
    """row_softmax: X read once (M N s), Y written once (M N s); the naive nest reads X twice."""
    m, n, rows = 1000, 768, 4
    s = ELEM[dtype]
    f = softmax(m, n, dtype)
    r = simulate(row_softmax(f, rows), "a100-40gb")
    assert (r.hbm_read_bytes + r.l2_hit_bytes, r.hbm_write_bytes) == (m * n * s, m * n * s)
    assert r.grid == (math.ceil(m / rows),)
    assert r.sram_per_block_bytes == rows * n * s
    naive = simulate(Schedule(f), "a100-40gb")
    assert naive.hbm_read_bytes + naive.l2_hit_bytes == 2 * m * n * s
    assert r.time_s < naive.time_s


def test_a_trace_replays_to_the_identical_nest():
    f = softmax(64, 100)
    s = schedule(f, 8, 10, "grid_shared")
    assert replay(f, to_json(s)).nest == s.nest
    assert replay(softmax(32, 50), to_json(s), same_shapes=False).nest.loops[0].thread == "blockIdx.x"


def test_illegal_schedules_are_refused_naming_the_problem():
    s = Schedule(softmax(64, 100))
    i0, i1 = s.split("i", [None, 8])
    j0, j1 = s.split("j", [None, 10])
    with pytest.raises(ReorderError, match=f"reduction loop {j0} would run outside row loop {i1}"):
        s.reorder(j0, i1)
    with pytest.raises(ReorderError, match="reduction loop"):
        s.reorder(j0, i0)
    x = s.cache_read("X", "shared")
    with pytest.raises(ComputeAtError, match=f"{j0} walks the row"):
        s.compute_at(x, j0)
    with pytest.raises(ScheduleError, match="no sum to accumulate"):
        s.cache_write("local")
    with pytest.raises(ComputeAtError, match="no output to zero"):
        s.decompose_reduction(j0)
    with pytest.raises(TensorizeError, match="row reduction"):
        s.tensorize(j0)
    with pytest.raises(ScheduleError, match="reduction loop"):
        s.bind(j0, "threadIdx.x")
    assert s.get_loops() == [i0, i1, j0, j1]            # nothing changed


def test_a_row_cache_that_overflows_sram_is_refused():
    from tinyml.sim import SramOverflowError

    s = Schedule(softmax(64, 1 << 20))
    i0, _ = s.split("i", [None, 8])
    s.bind(i0, "blockIdx.x")
    s.compute_at(s.cache_read("X", "shared"), i0)
    with pytest.raises(SramOverflowError, match="X_shared"):
        simulate(s, "a100-40gb")
