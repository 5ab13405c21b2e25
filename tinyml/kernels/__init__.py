"""tinyml.kernels: tiled kernels that run real numerics and report the bytes they move.

Every public kernel follows the contract in :mod:`tinyml.kernels._contract`.
Plain NumPy references live in :mod:`tinyml.kernels.reference`.
"""

from .matmul import matmul, matmul_v1, matmul_v2, matmul_v3

__all__ = ["matmul", "matmul_v1", "matmul_v2", "matmul_v3"]
