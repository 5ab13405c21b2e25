"""What a converter sees while the importer walks an ONNX graph: :class:`Context`.

Every ONNX value name is bound to one of

* ``str``: the name of an IR value (a graph input or a node's output);
* ``np.ndarray``: a constant (an initializer, or a folded subgraph); an object
  array holds symbolic dimensions (``Shape(x)`` of a symbolic input);
* :class:`Unavailable`: an output tinyml does not compute (Dropout's mask,
  MaxPool's indices); reading it is an unsupported use.

A converter reads its node's inputs through ``ctx.tensor(i)`` (an IR value; a
constant becomes a weight) or ``ctx.const(i)`` (a constant it needs at import
time, such as Reshape's target shape), emits IR nodes with ``ctx.emit`` and
returns one binding per ONNX output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import GraphError
from .errors import OnnxUnsupportedError
from .fold import is_symbolic


@dataclass(frozen=True)
class Unavailable:
    """An ONNX output tinyml does not compute, and why."""

    why: str


class Unsupported(Exception):
    """Raised by a converter: this node cannot be imported (the reason is listed in the final error)."""


def ident(name: str) -> str:
    """An IR identifier for an ONNX name: ``gpu_0/conv1_w_0`` -> ``gpu_0_conv1_w_0``."""
    out = re.sub(r"[^A-Za-z0-9_.]", "_", name)
    return out if re.match(r"[A-Za-z_]", out) else f"v_{out}"


class Context:
    """The importer's state: the IR graph under construction and the ONNX name bindings."""

    def __init__(self, graph, opset: int, float_dtype: str, *, fold_batchnorm: bool = True):
        self.g = graph
        self.fold_batchnorm = fold_batchnorm
        self.opset = opset
        self.float_dtype = float_dtype
        self.env: dict = {}
        self.node = None                   # the ONNX node being converted
        self.unchecked = False             # set by a converter: skip the check against ONNX shape inference
        self._weights: dict = {}           # key -> IR weight name (constants materialised once)

    # ---- names ---------------------------------------------------------------------------------
    def unique(self, base: str) -> str:
        name, k = ident(base), 1
        while self.g.has_value(name):
            k += 1
            name = f"{ident(base)}_{k}"
        return name

    # ---- reading the current node ----------------------------------------------------------------
    def has(self, i: int) -> bool:
        return i < len(self.node.input) and self.node.input[i] != ""

    def raw(self, i: int):
        return self.env[self.node.input[i]] if self.has(i) else None

    def attr(self, name: str, default=None):
        from onnx import helper

        for a in self.node.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    def const(self, i: int, what: str) -> np.ndarray:
        """Input ``i`` as a constant; a computed value raises :class:`Unsupported`."""
        v = self.raw(i)
        if not isinstance(v, np.ndarray):
            raise Unsupported(f"its {what} (input {i}, {self.node.input[i]!r}) must be a constant at import time")
        return v

    def maybe_const(self, i: int) -> "np.ndarray | None":
        v = self.raw(i)
        return v if isinstance(v, np.ndarray) else None

    def tensor(self, i: int) -> str:
        """Input ``i`` as an IR value name (a constant is materialised as a weight)."""
        v = self.raw(i)
        if isinstance(v, str):
            return v
        if isinstance(v, np.ndarray):
            return self.weight(v, self.node.input[i])
        raise GraphError(f"input {i} of this node is missing")

    def weight(self, arr: np.ndarray, name: str, key=None) -> str:
        """An IR weight holding ``arr`` (float data in the model's float dtype), made once per key."""
        key = name if key is None else key
        if key in self._weights:
            return self._weights[key]
        if is_symbolic(arr):
            raise Unsupported(f"{name!r} holds symbolic dimensions {arr.tolist()} and is used as a tensor")
        if not np.issubdtype(arr.dtype, np.floating):
            raise Unsupported(f"the constant {name!r} of dtype {arr.dtype} is used as a tensor operand; "
                              "tinyml computes on floating-point tensors only")
        if any(d == 0 for d in arr.shape):
            raise Unsupported(f"the constant {name!r} is empty (shape {arr.shape})")
        wname = self.unique(name)
        self.g.weight(wname, arr.shape, self.float_dtype, data=arr)
        self._weights[key] = wname
        return wname

    def type(self, value: str):
        return self.g.type_of(value)

    # ---- writing ---------------------------------------------------------------------------------
    def emit(self, op: str, *inputs, **attrs) -> str:
        return self.g.add_node(op, *[i for i in inputs if i is not None], **attrs).name


def unsupported_error(model_name: str, problems, supported, opsets) -> OnnxUnsupportedError:
    """One error listing every unsupported node, grouped by op with counts."""
    by_op: dict = {}
    for node, op, why in problems:
        nodes, whys = by_op.setdefault(op, ([], []))
        nodes.append(node)
        if why not in whys:
            whys.append(why)
    lines = []
    for op, (nodes, whys) in sorted(by_op.items(), key=lambda kv: (-len(kv[1][0]), kv[0])):
        shown = ", ".join(repr(n) for n in nodes[:8]) + (f", ... ({len(nodes) - 8} more)" if len(nodes) > 8 else "")
        lines.append(f"  {op} x{len(nodes)}: {'; '.join(whys)}; node{'s' if len(nodes) > 1 else ''} {shown}")
    kinds = len(by_op)
    msg = (f"cannot import ONNX model {model_name!r}: {len(problems)} unsupported node(s) "
           f"of {kinds} kind(s):\n" + "\n".join(lines) +
           f"\ntinyml imports these ONNX ops (default domain, opsets {opsets[0]}..{opsets[1]}): "
           f"{', '.join(sorted(supported))}; any op whose inputs are all constants is folded at import. "
           "Replace or remove the nodes listed (onnx.compose / onnx-simplifier), or add a converter in "
           "tinyml/compiler/onnx/.")
    return OnnxUnsupportedError(msg, problems)


#: ONNX op type -> converter ``(ctx) -> list of bindings, one per ONNX output``
CONVERTERS: dict = {}


def converter(*op_types: str):
    def wrap(fn):
        for op in op_types:
            CONVERTERS[op] = fn
        return fn
    return wrap
