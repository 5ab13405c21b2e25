"""Layout ops (pattern ``injective``): reshape, transpose, slice, concat.

Each output element reads exactly one input element, so these fuse with the
elementwise ops around them. Shapes stay symbolic: ``reshape`` checks that the
element counts are equal as polynomials (``n x 768`` -> ``n x 12 x 64``),
``slice`` may end at a symbol (``wpe[0:n]``; that ``n <= 1024`` is checked when
the graph runs, since no shape rule can prove it), ``concat`` adds dimensions
(``n`` and ``n`` give ``2*n``).
"""

from __future__ import annotations

import numpy as np

from ..errors import GraphShapeError
from ..sizes import Poly
from ..symbolic import dim
from ..types import TensorType, shape_str
from ._util import norm_axis, need_rank
from .registry import OpDef, register

# ---- reshape ---------------------------------------------------------------------------


def _canon_reshape(types, attrs):
    if "shape" not in attrs:
        raise GraphShapeError("reshape needs a target shape: g.reshape(x, ('n', 12, 64))")
    x = types[0]
    target = [-1 if (isinstance(d, int) and d == -1) else dim(d) for d in attrs["shape"]]
    holes = [i for i, d in enumerate(target) if isinstance(d, int) and d == -1]
    if len(holes) > 1:
        raise GraphShapeError(f"reshape to {tuple(attrs['shape'])}: at most one dimension may be -1")
    if holes:
        known = Poly.product(d for d in target if not (isinstance(d, int) and d == -1))
        q = x.numel.exact_div(known)
        missing = q.as_dim() if q is not None else None
        if missing is None:
            raise GraphShapeError(
                f"reshape of {x} to {tuple(attrs['shape'])}: cannot infer the -1 dimension "
                f"({x.numel} elements / {known} is not a dimension); write the shape out")
        target[holes[0]] = missing
    return {"shape": tuple(target)}


def _reshape_rule(types, attrs):
    x = types[0]
    shape = attrs["shape"]
    for d in shape:
        if isinstance(d, int) and d < 1:
            raise GraphShapeError(f"reshape of {x} to ({shape_str(shape)}): dimension {d} must be >= 1")
    if Poly.product(shape) != x.numel:
        raise GraphShapeError(
            f"reshape of {x} to ({shape_str(shape)}): element counts differ "
            f"({x.numel} vs {Poly.product(shape)})")
    return TensorType(tuple(shape), x.dtype)


register(OpDef("reshape", 1, _reshape_rule, lambda x, shape: np.reshape(x, shape), "injective", "view",
               "same elements, new shape (one -1 allowed)", canon=_canon_reshape))

# ---- transpose -------------------------------------------------------------------------


def _canon_transpose(types, attrs):
    rank = types[0].rank
    perm = attrs.get("perm")
    perm = tuple(range(rank))[::-1] if perm is None else tuple(int(p) for p in perm)
    if sorted(perm) != list(range(rank)):
        raise GraphShapeError(f"transpose of {types[0]}: perm {perm} is not a permutation of 0..{rank - 1}")
    return {"perm": perm}


def _transpose_rule(types, attrs):
    x = types[0]
    return TensorType(tuple(x.shape[p] for p in attrs["perm"]), x.dtype)


register(OpDef("transpose", 1, _transpose_rule, lambda x, perm: np.transpose(x, perm), "injective", "copy",
               "permute axes (default: reverse them, as NumPy)", canon=_canon_transpose))

# ---- slice -----------------------------------------------------------------------------


def _canon_slice(types, attrs):
    x = types[0]
    need_rank("slice", "its operand", x, 1)
    axis = norm_axis(attrs.get("axis", 0), x.rank, "slice")
    start = dim(attrs.get("start", 0))
    end = dim(attrs["end"]) if attrs.get("end") is not None else x.shape[axis]
    return {"axis": axis, "start": start, "end": end}


def _slice_rule(types, attrs):
    x = types[0]
    axis, start, end = attrs["axis"], attrs["start"], attrs["end"]
    size = end - start
    where = f"slice [{start} : {end}] of axis {axis} of {x}"
    if isinstance(start, int) and start < 0:
        raise GraphShapeError(f"{where}: start must be >= 0 (negative indices are not supported)")
    if isinstance(size, int) and size < 1:
        raise GraphShapeError(f"{where}: it would be empty (end - start = {size}); end must exceed start")
    room = x.shape[axis] - end
    if isinstance(room, int) and room < 0:
        raise GraphShapeError(f"{where}: end exceeds the dimension {x.shape[axis]} by {-room}")
    return x.with_shape(x.shape[:axis] + (size,) + x.shape[axis + 1:])


def slice_ref(x, axis, start, end):
    if not 0 <= start < end <= x.shape[axis]:
        raise GraphShapeError(
            f"slice [{start} : {end}] of axis {axis} does not fit an operand of shape {x.shape}; "
            "bind the symbols to smaller values")
    return np.take(x, np.arange(start, end), axis=axis)


register(OpDef("slice", 1, _slice_rule, slice_ref, "injective", "copy",
               "x[start:end] along axis (start/end may be symbolic)", canon=_canon_slice))

# ---- concat ----------------------------------------------------------------------------


def _canon_concat(types, attrs):
    return {"axis": norm_axis(attrs.get("axis", 0), types[0].rank, "concat")}


def _concat_rule(types, attrs):
    axis = attrs["axis"]
    first = types[0]
    total = 0
    for t in types:
        if t.dtype != first.dtype:
            raise GraphShapeError(f"concat: operands of different dtypes: {first} and {t}")
        if t.rank != first.rank or any(a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise GraphShapeError(
                f"concat along axis {axis}: {t} does not match {first} outside that axis")
        total = total + t.shape[axis]
    return first.with_shape(first.shape[:axis] + (total,) + first.shape[axis + 1:])


register(OpDef("concat", None, _concat_rule, lambda *xs, axis: np.concatenate(xs, axis=axis), "injective", "copy",
               "join operands along axis", canon=_canon_concat))

