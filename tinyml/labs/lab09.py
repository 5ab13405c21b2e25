"""Checks for Lab 9, memory planning (``labs/lab09_memory_planning.py``).

``load_bytes`` is compared with tinyml's liveness LOAD on the intervals of real
graphs (the zoo, fused and op by op) and on seeded random intervals.
``plan_offsets`` must return a *valid* plan (one aligned, non-negative integer
offset per buffer; buffers live at a common point never share a byte) on the
same cases; the check reports its arena / LOAD beside tinyml's greedy-by-size
planner's. ``predicted_peak`` is compared with the peak HBM of the simulated
run of zoo graphs compiled with ``plan_memory``.
"""

from __future__ import annotations

import functools

import numpy as np

from .checks import Exercise, Wrong, as_int, call


# ---- cases -------------------------------------------------------------------------------------

def cases() -> list:
    """(name, sizes, intervals): real graphs' liveness at a concrete n, and random interval sets."""
    from ..compiler import fuse, rewrite_attention, zoo
    from ..compiler.memory import liveness

    out = [("no buffers", [], []), ("one buffer", [1000], [(0, 0)]),
           ("disjoint", [300, 500, 700], [(0, 1), (2, 3), (4, 5)]),
           ("nested", [100, 4096, 300, 50], [(0, 9), (1, 2), (3, 8), (4, 4)])]
    graphs = [("gpt2_block", zoo.get("gpt2_block", d_model=64, n_heads=4)),
              ("tiny_gpt", zoo.get("tiny_gpt", layers=2, vocab=97, d_model=64, n_heads=4, n_ctx=64)),
              ("mlp", zoo.get("mlp", d_model=64, d_hidden=256))]
    for name, g in graphs:
        for label, gg in ((f"{name}, op by op", g), (f"{name}, fused", fuse(rewrite_attention(g)))):
            live = liveness(gg)
            out.append((label, [v.size.evaluate({"n": 37}) for v in live.values], [v.interval for v in live.values]))
    rng = np.random.default_rng(9)
    for k in range(12):
        m = int(rng.integers(2, 30))
        starts = rng.integers(0, 20, size=m)
        ends = starts + rng.integers(0, 8, size=m)
        sizes = [int(x) for x in rng.integers(1, 5000, size=m)]
        out.append((f"random {k}", sizes, [(int(s), int(e)) for s, e in zip(starts, ends)]))
    return out


def reference_load(sizes, intervals) -> int:
    points = {p for s, e in intervals for p in range(s, e + 1)}
    return max((sum(z for z, (s, e) in zip(sizes, intervals) if s <= p <= e) for p in points), default=0)


# ---- 9.1 load_bytes ----------------------------------------------------------------------------

def check_load_bytes(fn) -> str:
    for name, sizes, intervals in cases():
        got = as_int(call(fn, list(sizes), list(intervals)), f"load_bytes(<{name}>)")
        want = reference_load(sizes, intervals)
        if got != want:
            raise Wrong(f"load_bytes(<{name}: sizes {sizes[:6]}{'...' if len(sizes) > 6 else ''}, intervals "
                        f"{intervals[:6]}{'...' if len(intervals) > 6 else ''}>) = {got:,}, expected {want:,}. "
                        f"Hint: intervals are closed (a buffer is live at its start and its end point), and "
                        f"LOAD is the largest sum over one point, not the sum of all sizes.")
    return f"LOAD right on {len(cases())} interval sets (zoo graphs fused and op by op, random ones)"


# ---- 9.2 plan_offsets --------------------------------------------------------------------------

def _validate(name, offsets, sizes, intervals, alignment) -> int:
    if not isinstance(offsets, (list, tuple)) or len(offsets) != len(sizes):
        raise Wrong(f"plan_offsets(<{name}>) returned {offsets!r}; return a list of {len(sizes)} offsets, one per "
                    f"buffer, in the order of sizes")
    offs = [as_int(o, f"plan_offsets(<{name}>)[{i}]") for i, o in enumerate(offsets)]
    for i, o in enumerate(offs):
        if o < 0 or o % alignment:
            raise Wrong(f"plan_offsets(<{name}>): buffer {i} is at offset {o}, which is "
                        f"{'negative' if o < 0 else f'no multiple of the alignment {alignment}'}. "
                        f"Hint: round up with align_up(x, alignment).")
    for i in range(len(sizes)):
        for j in range(i):
            live_together = intervals[i][0] <= intervals[j][1] and intervals[j][0] <= intervals[i][1]
            share = offs[i] < offs[j] + sizes[j] and offs[j] < offs[i] + sizes[i]
            if live_together and share:
                raise Wrong(f"plan_offsets(<{name}>): buffers {j} ({sizes[j]} B at {offs[j]}, live {intervals[j]}) "
                            f"and {i} ({sizes[i]} B at {offs[i]}, live {intervals[i]}) are live at the same point "
                            f"and share bytes {max(offs[i], offs[j])}..{min(offs[i] + sizes[i], offs[j] + sizes[j])}"
                            f". Hint: only buffers whose intervals are disjoint may reuse each other's bytes.")
    return max((o + s for o, s in zip(offs, sizes)), default=0)


def check_plan_offsets(fn) -> str:
    from ..compiler.memory import greedy_by_size

    mine, theirs = [], []
    for alignment in (256, 64):
        for name, sizes, intervals in cases():
            arena = _validate(name, call(fn, list(sizes), list(intervals), alignment), sizes, intervals, alignment)
            load = reference_load(sizes, intervals)
            if load:
                mine.append(arena / load)
                theirs.append(greedy_by_size(sizes, intervals, alignment)[1] / load)
    return (f"valid on {len(mine)} plans; arena/LOAD: yours mean {np.mean(mine):.3f}, worst {max(mine):.3f}; "
            f"tinyml's greedy by size mean {np.mean(theirs):.3f}, worst {max(theirs):.3f}")


# ---- 9.3 predicted_peak --------------------------------------------------------------------------

def check_predicted_peak(fn) -> str:
    from ..compiler import compile, plan_memory, zoo

    models = [zoo.get("mlp", d_model=32, d_hidden=64), zoo.get("gpt2_block", d_model=32, n_heads=4),
              zoo.get("gpt2_block", d_model=64, n_heads=2)]
    checked = 0
    for g in models:
        for bound in (16, 64):
            c = compile(g, explain=False, passes=["rewrite_attention", "fuse",
                                                  functools.partial(plan_memory, bounds={"n": bound})])
            for n in sorted({1, bound // 3, bound}):
                got = as_int(call(fn, c, n), f"predicted_peak(<{g.name}, bound {bound}>, {n})")
                _, prof = c.run(bindings={"n": n}, count=True)
                want = int(prof.peak_hbm_bytes)
                if got != want:
                    ext = c.graph.memory_plan.external_bytes({"n": n})
                    raise Wrong(f"predicted_peak(<{g.name} planned for n <= {bound}>, {n}) = {got:,}, but the "
                                f"simulated run peaks at {want:,} bytes. Hint: inputs {ext['input']:,} + weights "
                                f"{ext['weight']:,} + outputs {ext['output']:,} + the arena at n = {n}; the "
                                f"arena is arena_at({{'n': {n}}}), not the plan's arena at the bound.")
                checked += 1
    return f"predicts the simulated peak HBM of {checked} planned runs exactly"


EXERCISES = (
    Exercise("9.1", "load_bytes", "LOAD: the most bytes live at one program point", check_load_bytes),
    Exercise("9.2", "plan_offsets", "a memory planner of your own: valid, scored by arena/LOAD", check_plan_offsets),
    Exercise("9.3", "predicted_peak", "the peak HBM of a planned run: inputs + weights + arena + outputs",
             check_predicted_peak),
)
