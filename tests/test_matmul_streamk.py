"""matmul v4 with ``schedule="stream-k"``: the right answer for any shape, counting == executing, the
partial accumulators' bytes against a brute-force count, data-parallel when nothing is left over, the
tail wave balanced in the cost, and a wrong schedule refused with a message that teaches."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import ELEM_BYTES, logical_dtypes, matmul_shapes, seeds, tiled_blocks
from test_matmul import COUNTER_FIELDS, assert_close_to_reference, operands
from tinyml.kernels.matmul import matmul, matmul_v4
from tinyml.kernels.matmul.streamk import partial_bytes, plan_stream_k
from tinyml.kernels.matmul.v4_pipelined import STAGES
from tinyml.sim import Profile, TileConfigError, TinymlError, load_device, meta, occupancy

pytestmark = pytest.mark.usefixtures("warm_kernels")


def record(a, b, device, **kw):
    with Profile(device) as prof:
        c = matmul_v4(a, b, **kw)
    return c, prof.records[0]


@st.composite
def toy_blocks(draw):
    """Block sizes whose STAGES A/B stages fit the toy's 2 KB of SRAM (fp16) and whose fp32 accumulator
    fits half its 2 KB register file: on its 4 SMs most shapes leave a partial wave (the hybrid path)."""
    bm, bn = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    bk = draw(st.integers(1, 2048 // (STAGES * (bm + bn) * 2)))
    return bm, bn, bk


def _cases():
    """(device, block strategy, dtypes): the toy (4 SMs: stream-K blocks + data-parallel tiles) and an A100
    (108 SMs: small shapes have fewer tiles than SMs, so every tile is shared by MAC iteration)."""
    return st.one_of(
        st.tuples(st.just("toy"), toy_blocks(), st.sampled_from(("fp16", "bf16"))),
        st.tuples(st.just("a100-40gb"), tiled_blocks(), logical_dtypes()),
    )


def _plan(device, shape, blocks, dtype):
    m, n, k = shape
    bm, bn, bk = blocks
    _, rec = record(meta((m, k), dtype), meta((k, n), dtype), device, dtype=dtype, block_m=bm, block_n=bn,
                    block_k=bk)
    dev = load_device(device)
    wave = dev.sm_count * occupancy(dev, rec.sram_per_block_bytes, bm * bn * 4)
    return plan_stream_k(math.ceil(m / bm) * math.ceil(n / bn), math.ceil(k / bk), wave)


@given(shape=matmul_shapes(), case=_cases(), seed=seeds())
def test_matches_reference_and_counting_equals_executing(shape, case, seed):
    device, (bm, bn, bk), dtype = case
    m, n, k = shape
    a, b = operands(seed, m, n, k)
    kw = dict(dtype=dtype, block_m=bm, block_n=bn, block_k=bk, schedule="stream-k")
    c, ex = record(a, b, device, **kw)
    assert_close_to_reference(c, a, b)
    _, co = record(meta((m, k), dtype), meta((k, n), dtype), device, **kw)
    for f in COUNTER_FIELDS:
        assert getattr(ex, f) == getattr(co, f), f
    assert ex.name == co.name == "matmul_v4_streamk"


def brute_force_partial_bytes(plan, m, n, bm, bn):
    """Walk every stream-K block's MAC iterations; a tile that k blocks touch has k - 1 partials of
    rows x cols fp32 (written by the peers, read by the owner)."""
    q, r = divmod(plan.sk_tiles * plan.iters, plan.sk_blocks) if plan.sk_blocks else (0, 0)
    touched = [set() for _ in range(plan.sk_tiles)]
    start = 0
    for j in range(plan.sk_blocks):
        length = q + (1 if j < r else 0)
        for it in range(start, start + length):
            touched[it // plan.iters].add(j)
        start += length
    assert start == plan.sk_tiles * plan.iters                   # every iteration has exactly one block
    gn = math.ceil(n / bn)
    total = 0
    for t, blocks in enumerate(touched):
        rows, cols = min(bm, m - (t // gn) * bm), min(bn, n - (t % gn) * bn)
        total += (len(blocks) - 1) * rows * cols * 4
    return total


@given(shape=matmul_shapes(), case=_cases())
def test_bytes_are_v4s_plus_the_partials_written_and_read_back(shape, case):
    device, (bm, bn, bk), dtype = case
    m, n, k = shape
    s = ELEM_BYTES[dtype]
    _, rec = record(meta((m, k), dtype), meta((k, n), dtype), device, dtype=dtype, block_m=bm, block_n=bn,
                    block_k=bk, schedule="stream-k")
    plan = _plan(device, shape, (bm, bn, bk), dtype)
    extra = brute_force_partial_bytes(plan, m, n, bm, bn)
    assert partial_bytes(plan, m, n, bm, bn) == extra              # the docstring's sum over seams
    v4_reads = math.ceil((m * k * math.ceil(n / bn) + k * n * math.ceil(m / bm)) * s)
    assert rec.hbm_read_bytes + rec.l2_hit_bytes == v4_reads + extra
    assert rec.hbm_write_bytes == math.ceil(m * n * s) + extra
    assert rec.flops_matmul == 2 * m * n * k
    assert rec.flops_vector == extra // 4                        # the owner adds each partial element once


def test_toy_example_by_hand():
    """70 x 45 x 37, 16 x 16 x 8 tiles on the toy's 4 SMs: 5 x 3 = 15 tiles of 5 iterations, 3 full waves
    and 3 tiles over. The last full wave and the rest (7 tiles, 35 iterations) go to 4 blocks:
    [0, 9), [9, 18), [18, 27), [27, 35); the boundaries 9, 18, 27 cut tiles 1, 3 and 5 (16 x 16,
    16 x 16, and 16 x 13 at the last column): 720 partial elements, 2,880 bytes each way."""
    plan = plan_stream_k(15, 5, 4)
    assert (plan.sk_tiles, plan.sk_blocks, plan.dp_tiles) == (7, 4, 8)
    assert [plan.block_range(j) for j in range(4)] == [(0, 9), (9, 18), (18, 27), (27, 35)]
    assert plan.seams() == [1, 3, 5]
    _, dp = record(meta((70, 37)), meta((37, 45)), "toy", block_m=16, block_n=16, block_k=8)
    _, sk = record(meta((70, 37)), meta((37, 45)), "toy", block_m=16, block_n=16, block_k=8, schedule="stream-k")
    extra = (16 * 16 + 16 * 16 + 16 * 13) * 4
    assert sk.hbm_write_bytes - dp.hbm_write_bytes == extra
    assert (sk.hbm_read_bytes + sk.l2_hit_bytes) - (dp.hbm_read_bytes + dp.l2_hit_bytes) == extra
    assert sk.n_blocks == 4 + 8 and sk.grid == (12,)


@given(a=st.integers(1, 8), c=st.integers(1, 3), k=st.integers(1, 70), dtype=st.sampled_from(("fp16", "bf16")))
def test_whole_waves_stay_data_parallel(a, c, k, dtype):
    """Tiles a multiple of the wave (4 on the toy): nothing to balance, so no partial tiles and the very
    record of the data-parallel schedule (but its name)."""
    b = c * 4 // math.gcd(a, 4)                                  # a * b tiles: a multiple of 4
    m, n = 16 * a, 16 * b
    kw = dict(dtype=dtype, block_m=16, block_n=16, block_k=8)
    _, dp = record(meta((m, k), dtype), meta((k, n), dtype), "toy", **kw)
    _, sk = record(meta((m, k), dtype), meta((k, n), dtype), "toy", schedule="stream-k", **kw)
    for f in COUNTER_FIELDS:
        assert getattr(dp, f) == getattr(sk, f), f


@given(tiles=st.integers(1, 3000), iters=st.integers(1, 300), wave=st.integers(1, 300))
def test_the_plan_shares_every_iteration_evenly_and_only_when_it_pays(tiles, iters, wave):
    """Stream-K blocks' ranges tile [0, T_sk I) in order, differ by at most one iteration, number at most a
    wave; the data-parallel rest is whole waves; and the split is made only if the longest block is
    shorter than the data-parallel waves it replaces (in MAC iterations)."""
    plan = plan_stream_k(tiles, iters, wave)
    assert plan.sk_tiles + plan.dp_tiles == tiles and plan.sk_blocks <= wave
    dp_makespan = math.ceil(tiles / wave) * iters
    if plan.sk_blocks == 0:
        assert plan.sk_tiles == 0
        return
    ranges = [plan.block_range(j) for j in range(plan.sk_blocks)]
    assert ranges[0][0] == 0 and ranges[-1][1] == plan.sk_tiles * iters
    assert all(e == b2 for (_, e), (b2, _) in zip(ranges, ranges[1:]))
    lengths = {e - b for b, e in ranges}
    assert max(lengths) - min(lengths) <= 1 and min(lengths) >= 1
    assert plan.dp_tiles % wave == 0 and tiles % wave != 0
    assert plan.dp_tiles // wave * iters + max(lengths) < dp_makespan


def test_one_iteration_per_tile_has_nothing_to_split():
    """K within one BK step: a tile is one MAC iteration, which stream-K cannot share; data-parallel."""
    plan = plan_stream_k(tiles=15, iters=1, wave=4)
    assert plan.sk_blocks == 0 and plan.n_blocks == 15


@pytest.mark.parametrize("device", ["a100-80gb", "h100-sxm"])
def test_the_tail_wave_is_balanced_over_every_sm(device):
    """8192^3 bf16: data-parallel pays ceil(T / SMs) whole tiles per SM; stream-K pays the data-parallel
    waves plus the longest stream-K range, ceil(T_sk * I / SMs) iterations (the fixup's additions and
    bytes hide behind the MMAs of a pipelined, compute-bound kernel, within 0.1%)."""
    n = 8192
    dev = load_device(device)
    _, dp = record(meta((n, n), "bf16"), meta((n, n), "bf16"), dev, dtype="bf16")
    _, sk = record(meta((n, n), "bf16"), meta((n, n), "bf16"), dev, dtype="bf16", schedule="stream-k")
    assert dp.blocks_per_sm == sk.blocks_per_sm == 1
    tiles = dp.n_blocks
    per_tile = (dp.flops_matmul / tiles) / (dev.matmul_rate("bf16") * dev.eff_matmul / dev.sm_count)
    assert dp.time_s == pytest.approx(dev.launch_overhead_s + math.ceil(tiles / dev.sm_count) * per_tile, rel=1e-9)
    plan = plan_stream_k(tiles, _iters(dev, n), dev.sm_count)
    assert plan.sk_tiles == tiles % dev.sm_count + dev.sm_count
    longest = math.ceil(plan.sk_tiles * plan.iters / plan.sk_blocks)
    expect = dev.launch_overhead_s + (plan.dp_tiles // dev.sm_count + longest / plan.iters) * per_tile
    assert sk.time_s == pytest.approx(expect, rel=1e-3)
    assert sk.time_s < dp.time_s


def _iters(dev, n):
    from tinyml.kernels.matmul.v4_pipelined import choose_pipelined_tiles

    return math.ceil(n / choose_pipelined_tiles(dev, n, n, n, "bf16").block_k)


@pytest.mark.parametrize("bad", ["stream_k", "streamk", "split-k", "", None, 3])
def test_an_unknown_schedule_is_refused_with_the_choices(bad):
    with Profile("toy"), pytest.raises(TileConfigError) as e:
        matmul_v4(meta((32, 32)), meta((32, 32)), schedule=bad)
    msg = str(e.value)
    assert isinstance(e.value, TinymlError)
    assert "schedule" in msg and "'data-parallel'" in msg and "stream-k" in msg and repr(bad) in msg
    if bad in ("stream_k", "streamk"):
        assert "did you mean 'stream-k'" in msg


def test_selectable_through_matmul():
    with Profile("toy") as prof:
        matmul(meta((70, 37)), meta((37, 45)), version=4, block_m=16, block_n=16, block_k=8, schedule="stream-k")
    assert prof.records[0].name == "matmul_v4_streamk"
