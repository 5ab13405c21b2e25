"""Fused dequantize + matmul: y = x @ W^T with W (N, K) read as packed bytes.

Each block owns a BM x BN tile of y (BM rows of x, BN rows of W). Per K tile it
loads the x tile and the *packed* W tile into SRAM, dequantizes W into an
on-chip (BK, BN) tile in the compute dtype and runs the tile product on the
tensor cores. fp16 weights exist only in SRAM, never in HBM.

Tile loop::

    for each block (bi, bj) in parallel:              # grid ceil(M/BM) x ceil(N/BN)
        acc = zeros(BM, BN)                           # fp32, on chip
        for k0 in range(0, Kp, BK):                   # Kp: K padded to whole groups
            xs = load x[bi*BM : +BM, k0 : +BK]        # HBM -> SRAM, zero past K
            ps = load packed W[bj*BN : +BN, tile k0]  # HBM -> SRAM: codes + scales (+ mins)
            ws = dequantize(ps)                       # (BK, BN): scale * levels[code] + min
            acc += mma(xs, ws)                        # tensor cores
        acc = epilogue(acc, bias, residual)           # optional, in SRAM (fusion.epilogue_tile)
        store acc -> y[bi*BM : +BM, bj*BN : +BN]

HBM traffic (exact, before L2 reuse)::

    reads  = ceil(N / BN) * M * K * s + ceil(M / BM) * qweight.nbytes
           (+ ceil(M / BM) * N * s     a bias, once per block row of tiles)
           (+ M * N * s                a residual, once)
    writes = M * N * s
    matmul FLOPs = 2 * M * N * Kp        (padding included: the MMA runs on whole tiles' data)
    vector FLOPs = ceil(M / BM) * N * Kp * (1 + m)     (the dequantize: a multiply [+ add])
                 + F * M * N                          (an epilogue of F FLOPs per element)

``s``: bytes per element of x's logical dtype; ``m`` = 1 for schemes with a min.
With an epilogue (``bias``, ``activation``, ``residual`` or any op program), a
linear layer ``act(x W^T + b) + r`` is one kernel, as in ``matmul_epilogue``.

The blocks own matmul's tiles of y (``matmul._launch.block_tile``); the K loop is
matmul v3's with a dequantize step between the loads and the MMA, over K padded
to whole groups, so it is written out here rather than shared.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import check_tiles, current_profile, nbytes
from ...sim.counters import SRAM_READ, SRAM_WRITE
from ...sim.tiles import count_mma, count_vector, load_tile, store_tile, tile_bytes
from .._contract import blas_single_thread, block_size, ceil_div
from .._counting import extent, input_array
from .._mma import mma_acc, sgemm
from ..fusion.epilogue_tile import Epilogue, finish_tile
from ..fusion.program import Program
from ..matmul._launch import block_tile
from ._decode import count_load_bytes, decode_into, half, tile_groups
from ._launch import check_block_k, fit_tiles, k_unit, packed_tile_bytes, prepare, run

@njit(cache=True)
def dequantize_tile(data, r0, cols, k0, depth, g, bits, split, has_min, hdr, block_bytes, levels, out,
                    transposed):
    """Decode rows ``r0 .. r0+cols`` of W, elements ``[k0, k0+depth)``, into ``out``:
    ``out[e - k0, j]`` (transposed) or ``out[j, e - k0]``."""
    first = k0 // g
    last = (k0 + depth - 1) // g
    for j in range(cols):
        row = data[r0 + j]
        for gi in range(first, last + 1):
            g0 = gi * g
            lo = max(k0, g0) - g0
            hi = min(k0 + depth, g0 + g) - g0
            base = gi * block_bytes
            scale = half(row[base], row[base + 1])
            mn = half(row[base + 2], row[base + 3]) if has_min else np.float32(0.0)
            decode_into(row, base + hdr, lo, hi, g, bits, split, levels, scale, mn, out, j, g0 - k0,
                        transposed)


@njit(parallel=PARALLEL, cache=True)
def _body(x, data, y, M, N, K, Kp, BM, BN, BK, g, bits, split, has_min, hdr, block_bytes, levels,
          execute, ids, counters, x_bits, gemm, bias, res, code, consts, n_slots, out_slot, flops, bias_slot, res_slot):
    m = 1 if has_min else 0
    for row in prange(len(ids)):                   # every block, or one per class (counting)
        r0, c0, rows, cols = block_tile(ids[row], BM, BN, M, N)     # this block's tile of y
        xs = np.zeros((extent(BM, execute), extent(BK, execute)), dtype=np.float32)    # (BM, BK) SRAM
        ws = np.zeros((extent(BK, execute), extent(BN, execute)), dtype=np.float32)    # (BK, BN) SRAM
        acc = np.zeros((extent(BM, execute), extent(BN, execute)), dtype=np.float32)   # (BM, BN) fp32
        for k0 in range(0, Kp, BK):
            depth = min(BK, Kp - k0)
            valid = max(0, min(depth, K - k0))
            if execute and depth < BK:
                ws[:] = 0.0
            if execute and valid < BK:
                xs[:] = 0.0
            load_tile(x, r0, k0, rows, valid, xs, execute, counters, row, 0, x_bits)
            first, last, headers = tile_groups(k0, depth, g)
            packed = cols * (depth * bits // 8 + headers * hdr)
            count_load_bytes(packed, counters, row, 1)                     # packed W tile -> SRAM
            counters[row, SRAM_READ] += packed                             # ... read to dequantize
            counters[row, SRAM_WRITE] += tile_bytes(depth * cols, x_bits)  # the dequantized tile
            count_vector(depth * cols * (1 + m), counters, row)
            count_mma(rows, cols, depth, counters, row, x_bits)
            if execute:
                dequantize_tile(data, c0, cols, k0, depth, g, bits, split, has_min, hdr, block_bytes,
                                levels, ws, True)
                mma_acc(xs, ws, acc, gemm)                                 # (BM, BK) @ (BK, BN)
        finish_tile(acc, rows, cols, r0, c0, M, N, bias, res, code, consts, n_slots, out_slot, flops,
                    bias_slot, res_slot, execute, counters, row, x_bits)       # the epilogue, if any
        store_tile(acc, rows, cols, y, r0, c0, execute, counters, row, x_bits)


def matmul_sram_tiles(bm: int, bn: int, bk: int, lay, dtype: str, has_bias: bool = False,
                      has_residual: bool = False) -> dict:
    """The tiles of one block. An epilogue's bias and residual tiles are loaded after the K loop,
    into the SRAM of the x and W tiles (dead by then); only what exceeds them is extra."""
    tiles = {
        "x tile": ((bm, bk), dtype),
        "packed W tile": ((packed_tile_bytes(bn, bk, lay),), "int8"),
        "W tile (dequantized)": ((bk, bn), dtype),
        "C accumulator": ((bm, bn), "fp32"),
    }
    extra = (nbytes(bn * has_bias + bm * bn * has_residual, dtype)
             - nbytes(bm * bk + bk * bn, dtype) - packed_tile_bytes(bn, bk, lay))
    if extra > 0:
        tiles["bias/residual tiles beyond the x and W buffers"] = ((extra,), "int8")
    return tiles


def choose_tiles(call, unit: int, has_bias: bool = False, has_residual: bool = False) -> tuple[int, int, int]:
    """Default (BM, BN, BK): up to 64 x 64 output tiles and K tiles of ~64 weights, shrunk to fit
    SRAM; at small batch, BN narrows (down to 16) until the grid has a block for every SM."""
    dev = current_profile().device
    bk = min(max(unit, 64 // unit * unit), call.lay.padded_k)     # padded_k is a multiple of unit
    bm, bn, bk = fit_tiles(lambda bm, bn, bk: _sram(bm, bn, bk, call, has_bias, has_residual), min(64, call.m),
                           min(64, call.n), bk, unit, dev.sram_per_sm)
    while bn > 16 and ceil_div(call.m, bm) * ceil_div(call.n, bn) < dev.sm_count:
        bn //= 2
    return bm, bn, bk


def _sram(bm, bn, bk, call, has_bias=False, has_residual=False) -> int:
    return sum(nbytes(math.prod(shape), dt)
               for shape, dt in matmul_sram_tiles(bm, bn, bk, call.lay, call.dtype, has_bias, has_residual).values())


def quantized_matmul(x, qweight, *, bias=None, activation: "str | None" = None, residual=None,
                     epilogue: "Program | None" = None, dtype: str = "fp16", block_m: "int | None" = None,
                     block_n: "int | None" = None, block_k: "int | None" = None):
    """y = act(x @ W^T + bias) + residual for x (M, K) and a quantized W (N, K); returns (M, N).

    W's packed bytes are read from HBM and dequantized tile by tile in SRAM.
    ``bias`` (N,), ``activation`` (a one-operand op name: 'gelu', 'relu', 'silu' ...),
    ``residual`` (M, N), or ``epilogue``, any op program over (acc, bias?, residual?):
    applied to each output tile before its store (see ``fusion.epilogue_tile``).
    ``block_k`` must be a multiple of the group size. Records one kernel.
    """
    call = prepare(x, qweight, dtype, "quantized_matmul")
    epi = Epilogue.prepare("quantized_matmul", bias, residual, activation, epilogue, call.m, call.n, call.dtype,
                           call.execute)
    has_b, has_r = epi.bias is not None, epi.residual is not None
    lay = call.lay
    g, nbits, split, has_min, hdr, block_bytes, levels = call.scheme_args()
    unit = k_unit(lay, split)
    auto = choose_tiles(call, unit, has_b, has_r)
    bm = block_size(block_m, "block_m", auto[0])
    bn = block_size(block_n, "block_n", auto[1])
    bk = check_block_k(block_size(block_k, "block_k", auto[2]), lay, split, "quantized_matmul")
    dev = current_profile().device
    sram = check_tiles(dev, matmul_sram_tiles(bm, bn, bk, lay, call.dtype, has_b, has_r), kernel="quantized_matmul",
                       suggest=lambda: "Tiles that fit: block_m={}, block_n={}, block_k={}".format(*auto))
    grid = (ceil_div(call.m, bm), ceil_div(call.n, bn))
    x_data = input_array(call.x.data)
    gemm = sgemm()                       # load SciPy's BLAS first, so blas_single_thread pins it too
    rows, cols = np.divmod(np.arange(grid[0] * grid[1]), grid[1])

    def args(out, ids, counters):
        return (x_data, call.weight_bytes(), out, call.m, call.n, call.k, lay.padded_k, bm, bn, bk, g, nbits,
                split, has_min, hdr, block_bytes, levels, call.execute, ids, counters, call.elem_bits, gemm,
                *epi.args(call.execute))

    with blas_single_thread():
        return run(call, "quantized_matmul", _body, grid, sram, (call.m, call.n), args,
                   panels={0: rows, 1: cols, **({2: cols} if has_b else {})}, extras=epi.operands())
