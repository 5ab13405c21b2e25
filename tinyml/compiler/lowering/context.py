"""What a lowered graph runs with: the values in (simulated) HBM, the bindings, the mode.

A :class:`Ctx` holds ``env`` (value name -> float32 array when executing, or a
``tinyml.sim.meta`` tensor when counting), the symbol ``bindings``, and the
logical ``dtype`` bytes are counted in. Kernels only ever see arrays or
MetaTensors of concrete shapes, so the same lowering code serves both modes.

Layout work that no kernel pays for (a view, or a layout the next kernel reads
in place) is done here, in NumPy, outside the counters: :meth:`Ctx.layout`. Such views, and the
index vectors a GPU computes from thread indices, are *aliases* in the HBM
ledger (no bytes of their own). With a memory plan, ``arena`` is the
:class:`~.arena.Arena` and :meth:`Ctx.output` puts a kernel's output in its slot.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from dataclasses import dataclass, field

import numpy as np

from ...sim import FLOAT_DTYPES, MetaTensor, active_profile, meta
from ..interpreter import _concrete_attrs


@dataclass
class Ctx:
    graph: object
    bindings: dict
    execute: bool
    dtype: str
    env: dict = field(default_factory=dict)
    arena: object = None                      # an Arena when the graph has a memory plan
    _bases: dict = field(default_factory=dict, repr=False)   # id(view) -> the tensor it views

    # ---- memory ---------------------------------------------------------------------------------
    def output(self, name: str):
        """Context for the kernel that writes value ``name``: its output lands in the arena
        slot of ``name`` when there is a plan (otherwise the kernel allocates as usual)."""
        return self.arena.output(name) if self.arena is not None else contextlib.nullcontext()

    def view(self, out, of=None):
        """Mark ``out`` as a view of ``of`` (or as not in HBM when ``of`` is None): no bytes of its own.
        ``of`` stays alive (and accounted) as long as ``out`` does, as the bytes it views would on a GPU
        (NumPy hands us copies for transposes and slices). A view of a tensor the ledger does not
        know yet is left to be tracked by its reader."""
        prof = active_profile()
        if prof is not None and (of is None or prof.hbm.is_tracked(of)):
            prof.hbm.alias(out)
            if of is not None and out is not of:
                self._bases[id(out)] = of
                weakref.finalize(out, self._bases.pop, id(out), None)
        return out

    # ---- shapes -------------------------------------------------------------------------------
    def shape(self, name: str) -> tuple:
        """The concrete shape of value ``name`` under the bindings."""
        return self.graph.type_of(name).concrete(self.bindings)

    def new(self, shape, fill=None):
        """A tensor of ``shape`` that no kernel wrote (index vectors): array or MetaTensor."""
        if not self.execute:
            return self.view(meta(shape, self.dtype))
        return self.view(np.asarray(fill, dtype=np.float32).reshape(shape))

    def reshape(self, x, shape):
        """A view with a new shape (free in both modes)."""
        shape = tuple(int(s) for s in shape)
        if isinstance(x, np.ndarray):
            return self.view(x.reshape(shape), x)
        if tuple(x.shape) == shape:
            return x
        return self.view(MetaView(shape, x), x)

    def broadcast(self, x, shape):
        """``x`` expanded to ``shape`` (a kernel then reads every element of it)."""
        shape = tuple(int(s) for s in shape)
        if isinstance(x, np.ndarray):
            return self.view(np.ascontiguousarray(np.broadcast_to(x, shape), dtype=np.float32), x)
        return self.view(meta(shape, self.dtype), x)

    # ---- layout ops, outside the counters -------------------------------------------------------
    def layout(self, node, args):
        """Apply a layout op (reshape, transpose, slice, concat, embedding) without a kernel:
        the NumPy reference when executing, a MetaTensor of the node's shape when counting."""
        if not self.execute:
            return self.view(meta(self.shape(node.name), self.dtype), args[0])
        out = node.opdef.reference(*args, **_concrete_attrs(node, self.bindings))
        return self.view(np.ascontiguousarray(out, dtype=np.float32), args[0])


class MetaView(MetaTensor):
    """A reshape of a MetaTensor: keeps its base alive, as a NumPy view keeps its base array."""

    __slots__ = ("base",)

    def __init__(self, shape, base):
        super().__init__(shape, base.dtype)
        self.base = base


def numel(shape) -> int:
    return math.prod(shape)


__all__ = ["Ctx", "FLOAT_DTYPES", "numel"]
