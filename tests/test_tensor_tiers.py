"""A generated kernel's two tiers: a short counting walk runs its source as Python, the rest compiles.

``tinyml.compiler.tensor.launch`` runs a counting walk of at most ``INTERPRETED_STEPS`` steps of a
structure not compiled in this process as plain Python, and compiles everything else. These tests
start each structure afresh (as a new process would: ``_COMPILED`` forgotten) and check which tier
ran, that the counts agree, and the step formula. The property tests of test_tensor_codegen.py and
test_tensor_implicit_gemm.py count every random structure in both tiers as well.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from tinyml.compiler.tensor import Schedule, build, matmul
from tinyml.compiler.tensor import launch
from tinyml.compiler.tensor.examples import tiled_matmul
from tinyml.compiler.tune import SimulatedMeasurer, Space, templates
from tinyml.sim import Profile, meta

FIELDS = ("hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes", "sram_read_bytes", "sram_write_bytes",
          "flops_matmul", "flops_vector", "time_s", "waves", "blocks_per_sm")


@pytest.fixture(autouse=True)
def own_marks(monkeypatch, tmp_path):
    """Each test's own 'compiled on this machine' marks, so other tests (other workers) compiling
    the same structure cannot change which tier runs here."""
    monkeypatch.setattr(launch, "_compiled_mark", lambda source: tmp_path / f"{hash(source)}.compiled")


def fresh(kernel):
    """The kernel's dispatcher as a new process on a new machine finds it: nothing compiled, nothing interpreted."""
    launch._COMPILED.pop(kernel.source, None)
    launch._INTERPRETED.pop(kernel.source, None)
    return launch.compile_source(kernel.source)


def count(kernel, by_class=True):
    with Profile("a100-40gb") as prof:
        kernel(*(meta(b.shape, b.dtype) for b in kernel.func.inputs), by_class=by_class)
    return prof.records[0]


def test_walk_steps_is_blocks_times_the_tile_loop_steps():
    """Tiled matmul, 64^3 in 16^3 tiles: per block one step for the C tile's level (1 + its store),
    then 4 K steps of (1 + the A and B tile loads)."""
    kernel = build(tiled_matmul(matmul(64, 64, 64), 16, 16, 16), parallel=False)
    assert kernel.grid == (4, 4)
    assert launch.walk_steps(kernel, 16) == 16 * (1 * (1 + 1) + 4 * (1 + 2))
    assert launch.walk_steps(kernel, 1) == 14


def test_a_short_count_runs_the_source_and_a_long_one_compiles(monkeypatch):
    sch = Schedule(matmul(48, 40, 24, "fp32"))
    i0, i1 = sch.split("i", [None, 16])
    k0, k1 = sch.split("k", [None, 8])
    sch.reorder(i0, "j", k0, i1, k1)
    sch.bind(i0, "blockIdx.x")
    sch.compute_at(sch.cache_read("A", "shared"), k0)
    kernel = build(sch, parallel=False)
    fn = fresh(kernel)
    assert launch.walk_steps(kernel, 3) <= launch.INTERPRETED_STEPS
    interpreted = count(kernel, by_class=False)                 # every block, interpreted
    assert fn.signatures == [], "a short count of a new structure compiled it"

    monkeypatch.setattr(launch, "INTERPRETED_STEPS", 0)         # every walk is now 'long'
    compiled = count(kernel)                                    # one block per class, compiled
    assert len(fn.signatures) == 1
    for f in FIELDS:
        assert getattr(interpreted, f) == getattr(compiled, f), f


def test_a_structure_counted_long_enough_interpreted_is_compiled():
    """Ski rental: once its interpreted walks have taken INTERPRETED_SECONDS, the structure compiles."""
    sch = Schedule(matmul(36, 28, 20, "fp32"))
    i0, _ = sch.split("i", [None, 12])
    sch.bind(i0, "blockIdx.x")
    sch.compute_at(sch.cache_read("B", "shared"), i0)
    kernel = build(sch, parallel=False)
    fn = fresh(kernel)
    first = count(kernel)
    assert fn.signatures == [] and launch._INTERPRETED[kernel.source] > 0
    launch._INTERPRETED[kernel.source] = launch.INTERPRETED_SECONDS     # as if counted that long
    second = count(kernel)
    assert len(fn.signatures) == 1
    for f in FIELDS:
        assert getattr(first, f) == getattr(second, f), f


def test_a_structure_compiled_before_loads_its_machine_code(monkeypatch):
    """A later process finds the mark of an earlier compile: loading the cached machine code takes
    milliseconds, less than interpreting, so no walk of it is interpreted."""
    kernel = build(tiled_matmul(matmul(64, 64, 64), 16, 16, 16), parallel=False)
    calls = []
    monkeypatch.setitem(launch._COMPILED, kernel.source, _Spy(calls))
    monkeypatch.setitem(launch._INTERPRETED, kernel.source, 0.0)
    count(kernel)
    assert calls == ["interpreted"] and not launch._compiled_mark(kernel.source).exists()
    launch._INTERPRETED[kernel.source] = launch.INTERPRETED_SECONDS
    count(kernel)                                       # over budget: compiles, and marks it
    assert calls[-1] == "compiled" and launch._compiled_mark(kernel.source).exists()
    launch._INTERPRETED[kernel.source] = 0.0            # a new process: nothing interpreted yet
    count(kernel)
    assert calls[-1] == "compiled"


def test_executing_always_runs_the_machine_code():
    f = matmul(20, 12, 8, "fp32")
    sch = Schedule(f)
    i0, _ = sch.split("i", [None, 4])
    sch.bind(i0, "blockIdx.x")
    kernel = build(sch, parallel=False)
    fn = fresh(kernel)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((20, 8)).astype(np.float32), rng.standard_normal((8, 12)).astype(np.float32)
    with Profile("a100-40gb"):
        c = kernel(a, b)
    assert len(fn.signatures) == 1
    np.testing.assert_allclose(c, f.reference(a, b), rtol=1e-5, atol=1e-5)


def test_a_tuning_trial_of_a_new_structure_compiles_nothing():
    """The tuner counts one block per class: a few hundred steps, interpreted, whatever the size."""
    space = Space(matmul(4096, 4096, 4096), templates.matmul_gpu)
    sch = space.schedule(space.sample(random.Random(5)))
    kernel = build(sch, parallel=False)
    fn = fresh(kernel)
    result = SimulatedMeasurer("a100-40gb").measure(sch)
    assert result.time_s > 0
    assert fn.signatures == []


@pytest.mark.parametrize("steps, tier", [(launch.INTERPRETED_STEPS, "interpreted"),
                                         (launch.INTERPRETED_STEPS + 1, "compiled"), (10 ** 9, "compiled")])
def test_the_limit_is_on_the_walks_steps(monkeypatch, steps, tier):
    """Up to the limit the source runs; one step more and the machine code does."""
    kernel = build(tiled_matmul(matmul(64, 64, 64), 16, 16, 16), parallel=False)
    calls = []
    monkeypatch.setattr(launch, "walk_steps", lambda k, rows: steps)
    monkeypatch.setattr(launch, "compile_source", lambda source: _Spy(calls))
    count(kernel)
    assert calls == [tier]


class _Spy:
    """Stands in for a dispatcher: records whether the machine code or the Python source ran."""

    signatures: list = []

    def __init__(self, calls):
        self.calls = calls

    def __call__(self, *args):
        self.calls.append("compiled")

    def py_func(self, *args):
        self.calls.append("interpreted")
