"""What threadIdx, unroll and vectorize mean: threads per block checked against the device and
multiplying a thread's tiles; unrolled / vectorized loops with their trip count in the source."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from strategies import examples
from tinyml.compiler.tensor import BindError, Schedule, build, matmul, simulate
from tinyml.compiler.tensor.examples import per_thread_accumulator as threads_per_column_block
from tinyml.sim import Profile, check_registers, load_device, meta


def per_thread_accumulator(m, n, k, bn, tn):
    return threads_per_column_block(matmul(m, n, k, "fp32"), bn, tn)


@settings(max_examples=examples(6))
@given(m=st.integers(1, 9), n=st.sampled_from([8, 16, 24]), k=st.integers(1, 9), tn=st.sampled_from([1, 2, 4, 8]))
def test_a_register_tile_under_threads_is_one_per_thread(m, n, k, tn):
    s = per_thread_accumulator(m, n, k, 8, tn)
    kern = build(s, parallel=False)
    assert kern.threads == tn
    assert kern.tiles()["C_local"][0] == ((tn, 1, 8 // tn) if tn > 1 else (1, 8))     # (threads, rows, cols)
    assert check_registers(load_device("a100-40gb"), kern.tiles()) == tn * (8 // tn) * 4     # fp32 accumulators
    a = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((k, n)).astype(np.float32)
    with Profile("a100-40gb"):
        c = kern(a, b)
    np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)


def test_more_threads_than_the_device_allows_are_refused_at_launch():
    s = per_thread_accumulator(4, 512, 4, 512, 256)
    small = dataclasses.replace(load_device("a100-40gb"), name="small", max_threads_per_block=128)
    with Profile(small):
        with pytest.raises(BindError, match=r"j_1=256 = 256 threads but small allows 128 per block"):
            build(s, parallel=False)(meta((4, 4), "fp32"), meta((4, 512), "fp32"))
    with Profile("a100-40gb"):                     # CUDA's 1024 when the device does not say
        build(s, parallel=False)(meta((4, 4), "fp32"), meta((4, 512), "fp32"))


def test_a_bind_past_cudas_limit_is_refused_when_scheduled():
    s = Schedule(matmul(8, 2048, 8))
    j0, j1 = s.split("j", [None, 2048])
    with pytest.raises(BindError, match="2048 iterations but threadIdx.x allows at most 1024"):
        s.bind(j1, "threadIdx.x")


def test_a_grid_past_cudas_limit_says_how_to_fit_it():
    s = Schedule(matmul(70000, 8, 8))
    with pytest.raises(BindError, match=r"70,000 iterations but blockIdx.y allows at most 65,535 blocks .*"
                                        r"Bind the longer grid loop to blockIdx.x .* larger tile"):
        s.bind("i", "blockIdx.y")
    s.bind("i", "blockIdx.x")                      # the advice works: x allows 2^31 - 1


@pytest.mark.parametrize("hint", ["unroll", "vectorize"])
def test_unrolled_and_vectorized_loops_carry_their_trip_count_in_the_source(hint):
    s = Schedule(matmul(16, 24, 8))
    j0, j1 = s.split("j", [None, 6])
    s.reorder("i", j0, "k", j1)
    getattr(s, hint)(j1)
    kern = build(s, parallel=False)
    assert f"for v_{j1} in range(6):" in kern.source
    assert f"X_{j1}" not in kern.param_names and f"X_{j0}" in kern.param_names
    plain = Schedule(matmul(16, 24, 8))
    plain.reorder("i", *plain.split("j", [None, 6])[:1], "k", "j_1")
    same = [getattr(simulate(x, "a100-40gb"), f) for x in (s, plain)
            for f in ("hbm_read_bytes", "hbm_write_bytes", "flops_vector")]
    assert same[:3] == same[3:]                  # a hint to the code generator: the bytes are the loops'
