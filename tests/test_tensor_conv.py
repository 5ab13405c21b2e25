"""conv2d as a tensor program: affine input indices, zero padding, schedules and their bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from strategies import examples
from tinyml.compiler.tensor import Schedule, TensorProgramError, TraceError, build, conv2d, numpy_source, replay, to_json
from tinyml.compiler.tensor.examples import blocked_conv2d
from tinyml.sim import Profile, meta

FIELDS = ("hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes", "sram_read_bytes", "sram_write_bytes",
          "flops_matmul", "flops_vector", "time_s")


def naive(func, bf, by):
    """The seven loops as written; X read from HBM per multiply-add, padding skipped."""
    return Schedule(func)


# one block per (image, filter tile, output-row tile); per input channel an SRAM tile of X (the rows
# its outputs need, padding clipped) and of W; the output tile in registers: the shipped example
blocked = blocked_conv2d


@st.composite
def conv_shapes(draw):
    n, c, f = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, 2))
    h, w = draw(st.integers(max(1, kh - 2 * pad), 9)), draw(st.integers(max(1, kw - 2 * pad), 9))
    return n, c, h, w, f, kh, kw, stride, pad


@pytest.mark.parametrize("structure", [naive, blocked])
@settings(max_examples=examples(15))
@given(shape=conv_shapes(), bf=st.integers(1, 4), by=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_scheduled_conv2d_equals_the_reference_and_counts_what_it_executes(structure, shape, bf, by, seed):
    n, c, h, w, f, kh, kw, stride, pad = shape
    func = conv2d(n, c, h, w, f, kh, kw, stride=stride, pad=pad, dtype="fp32")
    sch = structure(func, bf, by)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((f, c, kh, kw)).astype(np.float32)
    kern = build(sch, parallel=False)
    with Profile("a100-40gb") as prof:
        y = kern(x, wt)
        kern(meta(x.shape, "fp32"), meta(wt.shape, "fp32"))
    ex, co = prof.records
    ref = func.reference(x, wt)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * math.sqrt(c * kh * kw))
    for fld in FIELDS:
        assert getattr(ex, fld) == getattr(co, fld), fld
    oh, ow = ref.shape[2:]
    assert ex.flops_vector == 2 * n * f * oh * ow * c * kh * kw
    updates_in_hbm = c * kh * kw if structure is naive else 0     # naive: Y updated in HBM by every product
    assert ex.hbm_write_bytes == n * f * oh * ow * (1 + updates_in_hbm) * 4


@settings(max_examples=examples(15))
@given(n=st.integers(1, 2), c=st.integers(1, 4), f=st.integers(1, 6), k=st.integers(1, 3),
       oh_tiles=st.integers(1, 3), by=st.integers(1, 4), ow=st.integers(1, 8), bf=st.integers(1, 3))
def test_blocked_conv_bytes_equal_the_closed_form(n, c, f, k, oh_tiles, by, ow, bf):
    """Stride 1, no padding, OH a multiple of the row tile: per block and input channel the X
    tile is (by + k - 1) rows of the whole width W, the W tile bf x k x k."""
    s = 2                                                  # fp16
    oh = oh_tiles * by
    h, w = oh + k - 1, ow + k - 1
    sch = blocked(conv2d(n, c, h, w, f, k, k), bf, by)
    with Profile("a100-40gb") as prof:
        build(sch, parallel=False)(meta((n, c, h, w)), meta((f, c, k, k)))
    r = prof.records[0]
    ftiles = math.ceil(f / bf)
    blocks = n * ftiles * oh_tiles
    x_reads = blocks * c * (by + k - 1) * w * s
    w_reads = n * oh_tiles * c * f * k * k * s            # each block loads its filters' slice (edge tiles less)
    assert r.grid == (blocks,)
    assert r.hbm_read_bytes + r.l2_hit_bytes == x_reads + w_reads
    assert r.hbm_write_bytes == n * f * oh * ow * s
    assert r.flops_vector == 2 * n * f * oh * ow * c * k * k


def test_padding_in_the_printed_program_and_in_the_trace_identity():
    func = conv2d(1, 2, 5, 5, 3, 3, 3, stride=1, pad=1)
    text = numpy_source(Schedule(func).nest)
    assert "X_pad = np.pad(X, ((0, 0), (0, 0), (1, 1), (1, 1)))" in text
    assert "X_pad[n, c, y + r, x + s]" in text
    # same buffer shapes, another stride and padding: not the same workload
    a, b = conv2d(1, 1, 5, 5, 1, 3, 3, stride=1, pad=0), conv2d(1, 1, 5, 5, 1, 3, 3, stride=2, pad=1)
    assert [p.shape for p in a.params] == [p.shape for p in b.params]
    with pytest.raises(TraceError, match="made on workload"):
        replay(b, to_json(Schedule(a)))
    with pytest.raises(TensorProgramError, match="output would be 0x0"):
        conv2d(1, 1, 2, 2, 1, 3, 3)


@pytest.mark.parametrize("structure", [naive, blocked])
def test_every_stride_and_padding_shares_one_source(structure):
    """Strides and padding are numbers in P (the offset too when it is 0): one compile serves them all."""
    shapes = [dict(stride=1, pad=0), dict(stride=2, pad=1), dict(stride=1, pad=2), dict(stride=3, pad=0)]
    kernels = [build(structure(conv2d(2, 3, 9, 9, 4, 3, 3, dtype="fp32", **kw), 2, 2), parallel=False)
               for kw in shapes]
    assert len({k.source for k in kernels}) == 1
    assert len({tuple(k.params) for k in kernels}) == len(shapes)


def test_the_blocked_conv_tensorizes_as_an_implicit_gemm_over_one_channel():
    """blocked_conv2d stages X and W per input channel: tensorizing its tile is an implicit GEMM
    with K = 1 x KH x KW (tests/test_tensor_implicit_gemm.py covers BC channels per step)."""
    func = conv2d(1, 2, 6, 6, 4, 3, 3, pad=1, dtype="fp32")
    sch = blocked(func, 2, 2)
    sch.tensorize("f_1")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 6, 6)).astype(np.float32), rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    with Profile("a100-40gb") as prof:
        y = build(sch, parallel=False)(x, w)
    np.testing.assert_allclose(y, func.reference(x, w), rtol=1e-5, atol=1e-5)
    assert prof.records[0].flops_matmul == 2 * 4 * 6 * 6 * 2 * 9


@settings(max_examples=examples(3))
@given(shape=conv_shapes(), data=st.data())
def test_random_conv_loop_orders_and_stage_placements(shape, data):
    """Random splits and orders of the convolution's loops, caches at random loops (refused or
    applied), padding and strides included: the kernel equals the reference and counts what
    it executes."""
    from tinyml.compiler.tensor import LoweringError, ScheduleError

    n, c, h, w, f, kh, kw, stride, pad = shape
    func = conv2d(n, c, h, w, f, kh, kw, stride=stride, pad=pad, dtype="fp32")
    sch = Schedule(func)
    for ax in data.draw(st.lists(st.sampled_from(["f", "y", "x", "c"]), unique=True, max_size=2)):
        sch.split(ax, [None, data.draw(st.integers(1, 3))])
    sch.reorder(*data.draw(st.permutations(sch.get_loops())))

    def attempt(primitive, *args):
        before = sch.nest
        try:
            getattr(sch, primitive)(*args)
        except ScheduleError:
            assert sch.nest == before
    if data.draw(st.booleans()):
        attempt("bind", sch.get_loops()[0], "blockIdx.x")
    for buf in ("X", "W"):
        scope = data.draw(st.sampled_from([None, "shared", "local"]))
        if scope:
            attempt("compute_at", sch.cache_read(buf, scope), data.draw(st.sampled_from(sch.get_loops())))
    scope = data.draw(st.sampled_from([None, "shared", "local"]))
    if scope:
        attempt("reverse_compute_at", sch.cache_write(scope), data.draw(st.sampled_from(sch.get_loops())))
    if data.draw(st.booleans()):
        attempt("decompose_reduction", data.draw(st.sampled_from(sch.get_loops())))
    try:
        kern = build(sch, parallel=False)
    except LoweringError:
        return
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((f, c, kh, kw)).astype(np.float32)
    with Profile("a100-40gb") as prof:
        y = kern(x, wt)
        kern(meta(x.shape, "fp32"), meta(wt.shape, "fp32"))
    ex, co = prof.records
    np.testing.assert_allclose(y, func.reference(x, wt), rtol=1e-4, atol=1e-4 * math.sqrt(c * kh * kw))
    for fld in FIELDS:
        assert getattr(ex, fld) == getattr(co, fld), fld
