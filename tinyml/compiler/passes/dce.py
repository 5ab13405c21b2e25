"""Dead-code elimination: keep only the nodes (and weights) some output depends on.

Inputs stay (they are the graph's signature), even if unused.
"""

from __future__ import annotations


def dead_code(graph):
    live = set(graph.outputs)
    for n in reversed(graph.nodes):
        if n.name in live:
            live.update(n.inputs)
    nodes = [n for n in graph.nodes if n.name in live]
    weights = {k: w for k, w in graph.weights.items() if k in live}
    if len(nodes) == len(graph.nodes) and len(weights) == len(graph.weights):
        return graph.replace()
    return graph.replace(nodes=nodes, weights=weights, groups=())
