"""matmul v4: v3 as cuBLAS and CUTLASS ship it: accumulators in registers, a multi-stage load pipeline, warp tiles.

The tile loop and the HBM bytes are v3's. Three things a production tensor-core GEMM does differently,
and that the cost model charges:

* **C in registers.** Each warp holds its part of the fp32 accumulator in registers for the whole
  K loop (the MMA writes it there); SRAM holds only the A and B tiles, so bigger output tiles fit.
  The accumulator may take at most half the register file (the rest holds the A/B fragments fed to
  the MMA and the addresses: CUTLASS's largest Ampere tiles, 128 x 256 and 256 x 128 with 256
  threads, take 128 KB of the 256 KB).
* **A multi-stage pipeline.** ``STAGES`` buffers of A and B tiles in SRAM: while the tensor cores
  work on step k, asynchronous copies (``cp.async`` on Ampere, TMA on Hopper) fill step k + 1 and
  k + 2. Loads overlap compute even with one block per SM (the launch is ``pipelined``).
* **Warp tiles.** The block's BM x BN tile is split over a grid of warps; each reads its rows of A
  and its columns of B from SRAM (``count_warp_reads``). With Ampere-style ``mma.sync`` a warp owns
  64 x 64 (CUTLASS's warp shape): A is read BN / 64 times, B BM / 64 times. On a device whose
  ``mma.sync`` is below its peak (Hopper), the kernel issues ``wgmma``: a warpgroup of four warps owns
  64 rows and all BN columns, so A is read once and B BM / 64 times.

Tile loop::

    for each block (bi, bj) in parallel:                  # grid ceil(M/BM) x ceil(N/BN)
        acc = zeros(BM, BN)                               # fp32, registers (split over the warps)
        prologue: issue the loads of the first STAGES - 1 K steps
        for k0 in range(0, K, BK):
            wait for stage k0; issue the loads of step k0 + (STAGES - 1) BK   # HBM -> SRAM, async
            for each warp (wm, wn):                       # in parallel
                acc[wm, wn] += mma(As[wm rows], Bs[wn cols])   # operands SRAM -> registers
        store acc -> C[bi*BM : +BM, bj*BN : +BN]

HBM traffic (v3's, exact)::

    reads  = (M * K * ceil(N / BN) + K * N * ceil(M / BM)) * s
    writes = M * N * s
    matmul FLOPs = 2 * M * N * K
    SRAM reads per K step = (BM * BK * warps_n + BK * BN * warps_m) * s

Tiles: the highest arithmetic intensity BM * BN / (BM + BN) whose A/B stages fit SRAM and whose
accumulator fits half the register file; ties to the deeper BK, then the smaller SRAM footprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import Issue, check_tiles, current_profile, tile_budget, tiles_fit
from ...sim.sram import REG
from ...sim import TileConfigError
from ...sim.args import choice
from ...sim.cost import occupancy
from ...sim.tiles import store_tile
from .._contract import blas_single_thread, block_size, ceil_div
from .._counting import extent
from .._mma import sgemm
from . import streamk
from ._launch import block_tile, prepare, run
from .streamk import DATA_PARALLEL, SCHEDULES, STREAM_K, mac_iterations, plan_stream_k
from .block_sizes import DEPTHS, SIZES, _cap
from ._tiled import expected_bytes, tile_panels  # noqa: F401  (same traffic as v2 and v3)

#: A/B buffers in flight: CUTLASS's default multistage depth for Ampere tensor-core GEMMs
STAGES = 3
#: rows x columns of C one warp owns with mma.sync (CUTLASS's 64 x 64 warp shape); a wgmma warpgroup owns
#: WARP_ROWS rows and the block's columns
WARP_ROWS = WARP_COLS = 64
KERNEL = "matmul_v4_pipelined"
STREAMK_KERNEL = "matmul_v4_streamk"


@dataclass(frozen=True)
class PipelinedTiles:
    block_m: int
    block_n: int
    block_k: int
    stages: int = STAGES

    def tiles(self, dtype: str) -> dict:
        """{name: (shape, dtype[, "reg"])}: the A/B stages in SRAM, the accumulator in registers."""
        s, bm, bn, bk = self.stages, self.block_m, self.block_n, self.block_k
        return {"A stages": ((s, bm, bk), dtype), "B stages": ((s, bk, bn), dtype),
                "C accumulator": ((bm, bn), "fp32", REG)}


def warp_grid(device, bm: int, bn: int) -> tuple[int, int]:
    """(warps_m, warps_n): how the block's C tile is split over warps (warpgroups with wgmma)."""
    if device.has_wgmma:
        return ceil_div(bm, WARP_ROWS), 1
    return ceil_div(bm, WARP_ROWS), ceil_div(bn, WARP_COLS)


def _fits(device, t: PipelinedTiles, dtype: str) -> bool:
    tiles = t.tiles(dtype)
    if not tiles_fit(device, tiles):
        return False
    return device.register_bytes <= 0 or tile_budget(device, tiles)[1] <= device.register_bytes // 2


def choose_pipelined_tiles(device, m: int, n: int, k: int, dtype: str) -> "PipelinedTiles | None":
    """The module doc's rule (None if not even the smallest tiles fit)."""
    return _choose(device, _cap(m), _cap(n), max(_cap(k), DEPTHS[0]), dtype)


@lru_cache(maxsize=None)
def _choose(device, max_m: int, max_n: int, max_k: int, dtype: str):
    best = None
    for bm in SIZES:
        for bn in SIZES:
            for bk in DEPTHS:
                if bm > max_m or bn > max_n or bk > max_k:
                    continue
                t = PipelinedTiles(bm, bn, bk)
                if not _fits(device, t, dtype):
                    continue
                key = (bm * bn / (bm + bn), bk, -tile_budget(device, t.tiles(dtype))[0])
                if best is None or key > best[0]:
                    best = (key, t)
    return None if best is None else best[1]


@njit(parallel=PARALLEL, cache=True)
def _body(a, b, c, M, N, K, BM, BN, BK, WM, WN, execute, ids, counters, elem_bits, gemm):
    iters = (K + BK - 1) // BK
    for row in prange(len(ids)):         # every block, or one per class (counting)
        r0, c0, rows, cols = block_tile(ids[row], BM, BN, M, N)     # this block's tile of C
        a_s = np.zeros((extent(BM, execute), extent(BK, execute)), dtype=np.float32)   # (BM, BK) one stage
        b_s = np.zeros((extent(BK, execute), extent(BN, execute)), dtype=np.float32)   # (BK, BN)
        acc = np.zeros((extent(BM, execute), extent(BN, execute)), dtype=np.float32)   # (BM, BN) registers
        mac_iterations(a, b, r0, c0, rows, cols, K, BK, 0, iters, a_s, b_s, acc, WM, WN, execute, counters, row,
                       elem_bits, gemm)
        store_tile(acc, rows, cols, c, r0, c0, execute, counters, row, elem_bits)


def matmul_v4(a, b, *, dtype: str = "fp16", block_m: int | None = None, block_n: int | None = None,
              block_k: int | None = None, schedule: str = DATA_PARALLEL):
    """matmul v3 as production GEMMs run it (module doc): C in registers, STAGES-deep pipelined loads,
    warp tiles. Block sizes default to the highest-intensity tiles that fit.

    ``schedule``: ``"data-parallel"`` (one block per C tile) or ``"stream-k"`` (the tail wave's tiles
    shared out by MAC iteration over every SM, partial sums fixed up: :mod:`.streamk`)."""
    schedule = choice(schedule, "matmul_v4 schedule", SCHEDULES, error=TileConfigError,
                      hint=f"{DATA_PARALLEL!r} launches one block per C tile (the default); {STREAM_K!r} "
                           "splits the last waves' tiles along K over every SM so no SM idles through a tail wave")
    call = prepare(a, b, dtype, "matmul_v4")
    dev = current_profile().device
    auto = choose_pipelined_tiles(dev, call.m, call.n, call.k, call.dtype) or PipelinedTiles(16, 16, 8)
    t = PipelinedTiles(block_size(block_m, "block_m", auto.block_m), block_size(block_n, "block_n", auto.block_n),
                       block_size(block_k, "block_k", auto.block_k))

    def suggest() -> str:
        return (f"Tiles that fit: block_m={auto.block_m}, block_n={auto.block_n}, block_k={auto.block_k} "
                f"({STAGES} stages of A and B in SRAM, C in registers); or omit the block sizes")

    tiles = t.tiles(call.dtype)
    sram = check_tiles(dev, tiles, kernel="matmul_v4", suggest=suggest)
    regs = tile_budget(dev, tiles)[1]
    wm, wn = warp_grid(dev, t.block_m, t.block_n)
    grid = (ceil_div(call.m, t.block_m), ceil_div(call.n, t.block_n))
    gemm = sgemm()                   # load SciPy's BLAS first, so blas_single_thread pins it too
    record = dict(regs_per_block=regs, pipelined=True, issue=Issue(mma="peak"))
    sizes = (t.block_m, t.block_n, t.block_k, wm, wn)
    with blas_single_thread():
        if schedule == STREAM_K:
            wave = dev.sm_count * occupancy(dev, sram, regs)
            plan = plan_stream_k(grid[0] * grid[1], ceil_div(call.k, t.block_k), wave)
            return streamk.launch(call, STREAMK_KERNEL, sizes, plan, sram, (gemm,), record, grid)
        return run(call, KERNEL, _body, grid, grid[0] * grid[1], sizes, sram, panels=tile_panels, extra=(gemm,),
                   record=record)


__all__ = ["matmul_v4", "PipelinedTiles", "choose_pipelined_tiles", "warp_grid", "STAGES"]
