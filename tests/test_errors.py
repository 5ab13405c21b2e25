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
        matmul(ones(2, 2), ones(2, 2), version=4)
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
