"""The memory plan, used: every intermediate is a slice of one arena allocated once.

When a graph carries a :class:`~tinyml.compiler.memory.MemoryPlan` (the
``plan_memory`` pass), :meth:`Plan.run <tinyml.compiler.lowering.Plan.run>`:

1. registers the graph's inputs and weights in the Profile's HBM ledger;
2. allocates **one** arena of ``plan.arena_at(bindings)`` bytes (a single
   ``prof.hbm`` allocation named ``arena``);
3. for every kernel that writes a planned value, installs a *placer*
   (:meth:`tinyml.sim.HbmLedger.placing`) that hands the kernel the value's
   slice ``arena[offset : offset + nbytes]`` instead of a new allocation; the
   slice is an alias in the ledger (its bytes are the arena's);
4. frees the arena when the run ends.

So the run's peak HBM is exactly::

    peak = inputs + weights + arena + outputs

Graph outputs are *not* in the arena: they belong to the caller and outlive
the run, so each is allocated by the kernel that writes it (as without a plan).
Views (``reshape``, layouts read in place) take no bytes of their own. A kernel
temporary the plan does not know (FlashAttention's row statistics, a value a
fused group must write twice: "a cut") is allocated on its own while it lives;
in the zoo's graphs such temporaries are smaller than the outputs, so the peak
above holds (the tests check it).

Sizes: the plan is made in the graph's dtype. Running in another float dtype
(``run(dtype="fp32")`` on an fp16 graph) scales every size and offset by the
ratio of element sizes. When executing, the arena is one float32 array (the
numerics are float32 whatever the logical dtype) and a value at byte offset
``o`` starts at element ``o * 8 / bits(dtype)``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

from ...sim import MetaTensor, bits, host_empty
from ..errors import GraphError


class Arena:
    """One HBM allocation holding every planned intermediate of one run."""

    def __init__(self, memory_plan, graph, bindings: dict, dtype: str, execute: bool, ledger):
        self.plan = memory_plan
        self.execute = execute
        self.ledger = ledger
        self.dtype = dtype
        plan_bits = bits(graph.dtype)
        self.scale = bits(dtype) / plan_bits                    # run bytes per plan byte
        at = {k: v for k, v in bindings.items() if k in memory_plan.bounds}
        offsets = memory_plan.offsets_at(at)
        roots = {b.name: b for b in memory_plan.buffers}
        self.slots: dict[str, tuple[int, int]] = {}             # value -> (first element, elements)
        for name, off in offsets.items():
            if name not in roots:
                continue                                         # a view: it aliases its root
            numel = math.prod(graph.type_of(name).concrete(bindings))
            self.slots[name] = (off * 8 // plan_bits, numel)
        self.nbytes = int(round(memory_plan.arena_at(at) * self.scale))
        elements = max((e0 + n for e0, n in self.slots.values()), default=0)
        self.handle = ledger.alloc("arena", (self.nbytes,), "int8")
        self.backing = host_empty((elements,), np.float32, "the arena") if execute else None   # (arena elements,)

    def __contains__(self, name: str) -> bool:
        return name in self.slots

    def slice(self, name: str, shape: tuple):
        """Value ``name``'s bytes in the arena, as a tensor of ``shape`` (an alias in the ledger)."""
        e0, numel = self.slots[name]
        if self.execute:
            out = self.backing[e0:e0 + numel].reshape(shape)
        else:
            out = MetaTensor(shape, self.dtype)
        self.ledger.alias(out)
        return out

    @contextmanager
    def output(self, name: str):
        """The next kernel output allocated in this block with ``name``'s element count lands in
        ``name``'s slot (once); other allocations (a kernel's statistics) are allocated as usual."""
        if name not in self.slots:
            yield
            return
        taken = []

        def placer(_kernel_name, shape, _dtype, _execute):
            if taken or math.prod(shape) != self.slots[name][1]:
                return None
            taken.append(name)
            return self.slice(name, shape)

        with self.ledger.placing(placer):
            yield

    def release(self) -> None:
        self.ledger.free(self.handle)


def check_plan_matches(memory_plan, lowered) -> None:
    """The memory plan's program points must be the lowered launches (same groups, same order)."""
    points = memory_plan.points
    if memory_plan.fused != lowered.fused or len(points) != len(lowered.launches) or any(
            tuple(p.nodes) != tuple(x.nodes) for p, x in zip(points, lowered.launches)):
        raise GraphError(
            f"the memory plan of {memory_plan.graph_name!r} was made for {len(points)} program points "
            f"({'fused groups' if memory_plan.fused else 'nodes'}) but the graph lowers to "
            f"{len(lowered.launches)} launches ({'fused' if lowered.fused else 'op by op'}); run plan_memory "
            "last, after fuse, and lower the graph the way it was planned")
