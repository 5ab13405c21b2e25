"""Operator fusion: partition the nodes into groups, each one future kernel (TVM's FuseOps rules).

Every op has a pattern kind (:data:`tinyml.compiler.ops.PATTERNS`). Walking the
nodes in topological order, a node starts as its own group and then tries to
join the groups of its producers, complex producers first. A producer group
``P`` and the node's group ``C`` merge when

1. **kinds allow it**:

   * ``P`` is *pure* (only elementwise / broadcast / injective ops) and ``C`` has
     no complex op or a reduction: elementwise and injective producers fuse into
     their consumers, and reductions (softmax, layernorm, reduce_*) absorb them;
   * ``P`` holds a matmul (out-elementwise-fusable) followed only by
     elementwise/broadcast ops, and the node is elementwise/broadcast and still
     alone: the matmul absorbs its elementwise epilogue (bias, GeLU, residual);
   * anything else does not merge: nothing joins a reduction or an attention
     after it, a matmul absorbs no producer, a layout op does not join a matmul;

2. **at most one complex op** (matmul, reduction, attention) is in the union;
3. **size**: the union has at most ``max_group_size`` nodes;
4. **no cycle**: no path leaves the union and comes back into it, counting a
   path through any node of another group as a path through all of it (the
   groups must still form a DAG).

A value read outside its group, or a graph output, is *materialised*: it is one
of the group's ``outputs`` (written to HBM); everything else stays on chip.
Groups are emitted in dependency order and the nodes reordered so each group's
nodes are contiguous. See :class:`tinyml.compiler.graph.FusedGroup` for what a
group records (ops, inputs, outputs, anchor, kind, lowering).
"""

from __future__ import annotations

from .. import ops as _ops
from ..errors import GraphError
from ..graph import FusedGroup
from ..ops import PATTERN_RANK
from ..validate import group_io

BROADCAST = PATTERN_RANK["broadcast"]
INJECTIVE = PATTERN_RANK["injective"]


def _pattern(node) -> str:
    return _ops.get(node.op).pattern


def _complex(nodes) -> list:
    return [n for n in nodes if _ops.get(n.op).is_complex]


def _kinds_allow(p_nodes, c_nodes, node) -> bool:
    p_cx, c_cx = _complex(p_nodes), _complex(c_nodes)
    if not p_cx:
        return not c_cx or _pattern(c_cx[0]) == "reduction"
    if _pattern(p_cx[0]) != "out-elementwise-fusable":
        return False
    epilogue_ok = all(PATTERN_RANK[_pattern(n)] <= BROADCAST for n in p_nodes if n is not p_cx[0])
    return epilogue_ok and len(c_nodes) == 1 and PATTERN_RANK[_pattern(node)] <= BROADCAST


def _makes_cycle(members: set, consumers: dict, group_of: dict, groups: dict) -> bool:
    """True if some path leaves ``members`` and re-enters it, walking the graph of *groups*
    (reaching any node of another group reaches all of that group: it will be one kernel)."""
    seen: set = set()
    frontier = [c for m in members for c in consumers.get(m, ()) if c not in members]
    while frontier:
        x = frontier.pop()
        if x in seen:
            continue
        for y in groups[group_of[x]] if x in group_of else [x]:
            seen.add(y)
            for c in consumers.get(y, ()):
                if c in members:
                    return True
                if c not in seen:
                    frontier.append(c)
    return False


def _partition(graph, max_group_size: int) -> list[list[str]]:
    by_name = {n.name: n for n in graph.nodes}
    consumers = graph.consumers()
    group_of: dict[str, int] = {}
    members: dict[int, list[str]] = {}
    for gid, node in enumerate(graph.nodes):
        group_of[node.name] = gid
        members[gid] = [node.name]
        producers = []
        for i in node.inputs:
            if i in group_of and group_of[i] not in producers:
                producers.append(group_of[i])
        producers.sort(key=lambda g: not _complex([by_name[m] for m in members[g]]))   # complex first
        for pg in producers:
            cg = group_of[node.name]
            if pg == cg:
                continue
            p_nodes = [by_name[m] for m in members[pg]]
            c_nodes = [by_name[m] for m in members[cg]]
            union = members[pg] + members[cg]
            if (len(union) > max_group_size or len(_complex(p_nodes + c_nodes)) > 1
                    or not _kinds_allow(p_nodes, c_nodes, node)
                    or _makes_cycle(set(union), consumers, group_of, members)):
                continue
            for m in members[cg]:
                group_of[m] = pg
            members[pg] = union
            del members[cg]
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    return [sorted(ms, key=order.__getitem__) for ms in members.values()]


def _toposort_groups(graph, groups: list[list[str]]) -> list[list[str]]:
    by_name = {n.name: n for n in graph.nodes}
    owner = {m: gi for gi, ms in enumerate(groups) for m in ms}
    deps = {gi: {owner[i] for m in ms for i in by_name[m].inputs if i in owner} - {gi}
            for gi, ms in enumerate(groups)}
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    done: list[int] = []
    ready = sorted((gi for gi in deps if not deps[gi]), key=lambda gi: order[groups[gi][0]])
    while ready:
        gi = ready.pop(0)
        done.append(gi)
        for gj, d in deps.items():
            if gi in d:
                d.discard(gi)
                if not d and gj not in done and gj not in ready:
                    ready.append(gj)
        ready.sort(key=lambda g: order[groups[g][0]])
    if len(done) != len(groups):
        raise GraphError("fuse: the groups form a cycle (a bug in fuse's cycle check)")
    return [groups[gi] for gi in done]


def _describe(graph, gid: int, names: list[str]) -> FusedGroup:
    by_name = {n.name: n for n in graph.nodes}
    nodes = [by_name[m] for m in names]
    inputs, outputs = group_io(graph, names)
    cx = _complex(nodes)
    if cx:
        anchor = cx[0]
        kind, lower = _ops.get(anchor.op).pattern, _ops.get(anchor.op).lowering
    else:
        anchor = nodes[-1]
        top = max(PATTERN_RANK[_pattern(n)] for n in nodes)
        kind = _ops.PATTERNS[top]
        if len(nodes) == 1:
            lower = _ops.get(anchor.op).lowering
        else:
            lower = "elementwise" if top <= BROADCAST else "injective"
    return FusedGroup(gid, tuple(names), tuple(n.op for n in nodes), inputs, outputs, anchor.name, kind, lower)


def fuse(graph, max_group_size: int = 8):
    """Group ``graph``'s nodes into fused kernels (rules in the module docstring)."""
    if max_group_size < 1:
        raise GraphError(f"fuse: max_group_size must be >= 1, got {max_group_size}")
    base = graph.replace(groups=())
    parts = _toposort_groups(base, _partition(base, max_group_size))
    by_name = {n.name: n for n in base.nodes}
    ordered = base.replace(nodes=[by_name[m] for ms in parts for m in ms])
    groups = [_describe(ordered, gid, ms) for gid, ms in enumerate(parts)]
    return ordered.replace(groups=groups)
