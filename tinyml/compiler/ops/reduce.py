"""Reductions: softmax and layernorm over the last axis, reduce_sum / max / mean over axes.

Pattern ``reduction`` (TVM's comm-reduce): a reduction absorbs the
elementwise/injective ops that produce its input; nothing after it joins its
group.

softmax follows :func:`tinyml.kernels.reference.softmax`: ``-inf`` entries get
probability 0 and a row that is ``-inf`` everywhere gives zeros, not NaN. NaN and
``+inf`` have no softmax: the interpreter refuses them with the
:class:`~tinyml.sim.errors.NonFiniteError` the softmax kernels raise, rather than
return a row of zeros the compiled graph would not.
layernorm is ``(x - mean) / sqrt(var + eps) * weight + bias`` with the biased
variance, as PyTorch computes it.
"""

from __future__ import annotations

import numpy as np

from ...sim.errors import NonFiniteError
from ..errors import GraphShapeError
from ..types import TensorType, same_dtype
from ._util import flag_attr, norm_axis, need_rank
from .registry import OpDef, register


def softmax_ref(x):
    bad = np.isnan(x) | np.isposinf(x)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NonFiniteError(
            f"softmax's input {x.shape} holds {int(bad.sum())} value(s) softmax cannot take, the first at "
            f"index {first} (value {x[first]}). -inf is allowed (it masks an entry: its probability is 0); "
            f"NaN and +inf are not. Look for the op that made them (a sub or mul of a masked -inf score, "
            f"an overflow); a scale keeps -inf masked, so scale(causal_mask(s), -1) is fine.")
    m = x.max(axis=-1, keepdims=True)
    m = np.where(np.isneginf(m), 0.0, m)                        # fully masked rows: shift by 0
    e = np.exp(x - m)
    d = e.sum(axis=-1, keepdims=True)
    return np.divide(e, d, out=np.zeros_like(e), where=d > 0)


def _softmax_rule(types, attrs):
    same_dtype("softmax", types)
    need_rank("softmax", "its operand", types[0], 1)
    return types[0]


def layernorm_ref(x, w, b, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _layernorm_rule(types, attrs):
    x, w, b = types
    same_dtype("layernorm", types)
    need_rank("layernorm", "x", x, 1)
    for what, t in (("weight", w), ("bias", b)):
        if t.shape != (x.shape[-1],):
            raise GraphShapeError(
                f"layernorm: {what} must have shape ({x.shape[-1]},) (x's last dimension), got {t} for x {x}")
    return x


def _canon_layernorm(types, attrs):
    eps = float(attrs.get("eps", 1e-5))
    if not eps > 0:
        raise GraphShapeError(f"layernorm: eps must be > 0, got {eps}")
    return {"eps": eps}


def _canon_reduce(name):
    def canon(types, attrs):
        rank = types[0].rank
        axis = attrs.get("axis", -1)
        axes = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
        axes = tuple(sorted(norm_axis(a, rank, name) for a in axes))
        if not axes or len(set(axes)) != len(axes):
            raise GraphShapeError(f"{name}: axis {axis!r} must name distinct axes of the rank-{rank} operand")
        return {"axis": axes, "keepdims": flag_attr(name, "keepdims", attrs.get("keepdims", False))}
    return canon


def _reduce_rule(name):
    def rule(types, attrs):
        x = types[0]
        dt = same_dtype(name, types)
        axes, keep = attrs["axis"], attrs["keepdims"]
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        return TensorType(shape, dt)
    return rule


def _reduce_ref(fn):
    return lambda x, axis, keepdims: fn(x, axis=axis, keepdims=keepdims)


register(OpDef("softmax", 1, _softmax_rule, softmax_ref, "reduction", "softmax",
               "softmax over the last axis (-inf -> 0, fully masked rows -> 0)"))
register(OpDef("layernorm", 3, _layernorm_rule, layernorm_ref, "reduction", "layernorm",
               "layernorm(x, weight, bias) over the last axis", canon=_canon_layernorm))
for _name, _fn in (("reduce_sum", np.sum), ("reduce_max", np.max), ("reduce_mean", np.mean)):
    register(OpDef(_name, 1, _reduce_rule(_name), _reduce_ref(_fn), "reduction", "reduce",
                   f"{_fn.__name__} over axis (int or tuple), keepdims", canon=_canon_reduce(_name)))
