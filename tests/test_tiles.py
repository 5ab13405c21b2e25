"""The Numba helpers that move bytes (tinyml.sim.tiles): they copy in executing
mode only, and always add the same counts, in whole bytes of the logical dtype."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import DTYPE_BITS
from tinyml.sim import MetaTensor, meta
from tinyml.sim.counters import (FIRST_OPERAND, FLOPS_MATMUL, FLOPS_VECTOR, HBM_READ, HBM_WRITE, NAMES, SRAM_READ,
                                 SRAM_WRITE, new_counters, totals)
from tinyml.sim.tiles import (count_fma, count_load_direct, count_mma, count_store_direct, count_vector, load_tile,
                              store_tile, tile_bytes)

BITS = sorted(set(DTYPE_BITS.values()))   # 4, 8, 16, 32


def nbytes(n, bits):
    return math.ceil(n * bits / 8)


@given(n=st.integers(0, 10 ** 6), bits=st.sampled_from(BITS))
def test_tile_bytes_rounds_up(n, bits):
    assert tile_bytes(n, bits) == nbytes(n, bits)


@pytest.mark.parametrize("execute", [True, False])
@given(r0=st.integers(0, 4), c0=st.integers(0, 6), rows=st.integers(1, 4), cols=st.integers(1, 4),
       bits=st.sampled_from(BITS))
def test_load_tile(execute, r0, c0, rows, cols, bits):
    src = np.arange(8 * 10, dtype=np.float32).reshape(8, 10)
    dst = np.full((4, 4), -1.0, dtype=np.float32)
    counters = new_counters(3, n_operands=2)
    load_tile(src, r0, c0, rows, cols, dst, execute, counters, 1, 1, bits)
    if execute:
        np.testing.assert_array_equal(dst[:rows, :cols], src[r0:r0 + rows, c0:c0 + cols])
        untouched = np.ones((4, 4), bool)
        untouched[:rows, :cols] = False
        assert np.all(dst[untouched] == -1.0)
    else:
        assert np.all(dst == -1.0)
    b = nbytes(rows * cols, bits)
    expected = new_counters(3, n_operands=2)
    expected[1, [HBM_READ, SRAM_WRITE, FIRST_OPERAND + 1]] = b
    np.testing.assert_array_equal(counters, expected)


@pytest.mark.parametrize("execute", [True, False])
@given(r0=st.integers(0, 4), c0=st.integers(0, 6), rows=st.integers(1, 4), cols=st.integers(1, 4),
       bits=st.sampled_from(BITS))
def test_store_tile(execute, r0, c0, rows, cols, bits):
    acc = np.arange(16, dtype=np.float32).reshape(4, 4) + 100
    out = np.zeros((8, 10), dtype=np.float32)
    counters = new_counters(2)
    store_tile(acc, rows, cols, out, r0, c0, execute, counters, 0, bits)
    expected_out = np.zeros((8, 10), dtype=np.float32)
    if execute:
        expected_out[r0:r0 + rows, c0:c0 + cols] = acc[:rows, :cols]
    np.testing.assert_array_equal(out, expected_out)
    b = nbytes(rows * cols, bits)
    expected = new_counters(2)
    expected[0, [SRAM_READ, HBM_WRITE]] = b
    np.testing.assert_array_equal(counters, expected)


@given(m=st.integers(1, 300), n=st.integers(1, 300), k=st.integers(1, 300), bits=st.sampled_from(BITS))
def test_flop_counters(m, n, k, bits):
    c = new_counters(2, n_operands=1)
    count_mma(m, n, k, c, 0, bits)
    count_fma(m, n, k, c, 1, bits)
    count_vector(7, c, 1)
    count_load_direct(m * k, c, 0, 0, bits)
    count_store_direct(m * n, c, 1, bits)
    tile = nbytes(m * k + k * n, bits)
    assert c[0, FLOPS_MATMUL] == 2 * m * n * k and c[0, FLOPS_VECTOR] == 0
    assert c[1, FLOPS_VECTOR] == 2 * m * n * k + 7 and c[1, FLOPS_MATMUL] == 0
    assert c[0, SRAM_READ] == c[1, SRAM_READ] == tile
    assert c[0, HBM_READ] == c[0, FIRST_OPERAND] == nbytes(m * k, bits)
    assert c[0, SRAM_WRITE] == 0                      # a direct load skips SRAM
    assert c[1, HBM_WRITE] == nbytes(m * n, bits)
    t = totals(c)
    assert list(t) == list(NAMES)
    assert t["flops_matmul"] == 2 * m * n * k and t["sram_read_bytes"] == 2 * tile


def test_new_counters_layout():
    c = new_counters(5, 3)
    assert c.shape == (5, FIRST_OPERAND + 3) and c.dtype == np.int64 and not c.any()
    assert len({HBM_READ, HBM_WRITE, SRAM_READ, SRAM_WRITE, FLOPS_MATMUL, FLOPS_VECTOR}) == FIRST_OPERAND


@pytest.mark.parametrize("dtype, size", [("fp32", 4 * 35), ("fp16", 2 * 35), ("bf16", 2 * 35), ("int8", 35),
                                         ("int4", 18), ("fp8", 35)])
def test_meta_tensor(dtype, size):
    t = meta((5, 7), dtype)
    assert isinstance(t, MetaTensor)
    assert t.shape == (5, 7) and t.ndim == 2 and t.size == 35 and t.dtype == dtype
    assert t.nbytes == size
    assert "5, 7" in repr(t)
