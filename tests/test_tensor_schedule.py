"""Schedule primitives: illegal requests refused with named errors, traces that replay."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from tinyml.compiler.tensor import (BindError, ComputeAtError, ReorderError, Schedule, SplitError, TensorizeError,
                                    TraceError, loop_tree, matmul, numpy_source, replay, to_json)
from tinyml.sim import Profile, SramOverflowError, meta


def tiled(m=64, n=64, k=64, bm=16, bn=16, bk=16):
    """The SRAM-tiled schedule (matmul v2's loops), init decomposed, not yet tensorized."""
    sch = Schedule(matmul(m, n, k))
    i0, i1 = sch.split("i", [None, bm])
    j0, j1 = sch.split("j", [None, bn])
    k0, k1 = sch.split("k", [None, bk])
    sch.reorder(i0, j0, k0, i1, j1, k1)
    sch.bind(i0, "blockIdx.y")
    sch.bind(j0, "blockIdx.x")
    a, b = sch.cache_read("A", "shared"), sch.cache_read("B", "shared")
    sch.compute_at(a, k0)
    sch.compute_at(b, k0)
    c = sch.cache_write("local")
    sch.reverse_compute_at(c, j0)
    sch.decompose_reduction(k0)
    return sch


def test_split_names_extents_and_strides():
    sch = Schedule(matmul(24, 8, 8))
    assert sch.split("i", [2, None, 4]) == ["i_0", "i_1", "i_2"]
    pieces = [lp.pieces[0] for lp in sch.nest.loops[:3]]
    assert [(p.extent, p.stride) for p in pieces] == [(2, 12), (3, 4), (4, 1)]


def test_split_refuses_factors_that_skip_values_and_non_dividing_inner_pieces():
    sch = Schedule(matmul(24, 8, 8))
    with pytest.raises(SplitError, match=r"multiply to 20, less than the loop's extent 24"):
        sch.split("i", [5, 4])
    sch.split("i", [None, 6])                       # i_0: 4 x stride 6, i_1: 6 x stride 1
    with pytest.raises(SplitError, match=r"inner piece of axis i.*divisors: \[1, 2, 3, 6\]"):
        sch.split("i_1", [None, 4])                 # 2 x 4 = 8 > 6 would alias i_0's next value
    sch.split("i_0", [None, 3])                     # the outermost piece may overhang: a guard
    assert "if i < 24" in numpy_source(sch.nest)


def test_reorder_across_a_dependence_is_refused_and_changes_nothing():
    sch = tiled()
    before = sch.nest
    with pytest.raises(ReorderError, match=r"Reduction loop k_0 would move outside it.*stored back"):
        sch.reorder("k_0", "j_0")
    assert sch.nest == before and len(sch.trace) == 13


def test_fuse_refuses_spatial_with_reduction():
    sch = Schedule(matmul(8, 8, 8))
    with pytest.raises(ReorderError, match=r"k reduce .* a fused loop must be one or the other"):
        sch.fuse("j", "k")


def test_reduction_loops_cannot_run_in_parallel_or_be_bound():
    sch = Schedule(matmul(8, 8, 8))
    with pytest.raises(BindError, match=r"k is a reduction loop.*C\[i, j\].*race"):
        sch.bind("k", "threadIdx.x")
    with pytest.raises(BindError, match="reduction loop"):
        sch.parallel("k")


def test_bind_refuses_too_many_threads_with_the_numbers():
    sch = Schedule(matmul(64, 64, 8))
    sch.bind("i", "blockIdx.x")
    sch.bind("j", "threadIdx.x")                    # 64 threads: fine
    sch2 = Schedule(matmul(64, 64, 8))
    i0, i1 = sch2.split("i", [None, 32])
    sch2.reorder(i0, "j", i1)
    sch2.bind(i0, "blockIdx.x")
    sch2.bind("j", "threadIdx.y")
    with pytest.raises(BindError, match=r"j=64 x i_1=32 = 2048 threads; a block holds at most 1024"):
        sch2.bind(i1, "threadIdx.x")


def test_bind_keeps_the_grid_outermost():
    sch = Schedule(matmul(8, 8, 8))
    with pytest.raises(BindError, match=r"blockIdx loop j is inside loop i"):
        sch.bind("j", "blockIdx.x")


def test_compute_at_and_reverse_compute_at_refuse_locations_that_do_not_cover_the_stage():
    sch = Schedule(matmul(32, 32, 32))
    k0, k1 = sch.split("k", [None, 8])
    sch.reorder("i", k0, "j", k1)
    c = sch.cache_write("local")
    with pytest.raises(ComputeAtError, match=r"reduction loop k_0 encloses j.*before the sum over it is complete"):
        sch.reverse_compute_at(c, "j")
    with pytest.raises(ComputeAtError, match="write stage.*reverse_compute_at"):
        sch.compute_at(c, "i")
    with pytest.raises(ComputeAtError, match=r"reduction loop k_0 is outside j"):
        sch.decompose_reduction("j")


def test_tensorize_needs_shared_operands_an_accumulator_and_the_init_out():
    sch = Schedule(matmul(32, 32, 32))
    i0, i1 = sch.split("i", [None, 16])
    sch.reorder(i0, "j", "k", i1)
    with pytest.raises(TensorizeError, match="cache_read A into 'shared'"):
        sch.tensorize("j")
    sch2 = tiled()
    sch2.nest = sch2.nest.replace(init_depth=None)    # as if not decomposed
    with pytest.raises(TensorizeError, match="decompose_reduction"):
        sch2.tensorize("i_1")
    sch3 = tiled()
    sch3.tensorize("i_1")
    with pytest.raises(TensorizeError, match="inside the region tensorized"):
        sch3.split("k_1", [2, None])


def test_a_shared_buffer_that_overflows_sram_is_refused_at_launch():
    sch = tiled(256, 256, 256, bm=256, bn=256, bk=256)  # A, B tiles 256x256 fp16: 256 KiB > an A100 SM's SRAM
    from tinyml.compiler.tensor import build

    k = build(sch, parallel=False)
    with Profile("a100-40gb"):
        with pytest.raises(SramOverflowError, match=r"A_shared 256x256 fp16 = 131,072 B"):
            k(meta((256, 256)), meta((256, 256)))


def test_trace_replays_to_the_identical_nest_and_json_round_trips():
    sch = tiled(48, 40, 24, bm=16, bn=8, bk=8)
    sch.tensorize("i_1")
    text = to_json(sch)
    again = replay(matmul(48, 40, 24), text)
    assert again.nest == sch.nest
    assert numpy_source(again.nest) == numpy_source(sch.nest) and loop_tree(again.nest) == loop_tree(sch.nest)
    assert to_json(again) == text
    with pytest.raises(TraceError, match="made on workload"):
        replay(matmul(48, 40, 16), text)
    bad = json.loads(text)
    bad["instructions"][0]["kind"] = "tile"
    with pytest.raises(TraceError, match="unknown primitive 'tile'"):
        replay(matmul(48, 40, 24), bad)


@given(st.integers(0, 2 ** 16), st.sampled_from([(64, 2), (60, 3), (48, 3)]))
def test_sampled_schedules_replay_deterministically(seed, shape):
    extent, n = shape
    f = matmul(extent, 32, 16)

    def build(sch):
        fi = sch.sample_perfect_tile("i", n, max_innermost_factor=8)
        assert _prod(fi) == extent and fi[-1] <= 8
        order = sch.sample_categorical([0, 1])
        loops = sch.split("i", fi)
        if order == 1:
            sch.reorder("j", loops[0])
        return sch

    a = build(Schedule(f, seed=seed))
    b = build(Schedule(f, seed=seed))
    assert a.nest == b.nest and to_json(a) == to_json(b)
    c = replay(f, to_json(a))
    assert c.nest == a.nest
    # another decision for the sampled tile gives the neighbouring schedule
    alt = [extent] + [1] * (n - 1)
    d = replay(f, to_json(a), decisions={0: alt})
    assert [d.nest.loop(f"i_{q}").extent for q in range(n)] == alt


def _prod(xs):
    out = 1
    for x in xs:
        out *= x
    return out


def test_a_stage_outside_the_grid_is_refused_at_lowering():
    from tinyml.compiler.tensor import LoweringError, build

    sch = Schedule(matmul(32, 32, 32))
    i0, i1 = sch.split("i", [None, 16])
    sch.bind(i0, "blockIdx.x")
    sch.cache_read("A", "shared")                 # still at the root: the whole of A, shared by no block
    with pytest.raises(LoweringError, match=r"A_shared sits at depth 0, outside the grid loops \['i_0'\].*under i_0"):
        build(sch, parallel=False)


def test_a_store_back_over_a_strided_region_is_refused():
    """Found by the random-schedule test: C's tile under j_1 holds j = j_1 + 3 * j_0, a strided
    region; storing its box back overwrote the columns other j_1 iterations had written."""
    sch = Schedule(matmul(1, 4, 1))
    j0, j1 = sch.split("j", [None, 3])
    sch.reorder(j1, "i", j0)
    c = sch.cache_write("shared")
    with pytest.raises(ComputeAtError, match=r"walk j with strides \[3\], a strided region.*j_1 \(at or above j_1\)"):
        sch.reverse_compute_at(c, j1)
    with pytest.raises(ComputeAtError, match="strided region"):
        sch.reverse_compute_at(c, "i")      # the same strided box one loop deeper
    sch.reverse_compute_at(c, j0)           # under j_0 the box is one element: fine


def test_a_trace_applies_to_another_size_of_the_same_workload_when_asked():
    sch = tiled(64, 64, 64, bm=16, bn=16, bk=16)
    text = to_json(sch)
    with pytest.raises(TraceError, match="same_shapes=False"):
        replay(matmul(128, 96, 32), text)
    other = replay(matmul(128, 96, 32), text, same_shapes=False)
    assert [lp.extent for lp in other.nest.loops] == [8, 6, 2, 16, 16, 16]
    with pytest.raises(TraceError, match="made on workload"):
        replay(matmul(64, 64, 64, bias=True), text, same_shapes=False)      # another workload kind
