"""Errors a person can act on: one hierarchy under TinymlError, messages with the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml.kernels.matmul import matmul
from tinyml.sim import (DeviceConfigError, DTypeError, HbmOutOfMemoryError, LabError, NonFiniteError, Profile,
                        ShapeError, SramOverflowError, TileConfigError, TinymlError, canonical, meta, nbytes)

VERSIONS = [1, 2, 3]


def ones(*shape):
    return np.ones(shape, dtype=np.float32)


@pytest.mark.parametrize("cls", [DeviceConfigError, DTypeError, HbmOutOfMemoryError, LabError, NonFiniteError,
                                 ShapeError, SramOverflowError, TileConfigError])
def test_every_error_is_a_tinyml_error(cls):
    assert issubclass(cls, TinymlError) and issubclass(cls, Exception)


@pytest.mark.parametrize("version", VERSIONS)
def test_shape_mismatch_names_both_shapes(version):
    with pytest.raises(ShapeError) as err:
        matmul(ones(3, 4), ones(5, 6), version=version)
    assert "(3, 4)" in str(err.value) and "(5, 6)" in str(err.value)
    with pytest.raises(ShapeError) as err:
        matmul(meta((7, 2)), meta((3, 7)), version=version)
    assert "(7, 2)" in str(err.value) and "(3, 7)" in str(err.value)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("shapes", [((2, 3, 4), (4, 5)), ((3, 4), (4,)), ((3,), (3, 4)), ((), (1, 1))])
def test_wrong_rank_is_a_shape_error(version, shapes):
    sa, sb = shapes
    with pytest.raises(ShapeError) as err:
        matmul(np.ones(sa), np.ones(sb), version=version)
    assert "2-D" in str(err.value)


@pytest.mark.parametrize("version", VERSIONS)
def test_wrong_rank_meta_is_a_shape_error(version):
    with pytest.raises(ShapeError):
        matmul(meta((2, 3, 4)), meta((4, 5)), version=version)


@pytest.mark.parametrize("version", VERSIONS)
def test_empty_dimension_is_a_shape_error(version):
    with pytest.raises(ShapeError):
        matmul(ones(0, 3), ones(3, 2), version=version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("bad", [
    np.ones((2, 2), dtype=np.complex64),
    np.ones((2, 2), dtype=object),
    np.ones((2, 2), dtype=bool),
    np.array([["a", "b"], ["c", "d"]]),
], ids=["complex", "object", "bool", "str"])
def test_unsupported_array_dtypes(version, bad):
    with pytest.raises(DTypeError) as err:
        matmul(bad, ones(2, 2), version=version)
    assert str(bad.dtype) in str(err.value)
    with pytest.raises(DTypeError):
        matmul(ones(2, 2), bad, version=version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", ["fp64", "int8", "int4", "float64", "nonsense"])
def test_unknown_logical_dtype_lists_choices(version, dtype):
    with pytest.raises(DTypeError) as err:
        matmul(ones(2, 2), ones(2, 2), version=version, dtype=dtype)
    msg = str(err.value)
    assert dtype in msg
    for choice in ("fp16", "bf16", "fp32"):
        assert choice in msg


def test_logical_dtype_helpers():
    assert canonical("float16") == "fp16" and canonical("BF16") == "bf16"
    assert nbytes(9, "int4") == 5 and nbytes(3, "fp32") == 12
    with pytest.raises(DTypeError):
        canonical(16)
    with pytest.raises(DTypeError):
        meta((2, 2), "fp64")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_input_names_the_index(version, value):
    a = ones(4, 5)
    a[2, 3] = value
    with pytest.raises(NonFiniteError) as err:
        matmul(a, ones(5, 3), version=version)
    assert "(2, 3)" in str(err.value) and "a" in str(err.value)
    b = ones(5, 3)
    b[4, 0] = value
    b[1, 2] = value
    with pytest.raises(NonFiniteError) as err:
        matmul(ones(4, 5), b, version=version)
    assert "(1, 2)" in str(err.value)    # the first bad index, in row-major order
    assert "2 " in str(err.value)         # how many


@pytest.mark.parametrize("version", VERSIONS)
def test_mixing_meta_and_arrays(version):
    with pytest.raises(DTypeError) as err:
        matmul(meta((2, 3)), ones(3, 4), version=version)
    assert "MetaTensor" in str(err.value)
    with pytest.raises(DTypeError):
        matmul(ones(2, 3), meta((3, 4)), version=version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["block_m", "block_n"])
@pytest.mark.parametrize("value", [0, -4, 1.5, 16.0, True, "16"])
def test_bad_block_sizes(version, name, value):
    with pytest.raises(TileConfigError) as err:
        matmul(ones(4, 4), ones(4, 4), version=version, **{name: value})
    assert name in str(err.value) and repr(value) in str(err.value)


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("value", [0, 1.5])
def test_bad_block_k(version, value):
    with pytest.raises(TileConfigError, match="block_k"):
        matmul(ones(4, 4), ones(4, 4), version=version, block_k=value)


def test_numpy_integer_block_sizes_are_fine():
    with Profile("toy"):
        c = matmul(ones(4, 4), ones(4, 4), version=2, block_m=np.int64(2), block_n=np.int32(3))
    np.testing.assert_array_equal(c, np.full((4, 4), 4.0))


def test_unknown_version():
    with pytest.raises(TileConfigError, match="version"):
        matmul(ones(2, 2), ones(2, 2), version=5)        # 1-4 exist
    with pytest.raises(TileConfigError):
        matmul(ones(2, 2), ones(2, 2), version="fast")


def test_errors_raised_before_anything_is_recorded():
    with Profile("toy") as prof:
        for bad in (lambda: matmul(ones(3, 4), ones(5, 6)),
                    lambda: matmul(ones(3, 4), ones(4, 6), block_m=0)):
            with pytest.raises(TinymlError):
                bad()
    assert prof.records == []


@pytest.mark.parametrize("shape_a, shape_b", [((0, 3), (3, 2)), ((3, 0), (0, 2)), ((-4, 3), (3, 2))],
                         ids=["empty-m", "empty-k", "negative-m"])
def test_counting_mode_refuses_what_executing_mode_refuses(shape_a, shape_b):
    with pytest.raises(ShapeError):        # what executing mode does
        matmul(np.ones(np.maximum(shape_a, 0)), np.ones(np.maximum(shape_b, 0)))
    with Profile("toy"):
        with pytest.raises(ShapeError):
            matmul(meta(shape_a), meta(shape_b))


def test_counting_mode_validates_the_dtype_argument():
    with Profile("toy"):
        with pytest.raises(DTypeError):
            matmul(meta((2, 2)), meta((2, 2)), dtype="fp64")


def test_operands_with_different_logical_dtypes_are_a_dtype_error():
    with Profile("toy"):
        with pytest.raises(DTypeError, match="fp16.*fp32|fp32.*fp16"):
            matmul(meta((2, 3), "fp16"), meta((3, 2), "fp32"))


def test_block_k_for_the_naive_kernel_is_refused_with_a_reason():
    with Profile("toy"):
        with pytest.raises(TileConfigError, match="no K tiling"):
            matmul(meta((4, 4)), meta((4, 4)), version=1, block_k=8)


# ---- finite in float64, infinite in float32 (issue 11, item 2) ----------------------------------------

def _beyond_float32(shape, index, value=1e39):
    x = np.full(shape, 0.5)                          # float64
    x[index] = value
    return x


def _kernel_calls():
    from tinyml.kernels.attention.decode import decode_attention
    from tinyml.kernels.attention.flash import flash_attention
    from tinyml.kernels.attention.standard import standard_attention
    from tinyml.kernels.fusion import fused_elementwise, layernorm_fused
    from tinyml.kernels.softmax import softmax

    q4 = np.full((1, 2, 6, 4), 0.5)
    big4 = _beyond_float32((1, 2, 6, 4), (0, 1, 3, 2))
    return {
        "matmul a": (lambda: matmul(_beyond_float32((4, 5), (2, 3), -1e39), ones(5, 3)), "a", "(2, 3)"),
        "matmul b": (lambda: matmul(ones(4, 5), _beyond_float32((5, 3), (1, 2))), "b", "(1, 2)"),
        "flash2 q": (lambda: flash_attention(big4, q4, q4), "q", "(0, 1, 3, 2)"),
        "flash1 k": (lambda: flash_attention(q4, big4, q4, version=1), "k", "(0, 1, 3, 2)"),
        "flash2 v, check_finite=False": (lambda: flash_attention(q4, q4, big4, check_finite=False), "v",
                                         "(0, 1, 3, 2)"),
        "standard q": (lambda: standard_attention(big4, q4, q4), "q", "(0, 1, 3, 2)"),
        "decode k_cache": (lambda: decode_attention(q4[:, :, :1], big4, q4, cache_len=6), "k_cache",
                           "(0, 1, 3, 2)"),
        "softmax": (lambda: softmax(_beyond_float32((2, 3), (1, 0), -1e39)), "x", "(1, 0)"),
        "fused elementwise": (lambda: fused_elementwise(["relu"], [_beyond_float32((3, 4), (2, 2))]), "inputs[0]",
                              "(2, 2)"),
        "layernorm gamma": (lambda: layernorm_fused(ones(2, 4), _beyond_float32((4,), (3,)), ones(4)), "gamma",
                            "(3,)"),
    }


@pytest.mark.parametrize("call", list(_kernel_calls()))
def test_float64_beyond_float32_range_is_refused_by_every_kernel(call):
    """A finite float64 of 1e39 passed the NaN/Inf check and became inf inside the kernels:
    matmul returned NaN, FlashAttention-2 a row of zeros. The shared operand check names it."""
    fn, name, index = _kernel_calls()[call]
    import warnings

    with Profile("toy"), warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)     # no "overflow encountered in cast" on the way
        with pytest.raises(NonFiniteError) as err:
            fn()
    msg = str(err.value)
    assert msg.startswith(name + " ") and index in msg and "float32's range" in msg and "float64" in msg
    assert "1e+39" in msg


def test_float32_max_itself_is_accepted_and_float64_within_range_runs():
    edge = np.array([[np.finfo(np.float32).max, -1.0]], dtype=np.float64)      # exactly representable
    with Profile("toy"):
        c = matmul(edge, np.array([[0.5], [1.0]]))
    assert np.isfinite(c).all() and c[0, 0] == pytest.approx(np.finfo(np.float32).max / 2 - 1, rel=1e-6)


def test_decode_ignores_garbage_past_each_sequence_length_but_not_before():
    from tinyml.kernels.attention.decode import decode_attention

    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 1, 4))
    k = rng.standard_normal((1, 2, 8, 4))
    v = rng.standard_normal((1, 2, 8, 4))
    dirty_k = k.copy()
    dirty_k[0, 1, 6, 0] = 1e300                        # past cache_len=5: never read
    with Profile("toy"):
        clean = decode_attention(q, k, v, cache_len=5)
        np.testing.assert_array_equal(decode_attention(q, dirty_k, v, cache_len=5), clean)
        with pytest.raises(NonFiniteError, match=r"k_cache holds 1 value.*float32's range.*\(0, 1, 6, 0\)"):
            decode_attention(q, dirty_k, v, cache_len=7)
        with pytest.raises(NonFiniteError, match="float32's range"):     # check_finite=False skips NaN, not range
            decode_attention(q, dirty_k, v, cache_len=7, check_finite=False)


def test_graph_weight_beyond_float32_is_refused_when_the_graph_is_built():
    from tinyml.compiler import Graph, GraphError

    g = Graph("g")
    g.input("x", ("n", 4))
    with pytest.raises(GraphError) as err:
        g.weight("w_big", (4, 4), data=_beyond_float32((4, 4), (2, 1)))
    assert isinstance(err.value, NonFiniteError)
    assert "'w_big'" in str(err.value) and "(2, 1)" in str(err.value) and "float32's range" in str(err.value)
    assert not g.has_value("w_big")


def test_onnx_double_initializer_beyond_float32_is_refused_at_import():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from tinyml.compiler.onnx import OnnxImportError, from_onnx

    node = helper.make_node("MatMul", ["x", "W"], ["y"])
    graph = helper.make_graph([node], "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 4))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(_beyond_float32((4, 3), (3, 2)), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert onnx is not None
    with pytest.raises(OnnxImportError) as err:
        from_onnx(model)
    assert "weight 'W'" in str(err.value) and "(3, 2)" in str(err.value) and "float32's range" in str(err.value)


@pytest.mark.parametrize("bad", ["beyond", "complex"])
def test_graph_inputs_are_checked_by_name_in_the_interpreter_and_the_compiled_plan(bad):
    from tinyml.compiler import Graph, GraphError, lower

    g = Graph("g")
    x = g.input("x", ("n", 4))
    g.output(g.relu(x))
    arr = _beyond_float32((2, 4), (1, 3)) if bad == "beyond" else np.ones((2, 4)) + 1j
    want = "float32's range" if bad == "beyond" else "imaginary part"
    with pytest.raises(GraphError, match=f"input %x .*{want}"):
        g.interpret({"x": arr})
    with pytest.raises(GraphError, match=f"input %x .*{want}"):
        lower(g).run({"x": arr}, device="toy")


# ---- integers and flags are never truncated or coerced (issue 11, items 7 and 8) ----------------------

def _qkv(n=6):
    x = np.full((1, 1, n, 4), 0.5, np.float32)
    return x, x, x


def _flash(**kw):
    from tinyml.kernels.attention.flash import flash_attention

    with Profile("toy"):
        return flash_attention(*_qkv(), **kw)


def _standard(**kw):
    from tinyml.kernels.attention.standard import standard_attention

    with Profile("toy"):
        return standard_attention(*_qkv(), **kw)


@pytest.mark.parametrize("run", [_flash, _standard], ids=["flash", "standard"])
@pytest.mark.parametrize("kw, name, shown", [
    (dict(window=(2.7, 1)), "window[0]", "2.7"),             # truncated to 2 before
    (dict(window=(1, 1.2)), "window[1]", "1.2"),
    (dict(window=2.5), "window", "2.5"),
    (dict(window=("a", 1)), "window[0]", "'a'"),               # a bare ValueError before
    (dict(window=(-3, 1)), "window[0]", "-3"),
    (dict(seed=1.9, dropout_p=0.1), "seed", "1.9"),            # truncated to 1 before
    (dict(seed="abc", dropout_p=0.1), "seed", "'abc'"),        # a bare ValueError before
    (dict(seed=2 ** 70, dropout_p=0.1), "seed", str(2 ** 70)),  # a Numba TypingError with colour codes before
    (dict(seed=-1, dropout_p=0.1), "seed", "-1"),
    (dict(causal="no"), "causal", "'no'"),                     # treated as True before
    (dict(causal=None), "causal", "None"),
])
def test_attention_integer_and_flag_arguments_are_checked(run, kw, name, shown):
    from tinyml.sim.errors import ArgumentError

    with pytest.raises(TinymlError) as err:
        run(**kw)
    msg = str(err.value)
    assert msg.startswith(name + " must be") and shown in msg, msg
    assert isinstance(err.value, (ArgumentError, TileConfigError))
    assert "\x1b[" not in msg                                  # no terminal colour codes


def test_numpy_integers_and_bools_are_accepted_for_attention_options():
    plain = _flash(causal=True, window=(2, 0), seed=3, dropout_p=0.2)
    np.testing.assert_array_equal(_flash(causal=np.bool_(True), window=(np.int64(2), np.int32(0)), seed=np.uint8(3),
                                         dropout_p=0.2), plain)


@pytest.mark.parametrize("run", [_flash, _standard], ids=["flash", "standard"])
def test_key_padding_mask_as_a_list_is_taken_or_refused_with_a_tinyml_error(run):
    with Profile("toy"):
        want = run(key_padding_mask=np.array([[True] * 5 + [False]]))
    np.testing.assert_array_equal(run(key_padding_mask=[[True] * 5 + [False]]), want)   # AttributeError before
    with pytest.raises(ShapeError, match=r"\(1, 6\)"):
        run(key_padding_mask=[True] * 6)
    with pytest.raises(DTypeError, match="bool"):
        run(key_padding_mask=[[1] * 6])


@pytest.mark.parametrize("which", ["flash", "flash v1", "flash v2", "standard"])
@pytest.mark.parametrize("saved", ["saved", None, (1, 2)])
def test_backward_with_something_else_than_saved_is_a_dtype_error(which, saved):
    from tinyml.kernels.attention import flash1, flash2, standard
    from tinyml.kernels.attention.flash import flash_attention_backward

    fn = {"flash": flash_attention_backward, "flash v1": flash1.flash_attention_v1_backward,
          "flash v2": flash2.flash_attention_v2_backward, "standard": standard.standard_attention_backward}[which]
    with Profile("toy"), pytest.raises(DTypeError) as err:        # AttributeError before
        fn(_qkv()[0], saved)
    assert "return_saved=True" in str(err.value) and type(saved).__name__ in str(err.value)


@pytest.mark.parametrize("shape, shown", [((3.7, 4), "3.7"), ("abc", "'abc'"), ((2, "8"), "'8'"), (None, "None"),
                                          ((True, 4), "True")])
def test_meta_shapes_must_be_integers(shape, shown):
    with pytest.raises(ShapeError) as err:                      # truncated, or a bare ValueError, before
        meta(shape)
    assert shown in str(err.value)


def test_meta_takes_numpy_integers_and_a_single_int():
    assert meta((np.int64(3), 4)).shape == (3, 4)
    assert meta(np.array([3, 4])).shape == (3, 4) and meta([3, 4]).shape == (3, 4)
    assert meta(5).shape == (5,)


@pytest.mark.parametrize("value, shown", [(2.7, "2.7"), ("8", "'8'"), (0, "0"), (True, "True")])
def test_compiler_bindings_must_be_integers_of_at_least_one(value, shown):
    from tinyml.compiler import BindingError, Graph, lower

    g = Graph("g")
    x = g.input("x", ("n", 4))
    g.output(g.relu(x))
    for call in (lambda: lower(g).run(bindings={"n": value}, count=True, device="toy"),
                 lambda: g.interpret({"x": np.ones((2, 4))}, bindings={"n": value})):
        with pytest.raises(BindingError) as err:                # truncated to 2, or a bare ValueError, before
            call()
        assert "bindings['n']" in str(err.value) and shown in str(err.value)


def test_graph_token_ids_that_are_not_whole_numbers_are_refused():
    from tinyml.compiler import Graph, GraphError, lower

    g = Graph("lm")
    ids = g.input("ids", ("n",), "int32")
    g.output(g.embedding(g.weight("table", (5, 3)), ids))
    whole = g.interpret({"ids": np.array([1, 4])})[0]
    np.testing.assert_array_equal(g.interpret({"ids": np.array([1.0, 4.0])})[0], whole)
    for call in (lambda: g.interpret({"ids": np.array([1.0, 3.7])}),
                 lambda: lower(g).run({"ids": np.array([1.0, 3.7])}, device="toy")):
        with pytest.raises(GraphError, match=r"input %ids .*not whole numbers.*index \(1,\) \(value 3.7\)"):
            call()


@pytest.mark.parametrize("causal", ["no", None, 2])
def test_graph_attention_causal_must_be_a_flag(causal):
    from tinyml.compiler import Graph, GraphError

    g = Graph("g")
    q = g.input("q", (1, 4, 8))
    with pytest.raises(GraphError, match="attention: causal must be True or False"):
        g.attention(q, q, q, causal=causal)


def test_the_argument_validators_refuse_what_python_would_coerce():
    from tinyml.sim.args import flag, integer
    from tinyml.sim.errors import ArgumentError

    assert integer(np.int16(7), "n") == 7 and flag(np.bool_(False), "f") is False and flag(1, "f") is True
    for bad in (2.0, 2.7, "2", None, True, [2]):
        with pytest.raises(ArgumentError):
            integer(bad, "n")
    with pytest.raises(ArgumentError, match=r"in \[0, 9\], got 10"):
        integer(10, "n", lo=0, hi=9)
    for bad in ("no", "False", None, 2, 0.0):
        with pytest.raises(ArgumentError):
            flag(bad, "f")
    assert issubclass(ArgumentError, TinymlError) and issubclass(ArgumentError, ValueError) \
        and issubclass(ArgumentError, TypeError)


# ---- ONNX input shapes: no 0 or negative dimension becomes a symbol (issue 11, item 10) ---------------

def _onnx_relu(shape):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    node = helper.make_node("Relu", ["X"], ["Y"])
    graph = helper.make_graph([node], "relu", [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("override, shown", [((-3, 8), "-3"), ((0, 8), "0"), ((2.5, 8), "2.5"), ((2, "8", 1), "rank"),
                                             (8, "tuple")])
def test_onnx_input_shapes_must_be_lengths_or_symbols(override, shown):
    from tinyml.compiler.onnx import OnnxImportError, from_onnx

    with pytest.raises(OnnxImportError) as err:                 # -3 and 0 silently became symbols before
        from_onnx(_onnx_relu((2, 8)), input_shapes={"X": override})
    assert "input_shapes['X']" in str(err.value) and shown in str(err.value)


def test_onnx_input_with_a_zero_dimension_is_refused():
    from tinyml.compiler.onnx import OnnxImportError, from_onnx

    with pytest.raises(OnnxImportError) as err:
        from_onnx(_onnx_relu((0, 8)))
    msg = str(err.value)
    assert "'X'" in msg and "(0, 8)" in msg and "axis 0" in msg and "input_shapes" in msg


def test_onnx_symbols_and_lengths_still_import():
    from tinyml.compiler.onnx import from_onnx

    assert from_onnx(_onnx_relu(("batch", 8))).inputs["X"].shape[1] == 8
    g = from_onnx(_onnx_relu((2, 8)), input_shapes={"X": ("n", np.int64(8))})
    assert str(g.inputs["X"].shape[0]) == "n" and g.inputs["X"].shape[1] == 8


# ---- no RuntimeWarning where overflow is the intended semantics (issue 11, "Done when") ---------------

def test_elementwise_references_overflow_to_their_limits_without_a_runtime_warning():
    """exp/sigmoid/silu/gelu references printed 'overflow encountered' under the tests; the overflow is
    the IEEE limit they mean (exp(1000) = inf, sigmoid(-1000) = 0), so it is silenced where raised."""
    import warnings

    from tinyml.compiler.ops import get
    from tinyml.kernels.fusion.ops import OPS

    x = np.array([-1e3, 1e3, -1e200, 1e200])
    want = {"exp": [0.0, np.inf, 0.0, np.inf], "sigmoid": [0.0, 1.0, 0.0, 1.0], "silu": [0.0, 1e3, 0.0, 1e200],
            "gelu": [0.0, 1e3, 0.0, 1e200]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for name, expected in want.items():
            np.testing.assert_array_equal(OPS[name].ref(x), expected)
            if name != "silu":
                np.testing.assert_array_equal(get(name).reference(x), expected)


# ---- block sizes larger than the sequence: the documented, visible behaviour (issue 11, item 7) -------

@pytest.mark.parametrize("version", [1, 2])
def test_a_flash_block_larger_than_the_sequence_is_the_whole_sequence_and_counted_so(version):
    from tinyml.kernels.attention.flash import flash_attention

    q = np.random.default_rng(1).standard_normal((1, 1, 8, 4)).astype(np.float32)
    runs = {}
    for blocks in ((64, 64), (8, 8)):
        with Profile("a100-40gb") as prof:
            o = flash_attention(q, q, q, version=version, block_q=blocks[0], block_k=blocks[1])
        runs[blocks] = (o, [(r.name, r.grid, r.sram_per_block_bytes, r.hbm_bytes) for r in prof.records])
    np.testing.assert_array_equal(runs[(64, 64)][0], runs[(8, 8)][0])
    assert runs[(64, 64)][1] == runs[(8, 8)][1]                 # SRAM is that of 8-row tiles, one block
    with Profile("a100-40gb") as prof:
        flash_attention(q, q, q, version=version, block_q=4, block_k=4)
    assert prof.records[0].sram_per_block_bytes < runs[(8, 8)][1][0][2]


def test_a_decode_block_k_larger_than_the_cache_is_the_cache_and_counted_so():
    from tinyml.kernels.attention.decode import decode_attention

    q = np.random.default_rng(2).standard_normal((1, 2, 1, 4)).astype(np.float32)
    kv = np.random.default_rng(3).standard_normal((1, 2, 8, 4)).astype(np.float32)
    got = {}
    for bk in (1024, 8):
        with Profile("a100-40gb") as prof:
            o = decode_attention(q, kv, kv, cache_len=8, split_kv=1, block_k=bk)
        got[bk] = (o, [(r.name, r.sram_per_block_bytes, r.hbm_bytes) for r in prof.records])
    np.testing.assert_array_equal(got[1024][0], got[8][0])
    assert got[1024][1] == got[8][1]


@pytest.mark.parametrize("seed", [1.9, "abc", -1, 2 ** 70])
def test_seeds_of_graphs_and_sample_weights_are_integers(seed):
    from tinyml.compiler import Graph, GraphError
    from tinyml.kernels.quant import sample_weights
    from tinyml.sim.errors import ArgumentError

    with pytest.raises(GraphError, match=r"Graph\(seed=...\) must be an integer"):   # 1.9 ran as 1 before
        Graph("g", seed=seed)
    with pytest.raises(ArgumentError, match="seed must be an integer"):            # a bare TypeError before
        sample_weights(seed=seed)


def test_the_new_error_classes_are_tinyml_errors_and_the_builtin_they_replace():
    from tinyml.compiler.errors import GraphError, GraphValueError
    from tinyml.kernels.quant import ScaleUnderflowError
    from tinyml.sim.errors import ArgumentError

    assert issubclass(ArgumentError, TinymlError) and issubclass(ArgumentError, (ValueError, TypeError))
    assert issubclass(GraphValueError, GraphError) and issubclass(GraphValueError, NonFiniteError)
    assert issubclass(ScaleUnderflowError, TinymlError) and issubclass(ScaleUnderflowError, ValueError)
