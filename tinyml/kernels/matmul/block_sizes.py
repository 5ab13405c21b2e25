"""Choosing matmul block sizes from the device's SRAM.

A tiled matmul block keeps three tiles on chip: A (BM x BK), B (BK x BN) in the
logical dtype and the fp32 accumulator C (BM x BN). Per step along K it loads
(BM + BN) * BK elements and does 2 * BM * BN * BK FLOPs, so its arithmetic
intensity is 2 * BM * BN / (BM + BN) FLOPs per element loaded (divide by the
element size for FLOPs per byte: BM * BN / (BM + BN) in fp16). Big, square
output tiles win, and SRAM capacity is what stops them growing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ...sim import Device, Profile, SramOverflowError, check_tiles, nbytes, tiles_bytes

SIZES = (16, 32, 64, 128, 256)
DEPTHS = (8, 16, 32, 64, 128)


@dataclass(frozen=True)
class MatmulTiles:
    block_m: int
    block_n: int
    block_k: int

    def sram_tiles(self, dtype: str) -> dict:
        """The tiles one block keeps in SRAM: {name: (shape, logical dtype)}."""
        return {
            "A tile": ((self.block_m, self.block_k), dtype),
            "B tile": ((self.block_k, self.block_n), dtype),
            "C accumulator": ((self.block_m, self.block_n), "fp32"),
        }

    def sram_bytes(self, dtype: str) -> int:
        return tiles_bytes(self.sram_tiles(dtype))


def blocks_time(device, launch, blocks: dict) -> "float | None":
    """Seconds of ``launch(**blocks)`` (one kernel on meta tensors) in a scratch profile on ``device``,
    or None when those tiles overflow its SRAM: how a caller costs block-size candidates (the decode
    step's linears, the compiler's matmuls of few rows) before launching the kernel for real."""
    try:
        with Profile(device) as prof:
            launch(**blocks)
    except SramOverflowError:
        return None
    return prof.time_s


def _cap(dim: int) -> int:
    """Smallest candidate size covering ``dim`` (no 256-wide tile for a 5-wide matrix)."""
    for s in SIZES:
        if s >= dim:
            return s
    return SIZES[-1]


def choose_tiles(device: Device, m: int, n: int, k: int, dtype: str) -> MatmulTiles:
    """The block sizes with the highest arithmetic intensity that fit SRAM.

    Ties go to the deeper K step (fewer, larger tile products), then to the
    smaller SRAM footprint (more resident blocks).
    """
    best = _best_tiles(device.sram_per_sm, _cap(m), _cap(n), max(_cap(k), DEPTHS[0]), dtype)
    if best is None:
        smallest = MatmulTiles(SIZES[0], SIZES[0], DEPTHS[0])
        check_tiles(device, smallest.sram_tiles(dtype), kernel="matmul",
                    suggest=lambda: "This device's SRAM cannot hold even the smallest tiles; use another device")
    return best


@lru_cache(maxsize=None)
def _best_tiles(sram_per_sm: int, max_m: int, max_n: int, max_k: int, dtype: str) -> "MatmulTiles | None":
    """The search behind :func:`choose_tiles` (cached: it runs on every kernel call)."""
    best = None
    for bm in SIZES:
        for bn in SIZES:
            if bm > max_m or bn > max_n:
                continue
            for bk in DEPTHS:
                if bk > max_k:
                    continue
                t = MatmulTiles(bm, bn, bk)
                size = t.sram_bytes(dtype)
                if size > sram_per_sm:
                    continue
                key = (bm * bn / (bm + bn), bk, -size)
                if best is None or key > best[0]:
                    best = (key, t)
    return None if best is None else best[1]


def check_matmul_tiles(device: Device, tiles: MatmulTiles, m: int, n: int, k: int, dtype: str,
                       kernel: str) -> int:
    """SRAM bytes of the tiles, or SramOverflowError suggesting tiles that fit."""
    def suggest() -> str:
        t = choose_tiles(device, m, n, k, dtype)
        return (f"Tiles that fit: block_m={t.block_m}, block_n={t.block_n}, block_k={t.block_k} "
                f"({t.sram_bytes(dtype):,} bytes); or omit the block sizes to let tinyml choose")

    return check_tiles(device, tiles.sram_tiles(dtype), kernel=kernel, suggest=suggest)


def element_bytes(dtype: str) -> float:
    return nbytes(8, dtype) / 8
