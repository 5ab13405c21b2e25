"""Checks for Lab 7, kernel fusion (``labs/lab07_fusion.py``).

Byte counts come from the compiler itself: the chain is built as a graph,
lowered op by op and fused, and counted on the simulator (counting mode). The
groups a chain fuses into come from running the ``fuse`` pass on that graph.
A student's SiLU is interpreted against ``x / (1 + exp(-x))`` in float64, then
compiled and counted: it must be one kernel that reads x once and writes once.
"""

from __future__ import annotations

import numpy as np

from .checks import Exercise, Wrong, as_int, call, call_text

UNARY = ("exp", "tanh", "relu", "gelu")
BINARY = ("add", "sub", "mul", "div")
CHAIN_OPS = ("matmul", "add", "mul", "gelu", "relu", "tanh", "softmax", "layernorm")


def chain_graph(ops, m, n: int, dtype: str = "fp16"):
    """A chain over ``x (m, n)``: each binary op takes a new (m, n) input; matmul a weight (n, n);
    layernorm a weight and a bias (n,). ``m`` may be a symbol ('n')."""
    from ..compiler import Graph

    g = Graph("chain", dtype=dtype)
    x = g.input("x", (m, n))                                               # (m, n)
    for i, op in enumerate(ops):
        if op == "matmul":
            x = g.matmul(x, g.weight(f"w{i}", (n, n)))
        elif op == "layernorm":
            x = g.layernorm(x, g.weight(f"g{i}", (n,), init="ones"), g.weight(f"b{i}", (n,), init="zeros"))
        elif op in BINARY:
            x = getattr(g, op)(x, g.input(f"a{i}", (m, n)))
        else:
            x = getattr(g, op)(x)
    g.output(x)
    return g


def counted_bytes(ops, m: int, n: int, dtype: str) -> tuple[int, int]:
    """(op-by-op bytes, fused bytes), read + write, from the simulator."""
    from ..compiler import fuse, lower

    g = chain_graph(ops, m, n, dtype)
    _, eager = lower(g, fused=False).run(count=True, dtype=dtype)
    _, fused = lower(fuse(g)).run(count=True, dtype=dtype)
    return eager.hbm_bytes, fused.hbm_bytes


# ---- 7.1 chain_bytes ------------------------------------------------------------------------

def check_chain_bytes(fn) -> str:
    from ..sim import nbytes

    cases = [(["mul", "add", "gelu"], 1024, 768, "fp16"), (["gelu"], 64, 64, "fp32"),
             (["add", "add", "add", "add"], 300, 100, "bf16"), (["exp", "tanh", "relu"], 7, 513, "fp16"),
             (["sub", "gelu", "mul", "relu", "div"], 4096, 4096, "fp16")]
    for ops, m, n, dt in cases:
        text = call_text("chain_bytes", (ops, m, n, dt))
        got = call(fn, list(ops), m, n, dt)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise Wrong(f"{text} returned {got!r}; return a pair (unfused_bytes, fused_bytes)")
        u, f = as_int(got[0], text + "[0]"), as_int(got[1], text + "[1]")
        want_u, want_f = counted_bytes(ops, m, n, dt)
        mn = nbytes(m * n, dt)
        if (u, f) == (want_u, want_f):
            continue
        k, i = len(ops), 1 + sum(op in BINARY for op in ops)
        if (u, f) == (want_u // nbytes(1, dt), want_f // nbytes(1, dt)):
            hint = "Those are elements; the question asks for bytes (times nbytes(1, dtype))."
        elif f != want_f:
            hint = (f"Fused, the kernel reads each of the {i} input(s) once and writes the output once: "
                    f"{i} + 1 matrices of M x N.")
        elif u == (i + k) * mn:
            hint = "Op by op, every op also *writes* its result: count the writes too."
        else:
            hint = (f"Op by op, each of the {k} ops reads its operands (the previous result and, for a binary "
                    f"op, a new input) and writes its result; that is {i} + {k} - 1 reads and {k} writes.")
        raise Wrong(f"{text} = ({u:,}, {f:,}), but the simulator counts ({want_u:,}, {want_f:,}). {hint}")
    return f"matches the compiler's lowered chains on {len(cases)} chains (op by op and fused)"


# ---- 7.2 group_chain -------------------------------------------------------------------------

def expected_groups(ops) -> list[list[str]]:
    from ..compiler import fuse

    return [list(grp.ops) for grp in fuse(chain_graph(ops, "n", 16)).groups]


def check_group_chain(fn) -> str:
    rng = np.random.default_rng(7)
    cases = [["matmul", "add", "gelu"], ["add", "softmax"], ["softmax", "add"], ["matmul", "matmul"],
             ["gelu", "matmul", "add"], ["layernorm", "matmul", "add", "relu", "matmul", "add"],
             ["add", "mul", "layernorm", "gelu"], ["matmul", "softmax"], ["add"] * 11]
    cases += [list(rng.choice(CHAIN_OPS, size=int(rng.integers(1, 10)))) for _ in range(40)]
    for ops in cases:
        ops = [str(o) for o in ops]
        text = call_text("group_chain", (ops,))
        got = call(fn, list(ops))
        if not isinstance(got, (list, tuple)) or not all(isinstance(gr, (list, tuple)) for gr in got):
            raise Wrong(f"{text} returned {got!r}; return a list of groups, each a list of op names")
        got = [list(gr) for gr in got]
        want = expected_groups(ops)
        if got != want:
            raise Wrong(f"{text} = {got}, but the fuse pass makes {want}. Hint: a matmul takes the elementwise "
                        f"ops after it (its epilogue) but nothing before it; a reduction (softmax, layernorm) "
                        f"takes the elementwise ops before it but nothing after it; a group holds at most one "
                        f"matmul or reduction, and at most 8 ops.")
    return f"agrees with the fuse pass on {len(cases)} chains"


# ---- 7.3 silu ---------------------------------------------------------------------------------

def check_silu(fn) -> str:
    from ..compiler import Graph, compile, interpret

    g = Graph("silu", dtype="fp32")
    x = g.input("x", ("n", 32))                                           # (n, 32)
    text = "silu(g, x)"
    y = call(fn, g, x)
    if getattr(y, "graph", None) is not g:
        raise Wrong(f"{text} returned {y!r}; return the value of the last op you added, e.g. g.mul(...)")
    if set(g.inputs) != {"x"}:
        raise Wrong(f"{text} added graph inputs {sorted(set(g.inputs) - {'x'})}; use only x (and weights, "
                    f"if you need a constant)")
    g.output(y)
    xs = np.linspace(-12, 12, 5 * 32).reshape(5, 32).astype(np.float32)
    (got,) = interpret(g, {"x": xs})
    want = xs / (1.0 + np.exp(-xs.astype(np.float64)))
    err = float(np.abs(got - want).max())
    if not err <= 1e-5 * max(1.0, float(np.abs(want).max())):
        raise Wrong(f"{text} computes something else: max |error| {err:.3g} against x / (1 + exp(-x)) on "
                    f"x in [-12, 12]. Hint: x * sigmoid(x), and sigmoid(x) = (1 + tanh(x / 2)) / 2.")
    n = 64
    _, prof = compile(g, explain=False, dtype="fp16").run(bindings={"n": n}, count=True)
    names = [r.name for r in prof.records]
    if len(names) != 1:
        raise Wrong(f"{text} is right, but compiled it runs as {len(names)} kernels ({', '.join(names)}). "
                    f"Hint: use only elementwise ops (scale, add, mul, tanh, exp ...): a matmul or a "
                    f"reduction starts a group of its own.")
    from ..sim import nbytes

    r = prof.records[0]
    if r.hbm_write_bytes != nbytes(n * 32, "fp16") or r.hbm_read_bytes > 1.25 * nbytes(n * 32, "fp16"):
        raise Wrong(f"{text} is one kernel, but it reads {r.hbm_read_bytes:,} bytes and writes "
                    f"{r.hbm_write_bytes:,} for a {n} x 32 fp16 input: read x once, write y once")
    return f"equals x / (1 + exp(-x)) to {err:.1e} and compiles to one kernel reading x once"


EXERCISES = (
    Exercise("7.1", "chain_bytes", "HBM bytes of an elementwise chain, op by op and fused", check_chain_bytes),
    Exercise("7.2", "group_chain", "the fusion rule: which ops of a chain share a kernel", check_group_chain),
    Exercise("7.3", "silu", "write SiLU from graph ops so it fuses into one kernel", check_silu),
)
