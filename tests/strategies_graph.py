"""Hypothesis strategies for the graph compiler: random valid graphs, and attention patterns.

* :func:`random_graphs`: elementwise chains, diamonds (an operand picked from anywhere
  earlier), matmuls with weights, ``a @ b^T`` score matrices, reductions (keepdims,
  broadcast back), softmax, layernorm, slices/concats, written-out one-head attentions,
  a ``2*n``-row input sliced back to ``n``, repeated subexpressions (for CSE) and dead values (for DCE);
* :func:`attention_graphs`: the written-out attention pattern in its variants, with
  the number of ``attention`` nodes ``rewrite_attention`` must produce, derived from
  the pattern's rules (not from the pass). Scale factors include negative ones and 0,
  before and after the mask: a masked ``-inf`` stays ``-inf`` under any scale, so every
  order is exact (:mod:`tinyml.compiler.ops.elementwise`).

Each draws ``(graph, inputs, bindings)``; inputs come from a seeded NumPy generator.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from tinyml.compiler import Graph

WIDTHS = (1, 2, 3, 5)


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2 ** 32 - 1)


def make_inputs(graph, bindings: dict, seed: int) -> dict:
    """Random arrays for every input of ``graph`` at the given symbol values."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, t in graph.inputs.items():
        shape = t.concrete(bindings)
        if t.dtype == "int32":
            out[name] = rng.integers(0, 7, size=shape).astype(np.int32)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32)
    return out


@st.composite
def random_graphs(draw, max_steps: int = 12):
    """(graph, inputs, bindings): a random valid graph over ``x (n, w)``, n symbolic."""
    seed = draw(seeds())
    g = Graph("random", dtype="fp32", seed=seed % 1000)
    w0 = draw(st.sampled_from(WIDTHS))
    pool = [g.input("x", ("n", w0))]                                     # values, all (n, w)
    if draw(st.booleans()):
        y = g.input("y", ("2*n", w0))                                    # (2n, w)
        pool.append(g.slice(y, 0, "n", "2*n"))                           # (n, w)
    done = []                                                            # (op, operands) applied

    def pick(width=None):
        cands = [v for v in pool if width is None or v.shape[1] == width]
        return draw(st.sampled_from(cands))

    for step in range(draw(st.integers(1, max_steps))):
        kind = draw(st.sampled_from(("unary", "unary", "binary", "binary", "bias", "div", "matmul", "scores",
                                     "reduce", "softmax", "layernorm", "concat", "slice", "attention", "repeat")))
        a = pick()
        w = a.shape[1]                       # an int, or symbolic after "scores" (n x n) or a concat with it
        if not isinstance(w, int) and kind in ("bias", "matmul", "layernorm", "slice"):
            kind = "unary"                   # these need a weight or bounds of concrete width
        if kind == "unary":
            op = draw(st.sampled_from(("tanh", "relu", "gelu", "sigmoid", "clip", "scale", "exp")))
            if op == "exp":
                new = g.exp(g.tanh(a))
            elif op == "scale":
                new = g.scale(a, draw(st.sampled_from((0.5, -2.0, 3.0))))
            elif op == "clip":
                lo, hi = draw(st.sampled_from(((0.0, 6.0), (-0.5, math.inf), (-math.inf, 0.25), (-1.0, 1.0))))
                new = g.clip(a, lo, hi)
            else:
                new = getattr(g, op)(a)
                done.append((op, (a,)))
        elif kind == "binary":
            op, b = draw(st.sampled_from(("add", "sub", "mul"))), pick(w)
            new = getattr(g, op)(a, b)
            done.append((op, (a, b) if draw(st.booleans()) or op == "sub" else (b, a)))
        elif kind == "bias":
            new = g.add(a, g.weight(f"b{step}", (w,), std=1.0))               # (n, w) + (w,)
        elif kind == "div":
            new = g.div(a, g.exp(g.tanh(pick(w))))
        elif kind == "matmul":
            w2 = draw(st.sampled_from(WIDTHS))
            new = g.matmul(a, g.weight(f"w{step}", (w, w2), std=0.5))         # (n, w2)
        elif kind == "scores":
            new = g.matmul(a, g.transpose(pick(w)))                             # (n, n)
        elif kind == "attention":                                               # one head, written out
            q, k, v = (g.reshape(t, (1, "n", w)) for t in (a, pick(w), pick(w)))  # (1, n, w)
            s = g.scale(g.matmul(q, g.transpose(k, (0, 2, 1))), 0.5)            # (1, n, n)
            mask = draw(st.sampled_from(("none", "mask", "mask then scale")))
            if mask != "none":
                s = g.causal_mask(s)                                            # masked: -inf
            if mask == "mask then scale":                                       # -inf stays -inf
                s = g.scale(s, draw(st.sampled_from((-1.0, 0.0, 2.0))))
            new = g.reshape(g.matmul(g.softmax(s), v), ("n", w))               # (n, w)
        elif kind == "reduce":
            op = draw(st.sampled_from(("reduce_sum", "reduce_max", "reduce_mean")))
            new = g.sub(a, getattr(g, op)(a, axis=-1, keepdims=True))           # (n, w) - (n, 1)
        elif kind == "softmax":
            new = g.softmax(a)
        elif kind == "layernorm":
            new = g.layernorm(a, g.weight(f"lw{step}", (w,), std=1.0), g.weight(f"lb{step}", (w,), std=1.0))
        elif kind == "concat":
            new = g.concat([a, pick()], axis=1)                                 # (n, w + w')
        elif kind == "slice":
            if w == 1:
                continue
            start = draw(st.integers(0, w - 1))
            new = g.slice(a, 1, start, draw(st.integers(start + 1, w)))
        else:                                                                   # an earlier op, again
            if not done:
                continue
            op, operands = draw(st.sampled_from(done))
            new = getattr(g, op)(*operands)
        pool.append(new)
    outs = [pool[-1]] + draw(st.lists(st.sampled_from(pool), max_size=2))
    g.output(*outs)
    n = draw(st.sampled_from((1, 2, 3, 7)))
    return g, make_inputs(g, {"n": n}, seed), {"n": n}


@st.composite
def attention_graphs(draw):
    """(graph, inputs, bindings, expected): one written-out attention and how many
    ``attention`` nodes the rewrite must leave (1 if the pattern is exact, else 0)."""
    seed = draw(seeds())
    rank4 = draw(st.booleans())
    heads, d = draw(st.sampled_from((1, 2, 3))), draw(st.sampled_from((1, 4, 5)))
    lead = (2, heads) if rank4 else (heads,)
    g = Graph("attn", dtype="fp32", seed=seed % 1000)
    q = g.input("q", lead + ("n", d))                                  # (.., H, n, d)
    v = g.input("v", lead + ("n", d))                                  # (.., H, n, d)
    perm = tuple(range(len(lead))) + (len(lead) + 1, len(lead))
    k_form = draw(st.sampled_from(("transpose", "pretransposed")))
    if k_form == "transpose":
        kt = g.transpose(g.input("k", lead + ("n", d)), perm)          # (.., H, d, n)
    else:
        kt = g.input("kt", lead + (d, "n"))                            # (.., H, d, n)
    s = g.matmul(q, kt)                                                 # (.., H, n, n)
    exact = True
    c = draw(st.sampled_from((1.0 / math.sqrt(d), 0.5, 2.0, -1.0, -0.25, 0.0)))
    form = draw(st.sampled_from(("scale", "scale+mask", "mask(scale)", "mask+scale", "none", "finite-fill")))
    if form == "scale":
        s = g.scale(s, c)
    elif form == "scale+mask":
        s = g.causal_mask(g.scale(s, c))
    elif form == "mask(scale)":
        s = g.causal_mask(s, scale=c)
    elif form == "mask+scale":
        s = g.scale(g.causal_mask(s), c)
    elif form == "finite-fill":
        s = g.causal_mask(s, scale=c, fill=-1e4)
        exact = False
    p = g.softmax(s)                                                    # (.., H, n, n)
    o = g.matmul(p, v)                                                  # (.., H, n, d)
    outs = [o]
    leak = draw(st.sampled_from(("none", "none", "probs", "scores", "raw scores")))
    if leak == "probs":
        outs.append(p)                                                  # p must be materialised
        exact = False
    elif leak == "scores":
        outs.append(g.relu(s))                                          # s read twice
        exact = False
    elif leak == "raw scores":
        outs.append(s)                                                  # masked entries: -inf, any scale
        exact = False
    g.output(*outs)
    n = draw(st.sampled_from((1, 2, 5, 8)))
    return g, make_inputs(g, {"n": n}, seed), {"n": n}, int(exact)
