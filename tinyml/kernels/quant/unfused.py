"""The unfused baseline: dequantize W to fp16 in HBM, then an ordinary matmul reads it.

This is what a framework without a fused kernel does: kernel 1 reads the
packed weights and *writes* the full-precision W; kernel 2 (the tiled matmul
of :mod:`tinyml.kernels.matmul`) reads that W back. Compared with the fused
kernels it moves ``2 * N * K * s`` extra bytes (one write, at least one read),
so at batch 1 it is slower than not quantizing at all.

``dequantize_kernel`` tile loop::

    for each block (bj, bk) in parallel:              # grid ceil(N/BN) x ceil(Kp/BK)
                                                      # (counting: one block per class, _classes.head_edge_grid)
        ps = load packed W[bj*BN : +BN, tile bk]      # HBM -> SRAM
        ws = dequantize(ps)                           # (BN, BK) or (BK, BN) in SRAM
        store ws -> W[...]                            # SRAM -> HBM, padding dropped

HBM traffic (exact): reads = qweight.nbytes, writes = N * K * s;
vector FLOPs = N * K * (1 + m) (``m`` = 1 for schemes with a min).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import (FLOAT_DTYPES, DTypeError, MetaTensor, ShapeError, bits, canonical, check_tiles,
                   current_profile, tiles_bytes)
from ...sim.counters import SRAM_READ, new_counters
from ...sim.tiles import count_vector, store_tile
from .._classes import blocks_to_walk, head_edge_grid, launch_counters
from .._contract import block_size, ceil_div
from .._counting import extent, stand_in
from ..matmul import matmul
from ._decode import count_load_bytes, tile_groups
from ._launch import (check_block_k, check_qweight, fit_tiles, k_unit,
                      packed_tile_bytes)
from .matmul import dequantize_tile

DEFAULT_BLOCK_N = 32


@njit(parallel=PARALLEL, cache=True)
def _body(data, out, N, K, Kp, BN, BK, g, bits, split, has_min, hdr, block_bytes, levels, transposed,
          execute, ids, counters, out_bits):
    gk = (Kp + BK - 1) // BK
    m = 1 if has_min else 0
    for row in prange(len(ids)):                    # block ids[row] counts into row ``row``
        blk = ids[row]
        c0 = (blk // gk) * BN
        k0 = (blk % gk) * BK
        cols = min(BN, N - c0)
        depth = min(BK, Kp - k0)
        valid = max(0, min(depth, K - k0))
        if transposed:
            ws = np.zeros((extent(BK, execute), extent(BN, execute)), dtype=np.float32)   # (BK, BN) SRAM
        else:
            ws = np.zeros((extent(BN, execute), extent(BK, execute)), dtype=np.float32)   # (BN, BK) SRAM
        first, last, headers = tile_groups(k0, depth, g)
        packed = cols * (depth * bits // 8 + headers * hdr)
        count_load_bytes(packed, counters, row, 0)
        counters[row, SRAM_READ] += packed
        count_vector(cols * valid * (1 + m), counters, row)
        if execute:
            dequantize_tile(data, c0, cols, k0, depth, g, bits, split, has_min, hdr, block_bytes, levels, ws,
                            transposed)
        if transposed:
            store_tile(ws, valid, cols, out, k0, c0, execute, counters, row, out_bits)
        else:
            store_tile(ws, cols, valid, out, c0, k0, execute, counters, row, out_bits)


def dequantize_kernel(qweight, *, dtype: str = "fp16", transposed: bool = False,
                      block_n: "int | None" = None, block_k: "int | None" = None):
    """Write W (N, K), or W^T (K, N) with ``transposed``, to HBM in ``dtype``.

    Returns a float32 array holding the dequantized values (a MetaTensor in
    counting mode). Records one kernel in the active Profile.
    """
    w = check_qweight(qweight, "dequantize_kernel")
    dtype = canonical(dtype, FLOAT_DTYPES)
    lay, sch = w.layout, w.scheme
    unit = k_unit(lay, sch.split_halves)
    dev = current_profile().device

    def tiles(bn, bk):
        return {"packed W tile": ((packed_tile_bytes(bn, bk, lay),), "int8"),
                "W tile": ((bk, bn) if transposed else (bn, bk), dtype)}

    _, auto_n, auto_k = fit_tiles(lambda _, bn, bk: tiles_bytes(tiles(bn, bk)), 1,
                                  min(DEFAULT_BLOCK_N, w.shape[0]), min(max(unit, 64 // unit * unit), lay.padded_k),
                                  unit, dev.sram_per_sm)
    bn = block_size(block_n, "block_n", auto_n)
    bk = check_block_k(block_size(block_k, "block_k", auto_k), lay, sch.split_halves, "dequantize_kernel")
    sram = check_tiles(dev, tiles(bn, bk), kernel="dequantize_kernel",
                       suggest=lambda: f"Tiles that fit: block_n={auto_n}, block_k={auto_k}")
    n, k = w.shape
    grid = (ceil_div(n, bn), ceil_div(lay.padded_k, bk))
    prof = current_profile()
    prof.hbm.track(w.storage, "qweight", "int8")
    out = prof.hbm.new_tensor("w_dequant", (k, n) if transposed else (n, k), dtype, w.execute)
    # counting: one block per class; blocks differ in the last tile row, the last K tile (partial,
    # padding) and the first K tile (a per-row scheme's one header is read by tile 0 only)
    ids, run_class, run_length = blocks_to_walk(grid[0], grid[1], w.execute, head_edge_grid)
    counters = new_counters(len(ids), n_operands=1)
    _body(w.data if w.execute else stand_in(2, np.uint8), out if w.execute else stand_in(2), n, k, lay.padded_k, bn, bk,
          lay.group, lay.bits, bool(sch.split_halves), bool(sch.has_min), lay.header_bytes, lay.block_bytes,
          w.levels(), bool(transposed), w.execute, ids, counters, bits(dtype))
    prof.record("dequantize", grid, launch_counters(counters, w.execute, run_class, run_length), dtype=dtype, sram_per_block=sram)
    return out


def unfused_quantized_matmul(x, qweight, *, dtype: str = "fp16", **block_sizes):
    """y = x @ W^T the unfused way: ``dequantize_kernel`` writes W^T (K, N) in ``dtype``
    to HBM, then ``tinyml.kernels.matmul.matmul`` (v3) reads it. Records two kernels;
    ``block_sizes`` go to the matmul."""
    w = check_qweight(qweight, "unfused_quantized_matmul")
    if hasattr(x, "shape") and len(x.shape) == 2 and x.shape[1] != w.shape[1]:
        raise ShapeError(f"unfused_quantized_matmul: x is {tuple(x.shape)} (K={x.shape[1]}) but the weight is "
                         f"{w.shape}; y = x @ W^T needs x's columns == W's columns")
    if isinstance(x, MetaTensor) == w.execute:
        raise DTypeError(f"unfused_quantized_matmul: x is {'a MetaTensor' if isinstance(x, MetaTensor) else 'data'} "
                         f"but qweight is {'real' if w.execute else 'shape-only'}; pass both real to execute "
                         f"or both shape-only to count")
    if isinstance(x, MetaTensor):
        dtype = x.dtype                # a MetaTensor's own logical dtype wins, as in every kernel
    wt = dequantize_kernel(w, dtype=dtype, transposed=True)          # (K, N) in HBM
    return matmul(x, wt, version=3, dtype=dtype, **block_sizes)
