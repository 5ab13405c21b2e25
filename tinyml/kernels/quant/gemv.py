"""Fused dequantize + gemv: y = W x with W read as packed bytes (batch 1, LLM decoding).

At batch 1 every weight is used once, so the kernel is bound by how many bytes
of W it reads: packed int4 moves ~0.28x the bytes of fp16. Each block owns
BN output rows; the weights stream from HBM straight into registers (no reuse,
so no SRAM staging) and are decoded there, nibble by nibble, never written
back as fp16. Per group the scale is applied once to the partial dot product.

Tile loop::

    for each block b in parallel:                     # grid ceil(N / BN)
        acc[0:BN] = 0                                 # fp32 partial sums
        for k0 in range(0, Kp, BK):                   # Kp: K padded to whole groups
            xs = load x[k0 : k0 + BK]                 # HBM -> SRAM, zero past K
            for each row r of the block, each group G in the tile:
                read G's bytes (scale [, min], codes)   # HBM -> registers
                s  = sum_e xs[e] * levels[code_e]     # nibbles decoded inline
                sx = sum_e xs[e]                      # only used with a min
                acc[r] += scale * s + min * sx
        store acc -> y[b*BN : +BN]

HBM traffic (exact; before L2 reuse of x, which every block reads)::

    reads  = qweight.nbytes + ceil(N / BN) * K * s
    writes = N * s
    vector FLOPs = N * (1 + m) * (2 * Kp + 2 * T)

Dequantization instructions (declared as the cost model's ``Issue``, per weight element): one
int -> float conversion of the code (I2F, on the conversion unit: 16 results/clock/SM on A100 and
H100), and for sub-byte codes the unpacking shifts and masks on the INT32 pipe (4-bit: a mask per
nibble and a shift for the high one, 1.5 per element); the FMA with x is among the vector FLOPs.

with ``s`` the bytes per element of x's logical dtype, ``m`` = 1 for schemes
with a min, and ``T`` the (tile, group) pairs of one row: ``Kp / g`` when BK is
a multiple of g, ``ceil(Kp / BK)`` for one group per row split over tiles.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import Issue, MetaTensor, ShapeError, check_tiles, current_profile
from ...sim.tiles import count_load_direct, count_vector, load_tile, store_tile
from .._contract import block_size, ceil_div
from .._counting import extent, input_array
from ..fusion.epilogue_tile import Epilogue, finish_tile
from ..fusion.program import Program
from ._decode import group_dot, half, tile_groups
from ._launch import check_block_k, k_unit, prepare, run

DEFAULT_BLOCK_N = 16


@njit(parallel=PARALLEL, cache=True)
def _body(x, data, y, N, K, Kp, BN, BK, g, bits, split, has_min, hdr, block_bytes, levels,
          execute, ids, counters, x_bits, bias, res, code, consts, n_slots, out_slot, flops, bias_slot, res_slot):
    m = 1 if has_min else 0
    for bi in prange(len(ids)):                    # every block, or one per class (counting)
        blk = ids[bi]
        r0 = blk * BN
        rows = min(BN, N - r0)
        xs = np.zeros((1, extent(BK, execute)), dtype=np.float32)      # (1, BK) SRAM
        acc = np.zeros((1, extent(BN, execute)), dtype=np.float32)     # (1, BN) fp32
        for k0 in range(0, Kp, BK):
            depth = min(BK, Kp - k0)
            valid = max(0, min(depth, K - k0))
            if execute and valid < BK:
                xs[:] = 0.0
            load_tile(x, 0, k0, 1, valid, xs, execute, counters, bi, 0, x_bits)
            first, last, headers = tile_groups(k0, depth, g)
            count_load_direct(rows * (depth * bits // 8 + headers * hdr), counters, bi, 1, 8)
            count_vector(rows * (1 + m) * (2 * depth + 2 * (last - first + 1)), counters, bi)
            if execute:
                xv = xs[0]
                for i in range(rows):
                    row = data[r0 + i]
                    total = np.float32(0.0)
                    for gi in range(first, last + 1):
                        g0 = gi * g
                        lo = max(k0, g0) - g0
                        hi = min(k0 + depth, g0 + g) - g0
                        base = gi * block_bytes
                        scale = half(row[base], row[base + 1])
                        dot, sx = group_dot(row, base + hdr, lo, hi, g, bits, split, levels, xv, g0 - k0)
                        total += scale * dot
                        if has_min:
                            total += half(row[base + 2], row[base + 3]) * sx
                    acc[0, i] += total
        finish_tile(acc, 1, rows, 0, r0, 1, N, bias, res, code, consts, n_slots, out_slot, flops,
                    bias_slot, res_slot, execute, counters, bi, x_bits)       # the epilogue, if any
        store_tile(acc, 1, rows, y, 0, r0, execute, counters, bi, x_bits)


def gemv_sram_tiles(bn: int, bk: int, dtype: str, has_bias: bool = False, has_residual: bool = False) -> dict:
    """The x tile and the partial sums; an epilogue's bias and residual slices (BN each) reuse the
    x tile's SRAM after the K loop, and only what exceeds it is extra."""
    tiles = {"x tile": ((1, bk), dtype), "partial sums": ((bn,), "fp32")}
    extra = bn * (has_bias + has_residual) - bk
    if extra > 0:
        tiles["bias/residual slices beyond the x tile"] = ((extra,), dtype)
    return tiles


def choose_block_k(call, bn: int, unit: int) -> int:
    """The whole padded row if its x tile fits SRAM, else the most whole units that do."""
    dev = current_profile().device
    budget = (dev.sram_per_sm - 4 * bn) * 8 // call.elem_bits
    bk = min(call.lay.padded_k, budget // unit * unit)
    return max(bk, unit)                  # too small a device: check_tiles explains


def quantized_gemv(x, qweight, *, bias=None, activation: "str | None" = None, residual=None,
                   epilogue: "Program | None" = None, dtype: str = "fp16", block_n: "int | None" = None,
                   block_k: "int | None" = None):
    """y = act(W x + bias) + residual for a quantized W (N, K) and x (K,) or (1, K); returns (N,) or (1, N).

    Reads the packed weights once (``qweight.nbytes``) and dequantizes on chip.
    ``bias`` (N,), ``activation``, ``residual`` (shaped like y) or ``epilogue`` (an op
    program over (acc, bias?, residual?)) finish each block's outputs before the store,
    as in :func:`~tinyml.kernels.quant.quantized_matmul`. ``dtype``: logical dtype of x and y.
    ``block_n``: output rows per block (default 16); ``block_k``: K tile, a multiple of the
    group size (default: the whole row if it fits SRAM). Records one kernel in the active Profile.
    """
    x, vector = _as_row(x)
    call = prepare(x, qweight, dtype, "quantized_gemv")
    if residual is not None and vector and len(getattr(residual, "shape", np.shape(residual))) == 1:
        residual, _ = _as_row(residual)                                  # (N,) -> (1, N), like x
    epi = Epilogue.prepare("quantized_gemv", bias, residual, activation, epilogue, 1, call.n, call.dtype,
                           call.execute)
    has_b, has_r = epi.bias is not None, epi.residual is not None
    lay = call.lay
    g, nbits, split, has_min, hdr, block_bytes, levels = call.scheme_args()
    bn = block_size(block_n, "block_n", min(DEFAULT_BLOCK_N, call.n))
    unit = k_unit(lay, split)
    bk = check_block_k(block_size(block_k, "block_k", choose_block_k(call, bn, unit)), lay, split,
                       "quantized_gemv")
    dev = current_profile().device
    sram = check_tiles(dev, gemv_sram_tiles(bn, bk, call.dtype, has_b, has_r), kernel="quantized_gemv",
                       suggest=lambda: f"Try block_k={choose_block_k(call, bn, unit)} or a smaller block_n")
    grid = (ceil_div(call.n, bn),)
    x_data = input_array(call.x.data)

    def args(out, ids, counters):
        y2 = out.reshape(1, call.n) if call.execute else out           # (1, N)
        return (x_data, call.weight_bytes(), y2, call.n, call.k, lay.padded_k, bn, bk, g, nbits, split,
                has_min, hdr, block_bytes, levels, call.execute, ids, counters, call.elem_bits, *epi.args(call.execute))

    return run(call, "quantized_gemv", _body, grid, sram, (call.n,) if vector else (1, call.n), args,
               panels={0: np.zeros(grid[0], np.int64)}, extras=epi.operands(),
               issue=dequant_issue(lay.padded_k, bk, g, nbits, has_min))


def unpack_ints_per_element(nbits: int) -> float:
    """INT32 instructions to pull one ``nbits`` code out of its byte: a mask per code and a shift for
    every code but the lowest (8-bit codes: none, the conversion reads the byte)."""
    per = 8 // nbits
    return 0.0 if nbits >= 8 else (2 * per - 1) / per


def dequant_issue(kp: int, bk: int, g: int, nbits: int, has_min: bool) -> Issue:
    """The gemv's instruction mix per counted vector FLOP: ``Kp`` weight elements per row against the
    row's ``(1 + m) (2 Kp + 2 T)`` vector FLOPs (module doc), one conversion and the unpacking each."""
    t = sum((k0 + min(bk, kp - k0) - 1) // g - k0 // g + 1 for k0 in range(0, kp, bk))   # (tile, group) pairs
    per_flop = kp / ((1 + int(has_min)) * (2 * kp + 2 * t))
    return Issue(cvt_per_vector_flop=per_flop, int_per_vector_flop=unpack_ints_per_element(nbits) * per_flop)


def _as_row(x):
    """x (K,) -> (1, K), remembering it was a vector; (1, K) as is; anything else refused."""
    shape = tuple(getattr(x, "shape", np.shape(x)))
    if len(shape) == 1:
        if isinstance(x, MetaTensor):
            return MetaTensor((1, shape[0]), x.dtype), True
        return np.asarray(x).reshape(1, -1), True
    if len(shape) == 2 and shape[0] != 1:
        raise ShapeError(f"quantized_gemv: x must be (K,) or (1, K), got shape {shape}; "
                         f"for a batch of rows use quantized_matmul")
    return x, False
