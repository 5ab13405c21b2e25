"""GPT-2: one transformer block, and a tiny GPT (embeddings, L blocks, final layernorm, tied LM head).

The block is written out as GPT-2 computes it (HuggingFace's ``GPT2Block``),
with the attention spelled as matmul / scale / mask / softmax / matmul, so the
``rewrite_attention`` pass has something to find::

    h = layernorm(x)                                   # (n, d)
    q, k, v = split(h @ w_attn + b_attn, 3)            # 3 x (n, d)
    q = transpose(reshape(q, (n, H, d/H)), (1, 0, 2))  # (H, n, hd)     (same for k, v)
    s = matmul(q, transpose(k, (0, 2, 1)))             # (H, n, n)
    s = causal_mask(scale(s, 1/sqrt(hd)))              # (H, n, n)
    o = matmul(softmax(s), v)                          # (H, n, hd)
    o = reshape(transpose(o, (1, 0, 2)), (n, d))       # (n, d)
    x = x + o @ w_proj + b_proj                        # (n, d)
    x = x + gelu(layernorm(x) @ w_fc + b_fc) @ w_fc2 + b_fc2

Sequence length is the symbol ``n``; weights are seeded random (std 0.02,
layernorm gains near 1), so nothing is downloaded.
"""

from __future__ import annotations

import math
import numbers

from ..errors import GraphError
from ..graph import Graph
from .params import check_kind, param


def _ln(g, x, prefix, d):
    w = param(g, f"{prefix}.w", (d,), mean=1.0, std=0.1)
    b = param(g, f"{prefix}.b", (d,), std=0.1)
    return g.layernorm(x, w, b)


def _linear(g, x, prefix, d_in, d_out):
    w = param(g, f"{prefix}.w", (d_in, d_out))
    b = param(g, f"{prefix}.b", (d_out,))
    return g.add(g.matmul(x, w), b)


def add_gpt2_block(g: Graph, x, prefix: str, d_model: int, n_heads: int, d_mlp: int, causal: bool = True):
    """Append one GPT-2 block reading ``x (n, d_model)``; returns its output value ``(n, d_model)``."""
    if d_model % n_heads:
        from ..errors import GraphShapeError

        raise GraphShapeError(f"gpt2_block: d_model {d_model} is not a multiple of n_heads {n_heads}")
    hd = d_model // n_heads
    h = _ln(g, x, f"{prefix}.ln_1", d_model)                                  # (n, d)
    qkv = _linear(g, h, f"{prefix}.attn.c_attn", d_model, 3 * d_model)        # (n, 3d)
    heads = []
    for t in g.split(qkv, 3, axis=-1):                                         # (n, d) each
        t = g.reshape(t, ("n", n_heads, hd))                                   # (n, H, hd)
        heads.append(g.transpose(t, (1, 0, 2)))                                # (H, n, hd)
    q, k, v = heads
    s = g.matmul(q, g.transpose(k, (0, 2, 1)))                                 # (H, n, n)
    s = g.scale(s, 1.0 / math.sqrt(hd))                                        # (H, n, n)
    if causal:
        s = g.causal_mask(s)                                                   # (H, n, n)
    o = g.matmul(g.softmax(s), v)                                              # (H, n, hd)
    o = g.reshape(g.transpose(o, (1, 0, 2)), ("n", d_model))                   # (n, d)
    x = g.add(x, _linear(g, o, f"{prefix}.attn.c_proj", d_model, d_model))     # (n, d)
    h = _ln(g, x, f"{prefix}.ln_2", d_model)                                   # (n, d)
    h = g.gelu(_linear(g, h, f"{prefix}.mlp.c_fc", d_model, d_mlp))            # (n, d_mlp)
    return g.add(x, _linear(g, h, f"{prefix}.mlp.c_proj", d_mlp, d_model))     # (n, d)


def gpt2_block(d_model: int = 768, n_heads: int = 12, d_mlp: "int | None" = None, *, causal: bool = True,
               dtype: str = "fp16", seed: int = 0, weights: str = "random") -> Graph:
    """One GPT-2 block (GPT-2 small sizes by default) over ``x (n, d_model)``;
    ``weights="meta"``: shape-only weights (:mod:`.params`)."""
    g = Graph("gpt2_block", dtype=dtype, seed=seed)
    g.shape_only = check_kind(weights)
    x = g.input("x", ("n", d_model))
    g.output(add_gpt2_block(g, x, "h0", d_model, n_heads, d_mlp or 4 * d_model, causal))
    return g


def tiny_gpt(layers: int = 2, vocab: int = 50257, d_model: int = 768, n_heads: int = 12,
             n_ctx: int = 1024, d_mlp: "int | None" = None, *, dtype: str = "fp16", seed: int = 0,
             weights: str = "random") -> Graph:
    """GPT-2 end to end: token + position embeddings, ``layers`` blocks, layernorm, tied LM head.

    Input ``ids (n,)`` int32 (``n <= n_ctx``, checked when it runs); output logits ``(n, vocab)``.
    ``weights="meta"``: shape-only weights (:mod:`.params`), to count GPT-2 small in seconds.
    """
    if isinstance(layers, bool) or not isinstance(layers, numbers.Integral) or layers < 1:
        raise GraphError(f"tiny_gpt needs layers >= 1 (an integer: the transformer blocks), got {layers!r}; "
                         f"GPT-2 small has 12")
    g = Graph("tiny_gpt", dtype=dtype, seed=seed)
    g.shape_only = check_kind(weights)
    ids = g.input("ids", ("n",), "int32")                                      # (n,)
    wte = param(g, "wte", (vocab, d_model))                                    # (V, d)
    wpe = param(g, "wpe", (n_ctx, d_model), std=0.01)                          # (n_ctx, d)
    x = g.add(g.embedding(wte, ids), g.slice(wpe, 0, 0, "n"))                  # (n, d)
    for i in range(layers):
        x = add_gpt2_block(g, x, f"h{i}", d_model, n_heads, d_mlp or 4 * d_model)
    x = _ln(g, x, "ln_f", d_model)                                             # (n, d)
    g.output(g.matmul(x, g.transpose(wte, (1, 0))))                            # (n, V)
    return g
