"""Lowering and compile(): compiled == interpreted (random graphs, attention patterns, the zoo),
counting mode == executing mode, kernel counts derived from the lowering rules, and bytes
equal to the closed-form formulas of the kernels the groups lower to."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies_graph import attention_graphs, make_inputs, random_graphs
from tinyml.compiler import BindingError, Graph, GraphError, compile, fuse, interpret, lower, zoo
from tinyml.sim import Profile, meta
from tinyml.sim.dtypes import nbytes


def assert_close(outs, refs):
    assert len(outs) == len(refs)
    for out, ref in zip(outs, refs):
        assert out.shape == ref.shape
        scale = max(1.0, float(np.abs(ref[np.isfinite(ref)]).max(initial=0.0)))
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * scale)


def same_counters(a: Profile, b: Profile):
    key = lambda p: [(r.name, r.grid, r.hbm_read_bytes, r.hbm_write_bytes, r.flops_matmul, r.flops_vector)  # noqa
                     for r in p.records]
    assert key(a) == key(b)


def small_zoo():
    return {
        "mlp": (zoo.get("mlp", d_model=16, d_hidden=24), {"x": ("n", 16)}),
        "gpt2_block": (zoo.get("gpt2_block", d_model=32, n_heads=4), {"x": ("n", 32)}),
        "tiny_gpt": (zoo.get("tiny_gpt", layers=2, vocab=53, d_model=32, n_heads=2, n_ctx=16), None),
    }


# ---- compiled == interpreted ------------------------------------------------------------------------


@given(case=random_graphs())
def test_compiled_equals_interpreter_on_random_graphs(case):
    g, inputs, bindings = case
    ref = interpret(g, inputs, bindings)
    outs, _ = compile(g, explain=False, dtype="fp32").run(inputs, bindings)
    assert_close(outs, ref)


@given(case=random_graphs(), max_size=st.integers(1, 8))
def test_small_groups_still_equal_interpreter(case, max_size):
    g, inputs, bindings = case
    passes = ["rewrite_attention", "cse", functools.partial(fuse, max_group_size=max_size)]
    outs, _ = compile(g, passes=passes, explain=False, dtype="fp32").run(inputs, bindings)
    assert_close(outs, interpret(g, inputs, bindings))


@given(case=random_graphs())
def test_op_by_op_equals_interpreter_on_random_graphs(case):
    g, inputs, bindings = case
    outs, _ = lower(g, fused=False).run(inputs, bindings, dtype="fp32")
    assert_close(outs, interpret(g, inputs, bindings))


@given(case=attention_graphs())
def test_compiled_attention_patterns_equal_interpreter(case):
    g, inputs, bindings, _ = case
    outs, _ = compile(g, explain=False, dtype="fp32").run(inputs, bindings)
    assert_close(outs, interpret(g, inputs, bindings))


def masked_then_scaled(factor: float):
    """One head, d = 1: s = scale(causal_mask(q k^T), factor); outputs softmax(s) v and s itself."""
    g = Graph("mask_then_scale", dtype="fp32")
    q, k, v = (g.input(name, (1, "n", 1)) for name in "qkv")             # (1, n, 1)
    s = g.scale(g.causal_mask(g.matmul(q, g.transpose(k, (0, 2, 1)))), factor)  # (1, n, n)
    g.output(g.matmul(g.softmax(s), v), s)                             # (1, n, 1), (1, n, n)
    return g


@pytest.mark.parametrize("factor", [-1.0, 0.0, 0.5])
def test_a_masked_score_stays_masked_under_any_later_scale(factor):
    """The falsifying example (1 head, d = 1, n = 2, the scores an output): the masked score is -inf
    after scale(., factor) for every sign, in the interpreter, fused and op by op; row 0 sees key 0 only,
    so its output is v[0]; row 1 is the softmax of factor * (q1 k0, q1 k1)."""
    g = masked_then_scaled(factor)
    q, k, v = (np.array([[[a], [b]]], np.float32) for a, b in ((0.5, -1.5), (2.0, 1.0), (3.0, -4.0)))
    inputs = {"q": q, "k": k, "v": v}
    s1 = factor * q[0, 1, 0] * k[0, :, 0]                              # row 1's scores (2,)
    p1 = np.exp(s1 - s1.max()) / np.exp(s1 - s1.max()).sum()
    want_o = np.array([[[v[0, 0, 0]], [p1 @ v[0, :, 0]]]])
    want_s = np.array([[[factor * q[0, 0, 0] * k[0, 0, 0], -np.inf], s1]])
    ref = interpret(g, inputs)
    assert_close(ref, [want_o, want_s])
    assert np.isneginf(ref[1][0, 0, 1])
    fused, _ = compile(g, explain=False, dtype="fp32").run(inputs)
    op_by_op, _ = lower(g, fused=False).run(inputs, dtype="fp32")
    for outs in (fused, op_by_op):
        assert_close(outs, ref)
        assert np.isneginf(outs[1][0, 0, 1])


def test_scale_and_mask_commute_so_the_rewrite_folds_a_negative_factor():
    """scale(causal_mask(s), -1) is causal_mask(s, scale=-1): rewrite_attention makes one attention
    node with scale -1 (the masked scores stay -inf), and it computes what the interpreter does."""
    from tinyml.compiler import rewrite_attention

    g = Graph("neg", dtype="fp32")
    q, k, v = (g.input(name, (2, "n", 4)) for name in "qkv")           # (2, n, 4)
    s = g.scale(g.causal_mask(g.matmul(q, g.transpose(k, (0, 2, 1)))), -1.0)
    g.output(g.matmul(g.softmax(s), v))
    out = rewrite_attention(g)
    (att,) = [n for n in out.nodes if n.op == "attention"]
    assert att.attr == {"causal": True, "scale": -1.0}
    inputs = make_inputs(g, {"n": 5}, seed=3)
    assert_close(interpret(out, inputs), interpret(g, inputs))
    outs, _ = compile(g, explain=False, dtype="fp32").run(inputs)
    assert_close(outs, interpret(g, inputs))


def test_softmax_of_plus_inf_is_refused_by_interpreter_and_compiled_alike():
    """sub(0, masked) turns -inf into +inf (IEEE; only scale keeps a mask): the interpreter and the
    compiled graph both refuse it with NonFiniteError, neither returns a row of zeros."""
    from tinyml.sim.errors import NonFiniteError

    g = Graph("neg_sub", dtype="fp32")
    x = g.input("x", (1, "n", "n"))                                    # (1, n, n)
    g.output(g.softmax(g.sub(g.input("z", (1, "n", "n")), g.causal_mask(x))))
    inputs = {"x": np.ones((1, 2, 2), np.float32), "z": np.zeros((1, 2, 2), np.float32)}
    with pytest.raises(NonFiniteError, match=r"= softmax\(\.\.\.\): .*index \(0, 0, 1\) \(value inf\)"):
        interpret(g, inputs)
    with pytest.raises(NonFiniteError, match=r"NaN/\+inf .*index \(0, 1\) \(value inf\)"):
        compile(g, explain=False, dtype="fp32").run(inputs)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_scale_factors_must_be_finite(bad):
    from tinyml.compiler.errors import GraphShapeError

    g = Graph("bad_scale")
    x = g.input("x", ("n", "n"))
    with pytest.raises(GraphShapeError, match="scale needs a finite factor"):
        g.scale(x, bad)
    with pytest.raises(GraphShapeError, match="causal_mask needs a finite scale"):
        g.causal_mask(x, scale=bad)


@given(case=random_graphs(max_steps=8))
def test_counting_mode_counts_what_executing_mode_does(case):
    g, inputs, bindings = case
    c = compile(g, explain=False, dtype="fp32")
    _, executed = c.run(inputs, bindings)
    _, counted = c.run(bindings=bindings, count=True)
    same_counters(executed, counted)


@pytest.mark.parametrize("name", ["mlp", "gpt2_block", "tiny_gpt"])
@pytest.mark.parametrize("n", [1, 7])
def test_zoo_models_compiled_equal_interpreted(name, n):
    g, _ = small_zoo()[name]
    inputs = make_inputs(g, {"n": n}, seed=n)
    ref = interpret(g, inputs)
    c = compile(g, explain=False)
    outs, executed = c.run(inputs)
    assert_close(outs, ref)
    outs, _ = lower(g, fused=False).run(inputs)
    assert_close(outs, ref)
    _, counted = c.run(bindings={"n": n}, count=True)
    same_counters(executed, counted)


# ---- kernel counts, from the rules -------------------------------------------------------------------


def chain_graph(dtype="fp16"):
    g = Graph("chain", dtype=dtype)
    x = g.input("x", ("n", 32))                                    # (n, 32)
    w, b = g.weight("w", (32, 48)), g.weight("b", (48,))
    g.output(g.gelu(g.add(g.matmul(x, w), b)))                       # (n, 48)
    return g


def kernel_names(plan, n=16):
    _, prof = plan.run(bindings={"n": n}, count=True)
    return [r.name for r in prof.records]


def test_matmul_add_gelu_is_one_kernel_fused_and_three_op_by_op():
    g = chain_graph()
    assert kernel_names(lower(fuse(g))) == ["matmul_epilogue"]        # one group: matmul + epilogue
    assert len(kernel_names(lower(g, fused=False))) == 3              # matmul, add, gelu


def test_gpt2_block_kernel_counts_follow_the_rules():
    g = zoo.get("gpt2_block", d_model=32, n_heads=4)
    ops = [n.op for n in g.nodes]
    # op by op: every node a kernel, except reshapes (views) and the k transpose the matmul reads transposed
    assert len(kernel_names(lower(g))) == len(ops) - ops.count("reshape") - 1
    c = compile(g, explain=False)
    names = kernel_names(c.plan)
    # fused: 2 layernorms + 4 matmuls with epilogues + 1 attention; the layout groups are views
    assert names.count("layernorm_fused") == 2 and names.count("matmul_epilogue") == 4
    assert len(names) == 7
    assert sum(1 for x in c.plan.launches if x.kind == "view") == 4


# ---- bytes == formulas ---------------------------------------------------------------------------


def test_fused_chain_bytes_match_the_elementwise_formula():
    from tinyml.kernels.fusion.elementwise import expected_chain_bytes

    g = Graph("ew")
    x, y, z = (g.input(k, ("n", 64)) for k in "xyz")                 # (n, 64) each
    g.output(g.gelu(g.add(g.mul(x, y), z)))                          # 3 inputs, 3 ops
    n = 40
    want = expected_chain_bytes(n, 64, 3, 3, nbytes(1, "fp16"))
    _, fused = lower(fuse(g)).run(bindings={"n": n}, count=True)
    _, eager = lower(g).run(bindings={"n": n}, count=True)
    assert (fused.hbm_read_bytes, fused.hbm_write_bytes) == want["fused"]
    assert (eager.hbm_read_bytes, eager.hbm_write_bytes) == want["unfused"]
    assert len(fused.records) == 1 and len(eager.records) == 3


@pytest.mark.parametrize("lo, hi, clip_flops", [(0.0, 6.0, 2), (-0.5, math.inf, 1), (-math.inf, 0.25, 1),
                                                (-math.inf, math.inf, 0)])
def test_sigmoid_and_clip_fuse_with_their_neighbours(lo, hi, clip_flops):
    """x * sigmoid(x) then clip: one kernel reading x once; FLOPs per element from the op table
    (sigmoid 4, mul 1, and one max / min per finite bound); values equal the interpreter's."""
    g = Graph("silu6")
    x = g.input("x", ("n", 64))                                      # (n, 64)
    g.output(g.clip(g.mul(x, g.sigmoid(x)), lo, hi))
    n = 24
    xs = (np.random.default_rng(1).standard_normal((n, 64)) * 5).astype(np.float32)
    (want,) = interpret(g, {"x": xs})
    (got,), prof = compile(g, explain=False).run({"x": xs})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    (r,) = prof.records
    elems = n * 64
    assert r.flops_vector == (4 + 1 + clip_flops) * elems
    assert (r.hbm_read_bytes, r.hbm_write_bytes) == (nbytes(elems, "fp16"), nbytes(elems, "fp16"))
    _, eager = lower(g).run(bindings={"n": n}, count=True)
    assert len(eager.records) == 3                                   # sigmoid, mul, clip: one kernel each


def test_clip_bounds_are_checked():
    from tinyml.compiler.errors import GraphShapeError

    g = Graph("bad_clip")
    x = g.input("x", ("n", 8))
    with pytest.raises(GraphShapeError, match=r"lo <= hi .*lo=2.0, hi=1.0"):
        g.clip(x, 2.0, 1.0)
    with pytest.raises(GraphShapeError, match="lo <= hi"):
        g.clip(x, math.nan, 1.0)


def test_clip_and_sigmoid_as_a_matmul_epilogue():
    """ReLU6 and sigmoid after a matmul + bias run inside its epilogue (one kernel), fp16 and quantized."""
    from tinyml.compiler import quantize_weights

    g = Graph("mm6")
    x = g.input("x", ("n", 64))                                      # (n, 64)
    w, b = g.weight("w", (64, 32), std=0.3), g.weight("b", (32,), std=1.0)
    g.output(g.sigmoid(g.clip(g.add(g.matmul(x, w), b), 0.0, 6.0)))
    xs = np.random.default_rng(2).standard_normal((5, 64)).astype(np.float32)
    for graph, kernel in ((g, "matmul_epilogue"), (quantize_weights(g, "int8"), "quantized_matmul")):
        (want,) = interpret(graph, {"x": xs})
        (got,), prof = compile(graph, explain=False).run({"x": xs})
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert [r.name for r in prof.records] == [kernel]


def test_matmul_epilogue_group_counts_what_the_kernel_counts():
    from tinyml.compiler.lowering.anchors import _skinny_blocks
    from tinyml.kernels.fusion import matmul_epilogue

    g = chain_graph()
    with Profile() as direct:                  # 20 rows: the lowering costs tiles for few rows (below)
        blocks = _skinny_blocks(20, 48, 32, "fp16", True, True, False)
        matmul_epilogue(meta((20, 32)), meta((32, 48)), bias=meta((48,)), activation="gelu", **blocks)
    _, lowered = lower(fuse(g)).run(bindings={"n": 20}, count=True)
    same_counters(direct, lowered)


@pytest.mark.parametrize("n,k", [(2304, 768), (768, 3072), (50257, 768)])
def test_a_matmul_of_one_row_is_spread_over_the_gpu(n, k):
    """Decoding: the default tiles maximise intensity (the widest N tile), so x (1, K) @ W (K, N) ran as
    N / 256 blocks on 108 SMs (9 for GPT-2's qkv projection). The lowering costs tiles for few rows and
    keeps the fastest: more blocks, less time, the same bytes of W; many rows keep the default untouched."""
    from tinyml.compiler.lowering.anchors import SKINNY_ROWS, _skinny_blocks
    from tinyml.kernels.matmul import matmul

    with Profile("a100-40gb") as default:
        matmul(meta((1, k)), meta((k, n)))
    with Profile("a100-40gb") as lowered:
        blocks = _skinny_blocks(1, n, k, "fp16", False, False, False)
        matmul(meta((1, k)), meta((k, n)), **blocks)
    (d,), (r,) = default.records, lowered.records
    assert r.n_blocks > d.n_blocks and r.time_s < d.time_s
    assert r.hbm_read_bytes >= k * n * 2                        # W is still read whole, once at least
    assert _skinny_blocks(SKINNY_ROWS + 1, n, k, "fp16", False, False, False) == {}


def test_copy_and_gather_read_once_and_write_once():
    g = Graph("layout")
    table, ids = g.weight("table", (50, 24)), g.input("ids", ("n",), "int32")
    x = g.input("x", ("n", 24))
    g.output(g.embedding(table, ids), g.transpose(x))                # (n, 24), (24, n)
    n, s = 9, nbytes(1, "fp16")
    _, prof = lower(g).run(bindings={"n": n}, count=True)
    assert [r.name for r in prof.records] == ["gather", "copy"]
    for r in prof.records:
        assert (r.hbm_read_bytes, r.hbm_write_bytes) == (n * 24 * s, n * 24 * s)


def test_views_cost_nothing():
    g = Graph("views")
    x = g.input("x", ("n", 12))
    g.output(g.gelu(g.reshape(x, ("n", 3, 4))))                      # reshape is a view
    _, prof = lower(g).run(bindings={"n": 5}, count=True)
    assert [r.name for r in prof.records] == ["elementwise_gelu"]


def test_fusion_and_the_attention_rewrite_cut_bytes_and_kernels():
    c = compile(zoo.get("gpt2_block", d_model=64, n_heads=4), bindings={"n": 256})
    first, last = c.steps[0].summary, c.steps[-1].summary
    assert last["kernels"] < first["kernels"]
    assert last["hbm_bytes"] < first["hbm_bytes"] and last["time_s"] < first["time_s"]
    n, s = 256, nbytes(1, "fp16")
    # the op-by-op graph writes the (H, n, n) scores at least three times (scores, scaled, masked, probs)
    assert first["hbm_bytes"] - last["hbm_bytes"] >= 3 * 4 * n * n * s
    assert c.steps[-1].summary["kernels"] == len(c.profile().records)


# ---- compile(): steps and errors -------------------------------------------------------------------


def test_steps_keep_ir_drawing_and_numbers():
    g = zoo.get("mlp", d_model=16, d_hidden=24)
    c = compile(g, bindings={"n": 8})
    assert [s.name for s in c.steps] == ["input", "cse", "dead_code", "rewrite_attention", "fuse"]
    for s in c.steps:
        assert s.ir.startswith("graph mlp") and "digraph" in s.dot
        assert {"nodes", "groups", "kernels", "hbm_bytes", "time_s"} <= set(s.summary)
        assert str(s).startswith(f"after {s.name}:")
        html = s._repr_html_()
        assert "<svg" in html or "<pre>" in html
    assert c.steps[0].summary["kernels"] == 5 and c.steps[-1].summary["kernels"] == 2
    assert "fuse" in c.table() and c.to_dict()["steps"][-1]["pass"] == "fuse"


def test_explain_off_keeps_no_text_and_no_numbers():
    c = compile(zoo.get("mlp", d_model=16, d_hidden=24), explain=False, bindings={"n": 8})
    assert all(s.ir == "" and "kernels" not in s.summary for s in c.steps)
    assert c.profile().hbm_bytes > 0


def test_errors_say_what_to_do():
    g = chain_graph()
    with pytest.raises(GraphError, match="fuse"):
        lower(g, fused=True)
    with pytest.raises(BindingError, match="bindings"):
        lower(g).run(count=True)
    with pytest.raises(BindingError, match="unbound"):
        compile(g, bindings={"m": 3})
    with pytest.raises(GraphError, match="unknown pass"):
        compile(g, passes=["nope"])
    with pytest.raises(BindingError):
        compile(g).run({"x": np.zeros((4, 31), np.float32)})


def test_int_inputs_and_meta_inputs():
    g, _ = small_zoo()["tiny_gpt"]
    c = compile(g, explain=False)
    _, by_meta = c.run({"ids": meta((5,), "fp32")})
    _, by_bindings = c.run(bindings={"n": 5}, count=True)
    same_counters(by_meta, by_bindings)
    assert math.isclose(by_meta.time_s, by_bindings.time_s)
