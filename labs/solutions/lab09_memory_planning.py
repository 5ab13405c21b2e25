"""Lab 9: Memory planning

Where do a compiled model's intermediates live? Compute LOAD (the fewest
bytes any plan needs), write a planner of your own and compare it with
tinyml's greedy-by-size arena, then predict the peak HBM of a model that runs
with its plan.

The reference solution: the lab with every exercise answered. CI checks it with
`tinyml lab check 9 --file labs/solutions/lab09_memory_planning.py`.

Run it:       python labs/solutions/lab09_memory_planning.py    (or open it as a notebook in VS Code)
Check it:     tinyml lab check 9 --file labs/solutions/lab09_memory_planning.py
Walkthrough:  docs/memory-planning.md
"""

# %% [markdown]
# # Lab 9: Memory planning
#
# After fusion every kernel launch is a *program point*; every value a kernel
# writes to HBM is live from its writer to its last reader. `plan_memory`
# gives each such intermediate an offset in one arena so that two values live
# at the same point never share a byte. Exercises are the functions marked
# *Exercise 9.x*: replace each `raise NotImplementedError(...)`, re-run, and
# check with `tinyml lab check 9`.

# %%
import functools
import os

from tinyml.compiler import compile, fuse, plan_memory, zoo
from tinyml.compiler.memory import align_up, greedy_by_size, liveness  # noqa: F401  (align_up: for 9.2)
from tinyml.sim.units import fmt_bytes

SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"   # CI runs every lab this way: small sizes
SEQ = 128 if SMOKE else 1024
D, HEADS = (64, 4) if SMOKE else (768, 12)

# %% [markdown]
# ## 1. A block's intermediates
#
# The liveness of GPT-2's block after fusion: each intermediate with its size
# in bytes (a polynomial in `n`) and its interval of program points. The
# attention is left written out here (no `rewrite_attention`), so its scores
# and probabilities, the two `n^2` buffers, are intermediates too.

# %%
block = fuse(zoo.get("gpt2_block", d_model=D, n_heads=HEADS))
live = liveness(block)
for p in live.points:
    print(f"  {p.index:>2}  {p.label}")
for v in live.values:
    print(f"  %{v.name:<4} {str(v.size):>12} B  live [{v.start}, {v.end}]")
sizes = [v.size.evaluate({"n": SEQ}) for v in live.values]
intervals = [v.interval for v in live.values]


# %% [markdown]
# ## 2. LOAD: the bytes no plan can do without
#
# At every program point the intermediates live there must all be in HBM at
# once, side by side. The largest such total is LOAD, a lower bound on the
# arena of *any* plan.

# %%
def load_bytes(sizes, intervals) -> int:
    """Exercise 9.1: LOAD, the largest total size of the buffers live at one program point.

    ``sizes[i]`` is buffer i's bytes and ``intervals[i] = (start, end)`` the closed interval of
    program points where it is live. Return 0 when there are no buffers."""
    points = sorted({p for s, e in intervals for p in (s, e)})
    return max((sum(size for size, (s, e) in zip(sizes, intervals) if s <= p <= e) for p in points), default=0)


# %%
try:
    print(f"n = {SEQ}: LOAD = {fmt_bytes(load_bytes(sizes, intervals))}, "
          f"every intermediate its own allocation = {fmt_bytes(sum(sizes))}")
except NotImplementedError as exc:
    print(f"[Exercise 9.1 not attempted] {exc}")


# %% [markdown]
# ## 3. A planner of your own
#
# A plan is one offset per buffer. It is *valid* if every offset is a
# non-negative multiple of `alignment` and two buffers whose intervals
# overlap have disjoint byte ranges `[offset, offset + size)`. Its arena is
# `max(offset + size)`, and `arena / LOAD` (>= 1) is its score. Any valid plan
# passes; try to get close to 1. Ideas: place buffers in order of their start
# point, each at the lowest offset that fits (first fit); or largest first
# (what tinyml's `greedy_by_size` does); or something cleverer.

# %%
def plan_offsets(sizes, intervals, alignment: int = 256) -> list:
    """Exercise 9.2: a valid offset (bytes) for every buffer, as a list of ints in the order of ``sizes``.

    Buffers whose closed ``intervals`` overlap must not share a byte; every offset must be a
    multiple of ``alignment``. Smaller arenas are better."""
    order = sorted(range(len(sizes)), key=lambda i: (intervals[i][0], -sizes[i]))     # first fit, by start
    offsets = [0] * len(sizes)
    placed = []
    for i in order:
        busy = sorted((offsets[j], sizes[j]) for j in placed
                      if intervals[i][0] <= intervals[j][1] and intervals[j][0] <= intervals[i][1])
        off = 0
        for o, s in busy:
            if off + sizes[i] <= o:
                break
            off = max(off, align_up(o + s, alignment))
        offsets[i] = off
        placed.append(i)
    return offsets


# %%
try:
    mine = plan_offsets(sizes, intervals)
    theirs, arena = greedy_by_size(sizes, intervals)
    ours = max((o + s for o, s in zip(mine, sizes)), default=0)
    lo = max(1, load_bytes(sizes, intervals))
    print(f"your arena {fmt_bytes(ours)} (arena/LOAD {ours / lo:.3f}); greedy by size {fmt_bytes(arena)} "
          f"({arena / lo:.3f})")
except NotImplementedError as exc:
    print(f"[Exercise 9.2 not attempted] {exc}")

# %% [markdown]
# ## 4. The plan, used
#
# With a memory plan, a compiled graph allocates **one** arena and every
# intermediate is a slice of it. So its peak HBM is known before it runs:
# the inputs, the weights, the arena and the outputs (outputs are the
# caller's, not the arena's). Predict it, then run and compare. This compile
# runs `rewrite_attention` before `fuse`: FlashAttention keeps the `n^2`
# scores on chip, so the arena is far below section 2's LOAD, which had them.

# %%
def predicted_peak(compiled, n: int) -> int:
    """Exercise 9.3: the peak HBM bytes (as the simulator counts them, in ``compiled.dtype``) of
    ``compiled.run(bindings={"n": n}, count=True)`` for a graph compiled with ``plan_memory``.

    ``compiled.graph.memory_plan.arena_at({"n": n})`` is the arena; ``external_bytes({"n": n})``
    gives the inputs, weights and outputs by role. The graphs here are fp16."""
    plan = compiled.graph.memory_plan
    ext = plan.external_bytes({"n": n})
    return ext["input"] + ext["weight"] + ext["output"] + plan.arena_at({"n": n})


# %%
planned = compile(zoo.get("gpt2_block", d_model=D, n_heads=HEADS), explain=False,
                  passes=["rewrite_attention", "fuse", functools.partial(plan_memory, bounds={"n": SEQ})])
print(planned.graph.memory_plan.explain().split("\n\n")[0])
try:
    _, prof = planned.run(bindings={"n": SEQ}, count=True)
    print(f"predicted peak {fmt_bytes(predicted_peak(planned, SEQ))}, simulated {fmt_bytes(prof.peak_hbm_bytes)}")
except NotImplementedError as exc:
    print(f"[Exercise 9.3 not attempted] {exc}")

# %% [markdown]
# ## Check your answers
#
# The same check as `tinyml lab check 9`: it loads only your functions (not
# these cells; save the file first) and compares them with what tinyml computes.

# %%
from tinyml.labs import check_lab  # noqa: E402

print(check_lab(9, path=globals().get("__file__")).render())
