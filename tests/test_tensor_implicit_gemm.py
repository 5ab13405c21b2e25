"""conv2d tensorized as an implicit GEMM: equal to the reference on random shapes and on every
distinct ResNet-50 layer, counting == executing, bytes == the scalar nest's == a closed form."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from strategies import examples
from tinyml.compiler.tensor import Schedule, TensorizeError, build, conv2d, simulate
from tinyml.compiler.tensor.examples import conv_tiles, implicit_gemm_conv2d
from tinyml.compiler.tensor.resnet import RESNET50_CONVS, conv_layers, resnet50_convs
from tinyml.sim import Profile, meta

FIELDS = ("hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes", "sram_read_bytes", "flops_matmul", "time_s")


def run_both(func, sch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(func.inputs[0].shape).astype(np.float32)
    w = rng.standard_normal(func.inputs[1].shape).astype(np.float32)
    kern = build(sch, parallel=False)
    with Profile("a100-40gb") as prof:
        kern(meta(x.shape, "fp32"), meta(w.shape, "fp32"))     # a new structure: its source, interpreted
        y = kern(x, w)
        kern(meta(x.shape, "fp32"), meta(w.shape, "fp32"))     # the machine code executing compiled
    first = prof.records.pop(0)
    for fld in FIELDS:
        assert getattr(first, fld) == getattr(prof.records[1], fld), f"interpreted vs compiled count: {fld}"
    return y, func.reference(x, w), prof.records


@settings(max_examples=examples(6))          # one kernel for every size, stride and padding: compiled once
@given(n=st.integers(1, 2), c=st.integers(1, 6), hw=st.integers(3, 10), f=st.integers(1, 6), k=st.sampled_from([1, 3]),
       stride=st.integers(1, 2), pad=st.integers(0, 1), bf=st.integers(1, 4), by=st.integers(1, 4),
       bc=st.integers(1, 4), seed=st.integers(0, 2 ** 16))
def test_implicit_gemm_equals_the_reference_and_counts_what_it_executes(n, c, hw, f, k, stride, pad, bf, by, bc, seed):
    func = conv2d(n, c, hw, hw, f, k, k, stride=stride, pad=pad, dtype="fp32")
    y, ref, (ex, co) = run_both(func, implicit_gemm_conv2d(func, bf, by, bc), seed)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * math.sqrt(c * k * k))
    for fld in FIELDS:
        assert getattr(ex, fld) == getattr(co, fld), fld
    oh = ref.shape[2]
    assert ex.flops_matmul == 2 * n * f * oh * oh * c * k * k and ex.flops_vector == 0
    scalar = simulate(implicit_gemm_conv2d(func, bf, by, bc, tensorize=False), "a100-40gb")
    assert (ex.hbm_read_bytes + ex.l2_hit_bytes, ex.hbm_write_bytes) == \
        (scalar.hbm_read_bytes + scalar.l2_hit_bytes, scalar.hbm_write_bytes)      # the MMA moves no HBM bytes


@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_pointwise_layer_bytes_equal_the_closed_form(dtype):
    """1x1, stride 1, no padding: each block reads its BY rows of X for every channel, and all
    of W's BF filters; so X is read ceil(F / BF) times, W ceil(OH / BY) times per image."""
    n, c, h, f, bf, by, bc = 2, 64, 14, 96, 32, 4, 16
    s = {"fp16": 2, "fp32": 4}[dtype]
    r = simulate(implicit_gemm_conv2d(conv2d(n, c, h, h, f, 1, 1, dtype=dtype), bf, by, bc), "a100-40gb")
    reads = n * math.ceil(f / bf) * c * h * h + n * math.ceil(h / by) * f * c
    assert r.hbm_read_bytes + r.l2_hit_bytes == reads * s
    assert r.hbm_write_bytes == n * f * h * h * s
    assert r.grid == (n * math.ceil(f / bf) * math.ceil(h / by),)


@pytest.mark.slow          # 23 full-size layers executed and checked against NumPy: `pytest -m slow` (CI runs it)
def test_every_resnet50_layer_is_correct_at_batch_1():
    """All 23 distinct conv layers of ResNet-50, full spatial sizes, batch 1, with the shipped tiles."""
    assert sum(row[-1] for row in RESNET50_CONVS) == 53
    for i, (func, _) in enumerate(resnet50_convs(1, "fp32")):
        y, ref, (ex, co) = run_both(func, implicit_gemm_conv2d(func, *conv_tiles(func)), seed=i)
        scale = np.abs(ref).max()
        assert np.abs(y - ref).max() <= 1e-5 * scale * math.sqrt(func.block.axis("c").extent), func.to_dict()["buffers"]
        assert (ex.hbm_read_bytes, ex.hbm_write_bytes, ex.flops_matmul) == \
            (co.hbm_read_bytes, co.hbm_write_bytes, co.flops_matmul)


def test_the_table_matches_the_onnx_importer():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("tinyml.compiler.onnx")
    from tinyml.compiler.onnx import from_onnx

    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_resnet50.onnx")
    if not os.path.exists(path):
        pytest.skip("light_resnet50.onnx is not in this onnx installation")
    assert conv_layers(from_onnx(onnx.load(path))) == RESNET50_CONVS


def test_tensorize_refuses_what_is_not_one_implicit_gemm():
    func = conv2d(1, 8, 8, 8, 8, 3, 3, pad=1)
    s = Schedule(func)
    f0, f1 = s.split("f", [None, 4])
    r0, r1 = s.split("r", [None, 1])
    s.reorder("n", f0, "y", "c", r0, f1, "x", r1, "s")
    s.reverse_compute_at(s.cache_write("local"), "y")
    s.decompose_reduction("c")
    s.compute_at(s.cache_read("X", "shared"), r0)
    s.compute_at(s.cache_read("W", "shared"), r0)
    with pytest.raises(TensorizeError, match=f"loop {r0} outside it walks r"):
        s.tensorize(f1)
    s2 = Schedule(func)
    with pytest.raises(TensorizeError, match="walks axis n"):
        s2.tensorize("n")
