"""Shape inference: every node's type from its op's shape rule, in topological order.

Nodes without a type (``type=None``, e.g. built by hand or by a pass) get one;
a node whose type disagrees with its op's rule raises :class:`GraphError`
naming the node, its operand types, its stated type and the inferred one.
"""

from __future__ import annotations

from .. import ops as _ops
from ..errors import GraphError


def infer_shapes(graph):
    types = dict(graph.inputs)
    types.update({k: w.type for k, w in graph.weights.items()})
    nodes = []
    for n in graph.nodes:
        missing = [i for i in n.inputs if i not in types]
        if missing:
            raise GraphError(f"infer_shapes: %{n.name} = {n.op}(...) reads {', '.join('%' + m for m in missing)} "
                             "before it is defined (run validate() for the full story)")
        operands = tuple(types[i] for i in n.inputs)
        where = f"%{n.name} = {n.op}({', '.join(f'%{i}: {t}' for i, t in zip(n.inputs, operands))})"
        try:
            t = _ops.get(n.op).shape_rule(operands, n.attr)
        except GraphError as e:
            raise type(e)(f"infer_shapes: {where}: {e}") from None
        if n.type is not None and n.type != t:
            raise GraphError(f"infer_shapes: {where}: its type says {n.type} but the shape rule gives {t}")
        types[n.name] = t
        nodes.append(n if n.type is not None else n.with_(type=t))
    return graph.replace(nodes=nodes)
