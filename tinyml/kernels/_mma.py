"""The CPU's stand-in for a tensor-core MMA: ``acc += a @ b`` on float32 tiles.

A GPU MMA computes D = A B + C in one instruction sequence with C in
registers. Here it is BLAS ``sgemm`` with beta = 1, called from Numba so the
product accumulates in place (no temporary tile, no extra pass over ``acc``).
The BLAS function is passed to jitted code as an argument (not a global), so
the kernels stay cacheable (``cache=True``).

Row-major trick: row-major C (m x n) is column-major C^T, and
C^T += B^T A^T is a plain column-major sgemm with the operands swapped.
Big tiles go to BLAS in sub-products of at most ``MMA_M x MMA_N x MMA_K``
(see there): only the speed changes, not the result's meaning.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba import njit

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


#: The largest product one sgemm call gets, (m, n, k). A GPU issues a tile product
#: as fixed-shape MMA instructions (m16n8k16 on an A100); the CPU stand-in issues
#: it as sgemm calls of at most this shape, because OpenBLAS multiplies products
#: of m*n*k <= 100^3 straight from the operands ("small matrix" kernels) and
#: repacks both operands first for larger ones, which costs ~25% at tile sizes.
MMA_M, MMA_N, MMA_K = 128, 128, 32


@njit(cache=True)
def mma_acc(a, b, acc, gemm):
    """``acc += a @ b`` for C-contiguous float32 tiles a (m, k), b (k, n), acc (m, n)."""
    m, k = a.shape
    n = b.shape[1]
    s = a.itemsize
    dims = np.empty(6, np.int32)   # n, m, k of one call, then ldb, lda, ldc (fixed by the tiles)
    dims[3] = n    # ldb: B^T is column-major n x k with leading dimension n
    dims[4] = k    # lda
    dims[5] = n    # ldc
    one = np.ones(1, np.float32)
    no_trans = np.full(1, 78, np.uint8)   # ord('N')
    for i0 in range(0, m, MMA_M):
        for k0 in range(0, k, MMA_K):
            for j0 in range(0, n, MMA_N):
                # acc[i0:i0+MM, j0:j0+NN] += a[i0:i0+MM, k0:k0+KK] @ b[k0:k0+KK, j0:j0+NN]
                dims[0] = min(MMA_N, n - j0)
                dims[1] = min(MMA_M, m - i0)
                dims[2] = min(MMA_K, k - k0)
                gemm(no_trans.ctypes.data, no_trans.ctypes.data, dims[0:].ctypes.data, dims[1:].ctypes.data,
                     dims[2:].ctypes.data, one.ctypes.data, b.ctypes.data + s * (k0 * n + j0),
                     dims[3:].ctypes.data, a.ctypes.data + s * (i0 * k + k0), dims[4:].ctypes.data,
                     one.ctypes.data, acc.ctypes.data + s * (i0 * n + j0), dims[5:].ctypes.data)


@njit(cache=True)
def mma_acc_bt(a, b, acc, gemm):
    """``acc += a @ b.T`` for C-contiguous float32 tiles a (m, k), b (n, k), acc (m, n).

    The S = Q K^T product of attention, with K as loaded (one row per key): no
    transposed copy of the tile. Column-major view: C^T (n x m) += B A^T, where
    row-major b is the column-major k x n matrix B^T (so transa = 'T') and
    row-major a is the column-major k x m matrix A^T (transb = 'N').
    """
    m, k = a.shape
    n = b.shape[0]
    s = a.itemsize
    dims = np.empty(6, np.int32)   # n, m, k of one call, then lda, ldb, ldc
    dims[3] = k    # lda: b viewed column-major is k x n
    dims[4] = k    # ldb: a viewed column-major is k x m
    dims[5] = n    # ldc
    one = np.ones(1, np.float32)
    trans = np.full(1, 84, np.uint8)      # ord('T')
    no_trans = np.full(1, 78, np.uint8)   # ord('N')
    for i0 in range(0, m, MMA_M):
        for k0 in range(0, k, MMA_K):
            for j0 in range(0, n, MMA_N):
                # acc[i0:i0+MM, j0:j0+NN] += a[i0:i0+MM, k0:k0+KK] @ b[j0:j0+NN, k0:k0+KK].T
                dims[0] = min(MMA_N, n - j0)
                dims[1] = min(MMA_M, m - i0)
                dims[2] = min(MMA_K, k - k0)
                gemm(trans.ctypes.data, no_trans.ctypes.data, dims[0:].ctypes.data, dims[1:].ctypes.data,
                     dims[2:].ctypes.data, one.ctypes.data, b.ctypes.data + s * (j0 * k + k0),
                     dims[3:].ctypes.data, a.ctypes.data + s * (i0 * k + k0), dims[4:].ctypes.data,
                     one.ctypes.data, acc.ctypes.data + s * (i0 * n + j0), dims[5:].ctypes.data)
