"""tinyml.compiler IR: symbolic dims and sizes, types, the op registry's shape rules,
the builder, the printer, validate(), the interpreter, and the zoo against plain NumPy."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyml.compiler import (Affine, BindingError, Graph, GraphError, GraphShapeError, Node, Poly, SymbolicError,
                             TensorType, dim, interpret, ops, sym, validate, zoo)
from tinyml.compiler.symbolic import parse, solve
from tinyml.kernels import reference
from tinyml.sim import ShapeError, TinymlError

n, m = sym("n"), sym("m")

# ---- symbolic dimensions ------------------------------------------------------------------------


def test_affine_arithmetic_and_relations():
    assert 2 * n == n + n
    assert (2 * n) != n
    assert n - n == 0 and isinstance(n - n, int)                   # collapses to a plain int
    assert (2 * n + 1) - (n + 1) == n
    assert 3 * (n + m) - m == 3 * n + 2 * m
    assert hash(2 * n) == hash(n + n)
    assert (n + 1).symbols == {"n"}


@given(a=st.integers(-5, 5), b=st.integers(-5, 5), c=st.integers(-9, 9), nv=st.integers(1, 10 ** 6),
       mv=st.integers(1, 100))
def test_affine_evaluates_like_integers(a, b, c, nv, mv):
    e = a * n + b * m + c
    assert dim(str(e) if not isinstance(e, int) else e) == e        # printing round-trips through the parser
    value = e.evaluate({"n": nv, "m": mv}) if isinstance(e, Affine) else e
    assert value == a * nv + b * mv + c


def test_affine_printing():
    assert str(2 * n + 1) == "2*n + 1"
    assert str(n - 1) == "n - 1"
    assert str(-n + 4) == "-n + 4"
    assert str(3 * m + n) == "3*m + n"
    assert str(TensorType.of(("2*n + 1", 12), "fp16")) == "tensor<(2*n + 1) x 12, fp16>"
    assert str(TensorType.of(("2*n", 12), "fp16")) == "tensor<2*n x 12, fp16>"
    assert str(TensorType.of((), "fp32")) == "tensor<fp32>"


@pytest.mark.parametrize("text, expect", [("n", n), ("2*n", 2 * n), ("n*2", 2 * n), ("n+1", n + 1),
                                          (" 2*n - 3 ", 2 * n - 3), ("-n + 4", 4 - n), ("768", 768),
                                          ("n - n", 0)])
def test_parse(text, expect):
    assert parse(text) == expect


@pytest.mark.parametrize("bad", ["", "2*", "n*m", "n+", "2n", "n^2", "1.5*n", "n**2"])
def test_parse_rejects_with_a_clear_message(bad):
    with pytest.raises(SymbolicError, match="dimension"):
        parse(bad)


def test_affine_times_affine_is_refused():
    with pytest.raises(SymbolicError, match="not affine"):
        n * n


def test_missing_binding_names_the_symbol():
    with pytest.raises(BindingError, match="'m'"):
        (n + m).evaluate({"n": 3})


def test_solve():
    assert solve(2 * n + 1, 9) == ("n", 4)
    assert solve(2 * n, 9) is None
    assert solve(n + m, 9) is None


# ---- sizes (polynomials) --------------------------------------------------------------------------


def test_poly_sizes_print_and_evaluate():
    p = Poly.symbol("n")
    scores = TensorType.of((12, "n", "n"), "fp16").numel
    assert scores == 12 * p * p
    assert str(scores) == "12*n^2"
    assert str(TensorType.of(("n", 768), "fp16").nbytes) == "1536*n"
    assert str((p + 1) * (p - 1)) == "n^2 - 1"
    assert scores.evaluate({"n": 1024}) == 12 * 1024 * 1024
    assert TensorType.of(("n", 3), "int4").nbytes_at({"n": 5}) == 8      # ceil(15 * 4 / 8)


def test_poly_le_for_all():
    p = Poly.symbol("n")
    assert (768 * p).le_for_all(12 * p * p, {"n": 10}) is False          # 768 n > 12 n^2 for n < 64
    assert (768 * p).counterexample(12 * p * p, 100) == {"n": 1}
    assert (768 * p).le_for_all(12 * p * p + 768 * p, 10 ** 9)              # difference 12 n^2 >= 0: no search
    assert (64 * p).le_for_all(p * p, {"n": 63}) is False
    assert (p * p).le_for_all(64 * p, {"n": 64})                        # n^2 <= 64 n iff n <= 64
    assert not (p * p).le_for_all(64 * p, {"n": 65})
    assert Poly.of(3).le_for_all(Poly.of(3), 1)


@given(a=st.integers(-3, 3), b=st.integers(-40, 40), c=st.integers(-40, 40), bound=st.integers(1, 60))
def test_poly_le_for_all_matches_brute_force(a, b, c, bound):
    p = Poly.symbol("n")
    lhs, rhs = a * p * p + b, c * p
    truth = all(a * k * k + b <= c * k for k in range(1, bound + 1))
    assert lhs.le_for_all(rhs, bound) is truth


def test_poly_division_and_dims():
    p = Poly.symbol("n")
    assert (768 * p).exact_div(12 * p).as_dim() == 64
    assert (768 * p).exact_div(5) is None
    assert (12 * p * p).as_dim() is None


# ---- types and shape rules ---------------------------------------------------------------------------


def T(*shape, dtype="fp16"):
    return TensorType.of(shape, dtype)


def rule(op, *types, **attrs):
    d = ops.get(op)
    attrs = d.canon(types, attrs) if d.canon else attrs
    return d.shape_rule(types, attrs)


def test_registry_fields():
    for name in ("matmul", "add", "sub", "mul", "div", "exp", "tanh", "gelu", "relu", "softmax", "layernorm",
                 "reshape", "transpose", "slice", "concat", "reduce_sum", "reduce_max", "reduce_mean",
                 "embedding", "causal_mask", "scale", "attention"):
        d = ops.get(name)
        assert d.pattern in ops.PATTERNS and d.lowering in ops.LOWERINGS
    assert ops.get("matmul").pattern == "out-elementwise-fusable"
    assert ops.get("softmax").pattern == ops.get("layernorm").pattern == "reduction"
    assert ops.get("gelu").pattern == "elementwise" and ops.get("add").pattern == "broadcast"
    assert ops.get("transpose").pattern == "injective"
    with pytest.raises(GraphError, match="unknown op 'conv'"):
        ops.get("conv")


@pytest.mark.parametrize("a, b, out", [
    (("n", 768), (768,), ("n", 768)),
    (("n", 1), (1, 768), ("n", 768)),
    ((12, "n", "n"), ("n",), (12, "n", "n")),
    (("2*n", 4), ("n + n", 1), ("2*n", 4)),
    ((3, 1, 5), (4, 1), (3, 4, 5)),
])
def test_broadcasting(a, b, out):
    assert rule("add", T(*a), T(*b)) == T(*out)
    assert rule("mul", T(*b), T(*a)) == T(*out)


@pytest.mark.parametrize("a, b", [(("n", 768), (512,)), (("n", 4), ("2*n", 4)), (("n", 4), ("m", 4))])
def test_broadcast_errors_name_the_node_and_both_shapes(a, b):
    g = Graph("b")
    x, y = g.input("x", a), g.input("y", b)
    with pytest.raises(GraphShapeError, match="do not broadcast") as e:
        g.sub(x, y)
    assert f"%0 = sub(%x: {T(*a)}, %y: {T(*b)})" in str(e.value)
    assert isinstance(e.value, ShapeError) and isinstance(e.value, TinymlError)


def test_dtype_mismatch():
    with pytest.raises(TinymlError, match="one dtype"):
        rule("add", T("n", 4), T("n", 4, dtype="fp32"))


def test_matmul_rule():
    assert rule("matmul", T("n", 768), T(768, 3072)) == T("n", 3072)
    assert rule("matmul", T(12, "n", 64), T(12, 64, "n")) == T(12, "n", "n")
    assert rule("matmul", T(2, 1, "n", 8), T(3, 8, 5)) == T(2, 3, "n", 5)
    with pytest.raises(GraphShapeError, match="inner dimensions differ.*768 vs 512"):
        rule("matmul", T("n", 768), T(512, 3072))
    with pytest.raises(GraphShapeError, match="rank >= 2"):
        rule("matmul", T(768), T(768, 3))


def test_reduction_rules():
    assert rule("softmax", T(12, "n", "n")) == T(12, "n", "n")
    assert rule("reduce_sum", T("n", 8, 4), axis=1) == T("n", 4)
    assert rule("reduce_max", T("n", 8, 4), axis=(0, -1), keepdims=True) == T(1, 8, 1)
    assert rule("reduce_mean", T("n", 8), axis=-1, keepdims=True) == T("n", 1)
    assert rule("layernorm", T("n", 8), T(8), T(8)) == T("n", 8)
    with pytest.raises(GraphShapeError, match="weight must have shape \\(8,\\)"):
        rule("layernorm", T("n", 8), T(4), T(8))
    with pytest.raises(GraphShapeError, match="axis 2 is out of range"):
        rule("reduce_sum", T("n", 8), axis=2)


def test_layout_rules():
    assert rule("reshape", T("n", 768), shape=("n", 12, 64)) == T("n", 12, 64)
    assert rule("reshape", T("n", 768), shape=(-1, 64)) == T("12*n", 64)          # n*768/64 = 12n
    assert rule("reshape", T("n", 12, 64), shape=("n", -1)) == T("n", 768)
    with pytest.raises(GraphShapeError, match="element counts differ"):
        rule("reshape", T("n", 768), shape=("n", 12, 65))
    assert rule("reshape", T("n", 768), shape=(-1, "n")) == T(768, "n")
    with pytest.raises(GraphShapeError, match="cannot infer the -1"):
        rule("reshape", T("n", 768), shape=(-1, "n + 1"))
    assert rule("transpose", T("n", 12, 64), perm=(1, 0, 2)) == T(12, "n", 64)
    assert rule("transpose", T("n", 3)) == T(3, "n")
    with pytest.raises(GraphShapeError, match="not a permutation"):
        rule("transpose", T("n", 3), perm=(0, 0))
    assert rule("slice", T("2*n", 4), axis=0, start="n", end="2*n") == T("n", 4)
    assert rule("slice", T(1024, 4), axis=0, start=0, end="n") == T("n", 4)
    with pytest.raises(GraphShapeError, match="exceeds the dimension 8 by 2"):
        rule("slice", T("n", 8), axis=1, start=2, end=10)
    with pytest.raises(GraphShapeError, match="empty"):
        rule("slice", T("n", 8), axis=1, start=3, end=3)
    assert rule("concat", T("n", 4), T("n", 4), axis=0) == T("2*n", 4)
    assert rule("concat", T("n", 4), T("n", 2), T("n", 1), axis=1) == T("n", 7)
    with pytest.raises(GraphShapeError, match="does not match"):
        rule("concat", T("n", 4), T("m", 4), axis=1)


def test_embedding_and_attention_rules():
    assert rule("embedding", T(100, 16), T("n", dtype="int32")) == T("n", 16)
    with pytest.raises(TinymlError, match="int32"):
        rule("embedding", T(100, 16), T("n"))
    q = T(4, "n", 8)
    assert rule("attention", q, q, q, causal=True) == q
    assert rule("attention", T(2, 4, "n", 8), T(2, 2, "m", 8), T(2, 2, "m", 8)) == T(2, 4, "n", 8)
    with pytest.raises(GraphShapeError, match="multiple of key/value heads"):
        rule("attention", T(3, "n", 8), T(2, "n", 8), T(2, "n", 8))
    with pytest.raises(GraphShapeError, match="attention"):
        rule("attention", T("n", 8), T("n", 8), T("n", 8))


# ---- builder, printer, validate ------------------------------------------------------------------------


def small_mlp():
    g = Graph("mlp")
    x = g.input("x", ("n", 8), "fp16")
    w = g.weight("w1", (8, 32))
    x = g.matmul(x, w)
    x = g.gelu(x)
    g.output(x)
    return g


def test_builder_and_printer():
    g = small_mlp()
    text = str(g)
    assert text.splitlines() == [
        "graph mlp(%x: tensor<n x 8, fp16>) {",
        "  weight %w1: tensor<8 x 32, fp16>",
        "  %0 = matmul(%x, %w1) : tensor<n x 32, fp16>",
        "  %1 = gelu(%0) : tensor<n x 32, fp16>",
        "  return %1",
        "}",
    ]
    g2 = Graph("t")
    x = g2.input("x", ("n", 12, 4))
    y = g2.transpose(x, (1, 0, 2))
    g2.output(g2.causal_mask(g2.matmul(y, g2.transpose(y, (0, 2, 1))), scale=0.5))
    assert "transpose(%x) {perm=[1, 0, 2]} : tensor<12 x n x 4, fp16>" in str(g2)
    assert "{fill=-inf, scale=0.5} : tensor<12 x n x n, fp16>" in str(g2)


def test_builder_errors_name_the_node_and_shapes():
    g = Graph("bad")
    x = g.input("x", ("n", 768))
    w = g.weight("w", (512, 3072))
    with pytest.raises(GraphShapeError) as e:
        g.matmul(x, w)
    msg = str(e.value)
    assert "%0 = matmul(%x: tensor<n x 768, fp16>, %w: tensor<512 x 3072, fp16>)" in msg
    assert "768 vs 512" in msg
    with pytest.raises(GraphError, match="unknown attribute"):
        g.add_node("gelu", x, approximate="none")
    with pytest.raises(GraphError, match="already used"):
        g.input("x", (3,))
    with pytest.raises(GraphError, match="symbolic shape"):
        g.weight("v", ("n", 3))
    with pytest.raises(GraphShapeError, match="not divisible by 5"):
        g.split(x, 5)


def _broken(nodes, outputs=("1",)):
    g = Graph("broken")
    g.input("x", ("n", 4), "fp32")
    g.weight("w", (4, 4), "fp32")
    return g.replace(nodes=nodes, outputs=list(outputs))


SMALL = {"mlp": {"d_model": 16, "d_hidden": 32}, "gpt2_block": {"d_model": 16, "n_heads": 2},
         "tiny_gpt": {"d_model": 16, "n_heads": 2, "vocab": 11, "n_ctx": 8}}


@pytest.mark.parametrize("name", zoo.NAMES)
def test_validate_accepts_the_zoo(name):
    g = zoo.get(name, **SMALL[name])
    assert validate(g) is None and g.validate() is g


def test_validate_type_mismatch_names_node_and_shapes():
    good = TensorType.of(("n", 4), "fp32")
    bad = TensorType.of(("n", 5), "fp32")
    g = _broken([Node("0", "matmul", ("x", "w"), (), good), Node("1", "relu", ("0",), (), bad)])
    with pytest.raises(GraphError) as e:
        validate(g)
    msg = str(e.value)
    assert "%1 = relu(%0: tensor<n x 4, fp32>)" in msg
    assert "its type says tensor<n x 5, fp32> but relu of those operands gives tensor<n x 4, fp32>" in msg


def test_validate_shape_rule_error_names_node():
    t = TensorType.of(("n", 4), "fp32")
    g = _broken([Node("0", "transpose", ("x",), (("perm", (1, 0)),), TensorType.of((4, "n"), "fp32")),
                 Node("1", "add", ("0", "x"), (), t)])
    with pytest.raises(GraphError, match=r"%1 = add\(%0: tensor<4 x n, fp32>, %x: tensor<n x 4, fp32>\).*broadcast"):
        validate(g)


def test_validate_cycle_and_dangling_and_order():
    t = TensorType.of(("n", 4), "fp32")
    cyc = _broken([Node("0", "relu", ("1",), (), t), Node("1", "tanh", ("0",), (), t)])
    with pytest.raises(GraphError, match=r"cycle: %\d -> %\d -> %\d"):
        validate(cyc)
    dangling = _broken([Node("0", "relu", ("x",), (), t), Node("1", "add", ("0", "ghost"), (), t)])
    with pytest.raises(GraphError, match="reads %ghost, which no input, weight or node defines"):
        validate(dangling)
    order = _broken([Node("1", "tanh", ("0",), (), t), Node("0", "relu", ("x",), (), t)])
    with pytest.raises(GraphError, match="before node 1 defines it"):
        validate(order)
    untyped = _broken([Node("0", "relu", ("x",), (), None), Node("1", "tanh", ("0",), (), t)])
    with pytest.raises(GraphError, match="no type; run infer_shapes"):
        validate(untyped)
    twice = _broken([Node("1", "relu", ("x",), (), t), Node("1", "tanh", ("x",), (), t)])
    with pytest.raises(GraphError, match="defined twice"):
        validate(twice)
    with pytest.raises(GraphError, match="no outputs"):
        validate(_broken([Node("1", "relu", ("x",), (), t)], outputs=()))


# ---- interpreter ------------------------------------------------------------------------------------


def test_interpreter_checks_inputs_and_bindings():
    g = small_mlp()
    x = np.ones((5, 8), np.float32)
    out, = interpret(g, {"x": x}, {"n": 5})
    assert out.dtype == np.float32 and out.shape == (5, 32)
    out2, = interpret(g, {"x": x})                                        # n solved from x
    np.testing.assert_array_equal(out, out2)
    with pytest.raises(BindingError, match=r"input %x has shape \(5, 8\) but its type tensor<n x 8, fp16> needs 6"):
        interpret(g, {"x": x}, {"n": 6})
    with pytest.raises(BindingError, match="needs 8 at axis 1"):
        interpret(g, {"x": np.ones((5, 7))})
    with pytest.raises(BindingError, match=r"needs input\(s\) \['x'\]"):
        interpret(g, {})
    with pytest.raises(BindingError, match="has no input"):
        interpret(g, {"x": x, "y": x})

    h = Graph("slice")
    y = h.input("y", (6, 2), "fp32")
    h.output(h.slice(y, 0, 0, "m"))
    with pytest.raises(BindingError, match="symbol 'm' has no binding"):
        interpret(h, {"y": np.ones((6, 2))})
    assert interpret(h, {"y": np.ones((6, 2))}, {"m": 4})[0].shape == (4, 2)
    with pytest.raises(GraphShapeError, match="does not fit"):
        interpret(h, {"y": np.ones((6, 2))}, {"m": 7})


def test_interpreter_affine_input_dims():
    g = Graph("cat", dtype="fp32")
    a = g.input("a", ("n", 3))
    b = g.input("b", ("2*n + 1", 3))
    c = g.concat([a, b], axis=0)                                          # (3n + 1, 3)
    assert c.shape == (3 * n + 1, 3)
    g.output(g.reduce_sum(c, axis=0))
    rng = np.random.default_rng(0)
    av, bv = rng.standard_normal((4, 3)), rng.standard_normal((9, 3))
    out, = interpret(g, {"a": av, "b": bv})
    np.testing.assert_allclose(out, np.concatenate([av, bv]).sum(0), rtol=1e-6)
    with pytest.raises(BindingError, match="needs 9 at axis 0"):
        interpret(g, {"a": av, "b": bv[:8]})


def test_interpreter_embedding_rejects_bad_ids():
    g = Graph("emb")
    ids = g.input("ids", ("n",), "int32")
    g.output(g.embedding(g.weight("wte", (5, 3)), ids))
    np.testing.assert_array_equal(interpret(g, {"ids": np.array([4, 0, 4])})[0],
                                  g.weights["wte"].data[[4, 0, 4]])
    with pytest.raises(GraphShapeError, match="id -1 is outside the table's 5 rows"):
        interpret(g, {"ids": np.array([1, -1])})


@given(nq=st.integers(1, 6), nk=st.integers(1, 6), seed=st.integers(0, 10 ** 6))
def test_causal_mask_softmax_matches_reference_attention(nq, nk, seed):
    """scale + causal_mask + softmax + matmul == tinyml.kernels.reference.attention (bottom-right aligned)."""
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((2, nq, 4)), rng.standard_normal((2, nk, 4)), rng.standard_normal((2, nk, 4))
    g = Graph("a", dtype="fp32")
    qi, ki, vi = g.input("q", (2, "n", 4)), g.input("k", (2, "m", 4)), g.input("v", (2, "m", 4))
    s = g.causal_mask(g.matmul(qi, g.transpose(ki, (0, 2, 1))), scale=0.5)
    g.output(g.matmul(g.softmax(s), vi), g.attention(qi, ki, vi, causal=True, scale=0.5))
    written, fused = interpret(g, {"q": q, "k": k, "v": v})
    ref, _ = reference.attention(q[None], k[None], v[None], causal=True, scale=0.5)
    np.testing.assert_allclose(written, ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fused, ref[0], rtol=1e-5, atol=1e-6)


# ---- the zoo against hand-written NumPy -------------------------------------------------------------------

GELU_C = math.sqrt(2 / math.pi)


def np_gelu(x):
    return 0.5 * x * (1 + np.tanh(GELU_C * (x + 0.044715 * x ** 3)))


def np_layernorm(x, w, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(x.var(-1, keepdims=True) + eps) * w + b


def np_gpt2_block(x, W, p, n_heads):
    """GPT-2 block in plain NumPy (HuggingFace GPT2Block semantics), float64."""
    W = {k: v.astype(np.float64) for k, v in W.items()}
    nt, d = x.shape
    hd = d // n_heads
    h = np_layernorm(x, W[f"{p}.ln_1.w"], W[f"{p}.ln_1.b"])
    qkv = h @ W[f"{p}.attn.c_attn.w"] + W[f"{p}.attn.c_attn.b"]
    q, k, v = (t.reshape(nt, n_heads, hd).transpose(1, 0, 2) for t in np.split(qkv, 3, axis=-1))
    s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
    s = np.where(np.tril(np.ones((nt, nt), bool)), s, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    o = (a @ v).transpose(1, 0, 2).reshape(nt, d)
    x = x + o @ W[f"{p}.attn.c_proj.w"] + W[f"{p}.attn.c_proj.b"]
    h = np_layernorm(x, W[f"{p}.ln_2.w"], W[f"{p}.ln_2.b"])
    h = np_gelu(h @ W[f"{p}.mlp.c_fc.w"] + W[f"{p}.mlp.c_fc.b"])
    return x + h @ W[f"{p}.mlp.c_proj.w"] + W[f"{p}.mlp.c_proj.b"]


def weights_of(g):
    return {k: w.data for k, w in g.weights.items()}


def test_mlp_matches_numpy(rng):
    g = zoo.get("mlp", d_model=16, d_hidden=40)
    W = {k: v.astype(np.float64) for k, v in weights_of(g).items()}
    x = rng.standard_normal((7, 16))
    out, = interpret(g, {"x": x})
    np.testing.assert_allclose(out, np_gelu(x @ W["w1"] + W["b1"]) @ W["w2"] + W["b2"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nt", [1, 5, 13])
def test_gpt2_block_matches_numpy(nt, rng):
    g = zoo.gpt2_block(d_model=24, n_heads=3, seed=3)
    assert g.inputs["x"] == TensorType.of(("n", 24), "fp16")
    x = rng.standard_normal((nt, 24))
    out, = interpret(g, {"x": x}, {"n": nt})
    np.testing.assert_allclose(out, np_gpt2_block(x, weights_of(g), "h0", 3), rtol=1e-5, atol=1e-5)


def test_gpt2_block_default_sizes_are_gpt2_small():
    g = zoo.get("gpt2_block")
    assert g.weights["h0.attn.c_attn.w"].type.shape == (768, 2304)
    assert g.weights["h0.mlp.c_fc.w"].type.shape == (768, 3072)
    scores = [node for node in g.nodes if node.op == "softmax"]
    assert [node.type for node in scores] == [TensorType.of((12, "n", "n"), "fp16")]
    assert str(scores[0].type.numel) == "12*n^2"


def test_tiny_gpt_matches_numpy(rng):
    g = zoo.get("tiny_gpt", layers=2, vocab=17, d_model=16, n_heads=2, n_ctx=9)
    W = weights_of(g)
    ids = rng.integers(0, 17, size=6).astype(np.int32)
    out, = interpret(g, {"ids": ids})
    x = W["wte"][ids].astype(np.float64) + W["wpe"][:6]
    for i in range(2):
        x = np_gpt2_block(x, W, f"h{i}", 2)
    logits = np_layernorm(x, W["ln_f.w"], W["ln_f.b"]) @ W["wte"].T.astype(np.float64)
    assert out.shape == (6, 17)
    np.testing.assert_allclose(out, logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(GraphShapeError, match="does not fit"):                # n > n_ctx
        interpret(g, {"ids": np.zeros(10, np.int32)})


def test_zoo_registry():
    assert zoo.names() == ["gpt2_block", "mlp", "tiny_gpt"]
    with pytest.raises(GraphError, match="unknown model 'bert'"):
        zoo.get("bert")
    with pytest.raises(GraphError, match="unexpected keyword"):
        zoo.get("mlp", width=3)
    a, b = zoo.get("mlp", d_model=4, d_hidden=8), zoo.get("mlp", d_model=4, d_hidden=8)
    np.testing.assert_array_equal(a.weights["w1"].data, b.weights["w1"].data)     # seeded


def test_import_is_light():
    code = ("import sys, tinyml.compiler as c; c.zoo.get('gpt2_block', d_model=8, n_heads=2); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('numba', 'matplotlib', 'graphviz')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_interpreter_checks_host_memory_before_it_allocates(monkeypatch):
    """An n x n intermediate at a large n is refused with the numbers before NumPy allocates it."""
    from tinyml.compiler import interpreter
    from tinyml.sim import HostMemoryError, host
    from tinyml.sim.units import fmt_bytes

    g = Graph("scores")
    x = g.input("x", ("n", 4), "fp32")
    g.output(g.matmul(x, g.transpose(x, (1, 0))))                  # (n, 4) @ (4, n) -> (n, n)
    n = 5000
    # float64, all alive: x, x^T, the n x n scores, and the scores again for the op's temporaries
    want = 8 * (n * 4 + 4 * n + n * n + n * n)
    assert interpreter.host_bytes(g, {"n": n}) == want
    allocated = []
    monkeypatch.setattr(host, "available_bytes", lambda: 100 * 2 ** 20)           # a 100 MiB host
    monkeypatch.setattr(interpreter, "run_node", lambda *a: allocated.append(a))  # must not be reached
    with pytest.raises(HostMemoryError) as err:
        interpreter.interpret(g, {"x": np.ones((n, 4), np.float32)})
    msg = str(err.value)
    assert "interpreting graph 'scores' with n=5000" in msg and fmt_bytes(want) in msg
    assert fmt_bytes(100 * 2 ** 20) in msg and "count=True" in msg and not allocated
    monkeypatch.undo()
    (s,) = interpreter.interpret(g, {"x": np.ones((3, 4), np.float32)})   # small: never asks the host
    np.testing.assert_array_equal(s, np.full((3, 3), 4.0, np.float32))


def test_a_drawn_weight_checks_host_memory_before_it_allocates(monkeypatch):
    from tinyml.sim import HostMemoryError, host
    from tinyml.sim.units import fmt_bytes

    monkeypatch.setattr(host, "available_bytes", lambda: 100 * 2 ** 20)           # a 100 MiB host
    g = Graph("big")
    with pytest.raises(HostMemoryError) as err:
        g.weight("w", (4096, 4096))                    # float64 draw + float32 copy: 12 bytes an element
    assert "weight 'w'" in str(err.value) and fmt_bytes(12 * 4096 * 4096) in str(err.value)
    assert "w" not in g.weights
    g.weight("small", (64, 64))                        # below host.SMALL: never asks
