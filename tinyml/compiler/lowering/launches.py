"""Lowering: every fused group becomes one kernel launch; a :class:`Plan` runs them on the simulator.

``lower(graph)`` walks the groups (``graph.groups`` after ``fuse``; without
groups, or with ``fused=False``, every node is its own group: op-by-op, as
eager PyTorch runs a model) and gives each a :class:`Launch` of one kind:

==============  =========================================================  =======
kind            kernel                                                     kernels
==============  =========================================================  =======
``matmul``      matmul, or matmul_epilogue (bias, activation, residual)   1
``elementwise`` fused_elementwise with the group's op program              1
``softmax``     fused softmax (v3)                                         1
``layernorm``   fused layernorm                                            1
``reduce``      row reduction                                              1
``attention``   FlashAttention-2                                           1
``copy``        a layout op nobody reads in place: read once, write once   1
``gather``      embedding rows: read the gathered rows, write them         1
``library``     conv, pooling, norms (+ epilogue): one vendor-library call 1
``view``        reshape, or a layout the next kernel reads in place        0
==============  =========================================================  =======

(see :mod:`.layout` for views, :mod:`.library` for library calls, :mod:`.pure` and
:mod:`.anchors` for when a group needs a second kernel). ``Plan.run(inputs, bindings)`` executes on NumPy inputs
or counts on ``tinyml.sim.meta`` inputs and returns ``(outputs, Profile)``.

Memory: inputs and weights are registered in the Profile's HBM ledger before
the first launch. With a memory plan (``graph.memory_plan``, from the
``plan_memory`` pass) every intermediate is a slice of one arena allocated once
(:mod:`.arena`): peak HBM = inputs + weights + arena + outputs. Without one,
every value a kernel writes is its own allocation, freed after its last reader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...sim import MetaTensor, Profile, meta
from ..errors import BindingError, GraphError
from ..values import given_bindings, input_array
from ..graph import FusedGroup
from ..interpreter import resolve_bindings
from ..validate import group_io
from . import anchors
from .arena import Arena, check_plan_matches
from .context import Ctx
from .layout import is_view_group
from .library import run_library
from .pure import ELEMENTWISE, run_pure
from .scheduled import ScheduleTable, scheduled_group

_ANCHORED = {"matmul": anchors.run_matmul, "softmax": anchors.run_softmax, "layernorm": anchors.run_layernorm,
             "reduce": anchors.run_reduce, "attention": anchors.run_attention, "library": run_library}


@dataclass(frozen=True)
class Launch:
    """One fused group as the kernel it lowers to."""

    group: int
    kind: str
    nodes: tuple          # node names
    ops: tuple
    inputs: tuple         # values read
    outputs: tuple        # values written
    why: str = ""         # for a view: why it costs nothing

    def __str__(self) -> str:
        ops = " -> ".join(self.ops)
        reads = ", ".join("%" + i for i in self.inputs)
        writes = ", ".join("%" + o for o in self.outputs)
        extra = f"   ({self.why})" if self.why else ""
        return f"{self.kind:<11} [{ops}]  reads {reads}  writes {writes}{extra}"


def singleton_groups(graph) -> list[FusedGroup]:
    """Every node its own group (op-by-op lowering)."""
    out = []
    for gid, node in enumerate(graph.nodes):
        inputs, outputs = group_io(graph, [node.name])
        op = node.opdef
        out.append(FusedGroup(gid, (node.name,), (node.op,), inputs, outputs, node.name, op.pattern, op.lowering))
    return out


def _kind(graph, group, consumers) -> tuple[str, str]:
    if group.lowering in _ANCHORED:
        return group.lowering, ""
    nodes = graph.group_nodes(group)
    if any(n.op in ELEMENTWISE for n in nodes):
        return "elementwise", ""
    why = is_view_group(graph, nodes, group.outputs, consumers)
    if why:
        return "view", why
    return ("gather" if any(n.op == "embedding" for n in nodes) else "copy"), ""


class Plan:
    """The launches of a lowered graph, in order. ``run`` executes or counts them."""

    def __init__(self, graph, launches: list, fused: bool, schedules=None):
        self.graph = graph
        self.launches = launches
        self.fused = fused
        self.schedules = schedules        # a ScheduleTable (or a tuning log's lookup), see .scheduled

    @property
    def kernels(self) -> int:
        """Launches that are kernels (views are not); a group may still add a kernel at run time
        (a cut, see :mod:`.pure` and :mod:`.anchors`): count ``len(profile.records)`` for the truth."""
        return sum(1 for x in self.launches if x.kind != "view")

    def __str__(self) -> str:
        head = f"plan {self.graph.name!r} ({'fused' if self.fused else 'op by op'}): {len(self.launches)} groups"
        return "\n".join([head] + [f"  {i:>3}  {x}" for i, x in enumerate(self.launches)])

    def __repr__(self) -> str:
        return f"<Plan {self.graph.name!r}: {len(self.launches)} launches, {self.kernels} kernels>"

    # ---- running ---------------------------------------------------------------------------------
    def run(self, inputs=None, bindings=None, *, device=None, dtype: str = "fp16", count: bool = False,
            profile: "Profile | None" = None):
        """Run on the simulator: ``(outputs, Profile)``; outputs are None when counting.

        Counting mode when ``count=True`` or the inputs are ``tinyml.sim.meta`` tensors
        (then ``bindings`` must give every symbol, or the meta shapes determine them).
        """
        g = self.graph
        inputs = dict(inputs or {})
        count = count or any(isinstance(x, MetaTensor) for x in inputs.values())
        bound = _bindings(g, inputs, bindings, count)
        ctx = Ctx(g, bound, execute=not count, dtype=dtype)
        for name, t in g.inputs.items():
            shape = t.concrete(bound)
            if count:
                ctx.env[name] = meta(shape, dtype)
            else:
                ctx.env[name] = input_array(name, inputs[name], t.dtype)     # float32, or int64 ids
        for name, w in g.weights.items():
            ctx.env[name] = _weight(name, w, dtype, count)
        last = _last_uses(self)
        prof = profile or Profile(device)
        with prof:
            _register_externals(ctx, prof)
            ctx.arena = self._arena(ctx, prof)
            try:
                for step, launch in enumerate(self.launches):
                    ctx.env.update(self._run_one(ctx, launch))
                    for v in launch.inputs:          # free what nobody reads any more (inputs are the caller's)
                        if last.get(v) == step and not (v in g.outputs or v in g.weights or v in g.inputs):
                            ctx.env.pop(v, None)
            finally:
                if ctx.arena is not None:
                    ctx.arena.release()
        if count:
            return None, prof
        return [np.asarray(ctx.env[o], dtype=np.float32) for o in g.outputs], prof

    def _arena(self, ctx, prof):
        """The arena of the graph's memory plan (None without one: every value allocated on its own)."""
        plan = getattr(self.graph, "memory_plan", None)
        if plan is None:
            return None
        check_plan_matches(plan, self)
        return Arena(plan, self.graph, ctx.bindings, ctx.dtype, ctx.execute, prof.hbm)

    def _run_one(self, ctx, launch: Launch) -> dict:
        g = self.graph
        nodes = [g.node(m) for m in launch.nodes]
        if self.schedules is not None and launch.kind in ("matmul", "library"):
            done = scheduled_group(ctx, nodes, launch.outputs, self.schedules)
            if done is not None:
                return done
        if launch.kind in _ANCHORED:
            return _ANCHORED[launch.kind](ctx, nodes, launch.outputs)
        return run_pure(ctx, nodes, launch.outputs, copy_leaves=launch.kind != "view")


def _weight(name: str, w, dtype: str, count: bool):
    """What a kernel reads for weight ``w``: its data, a MetaTensor, or a QuantizedTensor."""
    q = getattr(w, "qtensor", None)
    if q is not None:                                       # a quantized weight (quantize_weights pass)
        if count:
            from ...kernels.quant import QuantizedTensor

            return QuantizedTensor.meta(q.shape, q.scheme)
        if not q.execute:
            raise _shape_only(name)
        return q
    if count:
        return meta(w.type.shape, dtype)
    if w.data.size > 1 and not any(w.data.strides):                # np.broadcast_to zeros: no data
        raise _shape_only(name)
    return w.data if w.type.dtype == "int32" else np.ascontiguousarray(w.data, dtype=np.float32)


def _shape_only(name: str) -> GraphError:
    return GraphError(f"weight %{name} is shape-only (a graph built with weights='meta'); it can be counted "
                      "(run(..., count=True)), not executed: build the model with real weights")


def _register_externals(ctx, prof) -> None:
    """Inputs and weights are in HBM before the first kernel (and count even if only a view reads them)."""
    g = ctx.graph
    for name in list(g.inputs) + list(g.weights):
        t = g.type_of(name)
        x = ctx.env[name]
        if hasattr(x, "storage"):                            # a QuantizedTensor: its packed bytes
            prof.hbm.track(x.storage, name, "int8")
            continue
        dtype = "fp32" if t.dtype == "int32" else ctx.dtype          # int32 ids: 4 bytes each, as fp32
        prof.hbm.track(x, name, dtype)


def _last_uses(plan: Plan) -> dict:
    last = {}
    for step, launch in enumerate(plan.launches):
        for v in launch.inputs:
            last[v] = step
    return last


def _bindings(graph, inputs: dict, bindings, count: bool) -> dict:
    if not count:
        return resolve_bindings(graph, inputs, bindings)
    bound = given_bindings(bindings)
    if inputs:                                  # shapes stand in for the arrays (no data)
        stand_in = {k: np.broadcast_to(np.zeros((), np.int8), tuple(np.shape(v) if not isinstance(v, MetaTensor)
                                                                   else v.shape)) for k, v in inputs.items()}
        return resolve_bindings(graph, stand_in, bound)
    missing = sorted(graph.symbols - bound.keys())
    if missing:
        raise BindingError(f"counting graph {graph.name!r} needs a value for symbol(s) {missing}: "
                           f"pass bindings={{{missing[0]!r}: 1024}} (or meta inputs whose shapes determine them)")
    return bound


def lower(graph, *, fused: "bool | None" = None, schedules=None) -> Plan:
    """Lower ``graph`` to kernel launches: one per fused group (``fused=None`` uses the groups if the
    graph has them), or one per node (``fused=False``: the op-by-op baseline).

    ``schedules``: a dict (node name, workload key or op kind -> Schedule, trace or callable) or
    an object with ``lookup(node, func)``; the matmul and conv2d nodes it names run as their
    schedule's generated kernel (see :mod:`.scheduled`). None: every group as by default."""
    if isinstance(schedules, dict):
        schedules = ScheduleTable(schedules)
        schedules.check(graph)
    elif schedules is not None and not callable(getattr(schedules, "lookup", None)):
        raise GraphError(f"schedules must be a dict or an object with lookup(node, func), "
                         f"got {type(schedules).__name__}")
    if fused and not graph.groups:
        raise GraphError(f"lower(fused=True): graph {graph.name!r} has no fused groups; run the 'fuse' pass "
                         f"first, or lower it op by op (fused=False)")
    use_groups = bool(graph.groups) if fused is None else fused
    groups = list(graph.groups) if use_groups else singleton_groups(graph)
    consumers = graph.consumers()
    launches = []
    for grp in groups:
        kind, why = _kind(graph, grp, consumers)
        launches.append(Launch(grp.id, kind, grp.nodes, grp.ops, grp.inputs, grp.outputs, why))
    return Plan(graph, launches, use_groups, schedules)
