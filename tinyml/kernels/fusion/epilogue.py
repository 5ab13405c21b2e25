"""Matmul with a fused epilogue: bias, activation and residual applied in SRAM.

``y = act(a @ b + bias) + residual`` is, in eager PyTorch, a matmul that writes
C to HBM and then one elementwise kernel per op reading it back. Here the
output tile is finished where it already is: after the K loop each block runs
the epilogue, an op program (program.py) over the fp32 accumulator and the
bias and residual tiles, and stores the result once. The matmul is the
tensor-core tiled matmul of :mod:`tinyml.kernels.matmul.v3_mma`.

Tile loop::

    for each block (bi, bj) in parallel:              # grid ceil(M/BM) x ceil(N/BN)
        acc = zeros(BM, BN)                           # fp32 accumulator, on chip
        for k0 in range(0, K, BK):
            As = load A[bi*BM : +BM, k0 : +BK];  Bs = load B[k0 : +BK, bj*BN : +BN]
            acc += mma(As, Bs)                        # tensor cores
        # As and Bs are dead now: the epilogue's tiles reuse their SRAM
        bias_s = load bias[bj*BN : +BN]               # if bias: once per block
        res_s  = load residual[bi*BM : +BM, bj*BN : +BN]   # if residual
        acc = program(acc, bias_s, res_s)             # e.g. gelu(acc + bias) + res, in SRAM
        store acc -> Y[bi*BM : +BM, bj*BN : +BN]      # SRAM -> HBM, once

HBM traffic (``s`` bytes per element, ``F`` the epilogue's FLOPs per element)::

    reads  = (M K ceil(N/BN) + K N ceil(M/BM)) s      the matmul's (as v3)
           + ceil(M/BM) N s                           bias, once per block row of tiles
           + M N s                                    residual, once
    writes = M N s
    matmul FLOPs = 2 M N K;  vector FLOPs = F M N

The unfused form (``matmul_epilogue_unfused``) writes C (M N s) and then runs
:func:`~tinyml.kernels.fusion.elementwise.unfused_elementwise`: with bias, an
activation and a residual that is 3 more kernels reading
``(4 M N + ceil(M/BMe) N) s`` and writing ``3 M N s`` (``BMe`` the elementwise
block rows), on top of the same matmul.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import bits, check_tiles, current_profile, nbytes, tile_budget, tiles_fit
from ...sim.counters import new_counters
from ...sim.tiles import store_tile
from .._contract import blas_single_thread, block_size, ceil_div, same_mode
from .._counting import extent, input_array, stand_in
from .._mma import sgemm
from .._classes import edge_grid, launch_counters
from ..matmul._launch import block_tile, prepare
from ..matmul._tiled import tile_panels
from ..matmul.block_sizes import DEPTHS, SIZES, MatmulTiles
from ..matmul.v3_mma import matmul_v3, mma_k_loop
from .elementwise import unfused_elementwise
from .epilogue_tile import Epilogue, finish_tile
from .program import Program

#: matmul's tile sizes plus 8, for small SRAMs that must also hold the epilogue's tiles
EPILOGUE_SIZES = (8,) + SIZES


@njit(parallel=PARALLEL, cache=True)
def _body(a, b, c, bias, res, M, N, K, BM, BN, BK, execute, ids, counters, elem_bits, gemm,
          code, consts, n_slots, out_slot, flops, bias_slot, res_slot):
    for row in prange(len(ids)):         # every block, or one per class (tinyml.kernels._classes)
        r0, c0, rows, cols = block_tile(ids[row], BM, BN, M, N)     # this block's tile of C
        a_s = np.zeros((extent(BM, execute), extent(BK, execute)), dtype=np.float32)   # (BM, BK) SRAM
        b_s = np.zeros((extent(BK, execute), extent(BN, execute)), dtype=np.float32)   # (BK, BN) SRAM
        acc = np.zeros((extent(BM, execute), extent(BN, execute)), dtype=np.float32)   # (BM, BN) fp32
        # matmul v3's K loop: acc += A[r0:, :] @ B[:, c0:] on tensor cores
        mma_k_loop(a, b, r0, c0, rows, cols, K, BK, a_s, b_s, acc, execute, counters, row, elem_bits, gemm)
        # the epilogue, on the tile still in SRAM
        finish_tile(acc, rows, cols, r0, c0, M, N, bias, res, code, consts, n_slots, out_slot, flops,
                    bias_slot, res_slot, execute, counters, row, elem_bits)
        store_tile(acc, rows, cols, c, r0, c0, execute, counters, row, elem_bits)


def expected_bytes(m: int, n: int, k: int, elem_bytes: float, bm: int, bn: int, *, bias: bool = False,
                   residual: bool = False) -> tuple[float, float]:
    """(HBM read bytes before L2 reuse, HBM write bytes) of ``matmul_epilogue``, from the formula above."""
    reads = m * k * ceil_div(n, bn) + k * n * ceil_div(m, bm) + ceil_div(m, bm) * n * bias + m * n * residual
    return reads * elem_bytes, m * n * elem_bytes


@dataclass(frozen=True)
class EpilogueTiles:
    """A matmul's tiles plus the epilogue's. The bias and residual tiles are loaded after
    the K loop, when the A and B buffers are dead, so they reuse that SRAM (as CUTLASS's
    epilogue reuses the mainloop's shared memory); only what exceeds it is extra."""

    tiles: MatmulTiles
    has_bias: bool
    has_residual: bool

    def epilogue_bytes(self, dtype: str) -> int:
        t = self.tiles
        return nbytes(t.block_n * self.has_bias + t.block_m * t.block_n * self.has_residual, dtype)

    def sram_tiles(self, dtype: str) -> dict:
        t = self.tiles
        out = dict(t.sram_tiles(dtype))
        reused = nbytes(t.block_m * t.block_k + t.block_k * t.block_n, dtype)
        extra = self.epilogue_bytes(dtype) - reused
        if extra > 0:
            out["bias/residual tiles beyond the A and B buffers"] = ((extra,), "int8")
        return out


@lru_cache(maxsize=None)
def _best(device, m: int, n: int, k: int, dtype: str, has_bias: bool, has_res: bool) -> "EpilogueTiles | None":
    """As matmul's tile search (highest intensity, then deepest K, then least SRAM), with the
    epilogue's tiles in the budget and 8 as one more candidate size."""
    cap = lambda d: next((s for s in SIZES if s >= d), SIZES[-1])       # noqa: E731
    best = None
    for bm in EPILOGUE_SIZES:
        for bn in EPILOGUE_SIZES:
            if bm > cap(m) or bn > cap(n):
                continue
            for bk in DEPTHS:
                if bk > max(cap(k), DEPTHS[0]):
                    continue
                t = EpilogueTiles(MatmulTiles(bm, bn, bk), has_bias, has_res)
                tiles = t.sram_tiles(dtype)
                if tiles_fit(device, tiles):
                    key = (bm * bn / (bm + bn), bk, -tile_budget(device, tiles)[0])
                    if best is None or key > best[0]:
                        best = (key, t)
    return None if best is None else best[1]


def _prepare(a, b, bias, residual, activation, epilogue, dtype, kernel):
    call = prepare(a, b, dtype, kernel)
    same_mode(call.a, call.b)
    epi = Epilogue.prepare(kernel, bias, residual, activation, epilogue, call.m, call.n, call.dtype, call.execute)
    return call, epi


def _resolve(call, B, R, block_m, block_n, block_k, kernel) -> tuple[EpilogueTiles, int]:
    dev = current_profile().device
    auto = _best(dev, call.m, call.n, call.k, call.dtype, B is not None, R is not None)
    if auto is None:
        auto = EpilogueTiles(MatmulTiles(EPILOGUE_SIZES[0], EPILOGUE_SIZES[0], DEPTHS[0]), B is not None,
                             R is not None)
    t = auto.tiles
    tiles = EpilogueTiles(MatmulTiles(block_size(block_m, "block_m", t.block_m),
                                      block_size(block_n, "block_n", t.block_n),
                                      block_size(block_k, "block_k", t.block_k)), B is not None, R is not None)

    def suggest() -> str:
        if not tiles_fit(dev, auto.sram_tiles(call.dtype)):
            return "This device's SRAM cannot hold even the smallest tiles with the epilogue's; use another device"
        a = auto.tiles
        return (f"Tiles that fit: block_m={a.block_m}, block_n={a.block_n}, block_k={a.block_k}; "
                f"or omit the block sizes to let tinyml choose")

    return tiles, check_tiles(dev, tiles.sram_tiles(call.dtype), kernel=kernel, suggest=suggest)


def matmul_epilogue(a, b, *, bias=None, activation: "str | None" = None, residual=None, dtype: str = "fp16",
                    epilogue: "Program | None" = None, block_m: "int | None" = None,
                    block_n: "int | None" = None, block_k: "int | None" = None):
    """``Y = act(a @ b + bias) + residual`` in one kernel. See the module docstring.

    ``a`` (M, K), ``b`` (K, N), ``bias`` (N,), ``residual`` (M, N): arrays or
    ``tinyml.sim.meta`` tensors. ``activation``: None or a one-operand op name
    ('gelu', 'relu', 'silu', 'tanh' ...). ``epilogue`` replaces the default
    chain with any op program over ``(acc, bias?, residual?)``. Block sizes
    default to the highest-intensity tiles that fit SRAM with the epilogue's tiles.
    """
    call, epi = _prepare(a, b, bias, residual, activation, epilogue, dtype, "matmul_epilogue")
    B, R = epi.bias, epi.residual
    tiles, sram = _resolve(call, B, R, block_m, block_n, block_k, "matmul_epilogue")
    t = tiles.tiles

    prof = current_profile()
    for op in (call.a, call.b, B, R):
        if op is not None:
            prof.hbm.track(op.obj, op.name, call.dtype)
    y = prof.hbm.new_tensor("y", (call.m, call.n), call.dtype, call.execute)
    grid = (ceil_div(call.m, t.block_m), ceil_div(call.n, t.block_n))
    ex = call.execute
    if ex:
        ids, run_class, run_length = np.arange(grid[0] * grid[1], dtype=np.int64), None, None
    else:                            # one block per class: blocks differ only at the edges
        ids, run_class, run_length = edge_grid(grid[0], grid[1])
    counters = new_counters(len(ids), n_operands=4)
    bias2d, res2d, *program_args = epi.args(ex)
    gemm = sgemm()                   # load SciPy's BLAS first, so blas_single_thread pins it too
    with blas_single_thread():
        _body(input_array(call.a.data), input_array(call.b.data), y if ex else stand_in(2), bias2d, res2d,
              call.m, call.n, call.k, t.block_m, t.block_n, t.block_k, ex, ids, counters, bits(call.dtype), gemm,
              *program_args)

    def panels(g):
        p = tile_panels(g)
        p[2] = p[1]                  # blocks in one tile column read the same bias slice
        return p

    prof.record("matmul_epilogue", grid, launch_counters(counters, ex, run_class, run_length), dtype=call.dtype, sram_per_block=sram, panels=panels(grid))
    return y


def matmul_epilogue_unfused(a, b, *, bias=None, activation: "str | None" = None, residual=None,
                            dtype: str = "fp16", epilogue: "Program | None" = None, block_m: "int | None" = None,
                            block_n: "int | None" = None, block_k: "int | None" = None):
    """The eager form: ``matmul_v3`` writes C, then one elementwise kernel per epilogue op."""
    call, epi = _prepare(a, b, bias, residual, activation, epilogue, dtype, "matmul_epilogue_unfused")
    c = matmul_v3(call.a.obj, call.b.obj, dtype=call.dtype, block_m=block_m, block_n=block_n, block_k=block_k)
    if epi.program is None:
        return c
    return unfused_elementwise(epi.program, [c, *(op.obj for op in epi.operands())], dtype=call.dtype)
