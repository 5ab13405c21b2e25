"""Common-subexpression elimination: a node equal to an earlier one is replaced by it.

Two nodes are equal when they have the same op, the same attributes and the
same operands (after earlier replacements; in any order for commutative ops
such as ``add`` and ``mul``). Later uses, and graph outputs, are renamed to the
earlier value; the duplicates disappear.
"""

from __future__ import annotations

from .. import ops as _ops


def cse(graph):
    seen: dict[tuple, str] = {}
    rename: dict[str, str] = {}
    nodes = []
    for n in graph.nodes:
        inputs = tuple(rename.get(i, i) for i in n.inputs)
        key_inputs = tuple(sorted(inputs)) if _ops.get(n.op).commutative else inputs
        key = (n.op, key_inputs, n.attrs)
        if key in seen:
            rename[n.name] = seen[key]
            continue
        seen[key] = n.name
        nodes.append(n if inputs == n.inputs else n.with_(inputs=inputs))
    if not rename:
        return graph.replace()
    outputs = [rename.get(o, o) for o in graph.outputs]
    return graph.replace(nodes=nodes, outputs=outputs, groups=())
