"""Which layout ops cost nothing: views, and layouts the next kernel reads in place.

A layout op moves no arithmetic, only addresses. Whether it costs a kernel
depends on who reads its result:

* ``reshape`` of a tensor is a **view** (same bytes, new shape): never a kernel.
  (Where a reshape follows a transpose, the transpose is the copy that makes the
  bytes contiguous.)
* a chain of ``slice`` / ``reshape`` / ``transpose`` that only feeds ``attention``
  operands, or only reads an ``attention`` output, is **read in place**:
  FlashAttention works in the ``(n, heads, d)`` layout (its tiles are rows of
  ``d`` contiguous elements at a stride), so GPT-2's
  ``split -> view -> transpose(1, 2)`` and ``transpose(1, 2) -> view`` around the
  attention are views. Condition: every transpose keeps the last axis last.
* a ``transpose`` that swaps the last two axes and only feeds matmuls is read in
  place too: the matmul loads transposed tiles (cuBLAS's transpose flag).
* anything else (a transpose read by an elementwise kernel, a concat, a graph
  output) is a **real copy**: one kernel that reads each element once and writes
  it once (or, in a fused group, part of that group's single kernel).
"""

from __future__ import annotations

LAYOUT_OPS = ("reshape", "transpose", "slice")


def _keeps_last_axis(node) -> bool:
    if node.op != "transpose":
        return True
    perm = node.attr["perm"]
    return perm[-1] == len(perm) - 1


def _swaps_last_two(node) -> bool:
    perm = node.attr["perm"]
    r = len(perm)
    return r >= 2 and perm == tuple(range(r - 2)) + (r - 1, r - 2)


def is_view_group(graph, nodes, outputs: tuple, consumers: dict) -> "str | None":
    """Why the group ``nodes`` (layout ops only) costs no kernel, or None if it must copy.

    ``outputs``: the values the group hands on; ``consumers``: ``graph.consumers()``.
    """
    if not nodes or any(n.op not in LAYOUT_OPS for n in nodes):
        return None
    if any(o in graph.outputs for o in outputs):
        return None                                      # a graph output is its own tensor
    if all(n.op == "reshape" for n in nodes):
        return "view"
    readers = [graph.node(c) for o in outputs for c in consumers.get(o, ())]
    if all(_keeps_last_axis(n) for n in nodes):
        final = [r for o in outputs for r in _through_layout(graph, o, consumers)]
        if final and all(r is not None and r.op == "attention" for r in final):
            return "read in place by attention"
        src = _source_through_layout(graph, nodes[0].inputs[0])
        if src is not None and src.op == "attention":
            return "written in place by attention"
    if (len(nodes) == 1 and nodes[0].op == "transpose" and _swaps_last_two(nodes[0])
            and readers and all(r.op == "matmul" for r in readers)):
        return "read transposed by matmul"
    return None


def _through_layout(graph, value: str, consumers: dict, depth: int = 0) -> list:
    """The nodes that finally read ``value``, looking through layout ops that keep the last axis
    (a None entry: a reader that is a graph output or a layout op that moves the last axis)."""
    out = [None] if value in graph.outputs else []
    for c in consumers.get(value, ()):
        node = graph.node(c)
        if node.op in LAYOUT_OPS and depth < 16:
            out += _through_layout(graph, c, consumers, depth + 1) if _keeps_last_axis(node) else [None]
        else:
            out.append(node)
    return out


def _source_through_layout(graph, value: str, depth: int = 0):
    """The node that made ``value``, looking back through layout ops that keep the last axis."""
    node = graph.node(value)
    if node is not None and node.op in LAYOUT_OPS and _keeps_last_axis(node) and depth < 16:
        return _source_through_layout(graph, node.inputs[0], depth + 1)
    return node
