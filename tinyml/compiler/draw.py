"""Graphviz drawings of a graph: DOT text, rendered with :func:`tinyml.viz.render`.

Each node is labelled with its op and output shape; inputs are ellipses,
weights grey boxes, outputs double-bordered; fused groups are clusters titled
with the group's anchor, kind and lowering. :func:`to_dot` only writes text
(no graphviz import); :func:`draw` renders it (or writes the ``.dot`` file when
the ``dot`` program is missing).
"""

from __future__ import annotations

from .types import shape_str


NL = "\\n"        # a line break inside a DOT label


def _q(text: str) -> str:
    """A DOT string literal (labels carry ``\\n`` line breaks on purpose)."""
    return '"' + str(text).replace('"', '\\"') + '"'


def _node_line(node, outputs) -> str:
    shape = shape_str(node.type.shape) if node.type is not None else "?"
    periph = ", peripheries=2" if node.name in outputs else ""
    label = _q(f"%{node.name} {node.op}" + NL + shape)
    return f"{_q(node.name)} [label={label}, shape=box, style=rounded{periph}];"


def to_dot(graph) -> str:
    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=TB;", '  graph [fontname="Helvetica", fontsize=11];',
             '  node [fontname="Helvetica", fontsize=10];']
    for k, t in graph.inputs.items():
        label = _q(f"%{k}" + NL + shape_str(t.shape))
        lines.append(f"  {_q(k)} [label={label}, shape=ellipse];")
    for k, w in graph.weights.items():
        label = _q(f"%{k}" + NL + shape_str(w.type.shape))
        lines.append(f"  {_q(k)} [label={label}, shape=box, style=filled, fillcolor=gray90, fontsize=8];")
    by_name = {n.name: n for n in graph.nodes}
    outputs = set(graph.outputs)
    if graph.groups:
        for grp in graph.groups:
            title = f"group {grp.id}: {by_name[grp.anchor].op} ({grp.kind} -> {grp.lowering})"
            lines.append(f"  subgraph cluster_{grp.id} {{")
            lines.append(f"    label={_q(title)}; style=rounded; color=steelblue;")
            lines += [f"    {_node_line(by_name[m], outputs)}" for m in grp.nodes]
            lines.append("  }")
    else:
        lines += [f"  {_node_line(n, outputs)}" for n in graph.nodes]
    for n in graph.nodes:
        for i in n.inputs:
            lines.append(f"  {_q(i)} -> {_q(n.name)};")
    lines.append("}")
    return "\n".join(lines)


def draw(graph, path):
    """Render ``graph`` to ``path`` (.svg/.png/.pdf); returns :class:`tinyml.viz.Rendered`."""
    from ..viz import render

    return render(to_dot(graph), path)
