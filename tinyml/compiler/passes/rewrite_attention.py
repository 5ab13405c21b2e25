"""Attention rewrite: the written-out attention of a model becomes one ``attention`` node.

What PyTorch Inductor does with its SDPA patterns. The pattern, read backwards
from the second matmul::

    s  = matmul(q, kT)                    # (.., H, Nq, Nk)   kT = transpose(k, swap last two)
    s  = scale(s, c1)                     # any run of scale / causal_mask(scale=c2, fill=-inf)
    s  = causal_mask(s, scale=c2)         #   (optional; at most one mask)
    p  = softmax(s)                       # (.., H, Nq, Nk)
    o  = matmul(p, v)                     # (.., H, Nq, d)

becomes ``o = attention(q, k, v, causal=<mask seen>, scale=c1*c2)``. It applies
only when it is exact:

* every intermediate (``s``, the scaled/masked scores, ``p``) is used once and is
  not a graph output (otherwise it must be materialised anyway);
* a mask fills with ``-inf`` (as FlashAttention; a finite fill is a different function).
  Any (finite) scale factor, negative or zero included, folds: a scale leaves a masked
  ``-inf`` at ``-inf`` (:mod:`tinyml.compiler.ops.elementwise`), so scales and the mask
  commute and the product of the factors is the attention's scale;
* q, k, v have rank 3 or 4, the same batch/head dimensions (no broadcasting in
  the matmuls) and ``d`` equal for q and k.

If ``kT`` is a transpose that swaps the last two axes, its input is ``k``;
otherwise a new ``transpose`` of ``kT`` provides ``k``. The attention node keeps
the name of ``o``, so its consumers do not change; the transpose that made
``kT`` is removed if nothing else reads it.
"""

from __future__ import annotations

import math

from ..errors import GraphError


def _single_use(graph, uses, name) -> bool:
    return len(uses.get(name, [])) == 1 and name not in graph.outputs


def _match(graph, uses, o):
    """The attention pattern ending at node ``o``: (dead nodes, q, kT, v, causal, scale) or None."""
    if o.op != "matmul":
        return None
    p = graph.node(o.inputs[0])
    if p is None or p.op != "softmax" or not _single_use(graph, uses, p.name):
        return None
    dead = [p.name]
    scale, causal = 1.0, False
    s = graph.node(p.inputs[0])
    while s is not None and s.op in ("scale", "causal_mask"):
        if not _single_use(graph, uses, s.name):
            return None
        a = s.attr
        factor = a["factor"] if s.op == "scale" else a["scale"]
        if s.op == "causal_mask":
            if causal or not (math.isinf(a["fill"]) and a["fill"] < 0):
                return None
            causal = True
        scale *= factor
        dead.append(s.name)
        s = graph.node(s.inputs[0])
    if s is None or s.op != "matmul" or not _single_use(graph, uses, s.name):
        return None
    dead.append(s.name)
    q, kt, v = s.inputs[0], s.inputs[1], o.inputs[1]
    tq, tkt, tv = (graph.type_of(x) for x in (q, kt, v))
    if tq.rank not in (3, 4) or not (tkt.rank == tv.rank == tq.rank):
        return None
    kshape = tkt.shape[:-2] + (tkt.shape[-1], tkt.shape[-2])
    if kshape != tv.shape or tq.shape[:-2] != tv.shape[:-2] or tq.shape[-1] != kshape[-1]:
        return None
    return dead, q, kt, v, causal, scale


def rewrite_attention(graph):
    """Replace every matching attention subgraph by one ``attention`` node (see the module docstring)."""
    uses = graph.consumers()
    done: set[str] = set()
    replace: dict[str, list] = {}       # node name -> nodes that take its place
    work = graph.replace(nodes=list(graph.nodes), groups=())
    for o in graph.nodes:
        m = _match(graph, uses, o)
        if m is None or done.intersection(m[0]):
            continue
        dead, q, kt, v, causal, scale = m
        new = []
        kt_node = graph.node(kt)
        swap = tuple(range(graph.type_of(kt).rank - 2)) + (graph.type_of(kt).rank - 1, graph.type_of(kt).rank - 2)
        if kt_node is not None and kt_node.op == "transpose" and kt_node.attr["perm"] == swap:
            k = kt_node.inputs[0]
            if uses.get(kt) == [dead[-1]] and kt not in graph.outputs:
                dead.append(kt)
        else:
            t = work.make_node("transpose", [kt], {"perm": swap})
            work.nodes.append(t)            # reserve its name
            new.append(t)
            k = t.name
        att = work.make_node("attention", [q, k, v], {"causal": causal, "scale": scale}, name=o.name)
        if att.type != o.type:
            raise GraphError(f"rewrite_attention: %{o.name} would change type from {o.type} to {att.type}")
        new.append(att)
        replace[o.name] = new
        done.update(dead)
    if not replace:
        return graph.replace()
    nodes = []
    for n in graph.nodes:
        if n.name in done:
            continue
        nodes.extend(replace.get(n.name, [n]))
    return graph.replace(nodes=nodes, groups=())
