"""``validate(graph)``: is this a well-formed graph? Every problem, each with the node and the shapes.

Checked:

* names: every value defined once; inputs and weights do not clash with nodes;
* dangling values: a node reads a value nothing defines;
* cycles (named as a path ``%3 -> %5 -> %3``) and nodes out of topological order;
* types: every node has a type, its op exists, takes that many operands, and its
  shape rule applied to its operands gives exactly the node's type;
* weights: data shape equals the declared type;
* outputs exist;
* fused groups (if any): they partition the nodes, come in dependency order, and
  their ``inputs``/``outputs`` are exactly what they read from / must write to HBM.

All problems are collected and raised together as one :class:`GraphError`.
"""

from __future__ import annotations

from . import ops as _ops
from .errors import GraphError


def _operands(node, types) -> str:
    return ", ".join(f"%{i}: {types.get(i, '?')}" for i in node.inputs)


def _find_cycle(nodes) -> "list[str] | None":
    """A cycle among nodes as a list of names (first == last), or None."""
    deps = {n.name: [i for i in n.inputs] for n in nodes}
    state: dict[str, int] = {}          # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for u in deps.get(v, ()):
            if u not in deps:
                continue
            if state.get(u) == 1:
                return stack[stack.index(u):] + [u]
            if u not in state:
                found = visit(u)
                if found:
                    return found
        stack.pop()
        state[v] = 2
        return None

    for n in nodes:
        if n.name not in state:
            found = visit(n.name)
            if found:
                return list(reversed(found))
    return None


def group_io(graph, members: "list[str]") -> tuple[tuple, tuple]:
    """(inputs, outputs) of a set of nodes: values read from outside, values needed outside."""
    inside = set(members)
    by_name = {n.name: n for n in graph.nodes}
    inputs: list[str] = []
    for m in members:
        for i in by_name[m].inputs:
            if i not in inside and i not in inputs:
                inputs.append(i)
    used_outside = {i for n in graph.nodes if n.name not in inside for i in n.inputs}
    outs = tuple(m for m in members if m in used_outside or m in graph.outputs)
    return tuple(inputs), outs


def _check_groups(graph, problems: list[str]) -> None:
    seen: dict[str, int] = {}
    for grp in graph.groups:
        for m in grp.nodes:
            if m in seen:
                problems.append(f"node %{m} is in group {seen[m]} and group {grp.id}")
            seen[m] = grp.id
    missing = [n.name for n in graph.nodes if n.name not in seen]
    if missing:
        problems.append(f"nodes {', '.join('%' + m for m in missing)} are in no fused group")
    available = set(graph.inputs) | set(graph.weights)
    by_name = {n.name: n for n in graph.nodes}
    for grp in graph.groups:
        unknown = [m for m in grp.nodes if m not in by_name]
        if unknown:
            problems.append(f"group {grp.id} lists nodes that do not exist: {unknown}")
            continue
        ins, outs = group_io(graph, list(grp.nodes))
        if set(ins) != set(grp.inputs):
            problems.append(f"group {grp.id} says it reads {list(grp.inputs)} but its nodes read {list(ins)}")
        if set(outs) != set(grp.outputs):
            problems.append(f"group {grp.id} says it writes {list(grp.outputs)} but {list(outs)} are needed outside it")
        late = [i for i in grp.inputs if i not in available]
        if late:
            problems.append(f"group {grp.id} reads {', '.join('%' + i for i in late)} "
                            "before an earlier group writes it "
                            "(groups must be in dependency order)")
        if grp.anchor not in grp.nodes:
            problems.append(f"group {grp.id}: anchor %{grp.anchor} is not one of its nodes")
        available |= set(grp.outputs)


def validate(graph) -> None:
    """Raise :class:`GraphError` listing every problem of ``graph``; return None if there is none."""
    problems: list[str] = []
    types: dict = dict(graph.inputs)
    types.update({k: w.type for k, w in graph.weights.items()})
    for k in graph.inputs:
        if k in graph.weights:
            problems.append(f"%{k} is both an input and a weight")
    for k, w in graph.weights.items():
        if tuple(w.data.shape) != tuple(w.type.shape):
            problems.append(f"weight %{k}: data of shape {w.data.shape} but type {w.type}")

    positions: dict[str, int] = {}
    for pos, n in enumerate(graph.nodes):
        if n.name in positions or n.name in types:
            problems.append(f"value %{n.name} is defined twice (node {pos}: {n.op})")
        positions.setdefault(n.name, pos)

    cycle = _find_cycle(graph.nodes)
    if cycle:
        problems.append("cycle: " + " -> ".join(f"%{c}" for c in cycle) +
                        f" (%{cycle[0]} = {graph.nodes[positions[cycle[0]]].op}(...) depends on itself)")

    defined = set(types)
    for pos, n in enumerate(graph.nodes):
        where = f"%{n.name} = {n.op}({_operands(n, types)})"
        for i in n.inputs:
            if i not in defined and i not in positions:
                problems.append(f"{where}: reads %{i}, which no input, weight or node defines (dangling value)")
            elif i not in defined and not cycle:
                problems.append(f"{where}: reads %{i} before node {positions[i]} defines it "
                                "(nodes must be in topological order)")
        try:
            opdef = _ops.get(n.op)
        except GraphError as e:
            problems.append(f"%{n.name}: {e}")
            opdef = None
        if n.type is None:
            problems.append(f"{where}: has no type; run infer_shapes")
        elif opdef is not None and all(i in types for i in n.inputs):
            if opdef.arity is not None and len(n.inputs) != opdef.arity:
                problems.append(f"{where}: {n.op} takes {opdef.arity} operand(s), got {len(n.inputs)}")
            else:
                try:
                    expect = opdef.shape_rule(tuple(types[i] for i in n.inputs), n.attr)
                except GraphError as e:
                    problems.append(f"{where}: {e}")
                else:
                    if expect != n.type:
                        problems.append(f"{where}: its type says {n.type} but {n.op} of those operands gives {expect}")
        defined.add(n.name)
        if n.type is not None:
            types[n.name] = n.type

    if not graph.outputs:
        problems.append("the graph has no outputs; call g.output(value)")
    for o in graph.outputs:
        if o not in types and o not in positions:
            problems.append(f"output %{o} is not defined")
    if graph.groups and not problems:
        _check_groups(graph, problems)
    if problems:
        raise GraphError(f"graph {graph.name!r} is invalid:\n  - " + "\n  - ".join(problems))
