"""Checks for Lab 8, a pass of your own (``labs/lab08_compiler.py``).

``dead_weights`` is compared with what tinyml's ``dead_code`` pass drops.
``fold_scale`` is run on graphs built here from a seeded generator, each with
the number of foldable ``scale(matmul(x, W))`` patterns known from how it was
built (not from tinyml's passes): the result must be a valid graph, leave its
input untouched, have exactly that many fewer live ``scale`` nodes (nodes an
output depends on; a pass may or may not drop dead ones), and compute
the same outputs as the input graph (the reference interpreter, float64).
"""

from __future__ import annotations

import numpy as np

from .checks import Exercise, Wrong, call


# ---- graphs ----------------------------------------------------------------------------------

def case(seed: int):
    """(graph, inputs, foldable): a random graph with ``foldable`` scale-after-matmul patterns the
    pass must fold, and decoys it must leave alone."""
    from ..compiler import Graph

    rng = np.random.default_rng(seed)
    g = Graph(f"case{seed}", dtype="fp32", seed=seed)
    x = g.input("x", ("n", 8))                                            # (n, 8)
    pool, outs, folds = [x], [], []
    for i in range(int(rng.integers(2, 7))):
        a = pool[int(rng.integers(len(pool)))]
        kind = rng.choice(["fold", "fold", "shared", "output", "no_weight", "plain", "gelu"])
        c = float(rng.choice([0.5, -2.0, 0.125, 3.0]))
        if kind == "fold":                                                # scale(matmul(a, W)): fold it
            new = g.scale(g.matmul(a, g.weight(f"w{i}", (8, 8), std=0.5)), c)
            folds.append(new.name)
        elif kind == "shared":                                            # the matmul is read twice
            m = g.matmul(a, g.weight(f"w{i}", (8, 8), std=0.5))
            new = g.add(g.scale(m, c), m)
        elif kind == "output":                                            # the matmul is a graph output
            m = g.matmul(a, g.weight(f"w{i}", (8, 8), std=0.5))
            outs.append(m)
            new = g.scale(m, c)
        elif kind == "no_weight":                                         # B is no weight: nothing to fold into
            new = g.scale(g.matmul(g.reshape(a, (1, "n", 8)), g.reshape(g.gelu(a), (1, 8, "n"))), c)
            new = g.matmul(g.reshape(new, ("n", "n")), a)                 # (n, 8)
        elif kind == "plain":
            new = g.matmul(a, g.weight(f"w{i}", (8, 8), std=0.5))
        else:
            new = g.gelu(g.add(a, x))
        pool.append(new)
    g.output(pool[-1], *outs)
    live, stack = set(), list(g.outputs)                                  # only live patterns count
    while stack:
        v = stack.pop()
        if v not in live:
            live.add(v)
            node = g.node(v)
            stack.extend(node.inputs if node is not None else ())
    xs = rng.standard_normal((5, 8)).astype(np.float32)
    return g, {"x": xs}, sum(f in live for f in folds)


def _named_cases():
    from ..compiler import Graph, zoo

    out = []
    g = Graph("shared_weight", dtype="fp32")
    x = g.input("x", ("n", 8))
    w = g.weight("w", (8, 8), std=0.5)
    g.output(g.scale(g.matmul(x, w), 2.0), g.matmul(x, w))               # W is also read unscaled
    out.append((g, {"x": np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)}, 1))
    block = zoo.get("gpt2_block", d_model=16, n_heads=2, dtype="fp32")    # its scale follows q @ k^T: no weight
    out.append((block, {"x": np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)}, 0))
    return out


# ---- 8.1 dead_weights ------------------------------------------------------------------------

def check_dead_weights(fn) -> str:
    from ..compiler import Graph, dead_code, zoo

    graphs = [zoo.get("mlp", d_model=8, d_hidden=16), zoo.get("gpt2_block", d_model=16, n_heads=2)]
    g = Graph("dead")
    x = g.input("x", ("n", 8))
    g.weight("unused", (8,))
    dead_w = g.weight("dead_w", (8, 8))
    g.matmul(x, dead_w)                                                   # a dead node reading dead_w
    g.output(g.add(x, g.weight("b", (8,))))
    graphs.append(g)
    graphs += [case(s)[0] for s in range(6)]
    for graph in graphs:
        before = str(graph)
        got = call(fn, graph)
        if not isinstance(got, (set, frozenset, list, tuple)):
            raise Wrong(f"dead_weights(<graph {graph.name!r}>) returned {got!r}; return a set of weight names")
        got = set(got)
        want = set(graph.weights) - set(dead_code(graph).weights)
        if str(graph) != before:
            raise Wrong(f"dead_weights changed graph {graph.name!r}; a query must not modify the graph")
        if got != want:
            extra, missing = sorted(got - want), sorted(want - got)
            raise Wrong(f"dead_weights(<graph {graph.name!r}>) = {sorted(got)}, expected {sorted(want)}"
                        f"{f'; {extra} are needed by an output' if extra else ''}"
                        f"{f'; {missing} are not' if missing else ''}. Hint: walk back from graph.outputs "
                        f"through node.inputs; a weight read only by dead nodes is dead too.")
    return f"agrees with the dead_code pass on {len(graphs)} graphs"


# ---- 8.2 fold_scale --------------------------------------------------------------------------

def check_fold_scale(fn) -> str:
    from ..compiler import GraphError, dead_code, interpret, validate

    cases = _named_cases() + [case(s) for s in range(30)]
    folded = 0
    for graph, inputs, foldable in cases:
        before = str(graph), dict(graph.weights)
        name = f"fold_scale(<graph {graph.name!r}>)"
        out = call(fn, graph)
        if str(graph) != before[0] or dict(graph.weights) != before[1]:
            raise Wrong(f"{name} modified its input graph; a pass builds a new graph (graph.replace(...))")
        if not hasattr(out, "nodes") or not hasattr(out, "outputs"):
            raise Wrong(f"{name} returned {out!r}; return the new Graph")
        try:
            validate(out)
        except GraphError as exc:
            raise Wrong(f"{name} returned an invalid graph: {exc}") from None
        scales = lambda gr: sum(n.op == "scale" for n in dead_code(gr).nodes)   # noqa: E731  live ones
        removed = scales(graph) - scales(out)
        if removed != foldable:
            raise Wrong(f"{name} removed {removed} scale node(s), but {foldable} of them can be folded into "
                        f"the weight of the matmul they follow:\n{graph}\nHint: fold scale(matmul(a, W), c) "
                        f"only when W is a weight and the matmul's result is read by nothing else (not by "
                        f"another node, not as a graph output).")
        want = interpret(graph, inputs)
        try:
            got = interpret(out, inputs)
        except GraphError as exc:
            raise Wrong(f"{name}: the new graph does not run: {exc}") from None
        for w, y in zip(want, got):
            if w.shape != y.shape or not np.allclose(y, w, rtol=1e-5, atol=1e-6):
                raise Wrong(f"{name} changed what the graph computes: max |difference| "
                            f"{float(np.abs(y - w).max()):.3g}. Hint: the new weight is c * W, and a weight "
                            f"another node still reads unscaled must stay as it is.")
        folded += foldable
    return f"folds the {folded} foldable scales of {len(cases)} graphs, leaves the decoys, and preserves outputs"


EXERCISES = (
    Exercise("8.1", "dead_weights", "the weights no output depends on", check_dead_weights),
    Exercise("8.2", "fold_scale", "a pass: fold scale(matmul(x, W), c) into matmul(x, c W)", check_fold_scale),
)
