"""Run passes one after another and keep, after each, what it did: IR text, drawing, numbers.

::

    result = run_passes(zoo.get("gpt2_block", d_model=64, n_heads=4), ["rewrite_attention", "cse", "fuse"])
    print(result.table())               # one row per step: nodes, groups
    print(result.steps[-1].ir)          # the IR after the last pass
    result.steps[-1].draw("fused.svg")  # its Graphviz drawing

The first step is the input graph (``"input"``). Every graph is validated
after its pass, so a broken pass is caught at the pass that broke it.
``summary`` holds ``nodes`` (op nodes) and ``groups`` (fused groups, 0 before
``fuse``); ``summarize=f`` adds ``f(graph)``'s numbers (simulated HBM bytes,
time ... once lowering exists).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from .errors import GraphError
from .validate import validate


@dataclass
class Step:
    """The graph after one pass, with its text form, drawing and numbers."""

    name: str
    graph: object
    ir: str = ""
    dot: str = ""
    summary: dict = field(default_factory=dict)

    def draw(self, path):
        """Render this step's drawing to ``path`` via :func:`tinyml.viz.render`."""
        from ..viz import render

        return render(self.dot or self.graph.to_dot(), path)


@dataclass
class PipelineResult:
    graph: object                      # the final graph
    steps: list

    def table(self) -> str:
        keys = []
        for s in self.steps:
            keys += [k for k in s.summary if k not in keys]
        width = max(len(s.name) for s in self.steps)
        head = f"{'step':<{width}}  " + "  ".join(f"{k:>10}" for k in keys)
        rows = [f"{s.name:<{width}}  " + "  ".join(f"{s.summary.get(k, ''):>10}" for k in keys) for s in self.steps]
        return "\n".join([head, *rows])

    def to_dict(self) -> dict:
        return {"steps": [{"name": s.name, "summary": dict(s.summary)} for s in self.steps]}


def _pass_name(p) -> str:
    if isinstance(p, str):
        return p
    func = getattr(p, "func", p)                     # functools.partial
    return getattr(func, "__name__", type(p).__name__)


def _resolve(p) -> Callable:
    if callable(p):
        return p
    from .passes import PASSES

    if p not in PASSES:
        raise GraphError(f"unknown pass {p!r}; choose from {', '.join(PASSES)} or pass a function Graph -> Graph")
    return PASSES[p]


def summarize_graph(graph) -> dict:
    out = {"nodes": len(graph.nodes), "groups": len(graph.groups)}
    plan = getattr(graph, "memory_plan", None)          # set by plan_memory (arena, LOAD, arena / LOAD)
    if plan is not None:
        out.update(plan.summary())
    return out


class Pipeline:
    """A list of passes (names from :data:`tinyml.compiler.passes.PASSES` or functions Graph -> Graph)."""

    def __init__(self, passes: Sequence, *, explain: bool = True,
                 summarize: "Callable | None" = None):
        self.passes = [(_pass_name(p), _resolve(p)) for p in passes]
        self.explain = explain
        self.summarize = summarize

    def _step(self, name, graph) -> Step:
        summary = summarize_graph(graph)
        if self.summarize is not None:
            summary.update(self.summarize(graph))
        if not self.explain:
            return Step(name, graph, summary=summary)
        return Step(name, graph, str(graph), graph.to_dot(), summary)

    def run(self, graph) -> PipelineResult:
        validate(graph)
        steps = [self._step("input", graph)]
        for name, fn in self.passes:
            out = fn(graph)
            try:
                validate(out)
            except GraphError as e:
                raise GraphError(f"pass {name!r} produced an invalid graph: {e}") from None
            graph = out
            steps.append(self._step(name, graph))
        return PipelineResult(graph, steps)


def run_passes(graph, passes: Sequence, explain: bool = True,
               summarize: "Callable | None" = None) -> PipelineResult:
    """Run ``passes`` on ``graph``, keeping IR text, drawing and summary after each (see module doc)."""
    return Pipeline(passes, explain=explain, summarize=summarize).run(graph)
