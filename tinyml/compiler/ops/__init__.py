"""The op registry and every op tinyml's compiler knows (see :mod:`.registry`).

Importing this package registers the ops: elementwise/broadcast
(:mod:`.elementwise`), matmul (:mod:`.linalg`), reductions (:mod:`.reduce`),
layout (:mod:`.shape`), embedding and attention (:mod:`.nn`).
"""

from . import elementwise, linalg, nn, reduce, shape, conv, pool, norm, misc  # noqa: F401  (registration)
from . import quant  # noqa: F401  (registration: quantized_matmul, put in by the quantize_weights pass)
from .registry import COMPLEX_PATTERNS, LOWERINGS, PATTERN_RANK, PATTERNS, OpDef, get, names, register

__all__ = ["COMPLEX_PATTERNS", "LOWERINGS", "PATTERN_RANK", "PATTERNS", "OpDef", "get", "names", "register"]
