"""Elementwise and broadcast ops: unary maps, binary arithmetic, scaling and causal masking.

Binary ops broadcast with NumPy's rules on symbolic shapes
(:func:`tinyml.compiler.types.broadcast_shapes`). GeLU is GPT-2's tanh
approximation ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``; sigmoid is
``1 / (1 + e^-x)``; ``clip(x, lo, hi)`` is ``min(max(x, lo), hi)`` (ReLU6 is
``clip(x, 0, 6)``).

``causal_mask(x, scale, fill)`` is the "scaled masking" of an attention block:
``where(visible, scale * x, fill)`` over the last two axes, with queries and
keys aligned bottom-right as FlashAttention does (query ``i`` sees key ``j``
iff ``j <= i + Nk - Nq``). With ``fill = -inf`` it matches
:func:`tinyml.kernels.reference.attention` exactly.

A masked score stays masked. ``-inf`` is what a mask writes, and ``scale``
(and the mask's own ``scale``) leave it ``-inf`` for every factor::

    scale(x, f) = where(x > -inf, f * x, x)        # = f * x whenever f > 0

IEEE arithmetic would turn it into ``+inf`` for a negative factor (and NaN for
0), a score softmax cannot take. PyTorch's ``scaled_dot_product_attention`` and
FlashAttention scale first and mask after, so the masked entries are ``-inf``
whatever the factor's sign; with this rule the order of ``scale`` and
``causal_mask`` does not matter (``scale(causal_mask(s), -1)`` is
``causal_mask(s, scale=-1)``), and ``rewrite_attention`` folds any run of them
into one ``attention`` node. The other arithmetic ops (``mul``, ``sub``,
``div``) follow IEEE, and softmax refuses the ``+inf`` or NaN they can make
(the interpreter and the compiled kernels alike). Factors must be finite.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GraphShapeError
from ..types import TensorType, broadcast_shapes, same_dtype
from ._util import need_rank
from .registry import OpDef, register

GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


# exp, sigmoid and gelu overflow on purpose (exp(1000) = inf, sigmoid(-1000) = 1 / (1 + inf) = 0,
# gelu's x ** 3 -> inf -> tanh = +-1: the exact limits, as in the kernels' float32): NumPy's overflow
# RuntimeWarning is silenced where it is raised.

def _exp(x):
    with np.errstate(over="ignore"):
        return np.exp(x)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def gelu_ref(x):
    with np.errstate(over="ignore"):
        return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + GELU_A * x ** 3)))


def _unary_rule(name):
    def rule(types, attrs):
        same_dtype(name, types)
        return types[0]
    return rule


def _binary_rule(name):
    def rule(types, attrs):
        a, b = types
        dt = same_dtype(name, types)
        return TensorType(broadcast_shapes(a.shape, b.shape), dt)
    return rule


def _finite_factor(op: str, what: str, value) -> float:
    f = float(value)
    if not math.isfinite(f):
        raise GraphShapeError(f"{op} needs a finite {what}, got {f} (a scores tensor scaled by {f} has no "
                              f"softmax); e.g. g.scale(x, 0.125)")
    return f


def _canon_scale(types, attrs):
    if "factor" not in attrs:
        raise GraphShapeError("scale needs a factor: g.scale(x, 0.125)")
    return {"factor": _finite_factor("scale", "factor", attrs["factor"])}


def _canon_mask(types, attrs):
    need_rank("causal_mask", "its operand", types[0], 2)
    return {"scale": _finite_factor("causal_mask", "scale", attrs.get("scale", 1.0)),
            "fill": float(attrs.get("fill", -math.inf))}


def scale_ref(x, factor):
    """``factor * x``, with ``-inf`` (a masked score) left ``-inf`` (see the module docstring)."""
    if factor > 0:
        return x * factor
    with np.errstate(invalid="ignore"):                      # -inf * 0 = NaN in the branch not taken
        return np.where(x > -np.inf, x * factor, x)


def _canon_clip(types, attrs):
    lo, hi = float(attrs.get("lo", -math.inf)), float(attrs.get("hi", math.inf))
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise GraphShapeError(f"clip needs lo <= hi (either may be infinite), got lo={lo}, hi={hi}")
    return {"lo": lo, "hi": hi}


def causal_mask_ref(x, scale=1.0, fill=-math.inf):
    nq, nk = x.shape[-2:]
    visible = np.tri(nq, nk, k=nk - nq, dtype=bool)          # (Nq, Nk): j <= i + Nk - Nq
    return np.where(visible, scale_ref(x, scale), fill)


_UNARY = {
    "exp": (_exp, "e^x"),
    "tanh": (np.tanh, "tanh(x)"),
    "relu": (lambda x: np.maximum(x, 0.0), "max(x, 0)"),
    "gelu": (gelu_ref, "GPT-2's tanh GeLU"),
    "sigmoid": (_sigmoid, "1 / (1 + e^-x)"),
}
for _name, (_ref, _doc) in _UNARY.items():
    register(OpDef(_name, 1, _unary_rule(_name), _ref, "elementwise", "elementwise", _doc))

register(OpDef("scale", 1, _unary_rule("scale"), scale_ref, "elementwise", "elementwise",
               "x * factor (a finite number baked into the op); -inf, a masked score, stays -inf",
               canon=_canon_scale))
register(OpDef("clip", 1, _unary_rule("clip"), lambda x, lo, hi: np.clip(x, lo, hi), "elementwise", "elementwise",
               "min(max(x, lo), hi) (lo = -inf or hi = inf for one side; ReLU6 is clip(x, 0, 6))",
               canon=_canon_clip))
register(OpDef("causal_mask", 1, _unary_rule("causal_mask"), causal_mask_ref, "elementwise", "elementwise",
               "where(j <= i + Nk - Nq, scale * x, fill) over the last two axes; -inf in x stays -inf",
               canon=_canon_mask))

_BINARY = {
    "add": (np.add, True),
    "sub": (np.subtract, False),
    "mul": (np.multiply, True),
    "div": (np.divide, False),
}
for _name, (_ref, _comm) in _BINARY.items():
    register(OpDef(_name, 2, _binary_rule(_name), _ref, "broadcast", "elementwise",
                   f"NumPy {_ref.__name__} with broadcasting", commutative=_comm))
