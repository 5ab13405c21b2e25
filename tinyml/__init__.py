"""tinyml: see the GPU memory hierarchy at work, on a laptop CPU.

``import tinyml`` is light: submodules load on first use and nothing
JIT-compiles at import. Layers (imports point down only)::

    tinyml.compiler   graph IR, passes, lowering
    tinyml.kernels    tiled kernels (Numba) that report the bytes they move
    tinyml.sim        the simulated GPU: devices, HBM ledger, cost model, Profile
"""

from __future__ import annotations

import importlib
import os

# Worker threads sleep between kernels instead of spinning. Counting mode runs thousands of tiny
# parallel launches (one block per class); with the OpenMP runtime's default policy each worker
# spins after every one of them, which cost several times the CPU seconds of the counting itself
# (tests/test_threads.py). Set here, before any kernel starts the runtime; a user's choice wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from .sim.errors import TinymlError  # noqa: E402  (light: no numpy, no numba)

_SUBMODULES = ("sim", "kernels", "compiler", "labs", "cli")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"tinyml.{name}")
    raise AttributeError(f"module 'tinyml' has no attribute {name!r}")


__all__ = ["TinymlError", "__version__", *_SUBMODULES]
