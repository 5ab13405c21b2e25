"""The text form of a graph, one line per node, like a compiler's IR dump::

    graph mlp(%x: tensor<n x 768, fp16>) {
      weight %w1: tensor<768 x 3072, fp16>
      %0 = matmul(%x, %w1) : tensor<n x 3072, fp16>
      %1 = gelu(%0) : tensor<n x 3072, fp16>
      return %1
    }

A fused graph prints each group as a block headed by its anchor, kind and lowering,
with what it reads and what it writes to HBM::

      group 0 [matmul, out-elementwise-fusable -> matmul] reads (%x, %w1) writes (%1) {
        %0 = matmul(%x, %w1) : tensor<n x 3072, fp16>
        %1 = gelu(%0) : tensor<n x 3072, fp16>
      }
"""

from __future__ import annotations

import math

from .symbolic import Affine


def format_value(v) -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "-inf" if v < 0 else "inf"
        return repr(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    if isinstance(v, Affine):
        return str(v)
    return repr(v) if isinstance(v, str) else str(v)


def format_node(node) -> str:
    args = ", ".join(f"%{i}" for i in node.inputs)
    attrs = ", ".join(f"{k}={format_value(v)}" for k, v in node.attrs)
    attrs = f" {{{attrs}}}" if attrs else ""
    ty = node.type if node.type is not None else "?"
    return f"%{node.name} = {node.op}({args}){attrs} : {ty}"


def format_group(group, nodes_by_name, indent="  ") -> list[str]:
    reads = ", ".join(f"%{i}" for i in group.inputs)
    writes = ", ".join(f"%{o}" for o in group.outputs)
    anchor = nodes_by_name[group.anchor].op
    lines = [f"{indent}group {group.id} [{anchor}, {group.kind} -> {group.lowering}] reads ({reads}) writes ({writes}) {{"]
    lines += [f"{indent}  {format_node(nodes_by_name[n])}" for n in group.nodes]
    lines.append(f"{indent}}}")
    return lines


def format_graph(graph) -> str:
    params = ", ".join(f"%{k}: {t}" for k, t in graph.inputs.items())
    lines = [f"graph {graph.name}({params}) {{"]
    lines += [f"  weight %{k}: {w.type}" for k, w in graph.weights.items()]
    by_name = {n.name: n for n in graph.nodes}
    if graph.groups:
        for grp in graph.groups:
            lines += format_group(grp, by_name)
    else:
        lines += [f"  {format_node(n)}" for n in graph.nodes]
    lines.append("  return " + ", ".join(f"%{o}" for o in graph.outputs))
    lines.append("}")
    return "\n".join(lines)
