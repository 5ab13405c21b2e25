"""Reading an ONNX model: a path, bytes or a ``ModelProto``, checked, with clear errors.

A missing file, a truncated download or a file that is not ONNX at all raises
:class:`~tinyml.compiler.onnx.errors.OnnxFileError` naming the file and what to
do, never a protobuf traceback. ``onnx`` itself is imported here, lazily: it is
an optional dependency (``pip install 'tinyml[onnx]'``).
"""

from __future__ import annotations

import math
import os

from .errors import OnnxFileError, OnnxImportError


def need_onnx():
    try:
        import onnx
    except ImportError:
        raise OnnxImportError("tinyml.compiler.from_onnx needs the onnx package, which is not installed; "
                              "install it with: pip install 'tinyml[onnx]'  (or: pip install 'onnx>=1.15')") from None
    return onnx


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def load_model(src):
    """``src`` (path, bytes or ``onnx.ModelProto``) as a ``ModelProto`` (check it with :func:`check`)."""
    onnx = need_onnx()
    where = "the model"
    if isinstance(src, onnx.ModelProto):
        model = src
    elif isinstance(src, (bytes, bytearray)):
        where = f"the {len(src)} bytes given"
        model = _parse(onnx, bytes(src), where)
    elif isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        where = repr(path)
        if not os.path.exists(path):
            raise OnnxFileError(f"no ONNX file at {path!r} (working directory {os.getcwd()!r}); check the path")
        if os.path.isdir(path):
            raise OnnxFileError(f"{path!r} is a directory; pass the path of a .onnx file")
        try:
            model = onnx.load(path)
        except Exception as e:                     # noqa: BLE001  (protobuf and IO errors alike)
            size = os.path.getsize(path)
            raise OnnxFileError(
                f"{path!r} ({size} bytes) is not a readable ONNX model: {_first_line(e)}. "
                "Is the file complete (an interrupted download or a Git LFS pointer)? "
                "Re-export or re-download it") from None
    else:
        raise OnnxImportError(f"from_onnx takes a file path, bytes or an onnx.ModelProto, got {type(src).__name__}")
    return model


def skeleton(model):
    """``model`` without the data of its large floating-point initializers (they become typed graph
    inputs): what the checker and shape inference need, without copying a 500 MB VGG through protobuf."""
    onnx = need_onnx()
    g = model.graph
    sk = onnx.ModelProto()
    sk.ir_version, sk.producer_name = model.ir_version, model.producer_name
    sk.opset_import.extend(model.opset_import)
    sk.functions.extend(model.functions)
    sk.graph.name = g.name
    sk.graph.node.extend(g.node)
    sk.graph.input.extend(g.input)
    sk.graph.output.extend(g.output)
    sk.graph.value_info.extend(g.value_info)
    sk.graph.sparse_initializer.extend(g.sparse_initializer)
    inputs = {vi.name for vi in g.input}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
    for t in g.initializer:
        if t.data_type in floats and math.prod(t.dims) > 4096:
            if t.name not in inputs:
                sk.graph.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        else:
            sk.graph.initializer.append(t)
    return sk


def check(sk, where: str = "the model"):
    """onnx.checker and ONNX shape inference on a :func:`skeleton`: the inferred skeleton."""
    onnx = need_onnx()
    try:                                           # inference first: it fills in missing output shapes
        sk = onnx.shape_inference.infer_shapes(sk, strict_mode=False, data_prop=True)
    except Exception as e:                         # noqa: BLE001
        raise OnnxFileError(f"{where} is not a valid ONNX model: shape inference fails: {_first_line(e)}. "
                            "Re-export it, or check that the file is complete") from None
    try:
        onnx.checker.check_model(sk)
    except Exception as e:                         # noqa: BLE001  (ValidationError, or a C++ checker error)
        raise OnnxFileError(f"{where} is not a valid ONNX model: onnx.checker says: {_first_line(e)}. "
                            "Re-export it, or check that the file is complete") from None
    return sk


def _parse(onnx, data: bytes, where: str):
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:                         # noqa: BLE001  (google.protobuf DecodeError)
        raise OnnxFileError(f"{where} are not an ONNX model: {_first_line(e)}") from None
    return model


def inferred_types(sk) -> dict:
    """value name -> ``TypeProto.Tensor`` for every typed value of an inferred skeleton."""
    g = sk.graph
    out = {}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        if vi.type.HasField("tensor_type"):
            out[vi.name] = vi.type.tensor_type
    return out
