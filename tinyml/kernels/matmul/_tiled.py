"""What the SRAM-tiled matmuls share: block sizes, the launch, the L2 panels, the byte formula.

v2 and v3 tile C the same way (a block per BM x BN tile of C, K walked in
steps of BK), so they move the same bytes and launch the same grid; only the
tile product differs (FMA loops in v2, an MMA in v3). ``bmm``,
``matmul_epilogue`` and ``quantized_matmul`` keep the same tiling too.

HBM traffic of the tiling (exact for any shape; edge tiles load only their valid part)::

    reads  = (M * K * ceil(N / BN) + K * N * ceil(M / BM)) * s
    writes = M * N * s
"""

from __future__ import annotations

import numpy as np

from ...sim import current_profile
from .._contract import block_size, ceil_div
from ._launch import run
from .block_sizes import MatmulTiles, check_matmul_tiles, choose_tiles


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
    """Run ``body`` over a ceil(M/BM) x ceil(N/BN) grid of blocks (see ``_launch.run``); returns C."""
    grid = (ceil_div(call.m, tiles.block_m), ceil_div(call.n, tiles.block_n))
    return run(call, name, body, grid, grid[0] * grid[1],
               (tiles.block_m, tiles.block_n, tiles.block_k), sram, panels=tile_panels, extra=extra)
