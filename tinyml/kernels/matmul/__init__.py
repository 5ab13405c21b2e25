"""Matrix multiply in numbered versions: naive -> SRAM-tiled -> tensor-core tiles.

| version | idea                                      | HBM reads (before L2 reuse)             |
|---------|-------------------------------------------|-----------------------------------------|
| v1      | one thread per output, streams from HBM   | `2 M N K s`                             |
| v2      | SRAM tiles, FMA loops on the vector units | `(M K ceil(N/BN) + K N ceil(M/BM)) s`   |
| v3      | SRAM tiles, MMA on tensor cores           | same as v2                              |
| v4      | v3 as shipped: C in registers, pipelined loads, warp tiles | same as v2             |

``s`` is bytes per element of the logical dtype; every version writes ``M N s``.
Each version is one file a reader can open alone; what they share sits beside them:

| module        | what it holds                                                          |
|---------------|------------------------------------------------------------------------|
| `v1_naive`    | v1's body and formula                                                  |
| `v2_tiled`    | v2's body (the tile product as FMA loops)                              |
| `v3_mma`      | v3's body and its K loop (``mma_k_loop``, reused by ``matmul_epilogue``) |
| `v4_pipelined`| v4's body: v3's tiles with C in registers, pipelined loads, warp tiles |
| `streamk`     | v4's ``schedule="stream-k"``: the last waves' tiles shared out by MAC iteration, partial sums fixed up |
| `batched`     | ``bmm``: v3's tiles once per (batch, head), transposes, GQA; the compiler lowers every batched matmul to it |
| `block_sizes` | choosing block sizes that fit SRAM (`MatmulTiles`, `choose_tiles`)     |
| `_tiled`      | what v2, v3 and ``bmm`` share: the byte formula, L2 panels, the launch |
| `_launch`     | what every version shares: validation, a block's C tile, recording     |
"""

from __future__ import annotations

import inspect

from ...sim import TileConfigError
from ...sim.errors import ArgumentError
from .batched import bmm
from .block_sizes import MatmulTiles, choose_tiles
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
    that bytes are counted in. Records one kernel in the active Profile. Keyword arguments go to the
    version: block sizes, and for version 4 ``schedule="stream-k"`` (:mod:`.streamk`).
    """
    v = NAMES.get(version, version) if isinstance(version, str) else version
    if v not in VERSIONS:
        raise TileConfigError(f"unknown matmul version {version!r}; choose 1, 2, 3, 4 or one of {', '.join(NAMES)}")
    accepted = [name for name in inspect.signature(VERSIONS[v]).parameters if name not in ("a", "b", "dtype")]
    unknown = sorted(set(block_sizes) - set(accepted))
    if unknown:
        raise ArgumentError(f"matmul version {v} takes no {', '.join(map(repr, unknown))}; its keyword arguments are "
                            f"dtype, {', '.join(accepted)} (pick the version with version=1..4)")
    return VERSIONS[v](a, b, dtype=dtype, **block_sizes)


__all__ = ["matmul", "bmm", "matmul_v1", "matmul_v2", "matmul_v3", "matmul_v4", "MatmulTiles", "choose_tiles",
           "VERSIONS"]
