"""What fuse records about each group, pinned (tools/mutate.py found it unchecked): the kind,
the lowering and the anchor of pure (complex-free) groups of one, two and three nodes, a
matmul epilogue that starts with a broadcast op, and the group-size limit exactly at the
union's size."""

from __future__ import annotations

from tinyml.compiler import Graph, fuse, validate

# Equivalent mutants (tools/mutate.py counts them as such):
#
# equivalent mutant tinyml/compiler/passes/fuse.py:57: False -> None
# equivalent mutant tinyml/compiler/passes/fuse.py:78: False -> None
#   _kinds_allow / _makes_cycle are private and their one caller only tests their truth
#   (``not _kinds_allow(...)``, ``or _makes_cycle(...)``): None and False are the same there.


def build(fn):
    g = Graph("f", dtype="fp32")
    x = g.input("x", ("n", 4))
    w = g.weight("w", (4, 4))
    g.output(*fn(g, x, w))
    return g


def described(fn, **kw):
    g = build(fn)
    f = fuse(g, **kw)
    validate(f)
    by = {n.name: n.op for n in f.nodes}
    return [(grp.ops, grp.kind, grp.lowering, by[grp.anchor]) for grp in f.groups]


def test_single_node_groups_lower_as_their_op():
    # a lone layout op keeps its own lowering ("copy"), not the pure-group name "injective"
    assert described(lambda g, x, w: [g.transpose(x)]) == [(("transpose",), "injective", "copy", "transpose")]
    assert described(lambda g, x, w: [g.relu(x)]) == [(("relu",), "elementwise", "elementwise", "relu")]


def test_pure_groups_kind_is_the_highest_pattern_lowering_by_it():
    # exp (elementwise) then add (broadcast): a broadcast group still lowers as "elementwise"
    assert described(lambda g, x, w: [g.add(g.exp(x), x)]) == [
        (("exp", "add"), "broadcast", "elementwise", "add")]
    # relu then transpose: an injective group lowers as "injective"
    assert described(lambda g, x, w: [g.transpose(g.relu(x))]) == [
        (("relu", "transpose"), "injective", "injective", "transpose")]


def test_the_anchor_of_a_pure_group_is_its_last_node():
    assert described(lambda g, x, w: [g.relu(g.tanh(g.exp(x)))]) == [
        (("exp", "tanh", "relu"), "elementwise", "elementwise", "relu")]


def test_a_matmul_epilogue_may_start_with_a_broadcast_op():
    # matmul, + bias (broadcast), relu: relu joins a group whose non-matmul ops are all <= broadcast
    def fn(g, x, w):
        return [g.relu(g.add(g.matmul(x, w), g.weight("b", (4,))))]
    assert described(fn) == [(("matmul", "add", "relu"), "out-elementwise-fusable", "matmul", "matmul")]


def test_group_size_limit_is_inclusive():
    def chain(g, x, w):
        for _ in range(6):
            x = g.tanh(x)
        return [x]
    assert [len(ops) for ops, *_ in described(chain, max_group_size=6)] == [6]
    assert [len(ops) for ops, *_ in described(chain, max_group_size=5)] == [5, 1]
    assert [len(ops) for ops, *_ in described(chain, max_group_size=3)] == [3, 3]


def test_independent_groups_come_in_node_order():
    def fn(g, x, w):
        a = g.matmul(x, w)             # group A
        b = g.softmax(x)               # group B, independent of A
        return [g.relu(b), g.tanh(a)]  # tanh joins A (epilogue); relu cannot join B (after a reduction)
    assert [ops for ops, *_ in described(fn)] == [("matmul", "tanh"), ("softmax",), ("relu",)]


def test_groups_that_become_ready_later_still_come_in_node_order():
    # a = softmax(x), b = x @ w, c = softmax(b), d = a @ w: four groups (no two complex ops merge).
    # c waits for b and d waits for a; when b is done both c and d are ready, and c comes first
    # (its first node is earlier), although d became ready first.
    def fn(g, x, w):
        a = g.softmax(x)
        b = g.matmul(x, w)
        c = g.softmax(b)
        d = g.matmul(a, w)
        return [c, d]
    assert [ops for ops, *_ in described(fn)] == [("softmax",), ("matmul",), ("softmax",), ("matmul",)]
