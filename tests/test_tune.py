"""Auto-tuning (tinyml.compiler.tune): determinism, resume, exhaustive optimum found, models rank a
known order, feature invariances, every tuned candidate == the NumPy reference, failures recorded."""

from __future__ import annotations

import json
import random
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import examples
from tinyml.compiler.tensor import Schedule, build, matmul, conv2d, replay, simulate
from tinyml.compiler.tune import MissingDependencyError, SimulatedMeasurer, Space, TuningLog, tune
from tinyml.compiler.tune import templates as T
from tinyml.compiler.tune.features import NAMES, knob_features, nest_features
from tinyml.compiler.tune.log import read_records
from tinyml.compiler.tune.metrics import pairwise, spearman
from tinyml.compiler.tune.model import make_model, targets
from tinyml.compiler.tune.one_class import identical_blocks
from tinyml.sim import Profile, load_device, meta

SMALL = (64, 64, 64)          # matmul_gpu space: 3 x 3 x 3 tiles x 8 structures = 216 candidates


def small():
    return matmul(*SMALL)


def run(tmp_path, name, **kw):
    path = tmp_path / name
    kw.setdefault("trials", 24)
    kw.setdefault("batch", 8)
    res = tune(small(), SimulatedMeasurer("a100-40gb"), log=path, **kw)
    return res, path


# ---- the space ------------------------------------------------------------------------------------

def test_space_size_is_the_product_of_the_choices():
    space = Space(small(), T.matmul_gpu)
    # tiles of 64 with the innermost in [16, 256]: 16, 32, 64 (3 each); 3 categorical knobs of 2
    assert [len(k.choices) for k in space.knobs] == [3, 3, 3, 2, 2, 2]
    assert space.size == 216 == len(set(map(Space.key, space.all())))


def test_conv_space_size_closed_form():
    """conv2d_gpu on lab 12's layer (32 -> 64 channels, 28 x 28, 3x3 pad 1): innermost tiles of F in
    [4, 128] (4, 8, 16, 32, 64), of Y (28) in [1, 16] (1, 2, 4, 7, 14), of X (28) in [4, 64] (4, 7, 14,
    28), of C (32) in [1, 64] (1, 2, 4, 8, 16, 32); 2 accumulator scopes."""
    space = Space(conv2d(1, 32, 28, 28, 64, 3, 3, pad=1), T.conv2d_gpu)
    assert [sorted(c[-1] for c in k.choices) for k in space.knobs[:4]] == [
        [4, 8, 16, 32, 64], [1, 2, 4, 7, 14], [4, 7, 14, 28], [1, 2, 4, 8, 16, 32]]
    assert space.size == 5 * 5 * 4 * 6 * 2 == 1200


@pytest.mark.parametrize("device", ["a100-40gb", "rtx-4090"])
def test_conv_space_holds_every_hand_tiling(device):
    """The template's smallest tiles are the hand schedules' (BF = 4, one input channel per SRAM step),
    so every hand schedule is a candidate: BF x BY per block, all OW columns, BC = 1, registers; it
    measures to the hand schedule's time (a tuner that measured the whole space never loses to it)."""
    from tinyml.compiler.tune.hand import hand_schedules

    func = conv2d(1, 16, 7, 7, 64, 3, 3, pad=1)
    space, meas = Space(func, T.conv2d_gpu), SimulatedMeasurer(device)
    labels = []
    for label, make in hand_schedules(func, device):
        sch = make()
        bf, by = (int(part.split("=")[1]) for part in label.split()[-2:])
        d = ((64 // bf, bf), (7 // by, by) if 7 % by == 0 else None, (1, 7), (16, 1), 0)
        if d[1] is None:                        # BY that does not divide OH: not a perfect tile
            continue
        assert all(choice in k.choices for choice, k in zip(d, space.knobs)), label
        assert meas.measure(space.schedule(d)).time_s == meas.measure(sch).time_s, label
        labels.append(label)
    assert "blocked conv2d BF=4 BY=1" in labels and len(labels) >= 3


def test_mutation_changes_exactly_one_knob():
    space = Space(matmul(256, 128, 64), T.matmul_gpu)
    rng = random.Random(1)
    for _ in range(50):
        d = space.sample(rng)
        m = space.mutate(d, rng)
        assert sum(a != b for a, b in zip(d, m)) == 1
        space.schedule(m)          # every neighbour of a legal candidate is a schedule


# ---- determinism and resume ------------------------------------------------------------------------

@pytest.mark.parametrize("strategy,model", [("evolutionary", "xgboost"), ("annealing", "ridge"), ("random", "none")])
def test_same_seed_gives_a_byte_identical_log(tmp_path, strategy, model):
    _, a = run(tmp_path, "a.jsonl", strategy=strategy, model=model, seed=3)
    _, b = run(tmp_path, "b.jsonl", strategy=strategy, model=model, seed=3)
    assert a.read_bytes() == b.read_bytes()
    _, c = run(tmp_path, "c.jsonl", strategy=strategy, model=model, seed=4)
    assert a.read_bytes() != c.read_bytes()


@pytest.mark.parametrize("strategy,model", [("evolutionary", "xgboost"), ("annealing", "none")])
def test_resuming_a_log_continues_exactly_as_one_run(tmp_path, strategy, model):
    _, whole = run(tmp_path, "whole.jsonl", strategy=strategy, model=model, trials=32)
    _, part = run(tmp_path, "part.jsonl", strategy=strategy, model=model, trials=16)
    res, part = run(tmp_path, "part.jsonl", strategy=strategy, model=model, trials=32)
    assert part.read_bytes() == whole.read_bytes()
    assert len(res.records) == 32
    again, _ = run(tmp_path, "part.jsonl", strategy=strategy, model=model, trials=32)
    assert part.read_bytes() == whole.read_bytes() and len(again.records) == 32      # nothing left to do


def test_every_trial_is_one_record_with_both_hashes(tmp_path):
    res, path = run(tmp_path, "log.jsonl", trials=10, batch=4)
    recs = read_records(path)
    assert len(recs) == 10 and [r["trial"] for r in recs] == list(range(10))
    assert [r["batch"] for r in recs] == [0] * 4 + [1] * 4 + [2] * 2
    from tinyml.compiler.lowering.scheduled import workload_hash
    assert {r["workload"] for r in recs} == {workload_hash(small())}
    assert len({r["device"] for r in recs}) == 1 and recs[0]["device_name"] == "a100-40gb"
    assert len({Space.key(tuple(map(lambda d: tuple(d) if isinstance(d, list) else d, r["decisions"])))
                for r in recs}) == 10                                          # no candidate measured twice


def test_the_best_record_replays_to_the_same_simulated_time(tmp_path):
    res, path = run(tmp_path, "log.jsonl")
    best = TuningLog(path).best()
    rec = simulate(replay(small(), best["trace"]), "a100-40gb")
    assert rec.time_s == best["result"]["time_s"]
    assert best["result"]["time_s"] == min(r["result"]["time_s"] for r in res.records if r["result"]["time_s"])


# ---- search finds the optimum ---------------------------------------------------------------------

def exhaustive(func, device):
    space = Space(func, T.matmul_gpu)
    m = SimulatedMeasurer(device)
    times = {Space.key(d): m.measure(space.schedule(d)).time_s for d in space.all()}
    return space, min(t for t in times.values() if t is not None)


@pytest.mark.parametrize("strategy", ["random", "annealing", "evolutionary"])
def test_a_budget_as_large_as_a_tiny_space_finds_its_best(strategy):
    func = matmul(32, 32, 32)                    # 2 x 2 x 2 tiles x 8 structures = 64 candidates
    space, best = exhaustive(func, "a100-40gb")
    res = tune(func, SimulatedMeasurer("a100-40gb"), strategy=strategy, model="xgboost", trials=space.size, batch=8)
    assert len({json.dumps(r["decisions"]) for r in res.records}) == space.size
    assert res.best["result"]["time_s"] == best


def test_a_model_guided_search_beats_a_coin_on_a_tiny_space():
    func = matmul(64, 64, 64)
    space, best = exhaustive(func, "toy")
    res = tune(func, SimulatedMeasurer("toy"), strategy="evolutionary", model="xgboost", trials=48, batch=8)
    assert res.best["result"]["time_s"] <= best * 1.05


# ---- models ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ridge", "xgboost", "xgboost-reg"])
def test_a_model_trained_on_a_known_order_ranks_held_out_points(name):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 4, size=(240, 6))
    time_s = np.exp(1.5 * x[:, 0] - x[:, 2] + 0.5 * x[:, 4])          # a known order: log time is linear
    y = targets(list(time_s[:160]), [0] * 160)
    m = make_model(name).fit(x[:160], y, [0] * 160)
    pred = m.predict(x[160:])
    assert spearman(pred, -time_s[160:]) > 0.9
    assert pairwise(pred, -time_s[160:]) > 0.85


def test_targets_put_failures_below_every_success_of_their_group():
    y = targets([1.0, 2.0, None, 10.0, None], ["a", "a", "a", "b", "b"])
    assert y[2] < min(y[0], y[1]) and y[4] < y[3]
    assert y[0] > y[1]                                                   # faster = higher


def test_metrics_on_known_orders():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)
    assert pairwise([1, 2, 3], [1, 3, 2]) == pytest.approx(2 / 3)


def test_missing_xgboost_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "xgboost", None)
    with pytest.raises(MissingDependencyError, match=r'pip install -e "\.\[tune\]"'):
        make_model("xgboost")


# ---- features --------------------------------------------------------------------------------------

def _two_spellings(func):
    """The same nest from two traces: splits with None vs explicit factors, B cached before A."""
    a = Schedule(func)
    i0, i1 = a.split("i", [None, 32])
    j0, j1 = a.split("j", [None, 16])
    k0, k1 = a.split("k", [None, 16])
    a.reorder(i0, j0, k0, i1, j1, k1)
    a.bind(i0, "blockIdx.y"); a.bind(j0, "blockIdx.x")
    a.reverse_compute_at(a.cache_write("local"), j0)
    a.decompose_reduction(k0)
    a.compute_at(a.cache_read("A", "shared"), k0); a.compute_at(a.cache_read("B", "shared"), k0)
    b = Schedule(func)
    m, n, k = (x.extent for x in func.block.axes)
    i0, i1 = b.split("i", [m // 32, 32])
    j0, j1 = b.split("j", [n // 16, 16])
    k0, k1 = b.split("k", [k // 16, 16])
    b.reorder(i0, j0, k0, i1, j1, k1)
    b.bind(i0, "blockIdx.y"); b.bind(j0, "blockIdx.x")
    b.reverse_compute_at(b.cache_write("local"), j0)
    b.decompose_reduction(k0)
    b.compute_at(b.cache_read("B", "shared"), k0); b.compute_at(b.cache_read("A", "shared"), k0)
    return a, b


def test_features_depend_on_the_nest_not_on_how_the_trace_spelled_it():
    dev = load_device("a100-40gb")
    a, b = _two_spellings(matmul(128, 64, 96))
    assert a.trace != b.trace
    assert np.array_equal(nest_features(a.nest, dev), nest_features(b.nest, dev))
    assert len(nest_features(a.nest, dev)) == len(NAMES)


def test_features_are_invariant_to_the_data_and_seed_but_see_the_device_and_the_tiles():
    space = Space(matmul(256, 256, 256), T.matmul_gpu)
    rng = random.Random(0)
    d = space.sample(rng)
    a100, toy = load_device("a100-40gb"), load_device("toy")
    f1 = nest_features(space.schedule(d).nest, a100)
    f2 = nest_features(Space(matmul(256, 256, 256), T.matmul_gpu).schedule(d).nest, a100)
    assert np.array_equal(f1, f2)
    assert not np.array_equal(f1, nest_features(space.schedule(d).nest, toy))          # occupancy, roofline
    other = space.mutate(d, rng)
    assert not np.array_equal(f1, nest_features(space.schedule(other).nest, a100))
    assert np.array_equal(knob_features(d), knob_features(tuple(d)))


def test_hbm_feature_is_the_closed_form_before_l2():
    """in0_hbm = log2(1 + M K ceil(N / BN) s): A is re-read once per column of blocks."""
    m_, n_, k_, bm, bn = 128, 64, 96, 32, 16
    a, _ = _two_spellings(matmul(m_, n_, k_))
    f = dict(zip(NAMES, nest_features(a.nest, load_device("a100-40gb"))))
    assert f["in0_hbm"] == pytest.approx(np.log2(1 + m_ * k_ * (n_ // bn) * 2))
    assert f["in1_hbm"] == pytest.approx(np.log2(1 + k_ * n_ * (m_ // bm) * 2))
    assert f["blocks"] == pytest.approx(np.log2(1 + (m_ // bm) * (n_ // bn)))


# ---- correctness of what is tuned ------------------------------------------------------------------

@settings(max_examples=examples(3))          # most candidates are a new loop structure to compile (2-3 s); deep runs 1,000
@given(seed=st.integers(0, 10_000), shape=st.sampled_from([(32, 48, 16), (16, 64, 32), (64, 16, 48)]))
def test_every_candidate_computes_the_reference_and_counts_as_it_executes(seed, shape):
    func = matmul(*shape, "fp32")
    space = Space(func, T.matmul_gpu)
    sch = space.schedule(space.sample(random.Random(seed)))
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(x.shape).astype(np.float32) for x in func.inputs)
    kernel = build(sch, parallel=False)
    with Profile("a100-40gb") as run_prof:
        c = kernel(a, b)
    np.testing.assert_allclose(c, func.reference(a, b), rtol=1e-4, atol=1e-4)
    with Profile("a100-40gb") as count_prof:
        kernel(meta(a.shape, "fp32"), meta(b.shape, "fp32"))
    measured = SimulatedMeasurer("a100-40gb").measure(sch)            # one block counted for all
    assert identical_blocks(kernel)
    for prof in (run_prof, count_prof):
        r = prof.records[0]
        assert (r.hbm_read_bytes, r.hbm_write_bytes, r.l2_hit_bytes, r.flops_matmul, r.flops_vector) == (
            measured.profile["hbm_read_bytes"], measured.profile["hbm_write_bytes"],
            measured.profile["l2_hit_bytes"], measured.profile["flops_matmul"], measured.profile["flops_vector"])
        assert r.time_s == measured.time_s


def test_tuned_conv2d_candidates_compute_the_reference(tmp_path):
    func = conv2d(1, 8, 10, 10, 16, 3, 3, pad=1, dtype="fp32")
    res = tune(func, SimulatedMeasurer("a100-40gb"), strategy="random", model="none", trials=4, batch=4, seed=1)
    rng = np.random.default_rng(0)
    x, w = (rng.standard_normal(b.shape).astype(np.float32) for b in func.inputs)
    for rec in res.records:
        if rec["result"]["status"] != "ok":
            continue
        kernel = build(replay(func, rec["trace"]), parallel=False)
        with Profile("a100-40gb"):
            y = kernel(x, w)
        np.testing.assert_allclose(y, func.reference(x, w), rtol=1e-4, atol=1e-4)


# ---- failures --------------------------------------------------------------------------------------

def test_tiles_that_overflow_the_device_are_failures_never_times(tmp_path):
    res = tune(matmul(256, 256, 256), SimulatedMeasurer("toy"), strategy="random", model="none", trials=40,
               batch=8, log=tmp_path / "toy.jsonl")
    failed = [r for r in res.records if r["result"]["status"] == "failed"]
    assert failed, "toy's 2 KB SRAM refuses most tiles"
    for r in failed:
        assert r["result"]["time_s"] is None and r["result"]["error"] == "SramOverflowError"
        assert "SRAM" in r["result"]["message"]
    assert res.best["result"]["status"] == "ok"
    assert len(read_records(tmp_path / "toy.jsonl")) == 40                  # failures are trials too


def illegal_sometimes(s):
    """A template whose second choice reorders a reduction loop outside the accumulator: refused."""
    ti = s.sample_perfect_tile("i", 2, 64)
    bad = s.sample_categorical([0, 1])
    i0, i1 = s.split("i", ti)
    s.reverse_compute_at(s.cache_write("local"), i0)
    if bad:
        s.reorder("k", i0)


def test_illegal_candidates_are_recorded_as_illegal(tmp_path):
    res = tune(matmul(32, 16, 8), SimulatedMeasurer("a100-40gb"), strategy="random", model="xgboost",
               template=illegal_sometimes, trials=12, batch=4, log=tmp_path / "l.jsonl")
    bad = [r for r in res.records if r["decisions"][1] == 1]
    assert bad and all(r["result"]["status"] == "illegal" and r["trace"] is None and r["result"]["time_s"] is None
                       for r in bad)
    assert all(r["result"]["status"] == "ok" for r in res.records if r["decisions"][1] == 0)


# ---- the graph compiler uses a log ------------------------------------------------------------------

def test_compile_runs_a_logs_best_schedules(tmp_path):
    from tinyml.compiler import Graph, compile, interpret

    g = Graph("mm", dtype="fp32")
    x, w = g.input("x", (64, 32)), g.weight("w", (32, 48))            # (M, K), (K, N)
    g.output(g.matmul(x, w))
    log = tmp_path / "mm.jsonl"
    tune(matmul(64, 48, 32, "fp32"), SimulatedMeasurer("a100-40gb"), trials=8, batch=4, log=log)
    c = compile(g, device="a100-40gb", dtype="fp32", schedules=TuningLog(log))
    xv = {"x": np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)}
    (out,), prof = c.run(xv)
    assert [r.name for r in prof.records] == ["matmul_scheduled"]
    best = TuningLog(log).best()
    assert prof.records[0].time_s == best["result"]["time_s"]
    (ref,) = interpret(g, xv)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_a_log_without_the_device_is_refused(tmp_path):
    from tinyml.compiler.tune import TuneLogError

    run(tmp_path, "log.jsonl", trials=4, batch=4)
    with pytest.raises(TuneLogError, match="no trial on device 'm2-max'"):
        TuningLog(tmp_path / "log.jsonl", device="m2-max")
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(TuneLogError, match="line 1: not JSON"):
        read_records(tmp_path / "bad.jsonl")


# ---- the real CPU ------------------------------------------------------------------------------------

def test_cpu_trials_are_checked_once_timed_with_noise_and_wrong_outputs_fail():
    from tinyml.compiler.tune.cpu import CpuMeasurer

    func = matmul(32, 48, 16, "fp32")
    space = Space(func, T.matmul_cpu)
    sch = space.schedule(space.sample(random.Random(0)))
    meas = CpuMeasurer(repeats=3)
    res = meas.measure(sch)
    assert res.status == "ok" and res.time_s > 0 and len(res.profile["runs_s"]) == 3
    assert res.time_s == sorted(res.profile["runs_s"])[1] and res.noise >= 0
    arrays, ref = meas.inputs(func)
    meas._data[str(func.to_dict())] = (arrays, ref + 1.0)               # a reference the kernel cannot match
    bad = meas.measure(sch)
    assert bad.status == "wrong" and bad.time_s is None and "reference" in bad.message
