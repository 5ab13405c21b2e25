"""``plan_memory``: give every intermediate a place in one arena, for every ``n`` up to a bound.

The pass (Graph -> Graph) attaches a :class:`~tinyml.compiler.memory.MemoryPlan`
as ``graph.memory_plan``; the graph itself is unchanged. Steps:

1. **liveness** (:mod:`tinyml.compiler.memory.liveness`): one program point per
   fused group (or per node, unfused); each value written to HBM is live from
   its writer to its last reader; ``reshape`` views alias their input; inputs,
   weights and outputs live throughout and are kept out of the arena;
2. **sizes** are polynomials in the graph's symbols (``1536*n``); every symbol
   needs an upper bound (``bounds={"n": 4096}``);
3. **offsets**, one of two ways:

   * ``symbolic=False`` (default): greedy by size on the sizes *at the bound*
     (:mod:`tinyml.compiler.memory.greedy`). Valid for every smaller ``n`` too,
     because a buffer at ``n <= bound`` is no larger than at the bound: the pass
     checks it (sizes with no negative coefficient grow with every symbol; any
     other size is compared exactly with its value at the bound, by
     :meth:`Poly.le_for_all`);
   * ``symbolic=True``: greedy by size with polynomial offsets, where a buffer
     takes bytes another buffer freed only if it is *proved* to fit there for
     every ``n`` in ``1..bound`` (``size(b) <= size(a)`` when it sits where ``a``
     was, below the buffer on top of ``a``; :mod:`tinyml.compiler.memory.symbolic_greedy`),
     as TVM's storage planner does; :func:`~tinyml.compiler.memory.arena_offsets` gives
     concrete offsets at any ``n``.

4. **score**: LOAD (the most bytes live at one point) beside the arena.

::

    g = plan_memory(fuse(zoo.get("gpt2_block")), bounds={"n": 1024})
    print(g.memory_plan.explain())
"""

from __future__ import annotations

import itertools

from ..sizes import Poly
from ..symbolic import Affine
from ..memory.greedy import DEFAULT_ALIGNMENT, check_alignment, greedy_by_size, reuse_count
from ..memory.errors import MemoryPlanError, MissingBoundError
from ..memory.liveness import liveness
from ..memory.plan import Buffer, MemoryPlan
from ..memory.symbolic_greedy import arena_at, arena_bound, concrete_offsets, plan_offsets


def _bounds(graph, live, bounds) -> dict:
    """Every symbol the sizes use, with its bound; a missing one raises, naming the values that use it."""
    everything = list(live.externals) + list(live.values)
    used = sorted({s for v in everything for s in v.size.symbols})
    if isinstance(bounds, int) and not isinstance(bounds, bool):
        bounds = {s: bounds for s in used}
    bounds = dict(bounds or {})
    for s in used:
        if s not in bounds:
            users = [f"%{v.name} ({v.size} B)" for v in everything if s in v.size.symbols]
            more = f" and {len(users) - 4} more" if len(users) > 4 else ""
            raise MissingBoundError(
                f"plan_memory({graph.name!r}): symbol {s!r} has no upper bound, and the sizes of "
                f"{', '.join(users[:4])}{more} depend on it; pass bounds={{{s!r}: <the largest {s} "
                "the program will run at>}, e.g. bounds={'n': 1024} (in a pipeline: "
                "functools.partial(plan_memory, bounds={'n': 1024}))")
    out = {}
    for s, b in bounds.items():
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise MemoryPlanError(f"plan_memory: the bound of {s!r} must be an integer >= 1, got {b!r}")
        if s in used:
            out[s] = b
    _check_dims(graph, everything, out)
    return out


def _check_dims(graph, values, bounds) -> None:
    """Every dimension must be >= 1 for every symbol value in ``1..bound``; an affine dimension is
    smallest at a corner of that box, so the corners decide."""
    names = sorted(bounds)
    corners = list(itertools.product(*[(1, bounds[s]) for s in names]))
    for v in values:
        for d in v.shape:
            if not isinstance(d, Affine):
                continue
            for c in corners:
                at = dict(zip(names, c))
                if d.evaluate(at) < 1:
                    where = ", ".join(f"{k}={x}" for k, x in at.items())
                    raise MemoryPlanError(
                        f"plan_memory({graph.name!r}): dimension {d} of %{v.name} is {d.evaluate(at)} at {where}; "
                        "every dimension must be >= 1 for every value up to the bound: lower the bound")


def _check_monotone(graph, live, bounds) -> None:
    """A plan made at the bound is valid below it only if no size is larger below the bound."""
    for v in live.values:
        if all(k >= 0 for m, k in v.size.coeffs if m):
            continue                                           # grows with every symbol
        top = Poly.of(v.size.evaluate(bounds))
        where = v.size.counterexample(top, bounds)
        if where is not None:
            at = ", ".join(f"{k}={x}" for k, x in where.items())
            raise MemoryPlanError(
                f"plan_memory({graph.name!r}): %{v.name} has {v.size} bytes, more at {at} "
                f"({v.size.evaluate(where)} B) than at the bound ({top.evaluate({})} B), so a plan made "
                "at the bound would not hold it; plan with symbolic=True")


def _best_symbolic(sizes, intervals, bounds, alignment, names):
    """Greedy on symbolic sizes, ranking the buffers by size at the bound and at n = 1 (sizes that
    compare only for large n, 768*n vs 12*n^2, rank differently there); the smaller arena at the
    bound wins (ties: the bound's ranking)."""
    best = None
    for rank_at in (bounds, {s: 1 for s in bounds}):
        exprs, refusals = plan_offsets(sizes, intervals, bounds, alignment, names, rank_at=rank_at)
        arena = arena_at(exprs, sizes, bounds, alignment)
        if best is None or arena < best[0]:
            best = (arena, exprs, refusals)
    return best[1], best[2]


def build_plan(graph, bounds=None, *, symbolic: bool = False, alignment: int = DEFAULT_ALIGNMENT,
               fused: "bool | None" = None) -> MemoryPlan:
    """The :class:`MemoryPlan` of ``graph`` (what :func:`plan_memory` attaches; arguments there)."""
    check_alignment(alignment)
    live = liveness(graph, fused)
    b = _bounds(graph, live, bounds)
    vals = live.values
    names = [v.name for v in vals]
    sizes_at = [v.size.evaluate(b) for v in vals]
    intervals = [v.interval for v in vals]
    common = dict(graph_name=graph.name, fused=live.fused,
                  alignment=alignment, bounds=b, points=live.points, externals=live.externals,
                  aliases=dict(live.aliases), load_bytes=live.load(b))
    if not symbolic:
        _check_monotone(graph, live, b)
        offsets, arena = greedy_by_size(sizes_at, intervals, alignment, names)
        buffers = tuple(Buffer(v.name, v.size, s, v.start, v.end, o, v.dtype, v.shape, v.aliases)
                        for v, s, o in zip(vals, sizes_at, offsets))
        return MemoryPlan(mode="concrete", buffers=buffers, arena_bytes=arena,
                          reuses=reuse_count(offsets, sizes_at), **common)
    exprs, refusals = _best_symbolic([v.size for v in vals], intervals, b, alignment, names)
    offs = concrete_offsets(exprs, b, alignment)
    buffers = tuple(Buffer(v.name, v.size, s, v.start, v.end, o, v.dtype, v.shape, v.aliases, e)
                    for v, s, o, e in zip(vals, sizes_at, offs, exprs))
    arena = max((o + s for o, s in zip(offs, sizes_at)), default=0)
    return MemoryPlan(mode="symbolic", buffers=buffers, arena_bytes=arena, reuses=reuse_count(offs, sizes_at),
                      refusals=tuple(refusals), arena_expr=arena_bound(exprs, [v.size for v in vals], b, alignment),
                      **common)


def plan_memory(graph, bounds=None, *, symbolic: bool = False, alignment: int = DEFAULT_ALIGNMENT,
                fused: "bool | None" = None):
    """A copy of ``graph`` with ``memory_plan`` attached (see the module docstring).

    * ``bounds``: ``{symbol: largest value}`` (or one int for every symbol); needed for each
      symbol the sizes use;
    * ``symbolic``: plan with polynomial offsets and proved reuse instead of at the bound;
    * ``alignment``: every offset is a multiple of it (bytes, default 256);
    * ``fused``: program points per fused group (default when the graph is fused) or per node.

    In a pipeline with symbols, bind the bounds first:
    ``run_passes(g, ["fuse", functools.partial(plan_memory, bounds={"n": 1024})])``.
    """
    plan = build_plan(graph, bounds, symbolic=symbolic, alignment=alignment, fused=fused)
    out = graph.replace()
    out.memory_plan = plan
    return out
