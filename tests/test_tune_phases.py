"""The phase estimate (tinyml.compiler.tune.phases) and its use as the cost model's prior: closed-form
bytes, equality with the counters of the kernel it describes, invariances, the prior in the models
and in the tuner's first batch; a run whose space is exhausted by failures ends cleanly."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import examples
from tinyml.compiler.tensor import Schedule, matmul
from tinyml.compiler.tune import SimulatedMeasurer, Space, tune
from tinyml.compiler.tune import templates as T
from tinyml.compiler.tune.errors import TuneError
from tinyml.compiler.tune.features import NAMES, PRIOR, UNFIT, nest_features
from tinyml.compiler.tune.metrics import spearman
from tinyml.compiler.tune.model import make_model, targets
from tinyml.compiler.tune.phases import phases
from tinyml.compiler.tune.space import from_json
from tinyml.sim import load_device


def tiled(func, bm, bn, bk, acc="local", raster_i_outer=True, tensorize=False):
    """matmul v3's structure with the given tiles (the template's nest, written by hand)."""
    s = Schedule(func)
    i0, i1 = s.split("i", [None, bm])
    j0, j1 = s.split("j", [None, bn])
    k0, k1 = s.split("k", [None, bk])
    outer, inner = (i0, j0) if raster_i_outer else (j0, i0)
    s.reorder(outer, inner, k0, i1, j1, k1)
    s.bind(outer, "blockIdx.y")
    s.bind(inner, "blockIdx.x")
    s.reverse_compute_at(s.cache_write(acc), inner)
    s.decompose_reduction(k0)
    s.compute_at(s.cache_read("A", "shared"), k0)
    s.compute_at(s.cache_read("B", "shared"), k0)
    if tensorize:
        s.tensorize(i1)
    return s


def test_per_block_bytes_and_flops_are_the_closed_form():
    """M, N, K = 128, 64, 96 fp16; tiles 32 x 16 x 16, scalar update, accumulator in registers:
    per block, K/BK steps each load a BM x BK tile of A and a BK x BN tile of B (2 bytes each), the
    C tile is stored once; each point reads one element of each shared tile."""
    m, n, k, bm, bn, bk = 128, 64, 96, 32, 16, 16
    p = phases(tiled(matmul(m, n, k), bm, bn, bk).nest, load_device("a100-40gb"))
    steps, pts = k // bk, bm * bn * k
    assert p.blocks == (m // bm) * (n // bn)
    assert p.hbm_block == steps * (bm * bk + bk * bn) * 2 + bm * bn * 2
    assert p.sram_block == steps * (bm * bk + bk * bn) * 2 + 2 * pts * 2 + bm * bn * 2   # + the C tile's store
    assert p.flops_block == 2 * pts
    assert p.padding == 1.0                                     # the tiles divide the shape
    # one wave on 108 SMs: A's panel is shared by the N/BN blocks of a tile row, B's by the M/BM of a column
    assert p.waves == 1 and p.l2_share == (pytest.approx((m // bm) / p.blocks), pytest.approx((n // bn) / p.blocks))
    assert p.hbm_block_l2 == pytest.approx(steps * (bm * bk / (n // bn) + bk * bn / (m // bm)) * 2 + bm * bn * 2)


@settings(max_examples=examples(15), deadline=None)
@given(seed=st.integers(0, 10_000), shape=st.sampled_from([(128, 64, 96), (256, 128, 64), (64, 256, 128)]))
def test_phase_bytes_equal_the_counters_of_the_kernel_they_describe(seed, shape):
    """For every candidate of the matmul template (the tiles divide the shape, so blocks are equal), the
    estimate's per-block bytes times the blocks are the counted totals: HBM before L2 (reads that hit
    L2 included), SRAM reads + writes, FLOPs, waves and blocks per SM; in a single wave, HBM after L2 too."""
    func = matmul(*shape)
    space = Space(func, T.matmul_gpu)
    sch = space.schedule(space.sample(random.Random(seed)))
    meas = SimulatedMeasurer("a100-40gb")
    r = meas.measure(sch)
    assert r.ok
    p, prof = phases(sch.nest, meas.device), r.profile
    assert p.hbm_block * p.blocks == prof["hbm_read_bytes"] + prof["l2_hit_bytes"] + prof["hbm_write_bytes"]
    assert p.sram_block * p.blocks == prof["sram_read_bytes"] + prof["sram_write_bytes"]
    assert p.flops_block * p.blocks == prof["flops_matmul"] + prof["flops_vector"]
    assert p.waves == prof["waves"] and p.blocks_per_sm == prof["blocks_per_sm"]
    if p.waves == 1:
        assert p.hbm_block_l2 * p.blocks == pytest.approx(prof["hbm_read_bytes"] + prof["hbm_write_bytes"])


def test_the_estimate_ranks_the_candidates_it_did_not_measure():
    """The estimate is computed from the nest and the device alone; over random candidates of a GEMM it
    orders the measured times nearly right (why it is a good prior for the first batch)."""
    func = matmul(512, 256, 256)
    space = Space(func, T.matmul_gpu)
    meas = SimulatedMeasurer("a100-40gb")
    rng = random.Random(3)
    est, meas_t = [], []
    for _ in range(40):
        sch = space.schedule(space.sample(rng))
        r = meas.measure(sch)
        if r.ok:
            est.append(phases(sch.nest, meas.device).estimate_s)
            meas_t.append(r.time_s)
    assert len(est) >= 30
    assert spearman(-np.array(est), -np.array(meas_t)) > 0.9


def test_tiles_that_overflow_sram_have_the_unfit_prior_and_fail():
    toy = SimulatedMeasurer("toy")
    sch = tiled(matmul(256, 256, 256), 128, 128, 64)                 # 32 KB of A and B tiles; toy: 16 KB
    f = dict(zip(NAMES, nest_features(sch.nest, toy.device)))
    assert not phases(sch.nest, toy.device).fits
    assert f["ph_prior"] == UNFIT and NAMES[PRIOR] == "ph_prior"
    assert not toy.measure(sch).ok
    assert phases(sch.nest, load_device("a100-40gb")).fits


def test_the_estimate_sees_the_device_and_is_symmetric_in_the_grid_order_of_a_square_grid():
    func = matmul(1024, 1024, 256)
    a100, toy = load_device("a100-40gb"), load_device("toy")
    rows, cols = tiled(func, 64, 64, 32), tiled(func, 64, 64, 32, raster_i_outer=False)
    assert phases(rows.nest, a100).estimate_s != phases(rows.nest, toy).estimate_s
    # a square grid: either order shares panels alike (the operands swap roles)
    assert sorted(phases(rows.nest, a100).l2_share) == sorted(phases(cols.nest, a100).l2_share)
    assert np.array_equal(nest_features(rows.nest, a100), nest_features(tiled(func, 64, 64, 32).nest, a100))


@pytest.mark.parametrize("objective", ["xgboost", "xgboost-reg"])
def test_a_model_with_a_prior_keeps_the_prior_order_where_the_trials_agree(objective):
    """Targets equal to the prior: the trees have nothing to correct, and held-out points keep the
    prior's order (trees alone learn it only in steps)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 4, size=(300, len(NAMES)))
    time_s = np.exp(-np.log(2) * x[:, PRIOR])                           # time = 2^-prior
    y = targets(list(time_s[:200]), [0] * 200)
    with_prior = make_model(objective, prior=PRIOR).fit(x[:200], y, [0] * 200)
    pred = with_prior.predict(x[200:])
    assert spearman(pred, -time_s[200:]) > 0.99
    plain = make_model(objective).fit(x[:200], y, [0] * 200).predict(x[200:])
    assert spearman(pred, -time_s[200:]) >= spearman(plain, -time_s[200:])


def test_the_first_batch_is_ranked_by_the_prior_and_prior_false_is_random():
    func = matmul(256, 256, 256)
    meas = SimulatedMeasurer("a100-40gb")
    space = Space(func, T.matmul_gpu)
    score = lambda recs: np.mean([nest_features(space.schedule(from_json(r["decisions"])).nest,  # noqa: E731
                                                meas.device)[PRIOR] for r in recs])
    with_prior = tune(func, meas, trials=8, batch=8, seed=1).records
    without = tune(func, meas, trials=8, batch=8, seed=1, prior=False).records
    assert score(with_prior) > score(without)
    assert "prior" not in with_prior[0]["run"] and without[0]["run"]["prior"] is False
    assert [r["decisions"] for r in with_prior] == [r["decisions"] for r in tune(func, meas, trials=8, batch=8,
                                                                                   seed=1).records]


def _acc_only(s):
    """A two-candidate space: fixed tiles, the accumulator's scope open."""
    acc = s.sample_categorical([0, 1])
    i0, i1 = s.split("i", [None, 16])
    j0, j1 = s.split("j", [None, 16])
    k0, k1 = s.split("k", [None, 16])
    s.reorder(i0, j0, k0, i1, j1, k1)
    s.bind(i0, "blockIdx.y")
    s.bind(j0, "blockIdx.x")
    s.reverse_compute_at(s.cache_write(T.ACCUMULATORS[acc]), j0)
    s.decompose_reduction(k0)


@pytest.mark.parametrize("strategy", ["evolutionary", "annealing", "random"])
def test_a_space_exhausted_by_failures_ends_the_run_instead_of_crashing(strategy):
    """Every candidate fails (A and B do not fit toy's 1 MiB of HBM) and the budget exceeds the space: the
    run measures both candidates, records them as failures and stops (evolution used to breed from an
    empty population: ResNet-50's deep layers on toy)."""
    func = matmul(64, 64, 8192)
    res = tune(func, SimulatedMeasurer("toy"), strategy=strategy, model="xgboost", trials=8, batch=4,
               template=_acc_only)
    assert res.space_size == 2 and len(res.records) == 2
    assert all(r["result"]["status"] != "ok" for r in res.records) and res.best is None


def test_margin_false_is_the_trees_alone_and_is_recorded_in_the_run():
    """``margin=False``: the model does not start from the phase estimate (make_model(prior=None)), the
    run says so, and a log of one setting is not resumed by the other."""
    import tinyml.compiler.tune.tuner as tuner

    func = matmul(256, 256, 256)
    meas = SimulatedMeasurer("a100-40gb")
    seen = []
    real = tuner.make_model

    def spy(name, seed=0, prior=None):
        seen.append(prior)
        return real(name, seed, prior=prior)

    tuner.make_model = spy
    try:
        plain = tune(func, meas, trials=16, batch=8, seed=2, prior=False, margin=False).records
        tune(func, meas, trials=16, batch=8, seed=2, prior=False)
    finally:
        tuner.make_model = real
    assert seen == [None, PRIOR]
    assert plain[0]["run"]["margin"] is False and plain[0]["run"]["prior"] is False
    again = tune(func, meas, trials=16, batch=8, seed=2, prior=False, margin=False).records
    assert [r["decisions"] for r in plain] == [r["decisions"] for r in again]
    with pytest.raises(TuneError, match="margin"):
        tune(func, meas, trials=8, margin="no")
