"""Weights for the zoo's models: seeded random data, or shape-only (``weights="meta"``).

A shape-only weight has the declared type and a zero-stride array of zeros
(``np.broadcast_to``): no memory, so GPT-2 small's 124M parameters cost
nothing to build. Such a graph can be compiled, planned, quantized and counted
(``run(..., count=True)``); executing it is refused (see
:func:`tinyml.compiler.passes.quantize_weights.is_shape_only`).
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphError
from ..graph import Value, Weight
from ..types import TensorType

WEIGHT_KINDS = ("random", "meta")


def check_kind(weights: str) -> bool:
    """True for shape-only weights; refuses an unknown kind."""
    if weights not in WEIGHT_KINDS:
        raise GraphError(f"weights={weights!r}: choose 'random' (seeded data) or 'meta' (shapes only, "
                         "for counting big models)")
    return weights == "meta"


def param(g, name: str, shape, **init) -> Value:
    """``g.weight(name, shape, **init)``, or a shape-only weight when ``g.shape_only`` is set."""
    if not getattr(g, "shape_only", False):
        return g.weight(name, shape, **init)
    g._check_new_name(name, "weight")
    t = TensorType.of(shape, g.dtype)
    g.weights[name] = Weight(t, np.broadcast_to(np.float32(0), t.shape))     # no memory
    return Value(g, name)
