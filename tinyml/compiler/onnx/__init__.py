"""The ONNX front end: :func:`from_onnx` imports a real model into tinyml's IR.

::

    from tinyml.compiler import from_onnx
    g = from_onnx("resnet50.onnx")                        # a Graph: weights, symbolic inputs
    (probs,) = g.interpret({"data": x})                   # the reference interpreter

* :mod:`.load`: reading and checking the file (clear errors, no protobuf tracebacks);
* :mod:`.fold`: constant folding at import (``ConstantOfShape`` weights, shape arithmetic);
* :mod:`.convert_cnn`, :mod:`.convert_tensor`: one converter per ONNX op;
* :mod:`.importer`: the walk, symbolic dims, the check against ONNX shape inference;
* :mod:`.errors`: :class:`OnnxImportError` and its subclasses.

``onnx`` is an optional dependency (``pip install 'tinyml[onnx]'``), imported only
when :func:`from_onnx` runs.
"""

from .errors import OnnxFileError, OnnxImportError, OnnxUnsupportedError
from .importer import OPSETS, from_onnx


def supported_ops() -> list[str]:
    """The ONNX op types tinyml converts (any op is also folded when its inputs are constants)."""
    from .context import CONVERTERS

    return sorted(CONVERTERS)


__all__ = ["OPSETS", "OnnxFileError", "OnnxImportError", "OnnxUnsupportedError", "from_onnx", "supported_ops"]
