"""matmul v3: SRAM tiling with the tile product on an MMA unit (tensor cores).

Same tiles and the same HBM traffic as v2; the only change is that the
BM x BK by BK x BN tile product is one matrix-multiply-accumulate instruction
sequence on tensor cores (BLAS ``sgemm`` with beta = 1 stands in for it on
the CPU, see :mod:`tinyml.kernels._mma`), which on an
A100 is 16x faster than the fp32 vector units at fp16.

Tile loop::

    for each block (bi, bj) in parallel:              # grid ceil(M/BM) x ceil(N/BN)
        acc = zeros(BM, BN)                           # fp32 accumulator, on chip
        for k0 in range(0, K, BK):
            As = load A[bi*BM : +BM, k0 : +BK]        # HBM -> SRAM (zero-padded at edges)
            Bs = load B[k0 : +BK, bj*BN : +BN]
            acc += mma(As, Bs)                        # tensor cores
        store acc -> C[bi*BM : +BM, bj*BN : +BN]

HBM traffic (as v2, exact for any shape)::

    reads  = (M * K * ceil(N / BN) + K * N * ceil(M / BM)) * s
    writes = M * N * s
    matmul FLOPs = 2 * M * N * K
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim.tiles import count_mma, load_tile, store_tile
from .._contract import blas_single_thread
from .._counting import extent
from .._mma import mma_acc, sgemm
from ._launch import block_tile, prepare
from ._tiled import expected_bytes, launch_tiled, resolve_tiles  # noqa: F401  (same traffic as v2)


@njit(cache=True)
def mma_k_loop(a, b, r0, c0, rows, cols, K, BK, a_s, b_s, acc, execute, counters, row, elem_bits, gemm):
    """The K loop of one block: ``acc += A[r0 : +rows, :] @ B[:, c0 : +cols]``, a BK step at a time.

    ``a_s`` (BM, BK) and ``b_s`` (BK, BN) are the block's SRAM tiles (1 x 1 when counting).
    ``matmul_epilogue`` runs this same loop before its epilogue.
    """
    for k0 in range(0, K, BK):
        depth = min(BK, K - k0)
        if execute and depth < BK:     # masked load: the padding must be zero
            a_s[:] = 0.0
            b_s[:] = 0.0
        load_tile(a, r0, k0, rows, depth, a_s, execute, counters, row, 0, elem_bits)
        load_tile(b, k0, c0, depth, cols, b_s, execute, counters, row, 1, elem_bits)
        count_mma(rows, cols, depth, counters, row, elem_bits)
        if execute:
            mma_acc(a_s, b_s, acc, gemm)     # the MMA: acc += (BM, BK) @ (BK, BN)


@njit(parallel=PARALLEL, cache=True)
def _body(a, b, c, M, N, K, BM, BN, BK, execute, ids, counters, elem_bits, gemm):
    for row in prange(len(ids)):               # every block, or one per class (counting)
        r0, c0, rows, cols = block_tile(ids[row], BM, BN, M, N)     # this block's tile of C
        a_s = np.zeros((extent(BM, execute), extent(BK, execute)), dtype=np.float32)   # (BM, BK) SRAM
        b_s = np.zeros((extent(BK, execute), extent(BN, execute)), dtype=np.float32)   # (BK, BN) SRAM
        acc = np.zeros((extent(BM, execute), extent(BN, execute)), dtype=np.float32)   # (BM, BN) fp32
        mma_k_loop(a, b, r0, c0, rows, cols, K, BK, a_s, b_s, acc, execute, counters, row, elem_bits, gemm)
        store_tile(acc, rows, cols, c, r0, c0, execute, counters, row, elem_bits)


def matmul_v3(a, b, *, dtype: str = "fp16", block_m: int | None = None, block_n: int | None = None,
              block_k: int | None = None):
    """SRAM-tiled matmul whose tile products run on tensor cores (``np.dot``).
    Block sizes default to the highest-intensity tiles that fit SRAM."""
    call = prepare(a, b, dtype, "matmul_v3")
    tiles, sram = resolve_tiles(call, block_m, block_n, block_k, "matmul_v3")
    gemm = sgemm()                   # load SciPy's BLAS first, so blas_single_thread pins it too
    with blas_single_thread():
        return launch_tiled(call, tiles, sram, "matmul_v3_mma", _body, extra=(gemm,))
