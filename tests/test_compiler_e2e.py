"""The tiny GPT end to end: the whole pipeline (passes="all"), greedy generation equal to the
interpreter's, the `tinyml compile` command with --passes all / --bound / --json, ONNX files as
models, and library calls (convolutions) costed by their stated formula."""

from __future__ import annotations

import argparse
import json
import math
import os

import numpy as np
import pytest

from tinyml.cli import build_parser, main
from tinyml.cli import compile as compile_cmd
from tinyml.compiler import BindingError, GraphError, compile, interpret, zoo
from tinyml.compiler.compile import ALL_PASSES


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Until the dispatcher registers it, add `compile` to the parser main() builds."""
    import tinyml.cli as cli

    def parser():
        p = build_parser()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        if "compile" not in sub.choices:
            compile_cmd.register(sub)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)


def tiny(layers=2, **kw):
    return zoo.get("tiny_gpt", layers=layers, vocab=61, d_model=32, n_heads=2, n_ctx=32, **kw)


def greedy_reference(graph, ids, steps):
    """Greedy decoding with the reference interpreter: the expected tokens."""
    tokens = list(ids)
    for _ in range(steps):
        (logits,) = interpret(graph, {"ids": np.asarray(tokens, np.int32)})
        tokens.append(int(np.argmax(logits[-1])))
    return tokens


# ---- the whole pipeline -------------------------------------------------------------------------------


def test_all_passes_run_in_the_documented_order_and_end_with_lowering():
    c = compile(tiny(), passes="all", bindings={"n": 8}, bounds={"n": 16})
    assert [s.name for s in c.steps] == ["input", *ALL_PASSES, "lower"]
    by = {s.name: s.summary for s in c.steps}
    assert by["rewrite_attention"]["kernels"] < by["fuse"]["kernels"] < by["input"]["kernels"]
    assert by["plan_memory"]["arena_bytes"] >= by["plan_memory"]["load_bytes"] > 0
    assert by["lower"]["kernels"] == by["plan_memory"]["kernels"]
    assert "bytes per quantized layer" in c.steps[ALL_PASSES.index("quantize_weights") + 1].details()
    assert "arena/LOAD" in c.steps[ALL_PASSES.index("plan_memory") + 1].details()
    assert "arena" in c.table() and "peak HBM" in c.table()


@pytest.mark.parametrize("scheme", ["int4-g32", "q8_0"])
def test_generate_equals_the_interpreter_greedy_tokens(scheme):
    g = tiny()
    c = compile(g, passes="all", bounds={"n": 16}, scheme=scheme, explain=False)
    prompt = [3, 1, 4, 1, 5]
    tokens, profiles = c.generate(prompt, steps=4)
    assert tokens.tolist() == greedy_reference(c.graph, prompt, 4)
    assert tokens[:5].tolist() == prompt and len(profiles) == 4
    # every run used the plan: peak = inputs + weights + arena + outputs, the arena at that run's n
    for k, prof in enumerate(profiles):
        assert prof.peak_hbm_bytes > c.graph.memory_plan.arena_at({"n": len(prompt) + k})


def test_generate_past_the_plan_bound_says_how_to_fix_it():
    c = compile(tiny(), passes="all", bounds={"n": 6}, explain=False)
    with pytest.raises(BindingError, match="plan again with bounds"):
        c.generate([1, 2, 3, 4, 5], steps=3)


def test_generate_needs_a_language_model():
    c = compile(zoo.get("mlp", d_model=16, d_hidden=32), explain=False)
    with pytest.raises(GraphError, match="language model"):
        c.generate([1, 2], steps=1)


def test_all_passes_need_a_bound():
    with pytest.raises(BindingError, match="bounds"):
        compile(tiny(), passes="all", explain=False)


def test_meta_weights_count_gpt2_small_and_match_the_real_weights_bytes():
    small = dict(layers=1, vocab=97, d_model=64, n_heads=4, n_ctx=64)
    real = compile(zoo.get("tiny_gpt", **small), passes="all", bindings={"n": 32})
    meta = compile(zoo.get("tiny_gpt", weights="meta", **small), passes="all", bindings={"n": 32})
    assert [s.summary for s in real.steps] == [s.summary for s in meta.steps]


# ---- the command ----------------------------------------------------------------------------------------


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_passes_all_json_has_the_memory_numbers(capsys):
    out = run_json(capsys, "compile", "tiny_gpt", "--layers", "1", "--seq", "64", "--bound", "n=128",
                   "--passes", "all")
    assert [s["pass"] for s in out["steps"]] == ["input", *ALL_PASSES, "lower"]
    assert out["bounds"] == {"n": 128}
    assert out["naive_bytes"] >= out["arena_bytes"] >= out["load_bytes"] > 0
    last = out["steps"][-1]
    assert last["arena_bytes"] == out["arena_bytes"]
    assert out["profile"]["totals"]["kernels"] == last["kernels"]
    # GPT-2 small's sizes: a quantized layer is 2304 x 768 (c_attn)
    plan = out["steps"][ALL_PASSES.index("plan_memory") + 1]
    assert plan["arena/load"] <= 1.05


def test_cli_named_passes_get_the_bound_and_the_scheme(capsys):
    out = run_json(capsys, "compile", "gpt2_block", "--seq", "16", "--bound", "n=64",
                   "--passes", "rewrite_attention,fuse,quantize_weights,fuse,plan_memory", "--scheme", "q8_0")
    from tinyml.compiler import fuse, plan_memory, quantize_weights, rewrite_attention

    g = zoo.get("gpt2_block")
    plan = plan_memory(fuse(quantize_weights(fuse(rewrite_attention(g)), "q8_0")), bounds={"n": 64}).memory_plan
    assert out["arena_bytes"] == plan.arena_at({"n": 16}) and out["load_bytes"] == plan.load_at({"n": 16})
    names = [k["name"] for k in out["profile"]["kernels"]]
    assert names.count("quantized_matmul") == 4


def test_cli_explain_prints_the_quantization_table_and_the_plan(tmp_path, capsys):
    argv = ["compile", "tiny_gpt", "--layers", "1", "--seq", "32", "--passes", "all", "--scheme", "q4_0",
            "--explain", "--out", str(tmp_path)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "bytes per quantized layer" in text and "q4_0" in text and "arena/LOAD" in text
    assert "after lower:" in text


@pytest.mark.parametrize("argv, words", [
    (["compile", "tiny_gpt", "--bound", "n=abc"], "SYMBOL=INT"),
    (["compile", "tiny_gpt", "--seq", "64", "--bound", "n=32"], "below --seq"),
    (["compile", "mlp", "--layers", "3"], "--layers"),
    (["compile", "nosuchmodel"], "unknown model"),
])
def test_cli_errors_are_messages(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err


# ---- ONNX models and library calls -------------------------------------------------------------------


def _onnx_model(name="light_squeezenet.onnx"):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("tinyml.compiler.onnx")
    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is not in this onnx installation")
    return path


def test_cli_takes_an_onnx_file(capsys):
    out = run_json(capsys, "compile", _onnx_model(), "--passes", "fuse,plan_memory")
    assert out["arena_bytes"] >= out["load_bytes"] > 0
    assert out["arena_bytes"] <= 1.05 * out["load_bytes"]
    assert any(k["name"].startswith("library_conv2d") for k in out["profile"]["kernels"])


def test_onnx_graph_compiled_equals_interpreted_and_library_bytes_follow_the_formula():
    import functools

    from tinyml.compiler import plan_memory
    from tinyml.compiler.onnx import from_onnx

    g = from_onnx(_onnx_model())
    name = next(iter(g.inputs))
    x = np.random.default_rng(0).standard_normal(g.inputs[name].shape).astype(np.float32)
    c = compile(g, passes=["fuse", functools.partial(plan_memory, bounds={})], explain=False, dtype="fp32")
    (out,), prof = c.run({name: x})
    (ref,) = interpret(g, {name: x})
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-6)
    first = prof.records[0]                      # the first convolution (+ ReLU): inputs once, output once
    grp = c.graph.groups[0]
    reads = sum(math.prod(c.graph.type_of(i).shape) for i in grp.inputs) * 4
    writes = sum(math.prod(c.graph.type_of(o).shape) for o in grp.outputs) * 4
    assert first.name == "library_conv2d"
    assert (first.hbm_read_bytes + first.l2_hit_bytes, first.hbm_write_bytes + first.l2_write_hit_bytes) == \
        (reads, writes)
