"""The CPU's MMA stand-in (BLAS sgemm on tiles): every operand layout against NumPy, and how it splits."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import examples
from tinyml.kernels._mma import (SMALL_MNK, mma_acc, mma_acc_at, mma_acc_bt, mma_set, mma_set_bt, sgemm,
                                 sub_shape)

dims = st.integers(1, 300)


@settings(max_examples=examples(40), deadline=None)
@given(dims, dims, st.integers(1, 200), st.integers(0, 2**32 - 1))
def test_every_layout_equals_numpy(m, n, k, seed):
    """acc (+)= op(a) @ op(b) for a, b stored as (m, k) / (k, m) and (k, n) / (n, k); sizes that cross
    the sub-product splits (m, n up to 300, k up to 200)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c0 = rng.standard_normal((m, n), dtype=np.float32)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    tol = dict(rtol=1e-4, atol=1e-4 * np.sqrt(k))
    g = sgemm()
    at, bt = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    for fn, x, y in ((mma_acc, a, b), (mma_acc_bt, a, bt), (mma_acc_at, at, b)):
        acc = c0.copy()
        fn(x, y, acc, g)
        np.testing.assert_allclose(acc, c0 + ref, **tol)
    for fn, x, y, acc_fn in ((mma_set, a, b, mma_acc), (mma_set_bt, a, bt, mma_acc_bt)):
        out = np.full((m, n), np.nan, dtype=np.float32)      # beta = 0: what was there is never read
        fn(x, y, out, g)
        zero = np.zeros((m, n), dtype=np.float32)
        acc_fn(x, y, zero, g)
        np.testing.assert_array_equal(out, zero)            # bit for bit the same as += on zeros
        np.testing.assert_allclose(out, ref, **tol)


@given(st.integers(1, 1024), st.integers(1, 1024), st.integers(1, 1024))
def test_sub_shape_fits_small_matrix_kernels(m, n, k):
    mm, nn, kk = sub_shape(m, n, k)
    assert 1 <= mm <= m and 1 <= nn <= n and 1 <= kk <= k
    assert mm * nn * kk <= SMALL_MNK
    if m * n * k <= SMALL_MNK:
        assert (mm, nn, kk) == (m, n, k)                     # small products go whole
    if kk < k:                                               # k is split only once m and n are small
        assert max(mm, nn) <= 32


def test_sub_shape_of_the_tiles_in_use():
    assert sub_shape(128, 128, 64) == (64, 128, 64)          # FA2's S^T on the CPU
    assert sub_shape(128, 64, 128) == (64, 64, 128)          # FA2's O += P V
    assert sub_shape(128, 256, 32) == (128, 128, 32)         # matmul v3's default A100 fp32 tile
