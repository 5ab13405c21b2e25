"""Fused layernorm over the last axis vs its op-by-op baseline.

    y = (x - mean) / sqrt(var + eps) * gamma + beta,   mean and var over each row of x (R, C)

``layernorm_fused``: a block keeps ``BR`` whole rows in SRAM with gamma and
beta, computes the statistics on chip in two passes over SRAM (the mean, then
the variance of the centred row, which is exact where one-pass E[x^2] - E[x]^2
cancels), normalizes in place and stores once. With ``return_stats=True`` it
also writes each row's mean and rstd = 1 / sqrt(var + eps) in fp32, as
PyTorch's kernel saves them for the backward pass.

Tile loop::

    for each block b in parallel:                    # grid ceil(R/BR)
        t = load x[rows of b, :]                     # HBM -> SRAM, once
        g, bt = load gamma, beta                     # once per block
        for each row i:
            mu = sum(t[i]) / C                       # pass 1 over SRAM
            t[i] -= mu;  var = sum(t[i]^2) / C       # pass 2, centred in place
            rs = rsqrt(var + eps)
            t[i] = t[i] * rs * g + bt                # pass 3
        store t -> y[rows of b, :]                   # SRAM -> HBM, once
        (store mu, rs -> mean, rstd)                 # if return_stats, fp32

HBM traffic (``s`` bytes per element)::

    reads  = R C s + 2 C s ceil(R / BR)              x once; gamma and beta once per block
    writes = R C s  (+ 8 R with return_stats)
    vector FLOPs = 7 R C + 5 R   (add; sub, square, add; mul, mul, add per element;
                                  two divides, + eps and rsqrt (2) per row)

``layernorm_unfused`` is the same math as nine eager kernels, each a round trip
through HBM (``BMe`` is the elementwise kernel's default block rows, see
elementwise.py; ``m``, ``v`` are (R, 1))::

    m  = x.mean(-1)         reduce_mean       reads R C        writes R
    xc = x - m              elementwise_sub   reads R C + R    writes R C
    sq = xc * xc            elementwise_square reads R C       writes R C
    v  = sq.mean(-1)        reduce_mean       reads R C        writes R
    ve = v + eps            elementwise_add   reads R          writes R
    rs = rsqrt(ve)          elementwise_rsqrt reads R          writes R
    xn = xc * rs            elementwise_mul   reads R C + R    writes R C
    yg = xn * gamma         elementwise_mul   reads R C + ceil(R/BMe) C   writes R C
    y  = yg + beta          elementwise_add   reads R C + ceil(R/BMe) C   writes R C

    reads  = (7 R C + 4 R + 2 C ceil(R / BMe)) s
    writes = (5 R C + 4 R) s
    vector FLOPs = 7 R C + 5 R   (the same arithmetic)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import FLOAT_DTYPES, DTypeError, ShapeError, bits, check_tiles, current_profile, nbytes, tiles_bytes
from ...sim.counters import new_counters
from ...sim.tiles import count_store_direct, count_vector, load_tile, store_tile
from .._classes import blocks_to_walk, launch_counters
from .._contract import block_size, ceil_div, operand, same_mode
from .._counting import extent, input_array, stand_in
from .elementwise import fused_elementwise, pow2
from .errors import FusionError
from .reduce import row_reduce

TILE_ELEMS = 1024


@njit(parallel=PARALLEL, cache=True)
def _body(x, gamma, beta, y, mean_out, rstd_out, R, C, BR, eps, save, execute, ids, counters, elem_bits):
    for row in prange(len(ids)):                 # every block, or one per class (counting)
        r0 = ids[row] * BR
        rows = min(BR, R - r0)
        t = np.empty((extent(BR, execute), extent(C, execute)), dtype=np.float32)     # (BR, C) SRAM
        g = np.empty((1, extent(C, execute)), dtype=np.float32)                      # (1, C) SRAM
        bt = np.empty((1, extent(C, execute)), dtype=np.float32)                     # (1, C) SRAM
        load_tile(x, r0, 0, rows, C, t, execute, counters, row, 0, elem_bits)
        load_tile(gamma, 0, 0, 1, C, g, execute, counters, row, 1, elem_bits)
        load_tile(beta, 0, 0, 1, C, bt, execute, counters, row, 2, elem_bits)
        count_vector(7 * rows * C + 5 * rows, counters, row)
        if execute:
            inv_c = np.float32(1.0) / np.float32(C)
            for i in range(rows):
                acc = np.float32(0.0)
                for j in range(C):
                    acc += t[i, j]
                mu = acc * inv_c
                acc = np.float32(0.0)
                for j in range(C):
                    d = t[i, j] - mu
                    t[i, j] = d
                    acc += d * d
                rs = np.float32(1.0) / np.sqrt(acc * inv_c + eps)
                for j in range(C):
                    t[i, j] = t[i, j] * rs * g[0, j] + bt[0, j]
                if save:
                    mean_out[r0 + i] = mu
                    rstd_out[r0 + i] = rs
        store_tile(t, rows, C, y, r0, 0, execute, counters, row, elem_bits)
        if save:
            count_store_direct(2 * rows, counters, row, 32)        # mean and rstd, fp32


@dataclass(frozen=True)
class LayernormTiles:
    block_rows: int
    cols: int

    def sram_tiles(self, dtype: str) -> dict:
        return {"x rows": ((self.block_rows, self.cols), dtype), "gamma": ((self.cols,), dtype),
                "beta": ((self.cols,), dtype), "mean, rstd": ((2, self.block_rows), "fp32")}


def expected_bytes_fused(r: int, c: int, elem_bytes: float, block_rows: int,
                         return_stats: bool = False) -> tuple[float, float]:
    """(HBM read bytes, HBM write bytes) of ``layernorm_fused``, from the formula above."""
    return r * c * elem_bytes + 2 * c * elem_bytes * ceil_div(r, block_rows), r * c * elem_bytes + 8 * r * return_stats


def expected_bytes_unfused(r: int, c: int, elem_bytes: float, block_m: int) -> tuple[float, float]:
    """(HBM read bytes, HBM write bytes) of ``layernorm_unfused`` (``block_m``: the elementwise BMe)."""
    return (7 * r * c + 4 * r + 2 * c * ceil_div(r, block_m)) * elem_bytes, (5 * r * c + 4 * r) * elem_bytes


def _validate(x, gamma, beta, eps, dtype, kernel):
    try:
        X = operand(x, "x", ndim=2, dtype=dtype, allowed=FLOAT_DTYPES)
    except ShapeError as err:
        raise ShapeError(f"{kernel}: {err}. Layernorm runs over the last axis of a (rows, cols) matrix; "
                         f"for more dimensions pass x.reshape(-1, x.shape[-1])") from None
    c = X.shape[1]
    G = operand(gamma, "gamma", ndim=1, dtype=dtype, allowed=FLOAT_DTYPES)
    B = operand(beta, "beta", ndim=1, dtype=dtype, allowed=FLOAT_DTYPES)
    for op in (G, B):
        if op.shape != (c,):
            raise ShapeError(f"{kernel}: {op.name} must have shape ({c},) (one per column of x {X.shape}), "
                             f"got {op.shape}")
        if op.dtype != X.dtype:
            raise DTypeError(f"{kernel}: {op.name} is {op.dtype} but x is {X.dtype}; use one dtype")
    same_mode(X, G, B)
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating)) or not (0 <= eps < math.inf):
        raise FusionError(f"{kernel}: eps must be a finite number >= 0, got {eps!r} (PyTorch's default is 1e-5)")
    return X, G, B


def choose_rows(device, rows: int, cols: int, dtype: str) -> LayernormTiles:
    """About 1024 elements per block, halved until the tiles fit SRAM; SramOverflowError if one row cannot."""
    br = min(pow2(rows), max(1, TILE_ELEMS // pow2(cols)))
    while br > 1 and tiles_bytes(LayernormTiles(br, cols).sram_tiles(dtype)) > device.sram_per_sm:
        br //= 2
    return LayernormTiles(br, cols)


def layernorm_fused(x, gamma, beta, *, eps: float = 1e-5, dtype: str = "fp16", block_rows: "int | None" = None,
                    return_stats: bool = False):
    """Layernorm over the last axis of ``x`` (R, C) in one kernel. See the module docstring.

    Returns y (R, C), or ``(y, mean, rstd)`` (each (R,), fp32) with ``return_stats``.
    Raises :class:`~tinyml.sim.SramOverflowError` if not even one row (plus gamma
    and beta) fits SRAM; ``layernorm_unfused`` fits any row.
    """
    X, G, B = _validate(x, gamma, beta, eps, dtype, "layernorm_fused")
    rows, cols = X.shape
    dev = current_profile().device
    auto = choose_rows(dev, rows, cols, X.dtype)
    tiles = LayernormTiles(block_size(block_rows, "block_rows", auto.block_rows), cols)

    def suggest() -> str:
        one = LayernormTiles(1, cols).sram_tiles(X.dtype)
        if tiles_bytes(one) > dev.sram_per_sm:
            return (f"A row of {cols:,} {X.dtype} elements with gamma and beta takes "
                    f"{nbytes(3 * cols, X.dtype):,} bytes, so not even one row fits; use layernorm_unfused, "
                    f"or a device with more SRAM")
        return f"block_rows={auto.block_rows} fits; or omit block_rows to let tinyml choose"

    sram = check_tiles(dev, tiles.sram_tiles(X.dtype), kernel="layernorm_fused", suggest=suggest)
    prof = current_profile()
    for op in (X, G, B):
        prof.hbm.track(op.obj, op.name, X.dtype)
    ex = X.execute
    y = prof.hbm.new_tensor("y", (rows, cols), X.dtype, ex)
    mean = prof.hbm.new_tensor("mean", (rows,), "fp32", ex) if return_stats else None
    rstd = prof.hbm.new_tensor("rstd", (rows,), "fp32", ex) if return_stats else None
    grid = (ceil_div(rows, tiles.block_rows),)
    ids, run_class, run_length = blocks_to_walk(grid[0], 1, ex)      # counting: the first and the last block
    counters = new_counters(len(ids), n_operands=3)
    _body(input_array(X.data), input_array(G.data.reshape(1, -1) if ex else None), input_array(B.data.reshape(1, -1) if ex else None),
          y if ex else stand_in(2), mean if ex and return_stats else stand_in(1), rstd if ex and return_stats else stand_in(1),
          rows, cols, tiles.block_rows, np.float32(eps), return_stats, ex, ids, counters, bits(X.dtype))
    prof.record("layernorm_fused", grid, launch_counters(counters, ex, run_class, run_length), dtype=X.dtype,
                sram_per_block=sram)
    return (y, mean, rstd) if return_stats else y


def layernorm_unfused(x, gamma, beta, *, eps: float = 1e-5, dtype: str = "fp16"):
    """Layernorm as nine eager kernels (see the module docstring); returns y (R, C)."""
    X, G, B = _validate(x, gamma, beta, eps, dtype, "layernorm_unfused")
    dt = X.dtype
    cols = X.shape[1]
    m = row_reduce(X.obj, "mean", dtype=dt)                                                   # (R, 1)
    xc = fused_elementwise(["sub"], [X.obj, m], dtype=dt, block_n=cols, name="elementwise_sub")   # (R, C)
    del m
    sq = fused_elementwise(["square"], [xc], dtype=dt, name="elementwise_square")            # (R, C)
    v = row_reduce(sq, "mean", dtype=dt)                                                      # (R, 1)
    del sq
    ve = fused_elementwise([("add", float(eps))], [v], dtype=dt, name="elementwise_add")     # (R, 1)
    del v
    rs = fused_elementwise(["rsqrt"], [ve], dtype=dt, name="elementwise_rsqrt")              # (R, 1)
    del ve
    xn = fused_elementwise(["mul"], [xc, rs], dtype=dt, block_n=cols, name="elementwise_mul")   # (R, C)
    del xc, rs
    yg = fused_elementwise(["mul"], [xn, G.obj], dtype=dt, name="elementwise_mul")           # (R, C)
    del xn
    return fused_elementwise(["add"], [yg, B.obj], dtype=dt, name="elementwise_add")         # (R, C)
