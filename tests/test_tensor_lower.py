"""Lowering graph nodes with a schedule (tinyml.compiler.lowering.scheduled): compiled == interpreted,
the generated kernel's record is in the profile with the bytes it has when run standalone, a
schedule of another workload is refused naming both shapes, and no schedules changes nothing."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from tinyml.compiler import Graph, GraphError, compile, interpret
from tinyml.compiler.lowering.scheduled import ScheduleMismatchError, workload_hash, workload_key
from tinyml.compiler.tensor import build, conv2d, matmul, to_json
from tinyml.compiler.tensor.examples import blocked_conv2d, tiled_matmul
from tinyml.sim import Profile, TinymlError, meta

DEVICE = "a100-40gb"


def mm_graph(m=32, k=24, n=40, relu=False):
    g = Graph("mm", dtype="fp32")
    x, w = g.input("x", (m, k)), g.weight("w", (k, n))                  # (M, K), (K, N)
    y = g.matmul(x, w)                                                  # (M, N)
    g.output(g.relu(y) if relu else y)
    return g


def conv_graph():
    g = Graph("cv", dtype="fp32")
    x = g.input("x", (2, 3, 9, 9))                                      # (N, C, H, W)
    w, b = g.weight("w", (8, 3, 3, 3)), g.weight("b", (8,))            # (F, C, KH, KW), (F,)
    y = g.add_node("conv2d", x, w, b, strides=(2, 2), pads=(1, 1, 1, 1))   # (2, 8, 5, 5)
    g.output(g.relu(y))
    return g


def mm_schedule(f):
    return tiled_matmul(f, 16, 8, 8, tensorize=False)


def standalone(sch, name):
    """The generated kernel's record when it runs alone on meta inputs."""
    with Profile(DEVICE) as prof:
        build(sch, name=name)(*(meta(b.shape, b.dtype) for b in sch.func.inputs))
    (rec,) = prof.records
    return rec


def numbers(rec):
    return (rec.grid, rec.hbm_read_bytes + rec.l2_hit_bytes, rec.hbm_write_bytes + rec.l2_write_hit_bytes,
            rec.flops_matmul, rec.flops_vector)


def x_for(g):
    (name, t), = g.inputs.items()
    return {name: np.random.default_rng(1).standard_normal(t.shape).astype(np.float32)}


def test_scheduled_matmul_equals_interpreter_and_counts_the_generated_kernel():
    g = mm_graph()
    c = compile(g, device=DEVICE, explain=False, dtype="fp32", schedules={"matmul": mm_schedule})
    inputs = x_for(g)
    (out,), prof = c.run(inputs)
    (ref,) = interpret(g, inputs)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert [r.name for r in prof.records] == ["matmul_scheduled"]
    rec = prof.records[0]
    alone = standalone(mm_schedule(matmul(32, 40, 24, "fp32")), "matmul_scheduled")
    assert numbers(rec) == numbers(alone)
    m, n, k, s = 32, 40, 24, 4                  # tiled_matmul's closed form with BM=16, BN=8
    assert numbers(rec)[1] == (m * k * math.ceil(n / 8) + k * n * math.ceil(m / 16)) * s
    assert numbers(rec)[2] == m * n * s
    _, counted = c.run(count=True)              # counting mode == executing mode
    assert [numbers(r) for r in counted.records] == [numbers(rec)]


def test_scheduled_conv2d_equals_interpreter_bias_inside_relu_after():
    g = conv_graph()
    sched = lambda f: blocked_conv2d(f, 4, 2)  # noqa: E731
    c = compile(g, device=DEVICE, explain=False, dtype="fp32", schedules={"conv2d": sched})
    inputs = x_for(g)
    (out,), prof = c.run(inputs)
    (ref,) = interpret(g, inputs)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    assert [r.name for r in prof.records] == ["conv2d_bias_scheduled", "elementwise_relu"]
    func = conv2d(2, 3, 9, 9, 8, 3, 3, stride=2, pad=1, dtype="fp32", bias=True)
    assert numbers(prof.records[0]) == numbers(standalone(sched(func), "conv2d_bias_scheduled"))
    default = compile(g, device=DEVICE, explain=False, dtype="fp32").run(inputs)[1]
    assert [r.name for r in default.records] == ["library_conv2d"]     # bias and ReLU inside the call


def test_a_schedule_is_found_by_node_name_workload_key_and_hash():
    g = mm_graph()
    node = next(n for n in g.nodes if n.op == "matmul").name
    func = matmul(32, 40, 24, "fp32")
    assert workload_key(func) == "matmul:fp32:A(32,24),B(24,40)->C(32,40)"
    for key in (node, workload_key(func), workload_hash(func)):
        c = compile(g, device=DEVICE, explain=False, dtype="fp32", schedules={key: to_json(mm_schedule(func))})
        assert [r.name for r in c.profile().records] == ["matmul_scheduled"]
    other = compile(g, device=DEVICE, explain=False, dtype="fp32",
                    schedules={workload_key(matmul(8, 8, 8, "fp32")): mm_schedule})
    default = compile(g, device=DEVICE, explain=False, dtype="fp32").profile()
    assert [numbers(r) + (r.name,) for r in other.profile().records] == \
        [numbers(r) + (r.name,) for r in default.records]             # another workload's key: as by default


@pytest.mark.parametrize("given", ["trace", "schedule"])
def test_a_schedule_of_another_workload_is_refused_naming_both_shapes(given):
    g = mm_graph()
    sch = mm_schedule(matmul(16, 16, 16, "fp32"))
    value = to_json(sch) if given == "trace" else sch
    c = compile(g, device=DEVICE, explain=False, dtype="fp32", schedules={"matmul": value})
    with pytest.raises(ScheduleMismatchError) as e:
        c.run(x_for(g))
    assert isinstance(e.value, TinymlError)
    msg = str(e.value)
    assert "A 16x16" in msg and "A 32x24" in msg and "B 24x40" in msg


def epilogue_graph(m=24, k=16, n=40, order=("bias", "gelu", "residual")):
    g = Graph("mlp_block", dtype="fp32")
    x, w = g.input("x", (2, m // 2, k)), g.weight("w", (k, n))          # (2, M/2, K), (K, N)
    b, r = g.weight("b", (n,)), g.input("r", (2, m // 2, n))            # (N,), (2, M/2, N)
    y = g.matmul(x, w)                                                  # (2, M/2, N): M folds the leading dim
    for step in order:
        y = g.add(y, b) if step == "bias" else g.add(r, y) if step == "residual" else getattr(g, step)(y)
    g.output(y)
    return g


@pytest.mark.parametrize("order", [("bias", "gelu", "residual"), ("residual", "relu"), ("gelu",)])
def test_a_matmul_epilogue_runs_inside_the_generated_kernel(order):
    """A chain of + bias, + residual, relu, gelu after a 2-D matmul: one generated kernel."""
    g = epilogue_graph(order=order)
    m, k, n, s = 24, 16, 40, 4
    c = compile(g, device=DEVICE, dtype="fp32", bindings={}, schedules={"matmul": mm_schedule})
    rng = np.random.default_rng(3)
    inputs = {name: rng.standard_normal(t.shape).astype(np.float32) for name, t in g.inputs.items()}
    outs, prof = c.run(inputs)
    np.testing.assert_allclose(outs[0], interpret(g, inputs)[0], rtol=1e-5, atol=1e-5)
    name = "_".join(("matmul",) + order) + "_scheduled"
    assert [r.name for r in prof.records] == [name]
    rec = prof.records[0]
    flops = {"bias": 1, "residual": 1, "relu": 1, "gelu": 9}
    assert rec.flops_vector == 2 * m * n * k + sum(flops[x] for x in order) * m * n    # tiles on the vector units
    bias = n * math.ceil(m / 16) if "bias" in order else 0       # the bias tile loaded per output tile (BM = 16)
    res = m * n if "residual" in order else 0
    assert numbers(rec)[1] == (m * k * math.ceil(n / 8) + k * n * math.ceil(m / 16) + bias + res) * s
    assert numbers(rec)[2] == m * n * s
    last = c.steps[-1].summary                                  # the per-pass table counts the generated kernel
    assert (last["kernels"], last["hbm_bytes"]) == (1, prof.hbm_bytes)


def test_an_epilogue_that_does_not_fold_runs_after_the_generated_kernel():
    g = Graph("two_out", dtype="fp32")
    x, w = g.input("x", (8, 4)), g.weight("w", (4, 8))
    y = g.matmul(x, w)
    g.output(g.relu(y), g.tanh(y))                                  # two values written, tanh is no epilogue step
    c = compile(g, device=DEVICE, explain=False, dtype="fp32", schedules={"matmul": mm_schedule})
    inputs = x_for(g)
    outs, prof = c.run(inputs)
    for o, ref in zip(outs, interpret(g, inputs)):
        np.testing.assert_allclose(o, ref, rtol=1e-5, atol=1e-5)
    assert prof.records[0].name == "matmul_scheduled" and len(prof.records) >= 2


def test_keys_that_name_nothing_schedulable_are_refused():
    g = mm_graph(relu=True)
    relu = next(n for n in g.nodes if n.op == "relu").name
    with pytest.raises(GraphError, match="no node of"):
        compile(g, explain=False, schedules={"fc_typo": mm_schedule})
    with pytest.raises(GraphError, match="a relu node"):
        compile(g, explain=False, schedules={relu: mm_schedule})


def test_no_schedules_lowers_as_before():
    g = mm_graph(relu=True)
    before = compile(g, device=DEVICE, explain=False, dtype="fp32").profile()
    for schedules in (None, {}):
        after = compile(g, device=DEVICE, explain=False, dtype="fp32", schedules=schedules).profile()
        assert [numbers(r) + (r.name,) for r in after.records] == [numbers(r) + (r.name,) for r in before.records]
    assert len(before.records) == 1 and not before.records[0].name.endswith("_scheduled")   # hand-written, fused


def test_onnx_convolutions_get_a_generated_kernel_each():
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("tinyml.compiler.onnx")
    from tinyml.compiler.onnx import from_onnx

    path = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "light_squeezenet.onnx")
    if not os.path.exists(path):
        pytest.skip("light_squeezenet.onnx is not in this onnx installation")
    g = from_onnx(path)
    convs = [n for n in g.nodes if n.op == "conv2d"]
    sched = {"conv2d": lambda f: blocked_conv2d(f, min(16, f.output.shape[1]), min(4, f.output.shape[2]))}
    prof = compile(g, device=DEVICE, explain=False, schedules=sched).profile()
    generated = [r for r in prof.records if r.name.endswith("_scheduled")]
    assert len(generated) == len(convs)
    assert not any(r.name == "library_conv2d" for r in prof.records)


# ---- tinyml compile --schedule ------------------------------------------------------------------------


def _cli(capsys, *argv):
    from tinyml.cli import main

    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_compile_schedule_lowers_the_nodes_of_the_traces_workload(capsys, tmp_path):
    import json

    func = matmul(64, 3072, 768, "fp16")                        # mlp's first matmul at n = 64
    path = tmp_path / "mm.json"
    path.write_text(to_json(tiled_matmul(func, 16, 8, 8, tensorize=False)))
    rc, out, _ = _cli(capsys, "compile", "mlp", "--seq", "64", "--schedule", str(path), "--json")
    assert rc == 0
    data = json.loads(out)
    assert data["scheduled"] == ["matmul_bias_gelu_scheduled"]       # bias and GeLU inside the generated kernel
    names = [k["name"] for k in data["profile"]["kernels"]]
    assert names.count("matmul_bias_gelu_scheduled") == 1 and len(names) == 2   # + the 2nd matmul
    rc, _, err = _cli(capsys, "compile", "mlp", "--seq", "32", "--schedule", str(path))
    assert rc == 2 and "no node" in err and "matmul:fp16:A(64,768)" in err   # n = 32: another workload
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}')
    rc, _, err = _cli(capsys, "compile", "mlp", "--seq", "64", "--schedule", str(bad))
    assert rc == 2 and "neither a trace" in err


def test_any_object_with_lookup_stands_in_for_the_table():
    """What a tuning log (issue 14) plugs in: lookup(node, func) -> Schedule or None, keyed as it likes."""
    seen = []

    class Log:
        def lookup(self, node, func):
            seen.append((node.op, workload_hash(func)))
            return mm_schedule(func) if func.name == "matmul" else None

    g = mm_graph()
    c = compile(g, device=DEVICE, explain=False, dtype="fp32", schedules=Log())
    (out,), prof = c.run(x_for(g))
    np.testing.assert_allclose(out, interpret(g, x_for(g))[0], rtol=1e-5, atol=1e-5)
    assert [r.name for r in prof.records] == ["matmul_scheduled"]
    assert seen == [("matmul", workload_hash(matmul(32, 40, 24, "fp32")))]
    with pytest.raises(GraphError, match="lookup"):
        compile(g, explain=False, schedules=[mm_schedule])
