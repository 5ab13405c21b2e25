"""Row tiles for standard attention's elementwise and row kernels (mask, softmax, dropout).

These kernels stream (B, H, Nq, Nk) matrices: a thread block owns BR rows of one
(batch, head) and walks them in column chunks of BC, staging each (BR, BC)
tile in SRAM. The tiles are chosen to fit a quarter of an SM's SRAM
(``SRAM_SHARE``), so four blocks stay resident per SM to hide HBM latency:

* BC = Nk when a whole row fits (one chunk: softmax reads each row once),
  else the largest power of two that fits (a long row is streamed in chunks;
  softmax then needs two passes over it, see ``standard_softmax``);
* BR = the largest power of two up to ``MAX_BLOCK_ROWS`` (and not beyond the
  row count) whose tiles fit.

Either can be given by the caller; given sizes are checked against the whole
SRAM of an SM (``SramOverflowError`` suggests sizes that fit).

Every block of the (B*H, ceil(Nq/BR)) grid moves the same bytes except the last
row block of each (batch, head) when BR does not divide Nq (the mask's
visibility and dropout's keep bits change values, never counts), so counting
mode walks one interior and one last row block (:func:`~tinyml.kernels._classes.edge_grid`)
and a body writes block ``ids[row]``'s counts into row ``row``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...sim.jit import njit
from ...sim import check_tiles, current_profile, tiles_bytes
from ...sim.counters import new_counters
from .._classes import blocks_to_walk, launch_counters
from .._contract import block_size, ceil_div

SRAM_SHARE = 4
MAX_BLOCK_ROWS = 64


@dataclass(frozen=True)
class RowTiles:
    block_rows: int
    block_cols: int
    sram_bytes: int

    def chunks(self, n_cols: int) -> int:
        """Column chunks per row; 1 means a whole row is on chip at once."""
        return ceil_div(n_cols, self.block_cols)


def _pow2_at_most(x: int) -> int:
    return 1 << (max(1, int(x)).bit_length() - 1)


def row_tiles(n_rows: int, n_cols: int, tiles, kernel: str, block_rows=None, block_cols=None) -> RowTiles:
    """Pick (or check) BR x BC for a row kernel whose SRAM tiles are ``tiles(br, bc)``
    ({name: (shape, dtype)}, as for :func:`tinyml.sim.check_tiles`)."""
    dev = current_profile().device
    budget = dev.sram_per_sm // SRAM_SHARE
    if tiles_bytes(tiles(1, 1)) > budget:
        budget = dev.sram_per_sm                   # a tiny device: use all of it
    fits = lambda br, bc: tiles_bytes(tiles(br, bc)) <= budget  # noqa: E731

    def auto_cols(br: int) -> int:
        if fits(br, n_cols):
            return n_cols
        bc = _pow2_at_most(n_cols)
        while bc > 1 and not fits(br, bc):
            bc //= 2
        return bc

    def auto_rows(bc: int) -> int:
        br = min(MAX_BLOCK_ROWS, 1 << max(0, int(n_rows - 1).bit_length()))
        while br > 1 and not fits(br, bc):
            br //= 2
        return br

    br = block_size(block_rows, "block_rows", 1)
    bc = block_size(block_cols, "block_cols", auto_cols(br))
    if block_rows is None:
        br = auto_rows(bc)

    def suggest() -> str:
        bc1 = auto_cols(1)
        return (f"Tiles that fit: block_rows={auto_rows(bc1)}, block_cols={bc1}; "
                f"or omit the block sizes to let tinyml choose")

    need = check_tiles(dev, tiles(br, bc), kernel=kernel, suggest=suggest)
    return RowTiles(br, bc, need)


def run_rows(name: str, body, args: tuple, shape: tuple, tiles: RowTiles, dtype: str, *, execute: bool,
             n_operands: int, batch_panel: int | None = None):
    """Run a row kernel over a (B*H, ceil(Nq/BR)) grid and record it.

    ``body(*args, BR, BC, ids, counters)`` walks the blocks ``ids`` (every block when executing,
    one per class when counting: module docstring), block ``ids[row]`` counting into row ``row``.
    ``batch_panel``: the operand index every block
    of one batch reads in full (the key padding mask), declared as an L2 panel.
    """
    b, h, nq, _ = shape
    grid = (b * h, ceil_div(nq, tiles.block_rows))
    ids, run_class, run_length = blocks_to_walk(grid[0], grid[1], execute)
    counters = new_counters(len(ids), n_operands=n_operands)
    body(*args, tiles.block_rows, tiles.block_cols, ids, counters)
    panels = None
    if batch_panel is not None:
        panels = {batch_panel: np.arange(grid[0] * grid[1]) // (h * grid[1])}
    current_profile().record(name, grid, launch_counters(counters, execute, run_class, run_length), dtype=dtype,
                             sram_per_block=tiles.sram_bytes, panels=panels)


@njit(cache=True)
def block_rows_of(blk, H, NQ, BR):
    """(batch, head, first row, rows) of row block ``blk``."""
    n_rb = (NQ + BR - 1) // BR
    bh = blk // n_rb
    r0 = (blk % n_rb) * BR
    return bh // H, bh % H, r0, min(BR, NQ - r0)


def new_mask_tensor(name: str, shape: tuple, execute: bool):
    """A 1-byte-per-element tensor (the dropout keep mask) in the HBM ledger."""
    return current_profile().hbm.new_tensor(name, shape, "int8", execute, host_dtype=np.uint8)
