"""The CPU's stand-in for a tensor-core MMA: ``acc += a @ b`` on float32 tiles.

A GPU MMA computes D = A B + C in one instruction sequence with C in
registers. Here it is BLAS ``sgemm`` with beta = 1, called from Numba so the
product accumulates in place (no temporary tile, no extra pass over ``acc``).
The BLAS function is passed to jitted code as an argument (not a global), so
the kernels stay cacheable (``cache=True``).

Row-major trick: row-major C (m x n) is column-major C^T, and
C^T += B^T A^T is a plain column-major sgemm with the operands swapped.
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


@njit(cache=True)
def mma_acc(a, b, acc, gemm):
    """``acc += a @ b`` for C-contiguous float32 tiles a (m, k), b (k, n), acc (m, n)."""
    m, k = a.shape
    n = b.shape[1]
    dims = np.empty(6, np.int32)
    dims[0] = n
    dims[1] = m
    dims[2] = k
    dims[3] = n   # ldb: B^T is column-major n x k with leading dimension n
    dims[4] = k   # lda
    dims[5] = n   # ldc
    one = np.ones(1, np.float32)
    no_trans = np.full(1, 78, np.uint8)   # ord('N')
    gemm(no_trans.ctypes.data, no_trans.ctypes.data, dims[0:].ctypes.data, dims[1:].ctypes.data,
         dims[2:].ctypes.data, one.ctypes.data, b.ctypes.data, dims[3:].ctypes.data, a.ctypes.data,
         dims[4:].ctypes.data, one.ctypes.data, acc.ctypes.data, dims[5:].ctypes.data)
