"""The ONNX importer's errors, all :class:`~tinyml.compiler.errors.GraphError` s.

* :class:`OnnxImportError`: the model cannot be imported (the base class);
* :class:`OnnxFileError`: the file is missing, unreadable, not an ONNX model, or
  fails ``onnx.checker`` (raised instead of a protobuf traceback);
* :class:`OnnxUnsupportedError`: the model uses ops, opsets or dtypes tinyml does
  not support; one error lists every offending node, grouped by op, with counts.
"""

from __future__ import annotations

from ..errors import GraphError


class OnnxImportError(GraphError):
    """An ONNX model could not be imported into tinyml's IR."""


class OnnxFileError(OnnxImportError):
    """The ONNX file is missing or malformed (says which, and what to do)."""


class OnnxUnsupportedError(OnnxImportError):
    """Unsupported ops / opsets / dtypes; ``.problems`` is the list of ``(node, op, reason)``."""

    def __init__(self, message: str, problems=()):
        super().__init__(message)
        self.problems = list(problems)
