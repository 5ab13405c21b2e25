"""The quantize_weights pass and the memory plan used by lowering.

* planned runs: peak HBM == inputs + weights + arena + outputs (each summed here from the
  graph's types and the packed weights' sizes), outputs unchanged vs the interpreter, in
  executing and counting mode;
* quantize_weights: the quantized graph's compiled outputs == its interpreted outputs (the
  interpreter uses the dequantized weights), every weight matmul replaced, the skip policy,
  the per-layer bytes == the scheme's layout formula, the quantized kernels' bytes.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings

from strategies import examples
from strategies_graph import make_inputs, random_graphs
from tinyml.compiler import (BindingError, GraphError, compile, fuse, interpret, plan_memory, quantize_weights,
                             zoo)
from tinyml.compiler.passes.quantize_weights import QuantizedWeight, quant_table
from tinyml.kernels.quant import get_scheme


def small(name):
    return {
        "mlp": lambda: zoo.get("mlp", d_model=32, d_hidden=64),
        "gpt2_block": lambda: zoo.get("gpt2_block", d_model=32, n_heads=4),
        "tiny_gpt": lambda: zoo.get("tiny_gpt", layers=2, vocab=53, d_model=32, n_heads=2, n_ctx=16),
    }[name]()


def planned(bound=16):
    return ["cse", "dead_code", "rewrite_attention", "fuse", functools.partial(plan_memory, bounds={"n": bound})]


def weight_bytes(graph, dtype="fp16") -> int:
    """Bytes of the weights as the run keeps them: packed bytes (quantized) or numel x element size."""
    elem = {"fp16": 2, "fp32": 4}[dtype]
    return sum(w.qtensor.nbytes if isinstance(w, QuantizedWeight) else w.data.size * elem
               for w in graph.weights.values())


def io_bytes(graph, n, dtype="fp16") -> int:
    elem = {"fp16": 2, "fp32": 4}[dtype]
    total = 0
    for name, t in graph.inputs.items():
        total += math.prod(t.concrete({"n": n})) * (4 if t.dtype == "int32" else elem)
    for o in dict.fromkeys(graph.outputs):
        total += math.prod(graph.type_of(o).concrete({"n": n})) * elem
    return total


def assert_close(outs, refs, tol=1e-4):
    for out, ref in zip(outs, refs):
        scale = max(1.0, float(np.abs(ref).max()))
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * scale)


# ---- the ledger API the lowering uses -------------------------------------------------------------------


def test_ledger_alias_takes_no_bytes_and_placing_hands_out_the_placers_tensor():
    import gc

    from tinyml.sim import HbmLedger

    ledger = HbmLedger(10_000, "test")
    base = ledger.new_tensor("base", (10, 10), "fp16", True)                  # 200 B
    view = base.reshape(100)
    ledger.alias(view)
    ledger.track(view, "view", "fp16")                                        # a no-op: already an alias
    assert ledger.used == 200 and ledger.is_tracked(view)
    arena = ledger.alloc("arena", (1000,), "int8")
    backing = np.zeros(500, np.float32)
    with ledger.placing(lambda name, shape, dtype, ex: backing[:math.prod(shape)].reshape(shape)
                        if name == "planned" else None):
        placed = ledger.new_tensor("planned", (4, 5), "fp16", True)
        other = ledger.new_tensor("other", (4, 5), "fp16", True)
    assert np.shares_memory(placed, backing) and not np.shares_memory(other, backing)
    assert ledger.used == 200 + 1000 + 40                                     # only "other" allocated
    del other
    gc.collect()
    assert ledger.used == 1200
    ledger.free(arena)
    assert ledger.used == 200 and ledger.peak == 1240


# ---- the plan, used ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp", "gpt2_block", "tiny_gpt"])
@pytest.mark.parametrize("n", [1, 5, 16])
def test_planned_run_peak_is_inputs_weights_arena_outputs(name, n):
    g = small(name)
    inputs = make_inputs(g, {"n": n}, seed=n)
    c = compile(g, passes=planned(), explain=False)
    outs, prof = c.run(inputs)
    assert_close(outs, interpret(g, inputs))
    arena = c.graph.memory_plan.arena_at({"n": n})
    assert arena > 0
    want = io_bytes(g, n) + weight_bytes(c.graph) + arena
    assert prof.peak_hbm_bytes == want
    _, counted = c.run(bindings={"n": n}, count=True)
    assert counted.peak_hbm_bytes == want
    assert prof.hbm.used == io_bytes(g, n) + weight_bytes(c.graph)      # the arena is freed at the end


@pytest.mark.parametrize("name", ["gpt2_block", "tiny_gpt"])
def test_the_plan_changes_where_values_live_not_the_traffic(name):
    g = small(name)
    n = 16
    _, with_plan = compile(g, passes=planned(), explain=False).run(bindings={"n": n}, count=True)
    _, without = compile(g, explain=False).run(bindings={"n": n}, count=True)
    assert [r.hbm_bytes for r in with_plan.records] == [r.hbm_bytes for r in without.records]


@settings(max_examples=examples(15))
@given(case=random_graphs(max_steps=8))
def test_planned_random_graphs_equal_interpreter(case):
    g, inputs, bindings = case
    c = compile(g, passes=planned(bound=max(bindings["n"], 1)), explain=False, dtype="fp32")
    outs, prof = c.run(inputs, bindings)
    assert_close(outs, interpret(g, inputs, bindings))
    arena = c.graph.memory_plan.arena_at(bindings)
    assert prof.peak_hbm_bytes >= weight_bytes(c.graph, "fp32") + arena


def test_symbolic_plan_allocates_the_arena_at_the_run_n():
    g = small("tiny_gpt")
    passes = ["rewrite_attention", "fuse", functools.partial(plan_memory, bounds={"n": 16}, symbolic=True)]
    c = compile(g, passes=passes, explain=False)
    arenas = []
    for n in (1, 9, 16):
        inputs = make_inputs(g, {"n": n}, seed=n)
        outs, prof = c.run(inputs)
        assert_close(outs, interpret(g, inputs))
        arenas.append(c.graph.memory_plan.arena_at({"n": n}))
        assert prof.peak_hbm_bytes == io_bytes(g, n) + weight_bytes(c.graph) + arenas[-1]
    assert arenas == sorted(arenas) and arenas[0] < arenas[-1]        # the arena grows with n


def test_binding_beyond_the_bound_is_refused_with_the_fix():
    c = compile(small("mlp"), passes=planned(bound=8), explain=False)
    with pytest.raises(BindingError, match="plan again with bounds"):
        c.run(bindings={"n": 9}, count=True)


def test_a_stale_plan_is_refused():
    g = plan_memory(fuse(small("mlp")), bounds={"n": 8})
    g.groups = ()                                   # lowered op by op, but planned per fused group
    from tinyml.compiler import lower

    with pytest.raises(GraphError, match="memory plan"):
        lower(g).run(bindings={"n": 4}, count=True)


# ---- quantize_weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["int4-g32", "q4_0", "q8_0", "int8"])
@pytest.mark.parametrize("n", [1, 6])
def test_quantized_tiny_gpt_compiled_equals_interpreted(scheme, n):
    g = small("tiny_gpt")
    gq = quantize_weights(g, scheme)
    inputs = make_inputs(g, {"n": n}, seed=3)
    ref = interpret(gq, inputs)
    c = compile(gq, passes=planned(), explain=False)
    outs, prof = c.run(inputs)
    assert_close(outs, ref)
    names = [r.name for r in prof.records]
    kernel = "quantized_gemv" if n == 1 else "quantized_matmul"
    assert names.count(kernel) == 4 * 2 + 1                 # 4 linears per block + the LM head
    assert "matmul_epilogue" not in names and "matmul" not in names
    assert prof.peak_hbm_bytes == io_bytes(g, n) + weight_bytes(c.graph) + c.graph.memory_plan.arena_at({"n": n})
    # quantization error is small against the fp32 model, and not zero
    full = interpret(g, inputs)[0]
    err = float(np.abs(ref[0] - full).max())
    assert 0 < err < 0.2 * float(np.abs(full).max()) + 0.05


@pytest.mark.parametrize("n", [1, 6])
def test_quantized_linears_keep_their_epilogues(n):
    """Quantizing the weights changes which matmul kernel runs, not how many kernels: every
    matmul_epilogue (bias, GeLU, residual inside) becomes one quantized kernel with the same epilogue."""
    g = small("tiny_gpt")
    names = lambda graph: [r.name for r in compile(graph, explain=False).run(bindings={"n": n}, count=True)[1].records]  # noqa: E731
    fp16, q4 = names(g), names(quantize_weights(g, "q4_0"))
    kernel = "quantized_gemv" if n == 1 else "quantized_matmul"
    assert q4 == [kernel if name in ("matmul_epilogue", "matmul_v3_mma") else name for name in fp16]
    assert "fused_elementwise" not in q4 and not any(name.startswith("elementwise_gelu") for name in q4)


def test_every_weight_matmul_is_replaced_and_report_matches_the_layout():
    g = small("tiny_gpt")
    gq = quantize_weights(g, "q4_0")
    assert not any(n.op == "matmul" and n.inputs[1] in g.weights for n in gq.nodes)
    assert sum(n.op == "quantized_matmul" for n in gq.nodes) == 9
    assert "wte" in gq.weights and not isinstance(gq.weights["wte"], QuantizedWeight)   # the gather's table
    lay_bytes = lambda n, k: n * get_scheme("q4_0").layout(k).row_bytes                  # noqa: E731
    for row in gq.quant_report:
        n, k = row["shape"]
        assert row["quant_bytes"] == lay_bytes(n, k) == n * (k // 32) * 18                 # 16 B codes + 2 B scale
        assert row["fp16_bytes"] == 2 * n * k
    assert "total (9 layers, q4_0)" in quant_table(gq.quant_report)


def test_skip_policy_keeps_named_weights_and_the_lm_head():
    g = small("tiny_gpt")
    gq = quantize_weights(g, "int8", skip=["h1.*", "lm_head"])
    layers = {r["layer"] for r in gq.quant_report}
    assert layers == {"h0.attn.c_attn.w", "h0.attn.c_proj.w", "h0.mlp.c_fc.w", "h0.mlp.c_proj.w"}
    assert sum(n.op == "matmul" for n in gq.nodes) == 4 + 2 * 2 + 1   # h1's linears, 2 per attention, head
    inputs = make_inputs(g, {"n": 4}, seed=0)
    outs, _ = compile(gq, explain=False).run(inputs)
    assert_close(outs, interpret(gq, inputs))


def test_user_scheme_object_is_accepted():
    from tinyml.kernels.quant import Int4Grouped

    g = small("mlp")
    gq = quantize_weights(g, Int4Grouped(16))
    assert {r["fmt"] for r in gq.quant_report} == {"int4-g16"}
    inputs = make_inputs(g, {"n": 3}, seed=0)
    outs, _ = compile(gq, explain=False).run(inputs)
    assert_close(outs, interpret(gq, inputs))


def test_quantized_kernels_read_the_packed_bytes():
    """The quantized mlp at n = 1 reads each packed weight once (the gemv formula) and fewer bytes."""
    g = small("mlp")
    gq = quantize_weights(g, "q8_0")
    _, prof = compile(gq, explain=False).run(bindings={"n": 1}, count=True)
    gemv = [r for r in prof.records if r.name == "quantized_gemv"]
    qbytes = sorted(w.qtensor.nbytes for w in gq.weights.values() if isinstance(w, QuantizedWeight))
    assert len(gemv) == 2
    for r in gemv:            # reads = packed weight + ceil(N / BN) x-vector reads (>= one), writes N fp16
        assert r.hbm_read_bytes + r.l2_hit_bytes >= min(qbytes)
    _, fp16 = compile(g, explain=False).run(bindings={"n": 1}, count=True)
    assert prof.hbm_bytes < fp16.hbm_bytes


def test_shape_only_weights_count_but_do_not_execute():
    g = zoo.get("mlp", d_model=64, d_hidden=128, weights="meta")
    gq = quantize_weights(g, "q4_0")
    c = compile(gq, explain=False)
    _, prof = c.run(bindings={"n": 4}, count=True)
    assert [r.name for r in prof.records] == ["quantized_matmul"] * 2     # bias (+ GeLU) inside each
    with pytest.raises(GraphError, match="shape-only"):
        c.run({"x": np.zeros((4, 64), np.float32)})


def test_a_scheme_that_cannot_pad_names_the_weight_and_the_fix():
    from tinyml.kernels.quant import BlockAlignmentError

    g = zoo.get("mlp", d_model=20, d_hidden=32)          # w1's K = 20 is no multiple of Q4_0's 32
    with pytest.raises(BlockAlignmentError, match=r"%w1 .*skip=\['w1'\]"):
        quantize_weights(g, "q4_0")
    gq = quantize_weights(g, "q4_0", skip=["w1"])          # w2's K = 32 is fine
    assert [r["layer"] for r in gq.quant_report] == ["w2"]


def test_compile_binds_or_refuses_scheme_and_skip_outside_passes_all():
    """scheme/skip used to configure passes='all' only: a 'quantize_weights' listed by name ran int4-g32
    whatever scheme said, and a scheme or skip with no quantize_weights pass was dropped without a word."""
    from tinyml.compiler import zoo
    from tinyml.kernels.quant import UnknownFormatError

    c = compile(zoo.get("mlp"), passes=["quantize_weights"], scheme="int8", explain=False)
    assert {r["fmt"] for r in c.graph.quant_report} == {"int8"}
    with pytest.raises(GraphError, match="scheme='int8' configures the quantize_weights pass"):
        compile(zoo.get("mlp"), passes=["fuse"], scheme="int8", explain=False)
    with pytest.raises(GraphError, match="skip=.*would be ignored"):
        compile(zoo.get("mlp"), skip=["*"], explain=False)
    with pytest.raises(UnknownFormatError, match="unknown weight format 'int3'"):
        compile(zoo.get("mlp"), passes=["fuse"], scheme="int3", explain=False)
