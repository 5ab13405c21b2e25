"""The builder API: one method per op, so a model reads like the model.

::

    g = Graph("mlp")
    x = g.input("x", ("n", 768), "fp16")                # (n, 768)
    w = g.weight("w1", (768, 3072))                     # (768, 3072)
    x = g.gelu(g.matmul(x, w))                          # (n, 3072)
    g.output(x)

Every method appends one node (``split`` appends one ``slice`` per part) and
returns its :class:`~tinyml.compiler.graph.Value`; a shape error is raised
here, at the line that built the bad node.
"""

from __future__ import annotations

import math


class Builder:
    """Mixin of :class:`~tinyml.compiler.graph.Graph`: op methods over ``add_node``."""

    # ---- elementwise / broadcast -------------------------------------------------------------
    def add(self, a, b):
        return self.add_node("add", a, b)

    def sub(self, a, b):
        return self.add_node("sub", a, b)

    def mul(self, a, b):
        return self.add_node("mul", a, b)

    def div(self, a, b):
        return self.add_node("div", a, b)

    def exp(self, x):
        return self.add_node("exp", x)

    def tanh(self, x):
        return self.add_node("tanh", x)

    def relu(self, x):
        return self.add_node("relu", x)

    def gelu(self, x):
        """GPT-2's tanh approximation of GeLU."""
        return self.add_node("gelu", x)

    def sigmoid(self, x):
        """``1 / (1 + e^-x)``."""
        return self.add_node("sigmoid", x)

    def clip(self, x, lo: float = -math.inf, hi: float = math.inf):
        """``min(max(x, lo), hi)``; ReLU6 is ``clip(x, 0, 6)``."""
        return self.add_node("clip", x, lo=lo, hi=hi)

    def scale(self, x, factor: float):
        """``x * factor`` for a finite constant ``factor``; ``-inf`` (a masked score) stays ``-inf``."""
        return self.add_node("scale", x, factor=factor)

    def causal_mask(self, x, scale: float = 1.0, fill: float = -math.inf):
        """``where(j <= i + Nk - Nq, scale * x, fill)`` over the last two axes. A later ``scale``, by
        any factor, leaves the masked entries ``-inf`` (mask after scale, as PyTorch and FlashAttention)."""
        return self.add_node("causal_mask", x, scale=scale, fill=fill)

    # ---- matmul and reductions ----------------------------------------------------------------
    def matmul(self, a, b):
        """``(..., M, K) @ (..., K, N) -> (..., M, N)``."""
        return self.add_node("matmul", a, b)

    def softmax(self, x):
        """Softmax over the last axis."""
        return self.add_node("softmax", x)

    def layernorm(self, x, weight, bias, eps: float = 1e-5):
        """Layernorm over the last axis with ``weight`` and ``bias`` of shape ``(d,)``."""
        return self.add_node("layernorm", x, weight, bias, eps=eps)

    def reduce_sum(self, x, axis=-1, keepdims: bool = False):
        return self.add_node("reduce_sum", x, axis=axis, keepdims=keepdims)

    def reduce_max(self, x, axis=-1, keepdims: bool = False):
        return self.add_node("reduce_max", x, axis=axis, keepdims=keepdims)

    def reduce_mean(self, x, axis=-1, keepdims: bool = False):
        return self.add_node("reduce_mean", x, axis=axis, keepdims=keepdims)

    # ---- layout ------------------------------------------------------------------------------
    def reshape(self, x, shape):
        """New shape, same elements; dims may be symbolic, one may be -1."""
        return self.add_node("reshape", x, shape=tuple(shape))

    def transpose(self, x, perm=None):
        """Permute axes (``perm=None`` reverses them, as NumPy)."""
        return self.add_node("transpose", x, perm=perm)

    def slice(self, x, axis: int = 0, start=0, end=None):
        """``x[start:end]`` along ``axis``; ``start``/``end`` may be symbolic (``'n'``)."""
        return self.add_node("slice", x, axis=axis, start=start, end=end)

    def split(self, x, sections: int, axis: int = -1) -> list:
        """``sections`` equal parts along ``axis`` (one ``slice`` node each)."""
        from .errors import GraphShapeError

        t = self.type_of(x.name if hasattr(x, "name") else x)
        ax = axis % t.rank if -t.rank <= axis < t.rank else axis
        if not isinstance(sections, int) or sections < 1 or not 0 <= ax < t.rank:
            raise GraphShapeError(f"split of {t}: need sections >= 1 and an axis in range, got {sections}, {axis}")
        d = t.shape[ax]
        part = d // sections if isinstance(d, int) and d % sections == 0 else (
            d.exact_div(sections) if not isinstance(d, int) else None)
        if part is None:
            raise GraphShapeError(f"split of {t} into {sections} along axis {axis}: {d} is not divisible by {sections}")
        return [self.slice(x, ax, i * part, (i + 1) * part) for i in range(sections)]

    def concat(self, xs, axis: int = 0):
        return self.add_node("concat", *xs, axis=axis)

    # ---- model-level ---------------------------------------------------------------------------
    def embedding(self, table, ids):
        """Rows of ``table (V, d)`` picked by int32 ``ids (...)`` -> ``(..., d)``."""
        return self.add_node("embedding", table, ids)

    def attention(self, q, k, v, causal: bool = False, scale: "float | None" = None):
        """``softmax(scale q k^T [causal]) v`` as one op; q ``(..., H, Nq, d)``, k, v ``(..., KVH, Nk, d)``."""
        return self.add_node("attention", q, k, v, causal=causal, scale=scale)
