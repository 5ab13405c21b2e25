"""Constant folding at import: a node whose inputs are all constants becomes a constant.

The "light" models of ONNX's backend tests build every weight at run time,
``w = ConstantOfShape(shape=[64, 3, 7, 7], value=0.02)``, and exported models
compute reshape targets from ``Shape(x)``. Both are folded here, so the IR only
sees weights and real computations.

A constant is a NumPy array. Shapes may hold symbolic dimensions (``Shape(x)``
of a ``(n, 3, 224, 224)`` input is ``[n, 3, 224, 224]``): those are object arrays
of ints and :class:`~tinyml.compiler.symbolic.Affine` s, and the folders below
are written so NumPy's object arithmetic carries the symbols (``n * 3`` is fine,
``n * n`` is not a dimension and stops the fold).

Ops with a folder here run in NumPy; any other op whose inputs are all numeric
constants runs through ``onnx.reference`` (ONNX's own reference implementation).
"""

from __future__ import annotations

import numpy as np

from ..errors import SymbolicError
from ..symbolic import Affine

#: ops never folded (their value is not a function of their inputs)
NOT_FOLDABLE = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                "Bernoulli", "Dropout")


def normalise(a) -> np.ndarray:
    """An object array whose entries are all ints becomes int64; anything else is returned as an array."""
    a = np.asarray(a)
    if a.dtype == object and not any(isinstance(v, Affine) for v in a.flat):
        return a.astype(np.int64)
    return a


def is_symbolic(a) -> bool:
    return isinstance(a, np.ndarray) and a.dtype == object


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _axes(node, ins, opset, pos=1):
    a = _attrs(node)
    if "axes" in a:
        return [int(v) for v in a["axes"]]
    if len(ins) > pos and ins[pos] is not None:
        return [int(v) for v in np.asarray(ins[pos]).ravel()]
    return None


def _constant(node, ins, opset):
    from onnx import numpy_helper

    a = _attrs(node)
    if "value" in a:
        return [numpy_helper.to_array(a["value"])]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in a:
            return [np.array(a[key], dtype=dtype)]
    return None


def _constant_of_shape(node, ins, opset):
    from onnx import numpy_helper

    if is_symbolic(ins[0]):
        return None
    a = _attrs(node)
    value = numpy_helper.to_array(a["value"]).ravel() if "value" in a else np.zeros(1, np.float32)
    return [np.full(tuple(int(v) for v in ins[0]), value[0], dtype=value.dtype)]


def _cast(node, ins, opset):
    from onnx import helper

    to = helper.tensor_dtype_to_np_dtype(_attrs(node)["to"])
    if is_symbolic(ins[0]):
        return [ins[0]] if np.issubdtype(to, np.integer) else None
    return [ins[0].astype(to)]


def _unsqueeze(node, ins, opset):
    x = ins[0]
    axes = _axes(node, ins, opset)
    rank = x.ndim + len(axes)
    for ax in sorted(a % rank for a in axes):
        x = np.expand_dims(x, ax)
    return [x]


def _squeeze(node, ins, opset):
    x = ins[0]
    axes = _axes(node, ins, opset)
    return [np.squeeze(x, axis=None if axes is None else tuple(a % x.ndim for a in axes))]


def _slice(node, ins, opset):
    x = ins[0]
    a = _attrs(node)
    if opset < 10:
        starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
    else:
        starts, ends = [np.asarray(v).ravel().tolist() for v in ins[1:3]]
        axes = np.asarray(ins[3]).ravel().tolist() if len(ins) > 3 and ins[3] is not None else None
        steps = np.asarray(ins[4]).ravel().tolist() if len(ins) > 4 and ins[4] is not None else None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[int(ax) % x.ndim] = slice(int(s), int(e), int(st))
    return [x[tuple(index)]]


def _binary(fn):
    def fold(node, ins, opset):
        try:
            return [fn(ins[0], ins[1])]
        except SymbolicError:
            return None
    return fold


def _div(node, ins, opset):
    a, b = ins
    if is_symbolic(a) or is_symbolic(b):
        if is_symbolic(b):
            return None
        out = []
        for x, y in np.broadcast(a, b):
            q = x.exact_div(int(y)) if isinstance(x, Affine) else (x // int(y) if x % int(y) == 0 else None)
            if q is None:
                return None
            out.append(q)
        return [np.array(out, dtype=object).reshape(np.broadcast_shapes(a.shape, b.shape))]
    if np.issubdtype(a.dtype, np.integer):
        return [np.trunc(a / b).astype(a.dtype)]
    return [a / b]


FOLDERS = {
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Identity": lambda node, ins, opset: [ins[0]],
    "Cast": _cast,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Slice": _slice,
    "Concat": lambda node, ins, opset: [np.concatenate([np.atleast_1d(v) for v in ins],
                                                       axis=_attrs(node)["axis"])],
    "Gather": lambda node, ins, opset: [np.take(ins[0], np.asarray(ins[1], np.int64),
                                                axis=_attrs(node).get("axis", 0))],
    "Reshape": lambda node, ins, opset: [np.reshape(ins[0], [int(v) for v in ins[1]])],
    "Transpose": lambda node, ins, opset: [np.transpose(ins[0], _attrs(node).get("perm"))],
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _div,
}


def fold(node, ins: list, opset: int) -> "list | None":
    """The outputs of ``node`` on constant inputs ``ins`` (None where an optional input is absent),
    or None if it cannot be folded (a random op, or symbols that would leave the affine world)."""
    if node.op_type in NOT_FOLDABLE or node.domain not in ("", "ai.onnx"):
        return None
    out = None
    if node.op_type in FOLDERS:
        try:
            out = FOLDERS[node.op_type](node, ins, opset)
        except (SymbolicError, TypeError, ValueError, IndexError, KeyError):
            out = None
        if out is not None:
            return [normalise(v) for v in out]
    if any(is_symbolic(v) for v in ins):
        return None
    from onnx.reference import ReferenceEvaluator

    feeds = {name: v for name, v in zip(node.input, ins) if name}
    try:
        out = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
    except Exception:                    # noqa: BLE001  (any failure: not foldable, the caller reports it)
        return None
    return [np.asarray(v) for v in out]
