"""matmul v1: naive. Every output element streams its row and column from HBM.

This is the textbook ``for i, j, k`` loop as a GPU kernel: a grid of blocks of
BM x BN threads, one thread per output element, nothing staged in SRAM, no
reuse. It runs on the vector units (no tensor cores).

Tile loop::

    for each block (bi, bj) in parallel:              # grid ceil(M/BM) x ceil(N/BN)
        for i in rows of the block, j in columns of the block:
            acc = 0
            for k in 0..K-1:
                acc += A[i, k] * B[k, j]              # both read from HBM
            C[i, j] = acc                             # written to HBM

HBM traffic (``s`` = bytes per element of the logical dtype)::

    reads  = 2 * M * N * K * s        (a row of A and a column of B per output)
    writes = M * N * s
    vector FLOPs = 2 * M * N * K
"""

from __future__ import annotations

from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim.tiles import count_load_direct, count_store_direct, count_vector
from ...sim import TileConfigError
from .._contract import block_size, ceil_div
from ._launch import block_tile, prepare, run

DEFAULT_BLOCK = 16   # a 16 x 16 thread block, as in the CUDA programming guide


@njit(parallel=PARALLEL, cache=True)
def _body(a, b, c, M, N, K, BM, BN, execute, ids, counters, elem_bits):
    for row in prange(len(ids)):               # every block, or one per class (counting)
        r0, c0, rows, cols = block_tile(ids[row], BM, BN, M, N)     # this block's tile of C
        for i in range(r0, r0 + rows):
            # every thread of this row streams its own row of A and column of B
            count_load_direct(cols * K, counters, row, 0, elem_bits)      # A[i, :] once per thread
            count_load_direct(cols * K, counters, row, 1, elem_bits)      # B[:, j] for each j
            count_vector(2 * cols * K, counters, row)
            count_store_direct(cols, counters, row, elem_bits)
            if execute:
                for j in range(c0, c0 + cols):
                    acc = 0.0
                    for k in range(K):
                        acc += a[i, k] * b[k, j]
                    c[i, j] = acc


def expected_bytes(m: int, n: int, k: int, elem_bytes: float) -> tuple[float, float]:
    """(HBM read bytes, HBM write bytes) of v1, from the formula above."""
    return 2 * m * n * k * elem_bytes, m * n * elem_bytes


def matmul_v1(a, b, *, dtype: str = "fp16", block_m: int | None = None, block_n: int | None = None,
              block_k: int | None = None):
    """Naive matmul: C = A @ B with no reuse at all. See the module docstring.

    ``block_m`` x ``block_n`` is the thread block (one thread per output); v1 has
    no K tiling, so ``block_k`` must be left out.
    """
    if block_k is not None:
        raise TileConfigError(f"matmul_v1 has no K tiling (each thread streams a whole row and column), "
                              f"so block_k={block_k!r} has no meaning; drop it or use version 2 or 3")
    call = prepare(a, b, dtype, "matmul_v1")
    bm = block_size(block_m, "block_m", DEFAULT_BLOCK)
    bn = block_size(block_n, "block_n", DEFAULT_BLOCK)
    grid = (ceil_div(call.m, bm), ceil_div(call.n, bn))
    return run(call, "matmul_v1_naive", _body, grid, grid[0] * grid[1], (bm, bn), sram_per_block=0)
