"""Lab 7: Kernel fusion

Why fusing memory-bound ops pays: predict the HBM bytes of an elementwise
chain run op by op and fused, write the rule that decides which ops of a chain
share a kernel, and write an activation so that the compiler fuses it into a
single kernel.

The reference solution: the lab with every exercise answered. CI checks it with
`tinyml lab check 7 --file labs/solutions/lab07_fusion.py`.

Run it:       python labs/solutions/lab07_fusion.py    (or open it as a notebook in VS Code)
Check it:     tinyml lab check 7 --file labs/solutions/lab07_fusion.py
Walkthrough:  docs/compiler.md
"""

# %% [markdown]
# # Lab 7: Kernel fusion
#
# An elementwise op (`add`, `gelu`, `mul` ...) does one or a few FLOPs per
# element it reads and writes, so on a GPU its time is the time to move its
# operands across HBM. Eager PyTorch runs `gelu(x * a + b)` as three kernels:
# each reads its operands from HBM and writes its result back, so the
# intermediates `x * a` and `x * a + b` make a round trip that nobody needed.
# A fused kernel reads each input once, runs the whole chain in registers,
# and writes only the result.
#
# tinyml's compiler does this for you: `lower(graph, fused=False)` runs every
# op as its own kernel, `lower(fuse(graph))` one kernel per fused group.
# Exercises are the functions marked *Exercise 7.x*: replace each
# `raise NotImplementedError(...)`, re-run, and check with `tinyml lab check 7`.

# %%
import os

import numpy as np

from tinyml.compiler import Graph, compile, fuse, interpret, lower
from tinyml.sim import nbytes
from tinyml.sim.units import fmt_bytes, fmt_time

SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"   # CI runs every lab this way: small shapes
M, N = (256, 256) if SMOKE else (4096, 4096)        # counted, not computed: any size is quick
BINARY = ("add", "sub", "mul", "div")


def chain(ops, m, n, dtype="fp16"):
    """``x (m, n)`` through ``ops``; each binary op takes a new (m, n) input, a matmul a weight (n, n),
    a layernorm a gain and a bias (n,)."""
    g = Graph("chain", dtype=dtype)
    x = g.input("x", (m, n))                                    # (m, n)
    for i, op in enumerate(ops):
        if op == "matmul":
            x = g.matmul(x, g.weight(f"w{i}", (n, n)))          # (m, n)
        elif op == "layernorm":
            x = g.layernorm(x, g.weight(f"g{i}", (n,), init="ones"), g.weight(f"b{i}", (n,), init="zeros"))
        elif op in BINARY:
            x = getattr(g, op)(x, g.input(f"a{i}", (m, n)))     # (m, n)
        else:
            x = getattr(g, op)(x)                               # (m, n)
    g.output(x)
    return g


# %% [markdown]
# ## 1. One chain, two ways
#
# Count `gelu(x * a + b)` on the simulated A100, op by op and fused (counting
# mode: shapes only, the same kernels, no data):

# %%
g = chain(["mul", "add", "gelu"], M, N)
for label, plan in (("op by op", lower(g, fused=False)), ("fused", lower(fuse(g)))):
    _, prof = plan.run(count=True, device="a100-40gb")
    print(f"{label:>9}: {len(prof.records)} kernel(s), reads {fmt_bytes(prof.hbm_read_bytes)}, "
          f"writes {fmt_bytes(prof.hbm_write_bytes)}, {fmt_time(prof.time_s)}  "
          f"({', '.join(r.name for r in prof.records)})")
print(f"(one {M} x {N} fp16 matrix is {fmt_bytes(nbytes(M * N, 'fp16'))})")


# %%
def chain_bytes(ops: list, m: int, n: int, dtype: str) -> tuple[int, int]:
    """Exercise 7.1: total HBM bytes (reads + writes) of the elementwise chain ``chain(ops, m, n)``,
    run op by op and fused: return ``(unfused_bytes, fused_bytes)``.

    ``ops`` are unary (``exp``, ``tanh``, ``relu``, ``gelu``) or binary (``add``, ``sub``, ``mul``,
    ``div``: each takes a new full (m, n) input). Every tensor is (m, n) in ``dtype``;
    ``nbytes(count, dtype)`` gives the bytes of ``count`` elements.
    """
    k = len(ops)                                      # kernels op by op
    i = 1 + sum(op in BINARY for op in ops)           # inputs: x and one per binary op
    unfused = (i + k - 1) + k                         # reads: every operand; writes: every result
    return nbytes(unfused * m * n, dtype), nbytes((i + 1) * m * n, dtype)


# %%
try:
    for ops in (["mul", "add", "gelu"], ["exp", "tanh", "relu", "gelu"]):
        want = lower(chain(ops, M, N), fused=False).run(count=True)[1].hbm_bytes, \
            lower(fuse(chain(ops, M, N))).run(count=True)[1].hbm_bytes
        got = chain_bytes(ops, M, N, "fp16")
        print(f"{ops}: you say {got}, the simulator counts {want}: {'ok' if tuple(got) == want else 'WRONG'}")
except NotImplementedError as exc:
    print(f"[Exercise 7.1 not attempted] {exc}")

# %% [markdown]
# ## 2. The fusion rule
#
# Which ops may share a kernel? tinyml's `fuse` pass follows TVM: every op
# has a *pattern kind*. Elementwise ops fuse with each other. A **matmul**
# absorbs the elementwise ops *after* it (bias, activation, residual: its
# *epilogue*, applied to the output tile while it is still on chip) but
# nothing before it. A **reduction** (softmax, layernorm) absorbs the
# elementwise ops *before* it (its input is built on the fly as it loads) but
# nothing after it. A group holds at most one matmul or reduction, and (by
# default) at most 8 ops. See `fuse`'s docstring for the whole rule.

# %%
print(fuse(chain(["layernorm", "matmul", "add", "gelu", "matmul", "add"], "n", 64)))


# %%
def group_chain(ops: list) -> list:
    """Exercise 7.2: how the ``fuse`` pass groups a *linear* chain of ops into kernels.

    ``ops`` in order, each reading the previous one's result: ``matmul``, ``softmax``,
    ``layernorm`` or elementwise (``add``, ``mul``, ``gelu``, ``relu``, ``tanh``).
    Return the groups in order, each a list of op names, e.g.
    ``group_chain(["matmul", "add", "gelu"]) == [["matmul", "add", "gelu"]]``.
    """
    groups: list = []
    for op in ops:
        if groups:
            last = groups[-1]
            anchors = [o for o in last if o in ("matmul", "softmax", "layernorm")]
            if len(last) < 8:
                if not anchors and op != "matmul":          # pure group: elementwise or a reduction joins
                    last.append(op)
                    continue
                if anchors == ["matmul"] and op not in ("matmul", "softmax", "layernorm"):
                    last.append(op)                           # the matmul's epilogue
                    continue
        groups.append([op])
    return groups


# %%
try:
    for ops in (["matmul", "add", "gelu"], ["add", "softmax", "mul"], ["gelu", "matmul", "add", "layernorm"]):
        want = [list(grp.ops) for grp in fuse(chain(ops, "n", 64)).groups]
        got = group_chain(ops)
        print(f"{ops}: you say {got}, fuse says {want}: {'ok' if got == want else 'WRONG'}")
except NotImplementedError as exc:
    print(f"[Exercise 7.2 not attempted] {exc}")

# %% [markdown]
# ## 3. An activation that fuses
#
# SiLU (`x * sigmoid(x)`, Llama's activation) is not an op of tinyml's graph
# IR. Write it with the ops that are (`g.scale`, `g.add`, `g.mul`, `g.tanh`,
# `g.exp`, `g.div` ...), so that it is *one* kernel once compiled: any
# elementwise ops fuse, so the kernel reads `x` once and writes `y` once. A
# constant can be a weight (`g.weight("one", (1,), init="ones")`), but there
# is a way without one: `sigmoid(x) = (1 + tanh(x / 2)) / 2`.

# %%
def silu(g, x):
    """Exercise 7.3: append SiLU, ``x * sigmoid(x)``, to graph ``g`` applied to value ``x``;
    return the result value. Use elementwise ops only, so that it compiles to one kernel."""
    h = g.scale(x, 0.5)                                   # x / 2
    return g.add(h, g.mul(h, g.tanh(h)))                  # x/2 + x/2 tanh(x/2) = x sigmoid(x)


# %%
try:
    gs = Graph("silu")
    xv = gs.input("x", ("n", 1024))
    gs.output(silu(gs, xv))
    xs = np.linspace(-6, 6, 8 * 1024, dtype=np.float32).reshape(8, 1024)
    (ys,) = interpret(gs, {"x": xs})
    print(f"max |silu - x sigmoid(x)| = {np.abs(ys - xs / (1 + np.exp(-xs))).max():.2e}")
    _, prof = compile(gs, explain=False).run(bindings={"n": M}, count=True)
    print(f"compiled: {len(prof.records)} kernel(s): {[r.name for r in prof.records]}")
except NotImplementedError as exc:
    print(f"[Exercise 7.3 not attempted] {exc}")

# %% [markdown]
# ## Check your answers
#
# The same check as `tinyml lab check 7`: it loads only your functions (not
# these cells; save the file first) and compares them with what tinyml computes.

# %%
from tinyml.labs import check_lab  # noqa: E402

print(check_lab(7, path=globals().get("__file__")).render())
