"""What every softmax version shares: validation, block sizes, HBM allocation, launch, recording."""

from __future__ import annotations

from dataclasses import dataclass

from ...sim import FLOAT_DTYPES, ShapeError, bits, current_profile
from ...sim.counters import new_counters
from .._classes import blocks_to_walk, launch_counters
from .._contract import Operand, block_size, ceil_div, operand, refuse_nonfinite
from .._counting import stand_in
from .block_sizes import SoftmaxTiles, check_softmax_tiles, choose_tiles



@dataclass
class SoftmaxCall:
    """A validated softmax call: y (R x C) = softmax of each row of x (R x C)."""

    x: Operand
    rows: int
    cols: int
    dtype: str
    execute: bool

    @property
    def elem_bits(self) -> int:
        return bits(self.dtype)


def prepare(x, dtype: str, kernel: str) -> SoftmaxCall:
    """Validate ``x``: a 2-D (rows, cols) array or MetaTensor; ``-inf`` allowed, NaN and ``+inf`` not
    (nor a float64 beyond float32's range: the shared operand check refuses it)."""
    try:
        X = operand(x, "x", ndim=2, dtype=dtype, allowed=FLOAT_DTYPES, check_finite=False)
    except ShapeError as err:
        raise ShapeError(f"{kernel}: {err}. Softmax runs over the last axis of a (rows, cols) matrix; "
                         f"for more dimensions pass x.reshape(-1, x.shape[-1])") from None
    if X.execute:
        refuse_nonfinite(X.obj, X.data, "x", allow=("-inf",),
                         fix="A -inf masks an entry (its probability is 0); NaN and +inf have no softmax. "
                             "Clean the input first, e.g. np.nan_to_num(x, nan=-np.inf).")
    return SoftmaxCall(X, X.shape[0], X.shape[1], X.dtype, X.execute)


def resolve_tiles(call: SoftmaxCall, block_rows, block_cols, kernel: str,
                  whole_rows: bool = False) -> tuple[SoftmaxTiles, int]:
    """Block sizes (given, or chosen from SRAM) and their SRAM bytes.

    ``whole_rows`` (v3): a block keeps its rows whole, so block_cols is the row length.
    """
    dev = current_profile().device
    br = None if block_rows is None else block_size(block_rows, "block_rows", 1)
    bc = call.cols if whole_rows else (None if block_cols is None else block_size(block_cols, "block_cols", 1))
    if br is None or bc is None:
        auto = choose_tiles(dev, call.rows, call.cols, call.dtype, whole_rows=whole_rows, kernel=kernel)
        br = auto.block_rows if br is None else br
        bc = auto.block_cols if bc is None else bc
    tiles = SoftmaxTiles(br, bc, whole_rows)
    return tiles, check_softmax_tiles(dev, tiles, call.rows, call.cols, call.dtype, kernel)


def run(call: SoftmaxCall, name: str, body, tiles: SoftmaxTiles, sram_per_block: int):
    """Allocate y, run ``body`` over the grid of row blocks, record the launch; returns y.

    ``body`` walks the blocks ``ids`` (all of them when executing, one per class when
    counting: :mod:`tinyml.kernels._classes`), block ``ids[row]`` counting into row ``row``."""
    prof = current_profile()
    prof.hbm.track(call.x.obj, "x", call.dtype)
    y = prof.hbm.new_tensor("y", (call.rows, call.cols), call.dtype, call.execute)
    grid = (ceil_div(call.rows, tiles.block_rows),)
    ids, run_class, run_length = blocks_to_walk(grid[0], 1, call.execute)   # counting: the first and the last block
    counters = new_counters(len(ids), n_operands=1)
    x_data = call.x.data if call.execute else stand_in(2)
    y_data = y if call.execute else stand_in(2)
    body(x_data, y_data, call.rows, call.cols, tiles.block_rows, tiles.block_cols, call.execute, ids, counters,
         call.elem_bits)
    prof.record(name, grid, launch_counters(counters, call.execute, run_class, run_length), dtype=call.dtype,
                sram_per_block=sram_per_block)
    return y
