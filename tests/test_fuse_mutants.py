"""What fuse records about each group, pinned (tools/mutate.py found it unchecked): the kind,
the lowering and the anchor of pure (complex-free) groups of one, two and three nodes, a
matmul epilogue that starts with a broadcast op, and the group-size limit exactly at the
union's size."""

from __future__ import annotations

import importlib

import pytest

from tinyml.compiler import Graph, GraphError, fuse, validate

fuse_module = importlib.import_module("tinyml.compiler.passes.fuse")

# Equivalent mutants (tools/mutate.py counts them as such):
#
# equivalent mutant tinyml/compiler/passes/fuse.py:57: False -> None
# equivalent mutant tinyml/compiler/passes/fuse.py:78: False -> None
#   _kinds_allow / _makes_cycle are private and their one caller only tests their truth
#   (``not _kinds_allow(...)``, ``or _makes_cycle(...)``): None and False are the same there.
# equivalent mutant tinyml/compiler/passes/fuse.py:70: continue -> pass
#   _makes_cycle's walk: a node already in ``seen`` got there with its whole group, whose consumers were
#   checked against ``members`` then (a hit returned True) and pushed unless seen; walking the group again
#   checks the same consumers and pushes none that were not already pushed. Only the work changes, and the
#   walk still ends (the graph is acyclic and every pop marks its group seen).


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


# equivalent mutant tinyml/compiler/passes/fuse.py:101: 1 -> 2
#   ``len(_complex(union)) > 1`` never decides a merge: every group holds at most one complex op (by
#   induction over merges), and _kinds_allow already refuses every merge that would make two: a complex
#   producer group takes only a consumer group of one node of pattern <= broadcast (no complex pattern:
#   reduction 3, out-elementwise-fusable 4, opaque 5), and a producer group without one adds none.
# equivalent mutant tinyml/compiler/passes/fuse.py:97: continue -> pass
#   ``pg == cg`` never holds: the producer groups of a node are distinct and older than the node's own
#   group, and after a merge the node's group is the producer group just merged, which the deduplicated
#   list does not hold again. The guard is defensive only.


def test_a_complex_producer_is_tried_before_an_elementwise_one():
    # add(relu(x), matmul(x, w)): relu's group comes first in the inputs, but the matmul is tried first and
    # takes add as its epilogue; relu then cannot join (its consumer's group holds a matmul), so it stays
    # alone. Tried in input order, relu and add would merge and the matmul would stay alone.
    def fn(g, x, w):
        return [g.add(g.relu(x), g.matmul(x, w))]
    assert described(fn) == [(("relu",), "elementwise", "elementwise", "relu"),
                             (("matmul", "add"), "out-elementwise-fusable", "matmul", "matmul")]


def test_default_group_size_is_eight():
    def chain(g, x, w):
        for _ in range(9):
            x = g.tanh(x)
        return [x]
    assert [len(ops) for ops, *_ in described(chain)] == [8, 1]


def test_a_cycle_the_merge_check_missed_is_refused_not_emitted(monkeypatch):
    # the graph of test_compiler_passes' cycle test: tanh -> matmul -> layernorm -> add, and tanh -> add.
    # With the cycle check switched off, {tanh, add} merge and no order of the groups exists: fuse says so
    # instead of returning groups that cannot be launched in order.
    def fn(g, x, w):
        t = g.tanh(x)
        return [g.add(t, g.layernorm(g.matmul(t, w), g.weight("lw", (4,)), g.weight("lb", (4,))))]
    monkeypatch.setattr(fuse_module, "_makes_cycle", lambda *args: False)
    with pytest.raises(GraphError, match=r"fuse: the groups form a cycle \(a bug in fuse's cycle check\)"):
        fuse(build(fn))
