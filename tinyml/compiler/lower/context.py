"""What a lowered graph runs with: the values in (simulated) HBM, the bindings, the mode.

A :class:`Ctx` holds ``env`` (value name -> float32 array when executing, or a
``tinyml.sim.meta`` tensor when counting), the symbol ``bindings``, and the
logical ``dtype`` bytes are counted in. Kernels only ever see arrays or
MetaTensors of concrete shapes, so the same lowering code serves both modes.

Layout work that no kernel pays for (a view, or a layout the next kernel reads
in place) is done here, in NumPy, outside the counters: :meth:`Ctx.layout`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...sim import FLOAT_DTYPES, meta
from ..interpreter import _concrete_attrs


@dataclass
class Ctx:
    graph: object
    bindings: dict
    execute: bool
    dtype: str
    env: dict = field(default_factory=dict)

    # ---- shapes -------------------------------------------------------------------------------
    def shape(self, name: str) -> tuple:
        """The concrete shape of value ``name`` under the bindings."""
        return self.graph.type_of(name).concrete(self.bindings)

    def new(self, shape, fill=None):
        """A tensor of ``shape`` that no kernel wrote (index vectors): array or MetaTensor."""
        if not self.execute:
            return meta(shape, self.dtype)
        return np.asarray(fill, dtype=np.float32).reshape(shape)

    def reshape(self, x, shape):
        """A view with a new shape (free in both modes)."""
        shape = tuple(int(s) for s in shape)
        if isinstance(x, np.ndarray):
            return x.reshape(shape)
        return meta(shape, self.dtype)

    def broadcast(self, x, shape):
        """``x`` expanded to ``shape`` (a kernel then reads every element of it)."""
        shape = tuple(int(s) for s in shape)
        if isinstance(x, np.ndarray):
            return np.ascontiguousarray(np.broadcast_to(x, shape), dtype=np.float32)
        return meta(shape, self.dtype)

    # ---- layout ops, outside the counters -------------------------------------------------------
    def layout(self, node, args):
        """Apply a layout op (reshape, transpose, slice, concat, embedding) without a kernel:
        the NumPy reference when executing, a MetaTensor of the node's shape when counting."""
        if not self.execute:
            return meta(self.shape(node.name), self.dtype)
        out = node.opdef.reference(*args, **_concrete_attrs(node, self.bindings))
        return np.ascontiguousarray(out, dtype=np.float32)


def numel(shape) -> int:
    return math.prod(shape)


__all__ = ["Ctx", "FLOAT_DTYPES", "numel"]
