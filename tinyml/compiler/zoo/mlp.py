"""A two-layer MLP: ``gelu(x @ w1 + b1) @ w2 + b2`` over ``n`` tokens (GPT-2's MLP shape by default)."""

from __future__ import annotations

from ..graph import Graph
from .params import check_kind, param


def mlp(d_model: int = 768, d_hidden: int = 3072, *, dtype: str = "fp16", seed: int = 0, weights: str = "random"):
    g = Graph("mlp", dtype=dtype, seed=seed)
    g.shape_only = check_kind(weights)          # weights="meta": shape-only (see .params)
    x = g.input("x", ("n", d_model))                                  # (n, d)
    w1, b1 = param(g, "w1", (d_model, d_hidden)), param(g, "b1", (d_hidden,))
    w2, b2 = param(g, "w2", (d_hidden, d_model)), param(g, "b2", (d_model,))
    h = g.gelu(g.add(g.matmul(x, w1), b1))                            # (n, 4d)
    y = g.add(g.matmul(h, w2), b2)                                    # (n, d)
    g.output(y)
    return g
