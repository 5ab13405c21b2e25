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

The formula, the block sizes and the launch are shared with v3 (``_tiled.py``);
the tile product stays written out here, because it is this version's lesson.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim.tiles import count_fma, load_tile, store_tile
from .._counting import extent
from ._launch import block_tile, prepare
from ._tiled import expected_bytes, launch_tiled, resolve_tiles, tile_panels  # noqa: F401  (this file's formula)


@njit(parallel=PARALLEL, cache=True, fastmath=True)
def _body(a, b, c, M, N, K, BM, BN, BK, execute, ids, counters, elem_bits):
    for row in prange(len(ids)):               # every block, or one per class (counting)
        r0, c0, rows, cols = block_tile(ids[row], BM, BN, M, N)     # this block's tile of C
        a_s = np.empty((extent(BM, execute), extent(BK, execute)), dtype=np.float32)   # (BM, BK) SRAM
        b_s = np.empty((extent(BK, execute), extent(BN, execute)), dtype=np.float32)   # (BK, BN) SRAM
        acc = np.zeros((extent(BM, execute), extent(BN, execute)), dtype=np.float32)   # (BM, BN) fp32
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


def matmul_v2(a, b, *, dtype: str = "fp16", block_m: int | None = None, block_n: int | None = None,
              block_k: int | None = None):
    """SRAM-tiled matmul with explicit FMA loops. Block sizes default to the
    highest-intensity tiles that fit the active device's SRAM."""
    call = prepare(a, b, dtype, "matmul_v2")
    tiles, sram = resolve_tiles(call, block_m, block_n, block_k, "matmul_v2")
    return launch_tiled(call, tiles, sram, "matmul_v2_tiled", _body)
