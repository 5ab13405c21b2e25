"""The byte-moving helpers of tinyml.sim.tiles that test_tiles.py does not call directly:
the transposed load, the count-only load, and the whole-byte rounding at its edges
(pinned by mutation testing, tools/mutate.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyml.sim.counters import (FIRST_OPERAND, FLOPS_MATMUL, FLOPS_VECTOR, HBM_READ, HBM_WRITE, SRAM_READ,
                                 SRAM_WRITE, new_counters)
from tinyml.sim.tiles import (count_fma, count_load_direct, count_mma, count_store_direct, count_tile_load, load_tile,
                              load_tile_t, store_tile, tile_bytes)


@pytest.mark.parametrize("n, bits, expected", [(0, 4, 0), (1, 4, 1), (2, 4, 1), (3, 4, 2), (1, 8, 1),
                                               (1, 16, 2), (3, 32, 12), (7, 1, 1), (8, 1, 1), (9, 1, 2)])
def test_tile_bytes_edges(n, bits, expected):
    assert tile_bytes(n, bits) == expected


@pytest.mark.parametrize("execute", [True, False])
@given(r0=st.integers(0, 4), c0=st.integers(0, 6), rows=st.integers(1, 4), cols=st.integers(1, 4),
       bits=st.sampled_from((4, 8, 16, 32)))
def test_load_tile_t(execute, r0, c0, rows, cols, bits):
    src = np.arange(8 * 10, dtype=np.float32).reshape(8, 10)
    dst = np.full((4, 4), -1.0, dtype=np.float32)
    counters = new_counters(2, n_operands=3)
    load_tile_t(src, r0, c0, rows, cols, dst, execute, counters, 1, 2, bits)
    expected_dst = np.full((4, 4), -1.0, dtype=np.float32)
    if execute:
        expected_dst[:cols, :rows] = src[r0:r0 + rows, c0:c0 + cols].T
    np.testing.assert_array_equal(dst, expected_dst)
    b = (rows * cols * bits + 7) // 8
    expected = new_counters(2, n_operands=3)
    expected[1, [HBM_READ, SRAM_WRITE, FIRST_OPERAND + 2]] = b
    np.testing.assert_array_equal(counters, expected)


def test_count_tile_load_counts_what_load_tile_counts():
    a = new_counters(3, n_operands=2)
    b = new_counters(3, n_operands=2)
    count_tile_load(3, 5, a, 2, 1, 4)                      # 15 int4 elements: 8 bytes
    load_tile(np.zeros((3, 5), np.float32), 0, 0, 3, 5, np.zeros((3, 5), np.float32), False, b, 2, 1, 4)
    np.testing.assert_array_equal(a, b)
    assert a[2, HBM_READ] == a[2, SRAM_WRITE] == a[2, FIRST_OPERAND + 1] == 8
    assert a[:2].sum() == 0 and a[2, FIRST_OPERAND] == 0 and a[2, SRAM_READ] == a[2, HBM_WRITE] == 0


def test_counts_accumulate_over_calls():
    c = new_counters(1, n_operands=1)
    src = np.ones((4, 4), np.float32)
    for _ in range(3):
        load_tile(src, 0, 0, 2, 2, np.zeros((2, 2), np.float32), True, c, 0, 0, 16)    # 8 B each
        store_tile(src, 2, 2, np.zeros((4, 4), np.float32), 1, 1, True, c, 0, 32)      # 16 B each
        count_mma(2, 3, 4, c, 0, 16)                                                    # 48 FLOP, 40 B
        count_fma(1, 1, 1, c, 0, 8)                                                     # 2 FLOP, 2 B
    assert c[0, HBM_READ] == c[0, SRAM_WRITE] == c[0, FIRST_OPERAND] == 24
    assert c[0, HBM_WRITE] == 48
    assert c[0, SRAM_READ] == 3 * (16 + 2 * (2 * 4 + 4 * 3) + 2)
    assert c[0, FLOPS_MATMUL] == 3 * 48 and c[0, FLOPS_VECTOR] == 3 * 2


def test_store_tile_writes_only_its_rectangle():
    acc = np.arange(16, dtype=np.float32).reshape(4, 4) + 1
    out = np.zeros((5, 6), np.float32)
    store_tile(acc, 2, 3, out, 3, 2, True, new_counters(1), 0, 32)
    expected = np.zeros((5, 6), np.float32)
    expected[3:5, 2:5] = acc[:2, :3]
    np.testing.assert_array_equal(out, expected)


def test_direct_loads_count_their_operand_and_skip_sram():
    c = new_counters(2, n_operands=3)
    count_load_direct(5, c, 1, 2, 16)                       # 10 bytes of operand 2, block 1
    count_store_direct(3, c, 1, 4)                          # 12 nibbles: 2 bytes
    assert c[1, HBM_READ] == c[1, FIRST_OPERAND + 2] == 10
    assert c[1, FIRST_OPERAND] == c[1, FIRST_OPERAND + 1] == 0 and c[0].sum() == 0
    assert c[1, SRAM_READ] == c[1, SRAM_WRITE] == 0 and c[1, HBM_WRITE] == 2


# ---- the copy loops (copy_rect, copy_rect_t), called directly ----------------------------------------------
#
# They are two functions each: the jitted loops (Numba on) and the NumPy-slice twins that replace them under
# NUMBA_DISABLE_JIT=1. These tests call whichever the process has, so a mutation run covers the loops with
# `--jit on` and the twins with `--jit off` (tests/README.md).

# equivalent mutant tinyml/sim/tiles.py:66: sc + cols -> sc - cols
# equivalent mutant tinyml/sim/tiles.py:67: dc + cols -> dc - cols
#   the jitted copy_rect's row views ``src[sr + i, sc:sc + cols]`` / ``dst[dr + i, dc:dc + cols]``: with the
#   stop moved before the start the view is empty but still starts at element sc (dc), and Numba does not
#   check bounds (no NUMBA_BOUNDSCHECK), so ``d[j] = s[j]`` for j < cols reads and writes the same memory
#   as before. Only a bounds-checked build could tell; the plain-Python twin's slices (line 38) are killed.


def _grids():
    src = np.arange(7 * 9, dtype=np.float32).reshape(7, 9) + 1      # every element distinct and non-zero
    dst = np.full((6, 8), -1.0, dtype=np.float32)
    return src, dst


@pytest.mark.parametrize("sr, sc, rows, cols, dr, dc", [
    (2, 3, 3, 4, 1, 2),     # a block from the middle into the middle
    (0, 0, 1, 1, 0, 0),     # one element
    (4, 5, 3, 4, 3, 4),     # up to src's last row and column, and dst's
    (1, 2, 2, 5, 0, 3),
])
def test_copy_rect_copies_exactly_the_rectangle(sr, sc, rows, cols, dr, dc):
    from tinyml.sim.tiles import copy_rect
    src, dst = _grids()
    copy_rect(src, sr, sc, rows, cols, dst, dr, dc)
    want = np.full((6, 8), -1.0, dtype=np.float32)
    for i in range(rows):
        for j in range(cols):
            want[dr + i, dc + j] = src[sr + i, sc + j]      # e.g. (2, 3) -> 2 * 9 + 3 + 1 = 22 at (1, 2)
    np.testing.assert_array_equal(dst, want)


@pytest.mark.parametrize("sr, sc, rows, cols", [(2, 3, 3, 4), (0, 0, 1, 1), (4, 3, 3, 6), (1, 5, 5, 4)])
def test_copy_rect_t_writes_the_transpose_at_the_origin(sr, sc, rows, cols):
    from tinyml.sim.tiles import copy_rect_t
    src, _ = _grids()
    dst = np.full((6, 6), -1.0, dtype=np.float32)
    copy_rect_t(src, sr, sc, rows, cols, dst)
    want = np.full((6, 6), -1.0, dtype=np.float32)
    for i in range(rows):
        for j in range(cols):
            want[j, i] = src[sr + i, sc + j]
    np.testing.assert_array_equal(dst, want)


def test_count_warp_reads_by_hand():
    from tinyml.sim.tiles import count_warp_reads
    # a (6 x 5) @ (5 x 7) tile product over 2 x 3 warps: A (30 elements) read 3 times, B (35) twice;
    # count_mma counted each once, so the re-reads are 30 * 2 + 35 * 1 = 95 elements, 190 B in fp16
    counters = new_counters(3, n_operands=2)
    count_warp_reads(6, 7, 5, 2, 3, counters, 1, 16)
    expected = new_counters(3, n_operands=2)
    expected[1, SRAM_READ] = 190
    np.testing.assert_array_equal(counters, expected)
    count_warp_reads(6, 7, 5, 2, 3, counters, 1, 4)                  # 95 codes of 4 bits: 47.5 -> 48 B, added
    assert counters[1, SRAM_READ] == 190 + 48
    one = new_counters(1, n_operands=2)
    count_warp_reads(6, 7, 5, 1, 1, one, 0, 16)                      # one warp: no re-read
    assert not one.any()
