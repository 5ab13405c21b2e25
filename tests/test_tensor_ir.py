"""Tensor-program IR and printers: workloads, the NumPy-style view, the loop tree."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml.compiler.tensor import (Nest, Schedule, TensorProgramError, batched_matmul, contraction, loop_tree,
                                    matmul, numpy_source)


def test_matmul_workload_axes_buffers_and_reference():
    f = matmul(5, 7, 3, "fp32")
    assert [(a.name, a.extent, a.kind) for a in f.block.axes] == [("i", 5, "S"), ("j", 7, "S"), ("k", 3, "R")]
    assert [(b.name, b.shape) for b in f.params] == [("A", (5, 3)), ("B", (3, 7)), ("C", (5, 7))]
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 3)), rng.standard_normal((3, 7))
    np.testing.assert_allclose(f.reference(a, b), a @ b)


def test_batched_matmul_reference_is_one_matmul_per_batch():
    f = batched_matmul(2, 3, 4, 5)
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 5, 4))
    np.testing.assert_allclose(f.reference(a, b), np.stack([a[0] @ b[0], a[1] @ b[1]]))


def test_contraction_refuses_an_unknown_axis_and_bad_extent():
    with pytest.raises(TensorProgramError, match="indexed by 'x'"):
        contraction("bad", {"i": 2, "k": 2}, {"A": ("i", "x"), "B": ("k",)}, ("C", ("i",)))
    with pytest.raises(TensorProgramError, match="i must be an integer >= 1, got 0"):
        matmul(0, 2, 2)


def test_numpy_source_of_the_naive_nest_is_the_mlc_loop():
    text = numpy_source(Nest.initial(matmul(4, 6, 8)))
    assert "for i in range(4):" in text and "for k in range(8):" in text
    assert "if k == 0:" in text and "C[i, j] = C[i, j] + A[i, k] * B[k, j]" in text
    # the printed program runs as Python and computes the matmul
    rng = np.random.default_rng(2)
    a, b, c = rng.standard_normal((4, 8)), rng.standard_normal((8, 6)), np.zeros((4, 6))
    scope = {"np": np}
    exec(text, scope)
    scope["matmul"](a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)   # float32 accumulator


def test_scheduled_numpy_source_runs_and_guards_a_non_dividing_split():
    f = matmul(10, 6, 7)
    sch = Schedule(f)
    i0, i1 = sch.split("i", [None, 4])           # 3 x 4 = 12 > 10: guarded
    k0, k1 = sch.split("k", [None, 3])
    sch.reorder(i0, k0, "j", i1, k1)
    c_l = sch.cache_write("local")
    sch.reverse_compute_at(c_l, i0)
    a_s = sch.cache_read("A", "shared")
    sch.compute_at(a_s, k0)
    text = sch.show()
    assert "if i < 10" in text
    rng = np.random.default_rng(3)
    a, b, c = rng.standard_normal((10, 7)), rng.standard_normal((7, 6)), np.zeros((10, 6))
    scope = {"np": np}
    exec(text, scope)
    scope["matmul"](a, b, c)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)   # float32 accumulator


def test_loop_tree_shows_kinds_stages_and_the_mma():
    sch = Schedule(matmul(32, 32, 32))
    i0, i1 = sch.split("i", [None, 16])
    sch.bind(i0, "blockIdx.x")
    tree = loop_tree(sch.nest)
    assert "for i_0 in 0..2  blockIdx.x" in tree and "update C += A * B" in tree


def test_bias_relu_epilogue_in_the_printed_program():
    f = matmul(5, 4, 3, bias=True, relu=True)
    assert [b.name for b in f.params] == ["A", "B", "bias", "C"]
    text = numpy_source(Nest.initial(f))
    assert "C[i, j] = max(C[i, j] + bias[j], 0)" in text
    rng = np.random.default_rng(4)
    a, b, bias = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    c = np.zeros((5, 4))
    scope = {"np": np}
    exec(text, scope)
    scope["matmul_bias_relu"](a, b, bias, c)
    np.testing.assert_allclose(c, np.maximum(a @ b + bias, 0))
    np.testing.assert_allclose(f.reference(a, b, bias), np.maximum(a @ b + bias, 0))
    with pytest.raises(TensorProgramError, match="epilogue step"):
        contraction("bad", {"i": 2, "k": 2}, {"A": ("i", "k"), "B": ("k",)}, ("C", ("i",)), epilogue=[("silu",)])
    with pytest.raises(TensorProgramError, match="epilogue step"):
        contraction("bad", {"i": 2, "k": 2}, {"A": ("i", "k"), "B": ("k",)}, ("C", ("i",)), epilogue=[("residual",)])
