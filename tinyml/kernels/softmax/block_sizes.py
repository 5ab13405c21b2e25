"""Choosing softmax block sizes from the device's SRAM.

A softmax block owns ``block_rows`` (BR) rows. v1 and v2 stream each row
through SRAM in tiles of ``block_cols`` (BC) elements; v3 keeps its rows whole
(BC = C, the row length). On chip a block keeps::

    x tile           (BR, BC) in the logical dtype     (v3: "x rows", (BR, C))
    row max m        (BR,)    fp32
    row sum d        (BR,)    fp32

so it needs ``BR * BC * s + 8 * BR`` bytes. Softmax is memory-bound and its HBM
bytes do not depend on the block sizes (only v2's rescale FLOPs do, a little):
the tiles only split the work into blocks. The default aims at tiles of
``TILE_ELEMS`` = 1024 elements (a 1024-thread CUDA block, one element per
thread): BC is the power of two covering the row, at most 1024, and BR fills the
rest; both are halved (BR first) until the tiles fit one SM's SRAM.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...sim import Device, bits, check_tiles, nbytes, tiles_bytes

TILE_ELEMS = 1024
STATS_BYTES = 8          # fp32 row max + fp32 row sum, per row


@dataclass(frozen=True)
class SoftmaxTiles:
    block_rows: int
    block_cols: int
    whole_rows: bool = False        # v3: block_cols is the row length

    def sram_tiles(self, dtype: str) -> dict:
        """The tiles one block keeps in SRAM: {name: (shape, logical dtype)}."""
        name = "x rows" if self.whole_rows else "x tile"
        return {
            name: ((self.block_rows, self.block_cols), dtype),
            "row max m": ((self.block_rows,), "fp32"),
            "row sum d": ((self.block_rows,), "fp32"),
        }

    def sram_bytes(self, dtype: str) -> int:
        return tiles_bytes(self.sram_tiles(dtype))


def pow2_at_least(n: int) -> int:
    """The smallest power of two >= n (n >= 1)."""
    return 1 << (int(n) - 1).bit_length()


def longest_row(device: Device, dtype: str) -> int:
    """The longest row one v3 block can keep in SRAM (one row per block), in elements."""
    budget = device.sram_per_sm - STATS_BYTES
    return max(0, 8 * budget // bits(dtype))


def choose_tiles(device: Device, rows: int, cols: int, dtype: str, *, whole_rows: bool = False,
                 kernel: str = "softmax") -> SoftmaxTiles:
    """Default block sizes (see the module docstring). ``whole_rows``: v3's tiles.

    Raises :class:`~tinyml.sim.SramOverflowError` if not even one row (v3) or one
    element (v1, v2) fits.
    """
    bc = cols if whole_rows else min(pow2_at_least(cols), TILE_ELEMS)
    br = min(pow2_at_least(rows), max(1, TILE_ELEMS // pow2_at_least(bc)))
    while True:
        t = SoftmaxTiles(br, bc, whole_rows)
        if t.sram_bytes(dtype) <= device.sram_per_sm:
            return t
        if br > 1:
            br //= 2
        elif not whole_rows and bc > 1:
            bc //= 2
        else:
            check_tiles(device, t.sram_tiles(dtype), kernel=kernel,
                        suggest=lambda: _too_long(device, cols, dtype))
            return t            # unreachable: check_tiles raised


def _too_long(device: Device, cols: int, dtype: str) -> str:
    longest = longest_row(device, dtype)
    return (f"A row of {cols:,} {dtype} elements takes {nbytes(cols, dtype):,} bytes (plus {STATS_BYTES} "
            f"for its max and sum), so not even one row fits: the longest row softmax_v3 can keep in "
            f"{device.name}'s {device.sram_per_sm:,}-byte SRAM is {longest:,} elements. Use version=2 "
            f"(online softmax), which streams rows through SRAM in tiles and fits any row length")


def check_softmax_tiles(device: Device, tiles: SoftmaxTiles, rows: int, cols: int, dtype: str,
                        kernel: str) -> int:
    """SRAM bytes of the tiles, or SramOverflowError saying what would fit."""
    def suggest() -> str:
        if tiles.whole_rows and SoftmaxTiles(1, cols, True).sram_bytes(dtype) > device.sram_per_sm:
            return _too_long(device, cols, dtype)
        t = choose_tiles(device, rows, cols, dtype, whole_rows=tiles.whole_rows)
        sizes = f"block_rows={t.block_rows}" if tiles.whole_rows else \
            f"block_rows={t.block_rows}, block_cols={t.block_cols}"
        return f"Tiles that fit: {sizes} ({t.sram_bytes(dtype):,} bytes); or omit the block sizes to let tinyml choose"

    return check_tiles(device, tiles.sram_tiles(dtype), kernel=kernel, suggest=suggest)
