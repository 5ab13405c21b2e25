"""tinyml.compiler passes: every pass preserves the interpreter's outputs on random graphs;
rewrite_attention finds exactly the attentions it should; fuse makes the groups TVM's rules
predict; the pipeline keeps IR text, drawings and numbers after every pass."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies_graph import attention_graphs, make_inputs, random_graphs
from tinyml.compiler import (FusedGroup, Graph, GraphError, cse, dead_code, fuse, infer_shapes, interpret,
                             rewrite_attention, run_passes, validate, zoo)
from tinyml.compiler.ops import get as get_op

PASSES = {
    "infer_shapes": infer_shapes,
    "dead_code": dead_code,
    "cse": cse,
    "fuse": fuse,
    "fuse4": functools.partial(fuse, max_group_size=4),
    "rewrite_attention": rewrite_attention,
}


def assert_same_outputs(a, b, inputs, bindings, rtol=1e-6, atol=1e-6):
    out_a, out_b = interpret(a, inputs, bindings), interpret(b, inputs, bindings)
    assert len(out_a) == len(out_b)
    for x, y in zip(out_a, out_b):
        np.testing.assert_allclose(y, x, rtol=rtol, atol=atol)


def snapshot(g):
    return str(g), list(g.nodes), list(g.outputs), tuple(g.groups), dict(g.weights)


# ---- every pass preserves semantics ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(PASSES))
@given(case=random_graphs())
def test_pass_preserves_outputs(name, case):
    g, inputs, bindings = case
    before = snapshot(g)
    out = PASSES[name](g)
    assert snapshot(g) == before, "a pass mutated its input"
    validate(out)
    assert_same_outputs(g, out, inputs, bindings)


@given(case=random_graphs(), max_size=st.integers(1, 8))
def test_pipeline_of_all_passes_preserves_outputs(case, max_size):
    g, inputs, bindings = case
    out = run_passes(g, ["rewrite_attention", "cse", "dce", "infer_shapes",
                         functools.partial(fuse, max_group_size=max_size)]).graph
    assert_same_outputs(g, out, inputs, bindings)


@given(case=random_graphs(), max_size=st.integers(1, 8))
def test_fuse_invariants(case, max_size):
    g, _, _ = case
    f = fuse(g, max_group_size=max_size)
    assert sorted(m for grp in f.groups for m in grp.nodes) == sorted(n.name for n in g.nodes)
    by_name = {n.name: n for n in f.nodes}
    for grp in f.groups:
        ops = [by_name[m] for m in grp.nodes]
        complex_ops = [n for n in ops if get_op(n.op).is_complex]
        assert len(grp.nodes) <= max_size
        assert len(complex_ops) <= 1, f"group {grp.id} holds two complex ops: {grp.ops}"
        assert grp.ops == tuple(n.op for n in ops)
        if complex_ops:
            assert grp.anchor == complex_ops[0].name and grp.kind == get_op(complex_ops[0].op).pattern
            if grp.kind == "reduction":                       # nothing after a reduction joins it
                assert ops[-1] is complex_ops[0]
            if grp.kind == "out-elementwise-fusable":         # matmul first, then its elementwise epilogue
                assert ops[0] is complex_ops[0]
                assert all(get_op(n.op).pattern in ("elementwise", "broadcast") for n in ops[1:])


# ---- infer_shapes, dead_code, cse ------------------------------------------------------------------------


def test_infer_shapes_fills_and_checks():
    g = zoo.gpt2_block(d_model=16, n_heads=2)
    stripped = g.replace(nodes=[n.with_(type=None) for n in g.nodes])
    with pytest.raises(GraphError, match="no type"):
        validate(stripped)
    filled = infer_shapes(stripped)
    assert [n.type for n in filled.nodes] == [n.type for n in g.nodes]
    wrong = g.replace(nodes=[n.with_(type=g.nodes[0].type) if n.op == "softmax" else n for n in g.nodes])
    with pytest.raises(GraphError, match="softmax.*its type says tensor<n x 16, fp16> but the shape rule gives "
                                         "tensor<2 x n x n, fp16>"):
        infer_shapes(wrong)


def test_dead_code():
    g = Graph("d", dtype="fp32")
    x = g.input("x", ("n", 4))
    unused_w = g.weight("unused", (4, 4))
    g.matmul(g.relu(x), unused_w)                      # dead: no output needs it
    y = g.tanh(x)
    g.output(y)
    out = dead_code(g)
    assert [n.op for n in out.nodes] == ["tanh"]
    assert "unused" not in out.weights and "x" in out.inputs
    assert len(g.nodes) == 3                            # the input graph is untouched


def test_cse_merges_equal_nodes_only():
    g = Graph("c", dtype="fp32")
    x, y = g.input("x", ("n", 4)), g.input("y", ("n", 4))
    a1, a2 = g.add(x, y), g.add(y, x)                   # commutative: the same
    s1, s2 = g.sub(x, y), g.sub(y, x)                   # not the same
    t1, t2 = g.tanh(a1), g.tanh(a2)                     # the same once a2 -> a1
    k1, k2 = g.scale(x, 0.5), g.scale(x, 2.0)           # different attributes
    g.output(t1, t2, s1, s2, k1, k2)
    out = cse(g)
    assert [n.op for n in out.nodes] == ["add", "sub", "sub", "tanh", "scale", "scale"]
    assert out.outputs[0] == out.outputs[1] == t1.name
    rng = np.random.default_rng(0)
    inputs = {"x": rng.standard_normal((3, 4)), "y": rng.standard_normal((3, 4))}
    assert_same_outputs(g, out, inputs, {"n": 3})


# ---- rewrite_attention -------------------------------------------------------------------------------


def count(g, op):
    return sum(n.op == op for n in g.nodes)


@given(case=attention_graphs())
def test_rewrite_attention_variants(case):
    g, inputs, bindings, expected = case
    out = rewrite_attention(g)
    validate(out)
    assert count(out, "attention") == expected
    if expected:
        assert count(out, "softmax") == 0 and count(out, "matmul") == 0
    else:
        assert [n.op for n in out.nodes] == [n.op for n in g.nodes]
    assert_same_outputs(g, out, inputs, bindings, rtol=1e-5, atol=1e-6)


def test_gpt2_block_gets_exactly_one_attention(rng):
    g = zoo.gpt2_block(d_model=24, n_heads=3)
    out = rewrite_attention(g)
    assert count(g, "attention") == 0 and count(out, "attention") == 1
    assert count(out, "softmax") == 0 and count(out, "causal_mask") == 0 and count(out, "scale") == 0
    att = next(n for n in out.nodes if n.op == "attention")
    assert att.attr == {"causal": True, "scale": pytest.approx(1 / np.sqrt(8))}
    assert len(out.nodes) == len(g.nodes) - 5        # -s, -scale, -mask, -softmax, -k^T; matmul(p, v) -> attention
    x = rng.standard_normal((9, 24))
    assert_same_outputs(g, out, {"x": x}, {"n": 9}, rtol=1e-5, atol=1e-6)


def test_tiny_gpt_gets_one_attention_per_block(rng):
    g = zoo.tiny_gpt(layers=3, vocab=13, d_model=16, n_heads=2, n_ctx=12)
    out = rewrite_attention(g)
    assert count(out, "attention") == 3 and count(out, "softmax") == 0
    ids = rng.integers(0, 13, size=7).astype(np.int32)
    assert_same_outputs(g, out, {"ids": ids}, None, rtol=1e-5, atol=1e-6)


# ---- fuse: group counts derived from the rules ------------------------------------------------------------


def build(fn):
    g = Graph("f", dtype="fp32")
    x = g.input("x", ("n", 4))
    w = g.weight("w", (4, 4))
    g.output(*fn(g, x, w))
    return g


def groups_of(g, **kw):
    f = fuse(g, **kw)
    validate(f)
    assert_same_outputs(g, f, make_inputs(g, {"n": 3}, 7), {"n": 3})
    assert all(isinstance(grp, FusedGroup) for grp in f.groups)
    return [grp.ops for grp in f.groups], f


CASES = {
    # the matmul absorbs its elementwise epilogue
    "matmul->add->gelu": (lambda g, x, w: [g.gelu(g.add(g.matmul(x, w), x))], [("matmul", "add", "gelu")]),
    # a matmul absorbs no producer; the second matmul starts a new group
    "matmul->matmul": (lambda g, x, w: [g.matmul(g.matmul(x, w), w)], [("matmul",), ("matmul",)]),
    "tanh->matmul": (lambda g, x, w: [g.matmul(g.tanh(x), w)], [("tanh",), ("matmul",)]),
    # a reduction absorbs its elementwise producers ...
    "exp->softmax": (lambda g, x, w: [g.softmax(g.exp(x))], [("exp", "softmax")]),
    # ... and nothing after it
    "softmax->relu": (lambda g, x, w: [g.relu(g.softmax(x))], [("softmax",), ("relu",)]),
    # two complex ops never share a group
    "matmul->softmax": (lambda g, x, w: [g.softmax(g.matmul(x, w))], [("matmul",), ("softmax",)]),
    "layernorm->matmul": (lambda g, x, w: [g.matmul(g.layernorm(x, g.weight("lw", (4,)), g.weight("lb", (4,))), w)],
                          [("layernorm",), ("matmul",)]),
    # a layout op does not join a matmul's epilogue, but layout ops fuse with each other
    "matmul->transpose->reshape": (lambda g, x, w: [g.reshape(g.transpose(g.matmul(x, w)), (-1,))],
                                   [("matmul",), ("transpose", "reshape")]),
    # a diamond of elementwise ops is one group
    "diamond": (lambda g, x, w: [g.add(g.tanh(g.exp(x)), g.relu(g.exp(x)))],
                [("exp", "tanh", "exp", "relu", "add")]),
    # a diamond hanging off one matmul: all of it is the matmul's epilogue
    "matmul diamond": (lambda g, x, w: [(lambda h: g.add(g.relu(h), g.tanh(h)))(g.matmul(x, w))],
                       [("matmul", "relu", "tanh", "add")]),
    # two matmuls meeting in an add: the add joins the first one's epilogue; the second
    # matmul's group must come first, since the add reads its output
    "two matmuls -> add": (lambda g, x, w: [g.add(g.relu(g.matmul(x, w)), g.tanh(g.matmul(x, w)))],
                           [("matmul", "tanh"), ("matmul", "relu", "add")]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fuse_known_graphs(name):
    fn, expected = CASES[name]
    got, _ = groups_of(build(fn))
    assert got == expected


def test_fuse_materialises_values_used_outside():
    def fn(g, x, w):
        h = g.matmul(x, w)
        return [g.gelu(h), h]                           # h is also a graph output
    got, f = groups_of(build(fn))
    assert got == [("matmul", "gelu")]
    assert len(f.groups[0].outputs) == 2 and f.groups[0].inputs == ("x", "w")

    def fn2(g, x, w):
        e = g.exp(x)
        return [g.softmax(e), g.relu(e)]                # e read by the softmax group and by relu
    got, f = groups_of(build(fn2))
    assert got == [("exp", "softmax"), ("relu",)]
    assert f.groups[0].outputs == (f.groups[0].nodes[0], f.groups[0].nodes[1])


def test_fuse_refuses_a_merge_that_would_make_a_cycle():
    # t = tanh(x); b = matmul(t, w); l = layernorm(b); out = add(t, l).
    # add may absorb tanh by the kind rules, but the path tanh -> matmul -> layernorm -> add
    # leaves and re-enters {tanh, add}: the merge would make the groups cyclic.
    def fn(g, x, w):
        t = g.tanh(x)
        return [g.add(t, g.layernorm(g.matmul(t, w), g.weight("lw", (4,)), g.weight("lb", (4,))))]
    got, _ = groups_of(build(fn))
    assert got == [("tanh",), ("matmul",), ("layernorm",), ("add",)]


def test_fuse_max_group_size():
    def chain(g, x, w):
        for _ in range(10):
            x = g.tanh(x)
        return [x]
    for size, groups in ((8, 2), (4, 3), (1, 10), (10, 1)):
        got, _ = groups_of(build(chain), max_group_size=size)
        assert len(got) == groups == -(-10 // size)
    with pytest.raises(GraphError, match="max_group_size"):
        fuse(build(chain), max_group_size=0)


def test_fuse_gpt2_block_group_counts(rng):
    """Derived by hand from the rules (see fuse's docstring):

    unfused 30 nodes -> ln_1 | c_attn matmul+bias | q: slice, reshape, transpose | k: same + k^T |
    v: slice, reshape, transpose | q k^T matmul + scale + mask | softmax | p v matmul |
    transpose, reshape | c_proj matmul + bias + residual | ln_2 | c_fc matmul + bias + gelu |
    mlp c_proj matmul + bias + residual  =  13 groups.
    After rewrite_attention the 5 ops from q k^T to p v become one attention group
    and k^T disappears: 11 groups.
    """
    g = zoo.gpt2_block(d_model=16, n_heads=2)
    f = fuse(g)
    assert len(f.groups) == 13
    assert [grp.lowering for grp in f.groups] == ["layernorm", "matmul", "injective", "injective", "injective",
                                               "matmul", "softmax", "matmul", "injective", "matmul",
                                               "layernorm", "matmul", "matmul"]
    assert f.groups[5].ops == ("matmul", "scale", "causal_mask")
    assert f.groups[9].ops == ("matmul", "add", "add")
    fr = fuse(rewrite_attention(g))
    assert len(fr.groups) == 11
    assert [grp.kind for grp in fr.groups].count("opaque") == 1
    x = rng.standard_normal((6, 16))
    assert_same_outputs(g, f, {"x": x}, {"n": 6})
    assert_same_outputs(g, fr, {"x": x}, {"n": 6}, rtol=1e-5)


def test_interpreter_catches_a_group_that_forgets_an_output():
    f = fuse(build(lambda g, x, w: [g.gelu(g.matmul(x, w))]).replace())
    grp = f.groups[0]
    f = f.replace(groups=[FusedGroup(0, (grp.nodes[0],), grp.ops[:1], grp.inputs, (), grp.nodes[0],
                                     grp.kind, grp.lowering),
                          FusedGroup(1, grp.nodes[1:], grp.ops[1:], (grp.nodes[0],), grp.outputs, grp.nodes[1],
                                     "elementwise", "elementwise")])
    with pytest.raises(GraphError, match="reads %0, which no earlier group wrote"):
        interpret(f, {"x": np.ones((2, 4))})
    with pytest.raises(GraphError, match="group 0 says it writes \\[\\] but \\['0'\\] are needed outside it"):
        validate(f)


def test_other_passes_drop_the_grouping():
    f = fuse(zoo.gpt2_block(d_model=16, n_heads=2))
    assert cse(f).groups == f.groups                    # nothing to merge: unchanged
    assert rewrite_attention(f).groups == ()            # nodes changed: fuse again
    with pytest.raises(GraphError, match="is fused"):
        f.relu(f.outputs[0])


# ---- pipeline ---------------------------------------------------------------------------------------------


def test_pipeline_explains_every_step(tmp_path):
    g = zoo.gpt2_block(d_model=16, n_heads=2)
    res = run_passes(g, ["rewrite_attention", "cse", "dce", "fuse"],
                     summarize=lambda graph: {"weights": len(graph.weights)})
    assert [s.name for s in res.steps] == ["input", "rewrite_attention", "cse", "dce", "fuse"]
    assert [s.summary["nodes"] for s in res.steps] == [30, 25, 25, 25, 25]
    assert [s.summary["groups"] for s in res.steps] == [0, 0, 0, 0, 11]
    assert all(s.summary["weights"] == 12 for s in res.steps)
    assert res.graph is res.steps[-1].graph
    assert "softmax" in res.steps[0].ir and "attention(" in res.steps[1].ir
    assert "group 10 [matmul, out-elementwise-fusable -> matmul]" in res.steps[-1].ir
    assert res.steps[-1].dot.count("subgraph cluster_") == 11
    assert "attention" in res.steps[-1].dot and "2 x n x 8" in res.steps[-1].dot
    table = res.table()
    assert table.splitlines()[0].split() == ["step", "nodes", "groups", "weights"]
    assert len(table.splitlines()) == 6
    out = res.steps[-1].draw(tmp_path / "fused.svg")
    assert out.path.exists()
    quiet = run_passes(g, ["fuse"], explain=False)
    assert quiet.steps[-1].ir == "" and quiet.steps[-1].summary["groups"] == 13


def test_pipeline_errors():
    g = zoo.mlp(d_model=4, d_hidden=8)
    with pytest.raises(GraphError, match="unknown pass 'fold'"):
        run_passes(g, ["fold"])

    def broken(graph):
        return graph.replace(outputs=["nowhere"])
    with pytest.raises(GraphError, match="(?s)pass .broken. produced an invalid graph.*output %nowhere"):
        run_passes(g, [broken])


@given(case=random_graphs())
def test_rewrite_attention_in_random_graphs_removes_every_softmax_it_can(case):
    """Every written-out attention in random_graphs has single-use intermediates, so none survives."""
    g, inputs, bindings = case
    out = rewrite_attention(g)
    assert count(out, "attention") == sum(n.op == "softmax" and n.type.rank == 3 for n in g.nodes)
    assert_same_outputs(g, out, inputs, bindings, rtol=1e-5, atol=1e-6)
