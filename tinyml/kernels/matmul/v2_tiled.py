"""matmul v2: SRAM tiling, with the tile product written out as loops.

Each block owns a BM x BN tile of C. It walks K in steps of BK, loading one
BM x BK tile of A and one BK x BN tile of B into SRAM, and every element loaded
is used BN (or BM) times. The inner product runs on the vector units as plain
fused multiply-adds (how a CUDA shared-memory matmul works without tensor cores).

Tile loop::

    for each block (bi, bj) in parallel:              # grid ceil(M/BM) x ceil(N/BN)
        acc = zeros(BM, BN)                           # on chip, fp32
        for k0 in range(0, K, BK):
            As = load A[bi*BM : +BM, k0 : +BK]        # HBM -> SRAM
            Bs = load B[k0 : +BK, bj*BN : +BN]        # HBM -> SRAM
            for i, kk, j:  acc[i, j] += As[i, kk] * Bs[kk, j]
        store acc -> C[bi*BM : +BM, bj*BN : +BN]      # SRAM -> HBM

HBM traffic (exact for any shape; edge tiles load only their valid part)::

    reads  = (M * K * ceil(N / BN) + K * N * ceil(M / BM)) * s
    writes = M * N * s
    vector FLOPs = 2 * M * N * K

Blocks in one tile row read the same rows of A: the cost model's L2 reuse
serves repeats within a wave from L2 (the ``panels`` of the launch).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ...sim import current_profile
from ...sim.tiles import count_fma, load_tile, store_tile
from .._contract import block_size, ceil_div
from ._launch import prepare, run
from .tiles import MatmulTiles, check_matmul_tiles, choose_tiles


@njit(parallel=True, cache=True, fastmath=True)
def _body(a, b, c, M, N, K, BM, BN, BK, execute, ids, counters, elem_bits):
    gn = (N + BN - 1) // BN
    s = 1 if not execute else 0          # counting mode: no real tile buffers
    for row in prange(len(ids)):               # every block, or one per class (counting)
        blk = ids[row]
        r0 = (blk // gn) * BM
        c0 = (blk % gn) * BN
        rows = min(BM, M - r0)
        cols = min(BN, N - c0)
        a_s = np.empty((BM - s * (BM - 1), BK - s * (BK - 1)), dtype=np.float32)   # (BM, BK) SRAM
        b_s = np.empty((BK - s * (BK - 1), BN - s * (BN - 1)), dtype=np.float32)   # (BK, BN) SRAM
        acc = np.zeros((BM - s * (BM - 1), BN - s * (BN - 1)), dtype=np.float32)   # (BM, BN) fp32
        for k0 in range(0, K, BK):
            depth = min(BK, K - k0)
            load_tile(a, r0, k0, rows, depth, a_s, execute, counters, row, 0, elem_bits)
            load_tile(b, k0, c0, depth, cols, b_s, execute, counters, row, 1, elem_bits)
            count_fma(rows, cols, depth, counters, row, elem_bits)
            if execute:
                for i in range(rows):
                    for kk in range(depth):
                        aik = a_s[i, kk]
                        for j in range(cols):
                            acc[i, j] += aik * b_s[kk, j]
        store_tile(acc, rows, cols, c, r0, c0, execute, counters, row, elem_bits)


def expected_bytes(m: int, n: int, k: int, elem_bytes: float, bm: int, bn: int) -> tuple[float, float]:
    """(HBM read bytes, HBM write bytes) before L2 reuse, from the formula above."""
    return (m * k * ceil_div(n, bn) + k * n * ceil_div(m, bm)) * elem_bytes, m * n * elem_bytes


def tile_panels(grid: tuple) -> dict:
    """L2 panels: operand A's panel is the block's tile row, B's its tile column."""
    rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])
    return {0: rows, 1: cols}


def resolve_tiles(call, block_m, block_n, block_k, kernel: str) -> tuple[MatmulTiles, int]:
    """Block sizes (given or chosen from SRAM) and their SRAM bytes."""
    dev = current_profile().device
    auto = choose_tiles(dev, call.m, call.n, call.k, call.dtype)
    tiles = MatmulTiles(block_size(block_m, "block_m", auto.block_m),
                        block_size(block_n, "block_n", auto.block_n),
                        block_size(block_k, "block_k", auto.block_k))
    return tiles, check_matmul_tiles(dev, tiles, call.m, call.n, call.k, call.dtype, kernel)


def launch_tiled(call, tiles: MatmulTiles, sram: int, name: str, body, extra: tuple = ()):
    grid = (ceil_div(call.m, tiles.block_m), ceil_div(call.n, tiles.block_n))
    return run(call, name, body, grid, grid[0] * grid[1],
               (tiles.block_m, tiles.block_n, tiles.block_k), sram, panels=tile_panels, extra=extra)


def matmul_v2(a, b, *, dtype: str = "fp16", block_m: int | None = None, block_n: int | None = None,
              block_k: int | None = None):
    """SRAM-tiled matmul with explicit FMA loops. Block sizes default to the
    highest-intensity tiles that fit the active device's SRAM."""
    call = prepare(a, b, dtype, "matmul_v2")
    tiles, sram = resolve_tiles(call, block_m, block_n, block_k, "matmul_v2")
    return launch_tiled(call, tiles, sram, "matmul_v2_tiled", _body)
