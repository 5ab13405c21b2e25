"""tinyml.kernels: tiled kernels that run real numerics and report the bytes they move.

One subpackage per idea (``tinyml.kernels.matmul`` ...), each in numbered
versions. Every public kernel follows the contract in
:mod:`tinyml.kernels._contract`; plain NumPy references live in
:mod:`tinyml.kernels.reference`. Import kernels from their subpackage::

    from tinyml.kernels.matmul import matmul

(Nothing is re-exported here, so ``tinyml.kernels.matmul`` is always the module.)
"""

from ..sim import jit as _jit  # noqa: F401,E402  (versioned Numba cache before any kernel is defined)
