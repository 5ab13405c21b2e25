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
    _mma(a, b, acc, gemm, False)


@njit(cache=True)
def mma_acc_bt(a, b, acc, gemm):
    """``acc += a @ b.T`` for C-contiguous float32 tiles a (m, k), b (n, k), acc (m, n).

    The S = Q K^T product of attention, with K as loaded (one row per key): no
    transposed copy of the tile.
    """
    _mma(a, b, acc, gemm, True)


@njit(cache=True)
def mma_set_bt(a, b, out, gemm):
    """``out = a @ b.T`` (as :func:`mma_acc_bt` on a zeroed ``out``, bit for bit, without zeroing it)."""
    _mma(a, b, out, gemm, True, True)


@njit(cache=True)
def _mma(a, b, acc, gemm, b_transposed, overwrite=False):
    """The sgemm calls behind :func:`mma_acc` and :func:`mma_acc_bt`.

    Column-major view: C^T (n x m) += X A^T, where row-major a (m, k) is the
    column-major k x m matrix A^T (op 'N', leading dimension k) and X is the
    n x k matrix B^T (for acc += a @ b) or the product's right factor transposed
    (for acc += a @ b.T). Row-major b (k, n) read column-major is n x k = B^T
    itself: op 'N', leading dimension n. Row-major b (n, k) read column-major is
    k x n, the transpose of what is needed: op 'T', leading dimension k.
    """
    m, k = a.shape
    n = b.shape[0] if b_transposed else b.shape[1]
    s = a.itemsize
    dims = np.empty(6, np.int32)   # n, m, k of one call, then ld of b, ld of a, ldc (fixed by the tiles)
    dims[3] = k if b_transposed else n
    dims[4] = k
    dims[5] = n
    one = np.ones(1, np.float32)
    zero = np.zeros(1, np.float32)
    op_b = np.full(1, 84 if b_transposed else 78, np.uint8)   # ord('T') or ord('N')
    no_trans = np.full(1, 78, np.uint8)                       # ord('N')
    for i0 in range(0, m, MMA_M):
        for k0 in range(0, k, MMA_K):
            for j0 in range(0, n, MMA_N):
                # acc[i0:i0+MM, j0:j0+NN] += a[i0:i0+MM, k0:k0+KK] @ op(b)[k0:k0+KK, j0:j0+NN]
                dims[0] = min(MMA_N, n - j0)
                dims[1] = min(MMA_M, m - i0)
                dims[2] = min(MMA_K, k - k0)
                b_off = s * (j0 * k + k0) if b_transposed else s * (k0 * n + j0)
                gemm(op_b.ctypes.data, no_trans.ctypes.data, dims[0:].ctypes.data, dims[1:].ctypes.data,
                     dims[2:].ctypes.data, one.ctypes.data, b.ctypes.data + b_off,
                     dims[3:].ctypes.data, a.ctypes.data + s * (i0 * k + k0), dims[4:].ctypes.data,
                     (zero if overwrite and k0 == 0 else one).ctypes.data,       # beta: the first K step sets
                     acc.ctypes.data + s * (i0 * n + j0), dims[5:].ctypes.data)
