"""SRAM capacity: a thread block's tiles must fit in one SM's SRAM."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .device import Device
from .dtypes import nbytes
from .errors import SramOverflowError

#: {tile name: (shape, logical dtype)}
Tiles = Mapping[str, "tuple[tuple[int, ...], str]"]


def tiles_bytes(tiles: Tiles) -> int:
    """Total SRAM bytes of a set of tiles."""
    return sum(nbytes(int(np.prod(shape)), dtype) for shape, dtype in tiles.values())


def check_tiles(device: Device, tiles: Tiles, *, kernel: str,
                suggest: Callable[[], str] | None = None) -> int:
    """Return the tiles' SRAM bytes, or raise :class:`SramOverflowError`.

    ``suggest`` returns a sentence naming block sizes that would fit.
    """
    need = tiles_bytes(tiles)
    if need <= device.sram_per_sm:
        return need
    parts = ", ".join(
        f"{name} {'x'.join(map(str, shape))} {dtype} = {nbytes(int(np.prod(shape)), dtype):,} B"
        for name, (shape, dtype) in tiles.items()
    )
    hint = suggest() if suggest else "use smaller block sizes"
    raise SramOverflowError(
        f"{kernel}: the tiles of one thread block need {need:,} bytes of SRAM but an SM of "
        f"{device.name} has {device.sram_per_sm:,} bytes ({parts}). {hint}."
    )
