"""Liveness: for every value a kernel writes, the program points from its producer to its last reader.

A *program point* is one kernel launch, in program order: one per fused group
after the ``fuse`` pass (``graph.groups``), or one per node without fusion
(op by op, as eager PyTorch runs a model). A point reads its group's inputs
and writes its group's outputs (the values needed outside the group); values
used only inside a fused group stay on chip and take no HBM at all.

Every written value gets a closed interval ``[start, end]``::

    start = the point that writes it
    end   = the last point that reads it, or one of its views (start if nobody does)

Two values may share bytes only if their intervals are disjoint. A point's
inputs and outputs are live at the same point: a kernel reads while it writes
(no kernel here works in place).

* **Views.** A ``reshape`` (lowering ``view``) of a value already in HBM is the
  same bytes with a new shape: it *aliases* its input (the alias's root), takes
  no memory of its own and extends the root's interval to its own last reader.
  So does a group of layout ops that lowering reads in place instead of copying
  (:func:`tinyml.compiler.lowering.layout.is_view_group`: a transpose read by a
  matmul, the head split around an attention). A view that is a graph output is
  its own tensor (lowering copies it).
* **Roles.** Graph inputs, weights and graph outputs live for the whole program
  and belong to the caller, not to the arena: they are reported separately
  (``externals``). The arena holds the *intermediates*. A view of an external
  value is external too.
* **Dead values.** A launch whose group has no output (dead code) still writes
  its last node's value, live at that point only (run ``dead_code`` first).

Sizes are byte counts as :class:`~tinyml.compiler.sizes.Poly` expressions in
the graph's symbols (``1536*n``, ``24*n^2``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..graph import FusedGroup
from ..lowering.layout import is_view_group
from ..sizes import Poly
from ..validate import group_io
from .errors import MemoryPlanError

ROLES = ("input", "weight", "output", "intermediate")


@dataclass(frozen=True)
class ProgramPoint:
    """One kernel launch: its position, a label, the values it reads and writes."""

    index: int
    label: str                 # "g3 matmul" (a fused group) or "%5 gelu" (a node)
    nodes: tuple
    reads: tuple
    writes: tuple


@dataclass(frozen=True)
class LiveValue:
    """A value that occupies HBM: its size and the points it is live at (``start .. end``, inclusive)."""

    name: str
    role: str                  # one of ROLES
    size: Poly                 # bytes, in the graph's symbols
    dtype: str
    shape: tuple
    start: int
    end: int
    aliases: tuple = ()        # reshape views sharing its bytes

    def overlaps(self, other: "LiveValue") -> bool:
        return self.start <= other.end and other.start <= self.end

    @property
    def interval(self) -> tuple[int, int]:
        return (self.start, self.end)


@dataclass(frozen=True)
class Liveness:
    """What the arena must hold: program points, intermediates with intervals, externals, views."""

    points: tuple              # ProgramPoint, in program order
    values: tuple              # LiveValue of every intermediate (the arena's), by start then name
    externals: tuple           # LiveValue of inputs, weights, outputs (live throughout)
    aliases: dict              # view name -> root name
    fused: bool = False        # points are fused groups (True) or nodes

    def live_at(self, point: int) -> list:
        """The intermediates live at ``point``."""
        return [v for v in self.values if v.start <= point <= v.end]

    def load(self, bindings) -> int:
        """LOAD: the largest total bytes of intermediates live at one point (0 if there are none)."""
        sizes = [(v.start, v.end, v.size.evaluate(bindings)) for v in self.values]
        return max((sum(s for a, b, s in sizes if a <= p <= b) for p in range(len(self.points))), default=0)


def byte_size(t) -> Poly:
    """Bytes of a tensor type as a polynomial; for a sub-byte dtype (int4) each coefficient is
    rounded up (an upper bound of ``ceil(numel * bits / 8)``, exact when it divides)."""
    numel = t.numel
    if t.bits % 8 == 0:
        return numel * (t.bits // 8)
    return Poly({m: -((-k * t.bits) // 8) for m, k in numel.coeffs})


def check_typed(graph) -> None:
    """Raise :class:`MemoryPlanError` if some node has no type (sizes need shapes)."""
    untyped = [n for n in graph.nodes if n.type is None]
    if untyped:
        first = ", ".join(f"%{n.name} = {n.op}(...)" for n in untyped[:3])
        more = f" and {len(untyped) - 3} more" if len(untyped) > 3 else ""
        raise MemoryPlanError(
            f"graph {graph.name!r} is not shape-inferred: {first}{more} have no type, so their sizes are "
            "unknown; run the infer_shapes pass first (graphs built with the builder are typed already)")


def launch_groups(graph, fused: "bool | None" = None) -> tuple[list, bool]:
    """``(groups, fused)``: the groups that become launches, ``graph.groups`` (fused; the default
    when the graph has them), or one per node (op by op). A graph with no nodes has no launches
    either way (its inputs are its outputs); asking for its fused plan is not an error."""
    if fused and not graph.groups and graph.nodes:
        raise MemoryPlanError(f"plan_memory(fused=True): graph {graph.name!r} has no fused groups; "
                              "run the 'fuse' pass first, or plan it op by op (fused=False)")
    if (fused is None and graph.groups) or fused:
        return list(graph.groups), True
    out = []
    for gid, node in enumerate(graph.nodes):
        ins, outs = group_io(graph, [node.name])
        out.append(FusedGroup(gid, (node.name,), (node.op,), ins, outs, node.name,
                              node.opdef.pattern, node.opdef.lowering))
    return out, False


def _label(graph, grp, fused: bool) -> str:
    anchor = graph.node(grp.anchor)
    return f"g{grp.id} {anchor.op}" if fused else f"%{anchor.name} {anchor.op}"


def liveness(graph, fused: "bool | None" = None) -> Liveness:
    """The program points and live intervals of ``graph`` (see the module docstring)."""
    check_typed(graph)
    groups, is_fused = launch_groups(graph, fused)
    outputs = set(graph.outputs)
    aliases: dict[str, str] = {}
    in_hbm = set(graph.inputs) | set(graph.weights)
    consumers = graph.consumers()
    points, start, last = [], {}, {}
    for p, grp in enumerate(groups):
        writes = tuple(grp.outputs) or (grp.nodes[-1],)
        materialised = in_hbm | set(grp.inputs) | set(writes)
        if len(grp.inputs) == 1 and grp.outputs and is_view_group(
                graph, graph.group_nodes(grp), grp.outputs, consumers):
            src = grp.inputs[0]                     # lowering reads it in place: no bytes of its own
            aliases.update({w: aliases.get(src, src) for w in writes})
        for m in grp.nodes:                         # reshapes of values already in HBM alias them
            node = graph.node(m)
            if (m in writes and m not in outputs and m not in aliases and node.opdef.lowering == "view"
                    and node.inputs[0] in materialised):
                src = node.inputs[0]
                aliases[m] = aliases.get(src, src)
        for w in writes:
            start.setdefault(aliases.get(w, w), p)
        for r in grp.inputs:
            root = aliases.get(r, r)
            last[root] = max(last.get(root, p), p)
        in_hbm |= set(writes)
        points.append(ProgramPoint(p, _label(graph, grp, is_fused), tuple(grp.nodes), tuple(grp.inputs), writes))

    views_of: dict[str, list] = {}
    for v, root in aliases.items():
        views_of.setdefault(root, []).append(v)

    def live(name, role, s, e) -> LiveValue:
        t = graph.type_of(name)
        return LiveValue(name, role, byte_size(t), t.dtype, t.shape, s, e, tuple(views_of.get(name, ())))

    end = max(len(points) - 1, 0)
    externals = [live(k, "input", 0, end) for k in graph.inputs]
    externals += [live(k, "weight", 0, end) for k in graph.weights]
    seen = set(graph.inputs) | set(graph.weights)
    externals += [live(o, "output", 0, end) for o in dict.fromkeys(graph.outputs) if o not in seen]
    external_names = {x.name for x in externals}
    values = [live(v, "intermediate", s, max(s, last.get(v, s)))
              for v, s in start.items() if v not in external_names and v not in aliases]
    values.sort(key=lambda v: (v.start, v.name))
    return Liveness(tuple(points), tuple(values), tuple(externals), aliases, is_fused)
