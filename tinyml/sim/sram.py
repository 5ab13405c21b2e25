"""On-chip capacity: a thread block's tiles must fit one SM's SRAM and register file.

A tile set is ``{name: (shape, logical dtype)}`` for tiles in SRAM (shared
memory), or ``{name: (shape, dtype, "reg")}`` for tiles a kernel keeps in
registers: the fp32 accumulators a tensor-core MMA writes (a matmul's C tile,
FlashAttention's S and O), which never pass through shared memory on a real
GPU. A device without a register file (``register_bytes = 0``, like
``m2-max``, whose register file Apple does not publish) keeps those in SRAM too.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

from .device import Device
from .dtypes import nbytes
from .errors import SramOverflowError

#: {tile name: (shape, logical dtype)} or {tile name: (shape, logical dtype, "reg")}
Tiles = Mapping[str, tuple]

REG = "reg"


def _bytes(spec: tuple) -> int:
    return nbytes(math.prod(int(s) for s in spec[0]), spec[1])


def _in_registers(spec: tuple) -> bool:
    if len(spec) > 2 and spec[2] not in (REG, "sram"):
        raise ValueError(f"tile location must be 'reg' or 'sram', got {spec[2]!r}")
    return len(spec) > 2 and spec[2] == REG


def tiles_bytes(tiles: Tiles) -> int:
    """Total bytes of a set of tiles, wherever they live."""
    return sum(_bytes(spec) for spec in tiles.values())


def tile_budget(device: Device, tiles: Tiles) -> tuple[int, int]:
    """(SRAM bytes, register bytes) the tiles take on ``device``; register tiles
    count as SRAM on a device without a register file."""
    regs = sum(_bytes(spec) for spec in tiles.values() if _in_registers(spec))
    if device.register_bytes <= 0:
        return tiles_bytes(tiles), 0
    return tiles_bytes(tiles) - regs, regs


def tiles_fit(device: Device, tiles: Tiles) -> bool:
    """True if the tiles fit one SM's SRAM and register file."""
    sram, regs = tile_budget(device, tiles)
    return sram <= device.sram_per_sm and regs <= max(device.register_bytes, 0)


def _listing(tiles: Tiles, registers: bool) -> str:
    return ", ".join(
        f"{name} {'x'.join(map(str, spec[0]))} {spec[1]} = {_bytes(spec):,} B"
        for name, spec in tiles.items() if _in_registers(spec) == registers
    )


def check_tiles(device: Device, tiles: Tiles, *, kernel: str,
                suggest: Callable[[], str] | None = None) -> int:
    """Return the tiles' SRAM bytes, or raise :class:`SramOverflowError`.

    Register tiles are checked against the register file the same way.
    ``suggest`` returns a sentence naming block sizes that would fit.
    """
    sram, regs = tile_budget(device, tiles)
    hint = suggest() if suggest else "use smaller block sizes"
    if sram > device.sram_per_sm:
        parts = _listing(tiles, False)
        if device.register_bytes <= 0 and regs == 0:      # no register file: accumulators are in SRAM too
            parts = ", ".join(p for p in (parts, _listing(tiles, True)) if p)
        raise SramOverflowError(
            f"{kernel}: the tiles of one thread block need {sram:,} bytes of SRAM but an SM of "
            f"{device.name} has {device.sram_per_sm:,} bytes ({parts}). {hint}."
        )
    if regs > device.register_bytes:
        raise SramOverflowError(
            f"{kernel}: the accumulators of one thread block need {regs:,} bytes of registers but an SM of "
            f"{device.name} has a {device.register_bytes:,}-byte register file ({_listing(tiles, True)}). {hint}."
        )
    return sram


def check_registers(device: Device, tiles: Tiles) -> int:
    """Register-file bytes of the tiles on ``device`` (for occupancy); call after :func:`check_tiles`."""
    return tile_budget(device, tiles)[1]
