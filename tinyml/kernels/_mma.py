"""The CPU's stand-in for a tensor-core MMA: ``acc += a @ b`` on float32 tiles.

A GPU MMA computes D = A B + C in one instruction sequence with C in
registers. Here it is BLAS ``sgemm`` with beta = 1, called from Numba so the
product accumulates in place (no temporary tile, no extra pass over ``acc``).
The BLAS function is passed to jitted code as an argument (not a global), so
the kernels stay cacheable (``cache=True``).

Row-major trick: row-major C (m x n) is column-major C^T, and
C^T += B^T A^T is a plain column-major sgemm with the operands swapped.
Big tiles go to BLAS in sub-products of at most ``SMALL_MNK`` multiply-adds
(:func:`sub_shape`): only the speed changes, not the result's meaning.
"""

from __future__ import annotations

import ctypes

import numpy as np

from ..sim.jit import njit

_VP = ctypes.c_void_p
_SGEMM_TYPE = ctypes.CFUNCTYPE(None, *([_VP] * 13))
_SGEMM = None


def sgemm():
    """SciPy's BLAS sgemm as a ctypes function (loaded on first use)."""
    global _SGEMM
    if _SGEMM is None:
        from numba.extending import get_cython_function_address

        _SGEMM = _SGEMM_TYPE(get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
    return _SGEMM


#: The most multiply-adds (m*n*k) one sgemm call gets. A GPU issues a tile product as
#: fixed-shape MMA instructions (m16n8k16 on an A100); the CPU stand-in issues it as
#: sgemm calls no bigger than this, because OpenBLAS multiplies products of
#: m*n*k <= 100^3 straight from the operands ("small matrix" kernels) and repacks both
#: operands first for larger ones, which costs ~25% at tile sizes.
SMALL_MNK = 100 ** 3


@njit(cache=True)
def sub_shape(m, n, k):
    """(mm, nn, kk): the sub-product one sgemm call gets for an m x n x k tile product.

    Halve the longer of mm, nn until mm*nn*kk <= SMALL_MNK; split k only when both are down to 32
    (each k split is one more pass over the accumulator). 128 x 128 x 64 -> 64 x 128 x 64,
    128 x 64 x 128 -> 64 x 64 x 128, 128 x 256 x 32 -> 128 x 128 x 32.
    """
    mm, nn, kk = m, n, k
    while mm * nn * kk > SMALL_MNK:
        if max(mm, nn) > 32:
            if mm >= nn:
                mm = (mm + 1) // 2
            else:
                nn = (nn + 1) // 2
        else:
            kk = (kk + 1) // 2
    return mm, nn, kk


@njit(cache=True)
def mma_acc(a, b, acc, gemm):
    """``acc += a @ b`` for C-contiguous float32 tiles a (m, k), b (k, n), acc (m, n)."""
    _mma(a, b, acc, gemm, False, False, False)


@njit(cache=True)
def mma_set(a, b, out, gemm):
    """``out = a @ b`` (as :func:`mma_acc` on a zeroed ``out``, bit for bit, without zeroing it)."""
    _mma(a, b, out, gemm, False, False, True)


@njit(cache=True)
def mma_acc_bt(a, b, acc, gemm):
    """``acc += a @ b.T`` for C-contiguous float32 tiles a (m, k), b (n, k), acc (m, n).

    The S = Q K^T product of attention, with K as loaded (one row per key): no
    transposed copy of the tile.
    """
    _mma(a, b, acc, gemm, False, True, False)


@njit(cache=True)
def mma_set_bt(a, b, out, gemm):
    """``out = a @ b.T`` (as :func:`mma_acc_bt` on a zeroed ``out``, bit for bit, without zeroing it)."""
    _mma(a, b, out, gemm, False, True, True)


@njit(cache=True)
def mma_acc_at(a, b, acc, gemm):
    """``acc += a.T @ b`` for C-contiguous float32 tiles a (k, m), b (k, n), acc (m, n).

    O += P V with the probabilities held transposed (one row per key), as the
    FlashAttention-2 forward keeps them on the CPU.
    """
    _mma(a, b, acc, gemm, True, False, False)


@njit(cache=True)
def _mma(a, b, acc, gemm, a_transposed, b_transposed, overwrite):
    """The sgemm calls behind the ``mma_*`` functions: ``acc (+)= op(a) @ op(b)``.

    Column-major view: C^T (n x m) += op(Y) op(X), with C^T = acc read column-major.
    Row-major b (k, n) read column-major is n x k = B^T itself: op 'N', leading
    dimension n; row-major b (n, k) (``b_transposed``) reads as k x n: op 'T',
    leading dimension k. Likewise row-major a (m, k) reads as A^T: 'N', leading
    dimension k; a (k, m) (``a_transposed``) reads as A: 'T', leading dimension m.
    OpenBLAS's small-matrix kernels run 'N' x 'N' and 'N' x 'T' about 30% faster
    than 'T' x 'N' at tile sizes, so which operand is stored transposed matters.
    """
    m, n = acc.shape
    k = a.shape[0] if a_transposed else a.shape[1]
    s = a.itemsize
    dims = np.empty(6, np.int32)   # n, m, k of one call, then ld of b, ld of a, ldc (fixed by the tiles)
    dims[3] = k if b_transposed else n
    dims[4] = m if a_transposed else k
    dims[5] = n
    one = np.ones(1, np.float32)
    zero = np.zeros(1, np.float32)
    op_b = np.full(1, 84 if b_transposed else 78, np.uint8)   # ord('T') or ord('N')
    op_a = np.full(1, 84 if a_transposed else 78, np.uint8)
    mm, nn, kk = sub_shape(m, n, k)
    for i0 in range(0, m, mm):
        for k0 in range(0, k, kk):
            for j0 in range(0, n, nn):
                # acc[i0:i0+mm, j0:j0+nn] += op(a)[i0:i0+mm, k0:k0+kk] @ op(b)[k0:k0+kk, j0:j0+nn]
                dims[0] = min(nn, n - j0)
                dims[1] = min(mm, m - i0)
                dims[2] = min(kk, k - k0)
                b_off = s * (j0 * k + k0) if b_transposed else s * (k0 * n + j0)
                a_off = s * (k0 * m + i0) if a_transposed else s * (i0 * k + k0)
                gemm(op_b.ctypes.data, op_a.ctypes.data, dims[0:].ctypes.data, dims[1:].ctypes.data,
                     dims[2:].ctypes.data, one.ctypes.data, b.ctypes.data + b_off,
                     dims[3:].ctypes.data, a.ctypes.data + a_off, dims[4:].ctypes.data,
                     (zero if overwrite and k0 == 0 else one).ctypes.data,       # beta: the first K step sets
                     acc.ctypes.data + s * (i0 * n + j0), dims[5:].ctypes.data)
