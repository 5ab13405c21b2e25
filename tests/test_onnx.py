"""The ONNX front end: real models, every op against ONNX's reference, errors, symbolic dims.

The expected values never come from tinyml: they come from ``onnx.reference.ReferenceEvaluator``
(ONNX's own NumPy implementation of every op), from a naive convolution loop written
here, or from NumPy.

Known bugs of ``onnx.reference`` (onnx 1.15 .. 1.23) matter for the "light" models, which
use opset 9: ``Softmax`` ignores the opset < 13 rule (flatten to 2-D at ``axis``),
``BatchNormalization-9`` uses batch statistics when ``momentum`` is set (always: the
default is filled in), and ``LRN`` loops over the batch axis instead of the channels
(onnx/onnx#7805). The reference therefore runs on the model converted to opset 15
(``onnx.version_converter``), whose Softmax-13 / BatchNormalization-15 it implements
correctly, with :class:`LRN` below (the spec's formula) in place of its own; tinyml
imports the original opset-9 model *and* the converted one.
"""

from __future__ import annotations

import collections
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import examples

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper, version_converter  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402
from onnx.reference.op_run import OpRun  # noqa: E402

from tinyml.compiler.onnx import (OPSETS, OnnxFileError, OnnxImportError,  # noqa: E402
                                  OnnxUnsupportedError, from_onnx)
from tinyml.compiler import fuse, lower  # noqa: E402
from tinyml.compiler.ops import get  # noqa: E402
from tinyml.compiler.ops.library import FLOPS, flops  # noqa: E402
from tinyml.compiler.symbolic import Affine  # noqa: E402

class LRN(OpRun):
    """ONNX's LRN, as the spec writes it (onnx.reference's loops over axis 0: onnx/onnx#7805)."""

    op_domain = ""

    def _run(self, x, alpha=None, beta=None, bias=None, size=None):
        c = x.shape[1]
        square_sum = np.zeros(x.shape, dtype=np.float64)
        for i in range(c):
            lo, hi = max(0, i - (size - 1) // 2), min(c, i + math.ceil((size - 1) / 2) + 1)
            square_sum[:, i] = np.sum(x[:, lo:hi].astype(np.float64) ** 2, axis=1)
        return ((x / (bias + alpha / size * square_sum) ** beta).astype(x.dtype),)


def pool_by_offsets(x, kernel_shape, strides, pads, op, count_include_pad=0):
    """ONNX's MaxPool / AveragePool without ceil_mode or dilation (what the light models use),
    combining the input one kernel offset at a time."""
    (kh, kw), (sh, sw) = kernel_shape, strides or (1, 1)
    h0, w0, h1, w1 = pads or (0, 0, 0, 0)
    h, w = x.shape[2:]
    fill = -np.inf if op == "max" else 0.0
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (h0, h1), (w0, w1)), constant_values=fill)
    inside = np.pad(np.ones((h, w)), ((h0, h1), (w0, w1)), constant_values=float(bool(count_include_pad)))
    ho, wo = (h + h0 + h1 - kh) // sh + 1, (w + w0 + w1 - kw) // sw + 1
    out, count = None, 0.0
    for p in range(kh):
        for q in range(kw):
            rows, cols = slice(p, p + sh * (ho - 1) + 1, sh), slice(q, q + sw * (wo - 1) + 1, sw)
            part = xp[:, :, rows, cols]
            out = part if out is None else (np.maximum(out, part) if op == "max" else out + part)
            count = count + inside[rows, cols]
    return (out if op == "max" else out / count).astype(x.dtype)


class AveragePool(OpRun):
    """onnx.reference's AveragePool loops in Python per output element (18 of the 20 s of
    Inception-v2): this one combines one kernel offset at a time."""

    op_domain = ""

    def _run(self, x, auto_pad=None, ceil_mode=None, count_include_pad=None, dilations=None,
             kernel_shape=None, pads=None, strides=None):
        assert auto_pad in (None, "NOTSET") and not ceil_mode and all(d == 1 for d in dilations or (1, 1))
        return (pool_by_offsets(x, kernel_shape, strides, pads, "mean", count_include_pad),)


class MaxPool(OpRun):
    """As :class:`AveragePool`, for MaxPool with padding (16 of Inception-v1's 18 s)."""

    op_domain = ""

    def _run(self, x, auto_pad=None, ceil_mode=None, dilations=None, kernel_shape=None, pads=None,
             storage_order=None, strides=None):
        assert auto_pad in (None, "NOTSET") and not ceil_mode and all(d == 1 for d in dilations or (1, 1))
        return (pool_by_offsets(x, kernel_shape, strides, pads, "max"),)


def reference(model, fast_pools: bool = False):
    """onnx.reference with LRN fixed and, if asked, the fast pools (for whole models: the single-op
    pooling tests use onnx.reference's own)."""
    return ReferenceEvaluator(model, new_ops=[LRN, AveragePool, MaxPool] if fast_pools else [LRN])


LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet",
          "squeezenet", "vgg19", "zfnet512"]
#: the five most expensive models run with `pytest -m slow` (VGG19: 143M weights; DenseNet-121: 120 convolutions;
#: ZFNet-512 and AlexNet: large fully connected layers; ResNet-50: 53 convolutions); the four others hold every
#: operator the nine use (checked by test_the_default_run_covers_every_operator_of_the_light_models)
SLOW_MODELS = ("bvlc_alexnet", "densenet121", "resnet50", "vgg19", "zfnet512")
MODEL_PARAMS = [pytest.param(m, marks=pytest.mark.slow) if m in SLOW_MODELS else m for m in MODELS]


def light(name: str):
    return onnx.load(os.path.join(LIGHT, f"light_{name}.onnx"))


def randomized(model, seed: int = 0):
    """The model with every ConstantOfShape-built weight replaced by a random initializer:
    He-normal for rank >= 2 (conv / fc weights), uniform(0.5, 1.5) for rank 1 (biases,
    batch-norm parameters, positive so a variance stays valid)."""
    rng = np.random.default_rng(seed)
    m = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    keep = []
    for node in m.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            shape = tuple(int(v) for v in inits[node.input[0]])
            if len(shape) >= 2:
                data = rng.standard_normal(shape, dtype=np.float32) * np.float32(math.sqrt(2.0 / math.prod(shape[1:])))
            else:
                data = rng.uniform(0.5, 1.5, shape)
            m.graph.initializer.append(numpy_helper.from_array(data.astype(np.float32), node.output[0]))
            if m.ir_version < 4:                                          # IR 3: initializers are inputs too
                m.graph.input.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, shape))
        else:
            keep.append(node)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    return m


def add_logits_output(m) -> bool:
    """Also output the value entering the final Softmax (the logits); changes ``m`` in place."""
    sm = [n for n in m.graph.node if n.op_type == "Softmax"]
    out = {o.name: o for o in m.graph.output}.get(sm[-1].output[0]) if sm else None
    if out is None:
        return False
    vi = onnx.ValueInfoProto.FromString(out.SerializeToString())     # Softmax keeps its input's shape
    vi.name = sm[-1].input[0]
    m.graph.output.append(vi)
    return True


def feeds_for(model, rng):
    inits = {t.name for t in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name not in inits:
            shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
            out[vi.name] = rng.standard_normal(shape).astype(np.float32)
    return out


def run_tinyml(g, onnx_feeds):
    """Interpret ``g`` on feeds named as in ONNX (tinyml's input names are sanitised, same order)."""
    return g.interpret(dict(zip(g.inputs, onnx_feeds.values())))


def close(ours, ref, rtol=1e-3):
    assert ours.shape == ref.shape
    err = float(np.abs(ours.astype(np.float64) - ref).max())
    scale = float(np.abs(ref).max())
    assert err <= rtol * scale + 1e-6, f"max error {err:.3g} vs max |ref| {scale:.3g}"


# ---- the nine "light" models ----------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_PARAMS)
def test_light_model_imports_folds_and_runs(name):
    """The shipped model (weights built by ConstantOfShape) imports with every weight folded."""
    model = light(name)
    g = from_onnx(model)
    built = {n.output[0]: n for n in model.graph.node if n.op_type == "ConstantOfShape"}
    shapes = {t.name: tuple(numpy_helper.to_array(t)) for t in model.graph.initializer}
    conv_weights = [n.input[1] for n in model.graph.node if n.op_type == "Conv" and n.input[1] in built]
    assert conv_weights and len(g.inputs) == 1                          # only the image is an input
    for name in conv_weights:                                           # the conv weights became weights
        w = g.weights[name.replace("/", "_")]
        value = numpy_helper.to_array(built[name].attribute[0].t).item()
        assert w.data.shape == shapes[built[name].input[0]] and np.all(w.data == np.float32(value))
    assert {n.op for n in g.nodes} <= {"conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool", "lrn", "relu",
                                        "add", "mul", "concat", "reshape", "transpose", "matmul", "softmax"}
    (y,) = run_tinyml(g, feeds_for(model, np.random.default_rng(1)))
    want = tuple(d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim)
    assert y.shape == want and np.isfinite(y).all()


def test_the_default_run_covers_every_operator_of_the_light_models():
    def ops(names):
        return {n.op_type for name in names for n in light(name).graph.node}

    assert ops(MODELS) == ops(m for m in MODELS if m not in SLOW_MODELS)


#: models whose opset-9 ops onnx.reference gets right (no BatchNormalization, Softmax on the last axis)
OPSET9_SAFE = ("bvlc_alexnet", "vgg19", "zfnet512")


@pytest.mark.parametrize("name", MODEL_PARAMS)
def test_light_model_matches_onnx_reference(name):
    """Random weights and input: tinyml's interpreter == onnx.reference on logits and outputs.
    tinyml imports the original opset-9 model and, where onnx.reference needs the opset-15
    conversion (see the module docstring), the converted one too; the three models with large
    fully connected layers skip the conversion (several seconds of protobuf copying each)."""
    model = randomized(light(name))
    has_logits = add_logits_output(model)
    feeds = feeds_for(model, np.random.default_rng(2))
    variants = [model]
    if name not in OPSET9_SAFE:
        variants.append(version_converter.convert_version(model, 15))
    ref = reference(variants[-1], fast_pools=True).run(None, feeds)
    for variant in variants:
        for ours, want in zip(run_tinyml(from_onnx(variant), feeds), ref):
            close(ours, want)
    if has_logits:                                                       # the logits are not degenerate
        assert float(np.abs(ref[-1] - ref[-1].mean()).max()) > 1e-3


@pytest.mark.parametrize("name", [pytest.param("resnet50", marks=pytest.mark.slow), "shufflenet", "squeezenet"])
def test_imported_graph_fuses_and_keeps_its_meaning(name):
    """The passes work on imported graphs: fused == unfused; every batch-norm mul/add and ReLU joins
    the kernel of the convolution (or pool) before it, so no elementwise op is a kernel of its own."""
    g = from_onnx(light(name)).validate()
    fused = fuse(g).validate()
    kinds = collections.Counter(grp.lowering for grp in fused.groups)
    anchors = sum(n.op in ("conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool") for n in g.nodes)
    assert kinds["library"] == anchors and "elementwise" not in kinds
    feeds = feeds_for(light(name), np.random.default_rng(4))
    np.testing.assert_array_equal(run_tinyml(fused, feeds)[0], run_tinyml(g, feeds)[0])


def test_squeezenet_on_the_simulator_through_lowering():
    """Compiled (fused, lowered) SqueezeNet on the simulator == the interpreter; counting mode ==
    executing mode; its first kernel, conv1 (3 -> 64 channels, 3x3, stride 2) + ReLU as one library
    call, moves exactly its inputs once and its output once, fp32."""
    g = from_onnx(light("squeezenet"))
    plan = lower(fuse(g))
    x = np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32)
    out, executed = plan.run({"data_0": x}, device="a100-40gb", dtype="fp32")
    np.testing.assert_allclose(out[0], g.interpret({"data_0": x})[0], rtol=1e-5, atol=1e-7)
    _, counted = plan.run(bindings={}, device="a100-40gb", dtype="fp32", count=True)
    fields = ("name", "hbm_read_bytes", "hbm_write_bytes", "flops_matmul", "flops_vector")
    assert [[getattr(r, f) for f in fields] for r in executed.records] == \
        [[getattr(r, f) for f in fields] for r in counted.records]
    conv1 = counted.records[0]
    ho = (224 - 3) // 2 + 1                                             # 111
    assert conv1.name == "library_conv2d"
    assert conv1.hbm_read_bytes == 4 * (3 * 224 * 224 + 64 * 3 * 3 * 3 + 64)
    assert conv1.hbm_write_bytes == 4 * 64 * ho * ho
    assert conv1.flops == 2 * 64 * ho * ho * 3 * 3 * 3 + 64 * ho * ho + 64 * ho * ho   # + bias + ReLU


def test_softmax_opset9_flattens_from_axis_1():
    """SqueezeNet's Softmax (opset 9, no axis) on (1, 1000, 1, 1) normalises all 1000 values."""
    model = randomized(light("squeezenet"))
    assert add_logits_output(model)
    feeds = feeds_for(model, np.random.default_rng(3))
    probs, logits = run_tinyml(from_onnx(model), feeds)
    flat = logits.reshape(1, -1).astype(np.float64)
    e = np.exp(flat - flat.max())
    np.testing.assert_allclose(probs.reshape(1, -1), e / e.sum(), rtol=1e-4, atol=1e-7)


# ---- single ops against onnx.reference -------------------------------------------------------


def one_node_model(op, inputs: dict, attrs=None, consts: "dict | None" = None, opset=17, n_out=1):
    """A model with one node: ``inputs`` name -> array are graph inputs, ``consts`` initializers."""
    consts = consts or {}
    node = helper.make_node(op, list(inputs) + list(consts), [f"y{i}" for i in range(n_out)], **(attrs or {}))
    ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in inputs.items()]
    outs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(n_out)]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    g = helper.make_graph([node], "one", ins, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def check_against_reference(model, inputs: dict, rtol=1e-4):
    ref = reference(model).run(None, inputs)
    ours = run_tinyml(from_onnx(model), inputs)
    for o, r in zip(ours, ref):
        close(o, r, rtol)


def arr(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@st.composite
def conv_cases(draw):
    g = draw(st.sampled_from([1, 1, 2, 3]))
    cg, mg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    pads = draw(st.lists(st.integers(0, 3), min_size=4, max_size=4))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - pads[0] - pads[2]), 11))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - pads[1] - pads[3]), 11))
    return dict(n=draw(st.integers(1, 2)), g=g, c=cg * g, m=mg * g, k=(kh, kw), s=(sh, sw), d=(dh, dw),
                pads=pads, hw=(h, w), bias=draw(st.booleans()), seed=draw(st.integers(0, 99)))


@settings(max_examples=examples(25))
@given(conv_cases())
def test_conv_matches_onnx_reference(case):
    rng = np.random.default_rng(case["seed"])
    x = arr(rng, case["n"], case["c"], *case["hw"])
    consts = {"w": arr(rng, case["m"], case["c"] // case["g"], *case["k"])}
    if case["bias"]:
        consts["b"] = arr(rng, case["m"])
    attrs = dict(group=case["g"], strides=case["s"], dilations=case["d"], pads=case["pads"])
    check_against_reference(one_node_model("Conv", {"x": x}, attrs, consts), {"x": x})


def naive_conv(x, w, b, strides, pads, dilations, groups):
    """Loops over every output and every multiply-add; returns (y, multiply-adds counted)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ho = (h + pads[0] + pads[2] - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (wd + pads[1] + pads[3] - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    y = np.zeros((n, m, ho, wo))
    macs = 0
    for b_ in range(n):
        for o in range(m):
            grp = o // (m // groups)
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0 if b is None else float(b[o])
                    for ci in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                acc += xp[b_, grp * cg + ci, i * strides[0] + p * dilations[0],
                                          j * strides[1] + q * dilations[1]] * w[o, ci, p, q]
                                macs += 1
                    y[b_, o, i, j] = acc
    return y, macs


@settings(max_examples=examples(10))
@given(conv_cases())
def test_conv_reference_and_flops_vs_naive_loop(case):
    """conv2d's NumPy reference == a naive loop, and its FLOP formula == 2 x the loop's multiply-adds
    (+ one add per output for the bias)."""
    rng = np.random.default_rng(case["seed"])
    x = arr(rng, case["n"], case["c"], *case["hw"])
    w = arr(rng, case["m"], case["c"] // case["g"], *case["k"])
    b = arr(rng, case["m"]) if case["bias"] else None
    want, macs = naive_conv(x, w, b, case["s"], case["pads"], case["d"], case["g"])
    attrs = dict(kernel=case["k"], strides=case["s"], pads=tuple(case["pads"]), dilations=case["d"],
                 groups=case["g"])
    got = get("conv2d").reference(x, w, b, **attrs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    shapes = [x.shape, w.shape] + ([b.shape] if b is not None else [])
    assert flops("conv2d", shapes, want.shape, attrs) == 2 * macs + (want.size if b is not None else 0)


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pads = [draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)),
            draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))]
    h = draw(st.integers(max(1, kh - pads[0] - pads[2]), 10))
    w = draw(st.integers(max(1, kw - pads[1] - pads[3]), 10))
    return dict(k=(kh, kw), s=(draw(st.integers(1, 3)), draw(st.integers(1, 3))), pads=pads, hw=(h, w),
                ceil=draw(st.sampled_from([0, 1])), cip=draw(st.sampled_from([0, 1])),
                op=draw(st.sampled_from(["MaxPool", "AveragePool"])), seed=draw(st.integers(0, 99)))


def naive_pool(x, op, k, s, pads, ceil, count_include_pad):
    """Loops over the output; each window keeps the input elements it covers (the ONNX spec)."""
    n, c, h, w = x.shape

    def out_len(size, k, s, p0, p1):
        room = size + p0 + p1 - k
        out = (-(-room // s) if ceil else room // s) + 1
        return out - 1 if ceil and (out - 1) * s >= size + p0 else out   # no window starts past the input

    ho, wo = out_len(h, k[0], s[0], pads[0], pads[2]), out_len(w, k[1], s[1], pads[1], pads[3])
    y = np.empty((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            r0, c0 = i * s[0] - pads[0], j * s[1] - pads[1]
            rows = [r for r in range(r0, r0 + k[0]) if 0 <= r < h]
            cols = [q for q in range(c0, c0 + k[1]) if 0 <= q < w]
            vals = x[:, :, rows][:, :, :, cols].astype(np.float64)
            if op == "MaxPool":
                y[:, :, i, j] = vals.max(axis=(2, 3))
            else:
                if count_include_pad:                                    # explicit padding counts
                    nr = sum(1 for r in range(r0, r0 + k[0]) if -pads[0] <= r < h + pads[2])
                    nc = sum(1 for q in range(c0, c0 + k[1]) if -pads[1] <= q < w + pads[3])
                else:
                    nr, nc = len(rows), len(cols)
                y[:, :, i, j] = vals.sum(axis=(2, 3)) / (nr * nc)
    return y


@settings(max_examples=examples(40))
@given(pool_cases())
def test_pooling_matches_naive_loops(case):
    """Pooling (any pads below the kernel, ceil_mode, count_include_pad) == a naive loop. (onnx.reference
    is not the oracle here: it mis-sizes some ceil_mode outputs and fails on some one-sided pads.)"""
    rng = np.random.default_rng(case["seed"])
    x = arr(rng, 2, 3, *case["hw"])
    attrs = dict(kernel_shape=case["k"], strides=case["s"], pads=case["pads"], ceil_mode=case["ceil"])
    if case["op"] == "AveragePool":
        attrs["count_include_pad"] = case["cip"]
    (ours,) = run_tinyml(from_onnx(one_node_model(case["op"], {"x": x}, attrs)), {"x": x})
    want = naive_pool(x, case["op"], case["k"], case["s"], case["pads"], case["ceil"], case["cip"])
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("k,s,pads,cip", [((3, 3), (2, 2), [1, 1, 1, 1], 0), ((3, 3), (2, 2), [1, 1, 1, 1], 1),
                                          ((2, 2), (2, 2), [0, 0, 0, 0], 0), ((3, 2), (1, 2), [1, 0, 1, 0], 1)])
def test_pooling_matches_onnx_reference(op, k, s, pads, cip, rng):
    x = arr(rng, 2, 3, 9, 8)
    attrs = dict(kernel_shape=k, strides=s, pads=pads)
    if op == "AveragePool":
        attrs["count_include_pad"] = cip
    check_against_reference(one_node_model(op, {"x": x}, attrs), {"x": x})


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pools(op, rng):
    x = arr(rng, 2, 5, 7, 3)
    check_against_reference(one_node_model(op, {"x": x}), {"x": x})


@settings(max_examples=examples(15))
@given(size=st.integers(1, 6), c=st.integers(1, 9), seed=st.integers(0, 99))
def test_lrn_matches_onnx_reference(size, c, seed):
    x = arr(np.random.default_rng(seed), 2, c, 3, 4)
    attrs = dict(size=size, alpha=0.01, beta=0.75, bias=2.0)
    check_against_reference(one_node_model("LRN", {"x": x}, attrs), {"x": x})


@pytest.mark.parametrize("fold", [True, False])
def test_batchnorm_folded_or_not(fold, rng):
    x = arr(rng, 2, 4, 3, 5)
    consts = {"s": arr(rng, 4), "b": arr(rng, 4), "m": arr(rng, 4), "v": rng.uniform(0.1, 2, 4).astype(np.float32)}
    model = one_node_model("BatchNormalization", {"x": x}, {"epsilon": 1e-3}, consts, opset=15)
    g = from_onnx(model, fold_batchnorm=fold)
    assert ("batchnorm" in {n.op for n in g.nodes}) is not fold
    (ours,) = run_tinyml(g, {"x": x})
    sh = (1, 4, 1, 1)
    want = (x - consts["m"].reshape(sh)) / np.sqrt(consts["v"].reshape(sh) + 1e-3) * consts["s"].reshape(sh) \
        + consts["b"].reshape(sh)
    np.testing.assert_allclose(ours, want, rtol=1e-4, atol=1e-5)


@settings(max_examples=examples(20))
@given(m=st.integers(1, 6), k=st.integers(1, 6), n=st.integers(1, 6), ta=st.booleans(), tb=st.booleans(),
       alpha=st.sampled_from([1.0, 0.5]), beta=st.sampled_from([1.0, 2.0, 0.0]), c_rank=st.sampled_from([0, 1, 2]),
       b_const=st.booleans(), seed=st.integers(0, 99))
def test_gemm_matches_onnx_reference(m, k, n, ta, tb, alpha, beta, c_rank, b_const, seed):
    rng = np.random.default_rng(seed)
    a = arr(rng, *((k, m) if ta else (m, k)))
    b = arr(rng, *((n, k) if tb else (k, n)))
    inputs, consts = {"a": a}, {}
    (consts if b_const else inputs)["b"] = b
    if c_rank:
        consts["c"] = arr(rng, *((n,) if c_rank == 1 else (m, n)))
    attrs = dict(transA=int(ta), transB=int(tb), alpha=alpha, beta=beta)
    model = one_node_model("Gemm", inputs, attrs, consts)
    check_against_reference(model, inputs)


@pytest.mark.parametrize("shape_a,shape_b", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)),
                                             ((2, 3, 4), (4,)), ((2, 1, 3, 4), (5, 4, 2))])
def test_matmul_shapes(shape_a, shape_b, rng):
    inputs = {"a": arr(rng, *shape_a), "b": arr(rng, *shape_b)}
    check_against_reference(one_node_model("MatMul", inputs), inputs)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_softmax_axis_semantics(opset, axis, rng):
    """Opset 11 flattens to 2-D at axis; opset 13 normalises along axis (NumPy writes both out)."""
    x = arr(rng, 2, 3, 4)
    (ours,) = run_tinyml(from_onnx(one_node_model("Softmax", {"x": x}, {"axis": axis}, opset=opset)), {"x": x})
    if opset == 11:
        a = axis % 3
        flat = x.reshape(math.prod(x.shape[:a]), -1).astype(np.float64)
        e = np.exp(flat - flat.max(axis=1, keepdims=True))
        want = (e / e.sum(axis=1, keepdims=True)).reshape(x.shape)
    else:
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        want = e / e.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(ours, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op,attrs,consts,opset", [
    ("Flatten", {"axis": 2}, {}, 17),
    ("Flatten", {"axis": 0}, {}, 17),
    ("Reshape", {}, {"shape": np.array([0, -1, 2], np.int64)}, 17),
    ("Transpose", {"perm": [2, 0, 3, 1]}, {}, 17),
    ("Unsqueeze", {}, {"axes": np.array([0, -1], np.int64)}, 17),
    ("Unsqueeze", {"axes": [1]}, {}, 11),
    ("Squeeze", {}, {"axes": np.array([1], np.int64)}, 17),
    ("Clip", {}, {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}, 17),
    ("Clip", {}, {"lo": np.array(0.0, np.float32)}, 17),
    ("Clip", {"min": -0.2, "max": 0.3}, {}, 9),
    ("Pad", {"mode": "constant"}, {"pads": np.array([0, 1, 0, 2, 0, 0, 3, 1], np.int64),
                                   "v": np.array(1.5, np.float32)}, 17),
    ("Pad", {"mode": "reflect"}, {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 0], np.int64)}, 17),
    ("Pad", {"mode": "edge", "pads": [0, 0, 2, 1, 0, 0, 0, 2]}, {}, 9),
    ("Sigmoid", {}, {}, 17),
    ("Dropout", {}, {}, 17),
    ("Identity", {}, {}, 17),
])
def test_layout_and_misc_ops(op, attrs, consts, opset, rng):
    x = arr(rng, 2, 1 if op == "Squeeze" else 3, 4, 3)
    check_against_reference(one_node_model(op, {"x": x}, attrs, consts, opset=opset), {"x": x})


def test_sum_and_arithmetic_with_broadcast_constants(rng):
    x, y = arr(rng, 2, 3, 4), arr(rng, 2, 3, 4)
    nodes = [helper.make_node("Sum", ["x", "y", "c"], ["s"]), helper.make_node("Mul", ["s", "k"], ["m"]),
             helper.make_node("Sub", ["m", "x"], ["d"]), helper.make_node("Div", ["d", "k"], ["out"])]
    inits = [numpy_helper.from_array(arr(rng, 4), "c"), numpy_helper.from_array(arr(rng, 3, 1) + 3, "k")]
    g = helper.make_graph(nodes, "arith", [helper.make_tensor_value_info(n, TensorProto.FLOAT, (2, 3, 4))
                                           for n in ("x", "y")],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    check_against_reference(model, {"x": x, "y": y})


# ---- FLOP formulas of the library ops ----------------------------------------------------------


def test_every_library_op_has_a_flop_formula():
    from tinyml.compiler.ops import names

    library = [n for n in names() if get(n).lowering == "library"]
    assert set(library) == set(FLOPS) and {"conv2d", "max_pool2d", "lrn", "batchnorm"} <= set(library)


@pytest.mark.parametrize("op,in_shapes,out_shape,attrs,want", [
    # window pools: one compare / add per window element and output element
    ("max_pool2d", [(1, 2, 5, 5)], (1, 2, 2, 2), {"kernel": (3, 3)}, 1 * 2 * 2 * 2 * 9),
    ("avg_pool2d", [(2, 3, 4, 4)], (2, 3, 3, 3), {"kernel": (2, 2)}, 2 * 3 * 3 * 3 * 4),
    # global pools: one per input element
    ("global_avg_pool", [(2, 3, 4, 5)], (2, 3, 1, 1), {}, 2 * 3 * 4 * 5),
    ("lrn", [(1, 8, 2, 2)], (1, 8, 2, 2), {"size": 5}, 32 * (2 * 5 + 3)),
    ("batchnorm", [(2, 4, 3, 3)] + [(4,)] * 4, (2, 4, 3, 3), {}, 4 * 72),
    ("pad", [(2, 3)], (4, 5), {}, 0),
])
def test_flop_formulas(op, in_shapes, out_shape, attrs, want):
    assert flops(op, in_shapes, out_shape, attrs) == want


# ---- symbolic dimensions -------------------------------------------------------------------------


def small_cnn(batch="batch", opset=17):
    """Conv -> Relu -> MaxPool -> Shape/Gather/Unsqueeze/Concat/Reshape (PyTorch's flatten) -> Gemm -> Softmax."""
    rng = np.random.default_rng(0)
    inits = {"w": arr(rng, 4, 3, 3, 3), "b": arr(rng, 4), "fw": arr(rng, 10, 4 * 4 * 4), "fb": arr(rng, 10),
             "zero": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Shape", ["p"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["p", "target"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    g = helper.make_graph(nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 10])],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_dim_param_becomes_a_symbol_and_shape_arithmetic_folds(rng):
    model = small_cnn()
    g = from_onnx(model)
    assert isinstance(g.inputs["x"].shape[0], Affine) and str(g.inputs["x"].shape[0]) == "batch"
    assert str(g.type_of(g.outputs[0])) == "tensor<batch x 10, fp32>"
    assert "Shape" not in {n.op for n in g.nodes} and "reshape" in {n.op for n in g.nodes}
    ref = ReferenceEvaluator(model)
    for batch in (1, 3):
        x = arr(rng, batch, 3, 8, 8)
        close(run_tinyml(g, {"x": x})[0], ref.run(None, {"x": x})[0], 1e-4)


def test_input_shapes_makes_a_fixed_batch_symbolic(rng):
    model = small_cnn(batch=1)
    g = from_onnx(model, input_shapes={"x": ("n", 3, 8, 8)})
    assert str(g.type_of(g.outputs[0])) == "tensor<n x 10, fp32>"
    x = arr(rng, 2, 3, 8, 8)
    want = ReferenceEvaluator(small_cnn()).run(None, {"x": x})[0]
    close(run_tinyml(g, {"x": x})[0], want, 1e-4)


def test_squeezenet_with_a_symbolic_batch(rng):
    g = from_onnx(light("squeezenet"), input_shapes={"data_0": ("n", 3, 224, 224)})
    assert str(g.type_of(g.outputs[0])) == "tensor<n x 1000 x 1 x 1, fp32>"
    x = arr(rng, 2, 3, 224, 224)
    (two,) = g.interpret({"data_0": x})
    (one,) = g.interpret({"data_0": x[1:]})
    np.testing.assert_allclose(two[1:], one, rtol=1e-5, atol=1e-7)


# ---- errors ----------------------------------------------------------------------------------------


def test_unsupported_ops_are_listed_with_names_and_counts():
    nodes = [helper.make_node("Erf", ["x"], ["e1"], name="erf_a"),
             helper.make_node("Relu", ["e1"], ["r"], name="relu_ok"),
             helper.make_node("Erf", ["r"], ["e2"], name="erf_b"),
             helper.make_node("HardSwish", ["x"], ["h"], name="hswish"),
             helper.make_node("Add", ["e2", "h"], ["y"], name="add_ok")]
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxUnsupportedError) as info:
        from_onnx(model)
    msg = str(info.value)
    assert "Erf x2" in msg and "'erf_a'" in msg and "'erf_b'" in msg
    assert "HardSwish x1" in msg and "'hswish'" in msg
    assert "relu_ok" not in msg and "add_ok" not in msg
    assert len(info.value.problems) == 3
    assert isinstance(info.value, OnnxImportError)


def test_unsupported_attribute_is_listed_not_raised_alone():
    x = np.zeros((1, 2, 5, 5, 5), np.float32)
    model = one_node_model("Conv", {"x": x}, {"pads": [0] * 6}, {"w": np.ones((3, 2, 1, 1, 1), np.float32)})
    with pytest.raises(OnnxUnsupportedError, match=r"Conv x1: only 2-D"):
        from_onnx(model)


def test_unsupported_opset_and_dtype():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(OnnxUnsupportedError, match=rf"opset 6.*opsets {OPSETS[0]}\.\.{OPSETS[1]}"):
        from_onnx(one_node_model("Relu", {"x": x}, opset=6))
    node = helper.make_node("Relu", ["x"], ["y"])
    g = helper.make_graph([node], "dbl", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2])])
    with pytest.raises(OnnxUnsupportedError, match=r"DOUBLE"):
        from_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def test_missing_file(tmp_path):
    with pytest.raises(OnnxFileError, match=r"no ONNX file at"):
        from_onnx(tmp_path / "nope.onnx")
    with pytest.raises(OnnxFileError, match=r"is a directory"):
        from_onnx(tmp_path)


@pytest.mark.parametrize("content", ["truncated", "garbage", "empty", "text"])
def test_malformed_file_gives_a_clear_error(tmp_path, content):
    good = open(os.path.join(LIGHT, "light_squeezenet.onnx"), "rb").read()
    data = {"truncated": good[: len(good) // 3], "garbage": bytes(np.random.default_rng(0).integers(0, 256, 4096,
                                                                                                    np.uint8)),
            "empty": b"", "text": b"this is not an onnx model\n"}[content]
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(OnnxFileError) as info:
        from_onnx(path)
    assert "bad.onnx" in str(info.value) or "not a valid ONNX model" in str(info.value)
    assert "Traceback" not in str(info.value)


def test_import_is_light():
    """Importing the ONNX front end does not import onnx (only from_onnx does)."""
    code = "import sys, tinyml.compiler.onnx; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
