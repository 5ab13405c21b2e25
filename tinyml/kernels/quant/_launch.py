"""What the quantized kernels share: validation, K-tile rules, launch and recording."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...sim import FLOAT_DTYPES, DTypeError, ShapeError, TileConfigError, bits, current_profile
from ...sim.counters import new_counters
from .._classes import edge_grid, launch_counters
from .._contract import Operand, ceil_div, operand
from .._counting import input_array, stand_in
from .scheme import Layout
from .tensor import QuantizedTensor



@dataclass
class QuantCall:
    """A validated call: y (M x N) = x (M x K) @ W^T, W (N x K) quantized."""

    x: Operand
    w: QuantizedTensor
    m: int
    n: int
    k: int
    dtype: str                 # logical dtype of x and y
    execute: bool

    @property
    def lay(self) -> Layout:
        return self.w.layout

    @property
    def elem_bits(self) -> int:
        return bits(self.dtype)

    def scheme_args(self) -> tuple:
        """(g, bits, split, has_min, header bytes, block bytes, levels) for the Numba bodies."""
        s, lay = self.w.scheme, self.lay
        return (lay.group, lay.bits, bool(s.split_halves), bool(s.has_min), lay.header_bytes,
                lay.block_bytes, self.w.levels())

    def weight_bytes(self) -> np.ndarray:
        return input_array(self.w.data if self.execute else None, 2, np.uint8)


def check_qweight(qweight, kernel: str) -> QuantizedTensor:
    if not isinstance(qweight, QuantizedTensor):
        raise DTypeError(f"{kernel}: qweight must be a QuantizedTensor, got {type(qweight).__name__}; "
                         f"make one with tinyml.kernels.quant.quantize(w, 'q4_0') "
                         f"(or QuantizedTensor.meta(shape, fmt) for counting mode)")
    return qweight


def prepare(x, qweight, dtype: str, kernel: str) -> QuantCall:
    """Validate x (M, K) and the quantized W (N, K)."""
    w = check_qweight(qweight, kernel)
    X = operand(x, "x", ndim=2, dtype=dtype, allowed=FLOAT_DTYPES)
    if X.execute != w.execute:
        raise DTypeError(f"{kernel}: x is {'an array' if X.execute else 'a MetaTensor'} but qweight is "
                         f"{'real' if w.execute else 'shape-only (QuantizedTensor.meta)'}; pass both real "
                         f"to execute or both shape-only to count")
    if X.shape[1] != w.shape[1]:
        raise ShapeError(f"{kernel}: x is {X.shape} (K={X.shape[1]}) but the weight is {w.shape} "
                         f"(N={w.shape[0]}, K={w.shape[1]}); y = x @ W^T needs x's columns == W's columns")
    return QuantCall(X, w, X.shape[0], w.shape[0], X.shape[1], X.dtype, X.execute)


# ---- K tiles -----------------------------------------------------------------------------

def k_unit(lay: Layout, split: bool) -> int:
    """K tiles are multiples of this: whole groups, or (per-row schemes with interleaved
    codes) whole bytes of codes."""
    if lay.per_row and not split:
        return lay.codes_per_byte
    return lay.group


def check_block_k(bk: int, lay: Layout, split: bool, kernel: str) -> int:
    unit = k_unit(lay, split)
    if bk % unit:
        why = ("whole groups" if unit == lay.group else f"whole bytes of {lay.bits}-bit codes")
        raise TileConfigError(
            f"{kernel}: block_k={bk} must be a multiple of {unit} (a K tile holds {why}; the group size "
            f"is {lay.group}); try block_k={max(unit, bk // unit * unit)}")
    return bk


def packed_tile_bytes(bn: int, bk: int, lay: Layout) -> int:
    """Most packed bytes one K tile of ``bn`` rows holds: codes plus the headers of its groups."""
    return bn * (bk * lay.bits // 8 + lay.header_bytes * ceil_div(bk, lay.group))


def expected_gemv_bytes(n: int, k: int, qbytes: int, elem_bytes: float, bn: int) -> tuple[float, float]:
    """(HBM reads before L2 reuse, writes) of quantized_gemv."""
    return qbytes + ceil_div(n, bn) * k * elem_bytes, n * elem_bytes


def expected_matmul_bytes(m: int, n: int, k: int, qbytes: int, elem_bytes: float, bm: int,
                          bn: int) -> tuple[float, float]:
    """(HBM reads before L2 reuse, writes) of quantized_matmul."""
    return ceil_div(n, bn) * m * k * elem_bytes + ceil_div(m, bm) * qbytes, m * n * elem_bytes


def run(call: QuantCall, name: str, body, grid: tuple, sram: int, out_shape: tuple, args,
        panels: "dict | None" = None, n_operands: int = 2, extras=(), issue=None):
    """Register inputs (x, the packed weights and ``extras``: an epilogue's bias / residual operands),
    allocate the output, run ``body(*args(out, ids, counters))`` and record the launch.

    ``ids``: the blocks the body walks, block ``ids[row]`` counting into row ``row``: all of them
    when executing, one per class when counting (:mod:`tinyml.kernels._classes`)."""
    prof = current_profile()
    prof.hbm.track(call.x.obj, "x", call.dtype)
    prof.hbm.track(call.w.storage, "qweight", "int8")
    for op in extras:
        prof.hbm.track(op.obj, op.name, call.dtype)
    out = prof.hbm.new_tensor("y", out_shape, call.dtype, call.execute)
    grid_m, grid_n = (1, int(grid[0])) if len(grid) == 1 else (int(grid[0]), int(grid[1]))
    if call.execute:                 # every block
        ids, run_class, run_length = np.arange(grid_m * grid_n, dtype=np.int64), None, None
    else:                            # one block per class: blocks differ only at the edges
        ids, run_class, run_length = edge_grid(grid_m, grid_n)
    counters = new_counters(len(ids), n_operands=max(n_operands, 4 if extras else 2))
    body(*args(out if call.execute else stand_in(2), ids, counters))
    prof.record(name, grid, launch_counters(counters, call.execute, run_class, run_length), dtype=call.dtype,
                sram_per_block=sram, panels=panels, issue=issue)
    return out


def fit_tiles(sram_of, bm: int, bn: int, bk: int, unit: int, budget: int) -> tuple[int, int, int]:
    """Shrink default tiles until ``sram_of(bm, bn, bk) <= budget``: halve BM/BN down to 8, then
    BK down to one unit, then BM/BN down to 1 (if nothing fits, check_tiles explains)."""
    while sram_of(bm, bn, bk) > budget:
        if max(bm, bn) > 8:
            bm, bn = (max(1, bm // 2), bn) if bm >= bn else (bm, max(1, bn // 2))
        elif bk > unit:
            bk = max(unit, bk // 2 // unit * unit)
        elif max(bm, bn) > 1:
            bm, bn = (max(1, bm // 2), bn) if bm >= bn else (bm, max(1, bn // 2))
        else:
            break
    return bm, bn, bk
