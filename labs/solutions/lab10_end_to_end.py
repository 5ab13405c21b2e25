"""Lab 10: End to end

A tiny GPT through the whole compiler: shapes, fusion, the attention rewrite,
int4 weights, the memory plan, lowering. Read what every stage buys, predict
the bytes of a quantized layer, then write the greedy decoding loop that runs
the compiled model token by token, and check it against the interpreter.

The reference solution: the lab with every exercise answered. CI checks it with
`tinyml lab check 10 --file labs/solutions/lab10_end_to_end.py`.

Run it:       python labs/solutions/lab10_end_to_end.py    (or open it as a notebook in VS Code)
Check it:     tinyml lab check 10 --file labs/solutions/lab10_end_to_end.py
Walkthrough:  docs/quantize-model.md
"""

# %% [markdown]
# # Lab 10: End to end
#
# `compile(graph, passes="all")` runs every pass tinyml has, in order, and
# counts the lowered program after each one. Exercises are the functions
# marked *Exercise 10.x*: replace each `raise NotImplementedError(...)`,
# re-run, and check with `tinyml lab check 10`.

# %%
import os

import numpy as np

from tinyml.compiler import compile, interpret, zoo
from tinyml.sim.units import fmt_bytes, fmt_time

SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"   # CI runs every lab this way: small sizes
LAYERS = 2 if SMOKE else 12
SEQ = 128 if SMOKE else 1024

# %% [markdown]
# ## 1. The whole pipeline
#
# GPT-2 small's shapes (12 blocks, d = 768, 50,257 tokens) with shape-only
# weights: nothing runs, every stage is counted on the simulated A100.

# %%
gpt = zoo.get("tiny_gpt", layers=LAYERS, weights="meta")
for n in (SEQ, 1):
    c = compile(gpt, passes="all", bindings={"n": n}, bounds={"n": SEQ})
    print(f"n = {n}")
    print(c.table())

# %% [markdown]
# Fusion and the attention rewrite cut the prompt's (n = SEQ) traffic; int4
# weights cut a decoding step's (n = 1), which reads every weight once. The
# memory plan moves no byte: it decides where the intermediates live.
#
# ## 2. The bytes of a quantized layer
#
# Every format cuts each row of `W (N, K)` into groups of `g` weights along K
# and stores, per group, a 2-byte fp16 scale and `g` codes of `b` bits; the
# last group of a row is padded with zeros to `g` weights. `int8` is one group
# per row (g = K); `q8_0` and `q4_0` (llama.cpp) are g = 32 with 8 and 4 bits;
# `int4-g<g>` is 4 bits in groups of g.

# %%
def quantized_bytes(n: int, k: int, fmt: str) -> int:
    """Exercise 10.1: the bytes of a ``(n, k)`` weight in format ``fmt`` (codes and scales), one of
    ``"int8"``, ``"q8_0"``, ``"q4_0"``, ``"int4-g<g>"`` (e.g. ``"int4-g32"``)."""
    if fmt == "int8":
        group, bits = k, 8
    elif fmt in ("q8_0", "q4_0"):
        group, bits = 32, 8 if fmt == "q8_0" else 4
    else:
        group, bits = int(fmt.removeprefix("int4-g")), 4
    groups = -(-k // group)                                            # ceil: the last group is padded
    return n * groups * (2 + group * bits // 8)


# %%
from tinyml.compiler import quantize_weights  # noqa: E402

gq = quantize_weights(gpt, "int4-g32")
try:
    for r in gq.quant_report[:4] + gq.quant_report[-1:]:
        n_out, k_in = r["shape"]
        yours = quantized_bytes(n_out, k_in, "int4-g32")
        print(f"  {r['layer']:<20} {n_out:>6} x {k_in:<5} fp16 {fmt_bytes(r['fp16_bytes']):>9}  "
              f"int4-g32 {fmt_bytes(r['quant_bytes']):>9}  yours {fmt_bytes(yours):>9}")
except NotImplementedError as exc:
    print(f"[Exercise 10.1 not attempted] {exc}")

# %% [markdown]
# ## 3. Generating text, token by token
#
# A compiled language model maps token ids `(n,)` to logits `(n, vocab)`.
# Greedy decoding appends the most likely next token (the argmax of the last
# row) and runs again on the longer sequence. Here the model is small and has
# real (seeded random) weights, so it executes; its memory plan was made for
# sequences up to 32 tokens.

# %%
small = zoo.get("tiny_gpt", layers=2, vocab=257, d_model=64, n_heads=4, n_ctx=64)
model = compile(small, passes="all", bounds={"n": 32}, scheme="q4_0", explain=False)


def greedy_generate(compiled, prompt, steps: int) -> list:
    """Exercise 10.2: the prompt's token ids followed by ``steps`` greedy tokens, as a list of ints.

    ``compiled.run({"ids": ids})`` runs the model on ``ids`` (an int32 array ``(n,)``) and returns
    ``([logits], profile)`` with logits ``(n, vocab)``; the next token is the argmax of the last row."""
    tokens = [int(t) for t in prompt]
    for _ in range(steps):
        (logits,), _ = compiled.run({"ids": np.asarray(tokens, dtype=np.int32)})
        tokens.append(int(np.argmax(logits[-1])))
    return tokens


# %%
prompt = [5, 17, 42]
try:
    mine = greedy_generate(model, prompt, 5)
    ref = list(prompt)
    for _ in range(5):                                        # the same loop on the reference interpreter
        (logits,) = interpret(model.graph, {"ids": np.asarray(ref, np.int32)})
        ref.append(int(np.argmax(logits[-1])))
    print(f"compiled: {mine}\ninterpreter: {ref}\nsame tokens: {mine == ref}")
    _, prof = model.run({"ids": np.asarray(mine, np.int32)})
    print(f"last run: {len(prof.records)} kernels, {fmt_bytes(prof.hbm_bytes)}, {fmt_time(prof.time_s)}, "
          f"peak HBM {fmt_bytes(prof.peak_hbm_bytes)}")
except NotImplementedError as exc:
    print(f"[Exercise 10.2 not attempted] {exc}")

# %% [markdown]
# Re-running the whole sequence for every token costs `n` times what it
# needs: a real server keeps the keys and values of past tokens in a KV cache
# and runs one token per step (Lab 5). The compiler's path, plan and kernels
# are the same.
#
# ## Check your answers
#
# The same check as `tinyml lab check 10`: it loads only your functions (not
# these cells; save the file first) and compares them with what tinyml computes.

# %%
from tinyml.labs import check_lab  # noqa: E402

print(check_lab(10, path=globals().get("__file__")).render())
