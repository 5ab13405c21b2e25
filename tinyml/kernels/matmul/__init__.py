"""Matrix multiply in numbered versions: naive -> SRAM-tiled -> tensor-core tiles.

| version | idea                                      | HBM reads (before L2 reuse)             |
|---------|-------------------------------------------|-----------------------------------------|
| v1      | one thread per output, streams from HBM   | `2 M N K s`                             |
| v2      | SRAM tiles, FMA loops on the vector units | `(M K ceil(N/BN) + K N ceil(M/BM)) s`   |
| v3      | SRAM tiles, MMA on tensor cores           | same as v2                              |
| v4      | v3 as shipped: C in registers, pipelined loads, warp tiles | same as v2             |

``s`` is bytes per element of the logical dtype; every version writes ``M N s``.
"""

from __future__ import annotations

from ...sim import TileConfigError
from .tiles import MatmulTiles, choose_tiles
from .v1_naive import matmul_v1
from .v2_tiled import matmul_v2
from .v3_mma import matmul_v3
from .v4_pipelined import matmul_v4

VERSIONS = {1: matmul_v1, 2: matmul_v2, 3: matmul_v3, 4: matmul_v4}
NAMES = {"naive": 1, "v1": 1, "tiled": 2, "v2": 2, "mma": 3, "v3": 3, "pipelined": 4, "v4": 4}


def matmul(a, b, *, version: "int | str" = 3, dtype: str = "fp16", **block_sizes):
    """C = A @ B with the chosen kernel version (1, 2, 3, 4 or 'naive', 'tiled', 'mma', 'pipelined').

    ``a``: (M, K), ``b``: (K, N) NumPy arrays (executing mode) or
    ``tinyml.sim.meta`` tensors (counting mode). ``dtype`` is the logical dtype
    that bytes are counted in. Records one kernel in the active Profile.
    """
    v = NAMES.get(version, version) if isinstance(version, str) else version
    if v not in VERSIONS:
        raise TileConfigError(f"unknown matmul version {version!r}; choose 1, 2, 3, 4 or one of {', '.join(NAMES)}")
    return VERSIONS[v](a, b, dtype=dtype, **block_sizes)


__all__ = ["matmul", "matmul_v1", "matmul_v2", "matmul_v3", "matmul_v4", "MatmulTiles", "choose_tiles", "VERSIONS"]
