"""``compile(graph)``: passes, then lowering; a :class:`Compiled` graph runs on the simulator.

::

    from tinyml.compiler import compile, zoo
    c = compile(zoo.get("gpt2_block"), device="a100-40gb", bindings={"n": 1024})
    print(c.table())                      # after every pass: nodes, groups, kernels, HBM bytes, time
    print(c.steps[-1])                    # the final IR and its numbers (a notebook draws it as SVG)
    outputs, prof = c.run({"x": x})       # executing mode: equals interpret(graph, {"x": x})
    _, prof = c.run(bindings={"n": 65536}, count=True)   # counting mode: a Profile only

The numbers after each pass come from lowering that step's graph (op by op
before ``fuse``: every node its own kernel, as eager PyTorch runs it; one
kernel per fused group after) and counting it at ``bindings`` on ``device``:
kernels, HBM bytes, time, peak HBM and, where the step's graph has a memory
plan, its arena.

``passes="all"`` is the whole pipeline (:data:`ALL_PASSES`): shapes -> cse,
dead code -> fusion -> attention rewrite -> weight quantization -> memory plan,
then the ``lower`` step (the program that runs: its arena is the plan's, its
peak HBM = inputs + weights + arena + outputs). Passes that change the nodes
drop the groups, so in that pipeline ``rewrite_attention`` and
``quantize_weights`` fuse again before their numbers are taken.

``Compiled.generate(ids, steps)`` runs a language model greedily: the whole
graph on the growing sequence, one new token per run (the point is the
systems path, not speed: no KV cache).
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..sim import HbmOutOfMemoryError, load_device
from ..sim.units import fmt_bytes
from ..sim.args import integer
from .errors import BindingError, GraphError
from .values import given_bindings, input_array
from .lowering import Plan, lower
from .pipeline import run_passes

#: what compile runs when no passes are given
DEFAULT_PASSES = ("cse", "dead_code", "rewrite_attention", "fuse")

#: ``passes="all"``: the whole pipeline, in this order (then the ``lower`` step)
ALL_PASSES = ("infer_shapes", "cse", "dead_code", "fuse", "rewrite_attention", "quantize_weights", "plan_memory")


def _then_fuse(fn, name: str):
    """``fn`` followed by ``fuse`` (a pass that changes nodes drops the groups), named ``name``."""
    from .passes import fuse

    def step(graph):
        mid = fn(graph)
        out = fuse(mid)
        if hasattr(mid, "quant_report"):                           # what the explain step shows
            out.quant_report = mid.quant_report
        return out

    step.__name__ = name
    return step


#: the weight format of the quantize_weights pass when compile() is not told one
DEFAULT_SCHEME = "int4-g32"


def _bind_quantize(passes: list, scheme, skip) -> list:
    """``passes`` with a ``"quantize_weights"`` name bound to ``scheme`` and ``skip``; refuses a ``scheme``
    or ``skip`` that no pass would use (they were silently ignored)."""
    from ..kernels.quant import get_scheme
    from .passes import quantize_weights

    get_scheme(scheme)                   # a misspelt format is refused even where nothing quantizes
    names = [p if isinstance(p, str) else getattr(p, "__name__", "") for p in passes]
    given = {k: v for k, v in (("scheme", scheme), ("skip", skip)) if v and v != DEFAULT_SCHEME}
    if "quantize_weights" not in names and given:
        given = ", ".join(f"{k}={v!r}" for k, v in given.items())
        raise GraphError(f"compile: {given} configures the quantize_weights pass, which the passes {names} "
                         f"do not include: it would be ignored. Add 'quantize_weights' to the passes (or use "
                         f"passes='all'), or leave {given} out")
    fn = functools.partial(quantize_weights, scheme=scheme, **({"skip": skip} if skip else {}))
    fn.__name__ = "quantize_weights"                                    # type: ignore[attr-defined]
    return [fn if p == "quantize_weights" else p for p in passes]


def all_passes(bounds: "dict | None" = None, scheme=DEFAULT_SCHEME, skip=()) -> list:
    """The passes of ``passes="all"`` as functions: quantization with ``scheme``/``skip``, the memory
    plan made for ``bounds`` (every symbol's largest value)."""
    from .passes import PASSES, plan_memory, quantize_weights, rewrite_attention

    out = []
    for name in ALL_PASSES:
        if name == "rewrite_attention":
            out.append(_then_fuse(rewrite_attention, name))
        elif name == "quantize_weights":
            out.append(_then_fuse(functools.partial(quantize_weights, scheme=scheme, skip=skip), name))
        elif name == "plan_memory":
            fn = functools.partial(plan_memory, bounds=dict(bounds or {}))
            fn.__name__ = name                                          # type: ignore[attr-defined]
            out.append(fn)
        else:
            out.append(PASSES[name])
    return out


def memory_numbers(graph, bindings: dict) -> dict:
    """``arena_bytes``, ``load_bytes``, ``naive_bytes`` (every intermediate its own allocation, no reuse)
    and ``intermediates`` at ``bindings``: from the graph's memory plan, or a plan made at ``bindings``."""
    from .memory.plan import MemoryPlan
    from .passes.plan_memory import build_plan

    plan: "MemoryPlan | None" = getattr(graph, "memory_plan", None)
    if plan is None:
        plan = build_plan(graph, {k: v for k, v in bindings.items() if k in graph.symbols})
    at = {k: v for k, v in bindings.items() if k in plan.bounds}
    return {"arena_bytes": int(plan.arena_at(at)), "load_bytes": int(plan.load_at(at)),
            "naive_bytes": int(sum(b.size.evaluate(at) for b in plan.buffers)),
            "intermediates": len(plan.buffers)}


def measure(graph, bindings: dict, device: str, dtype: str = "fp16", schedules=None) -> dict:
    """Lower ``graph`` (by its groups, or op by op) and count it: kernels, HBM bytes, seconds.
    ``schedules`` (a ScheduleTable or an object with ``lookup``) lowers the nodes it names with
    their generated kernels, as the compiled plan will.

    A graph whose tensors do not fit the device's HBM (the op-by-op attention's
    ``(H, n, n)`` scores at long ``n``) gets None for all three and the reason in ``error``.
    """
    try:
        _, prof = lower(graph, schedules=schedules).run(bindings=bindings, device=device, dtype=dtype, count=True)
    except HbmOutOfMemoryError as exc:
        return {"kernels": None, "hbm_bytes": None, "time_s": None, "error": str(exc).splitlines()[0]}
    out = {"kernels": len(prof.records), "hbm_bytes": int(prof.hbm_bytes), "time_s": float(prof.time_s),
           "peak_hbm_bytes": int(prof.peak_hbm_bytes)}
    if getattr(graph, "memory_plan", None) is not None:
        out.update(memory_numbers(graph, bindings))
    return out


@dataclass
class CompiledStep:
    """The graph after one pass: IR text, Graphviz DOT, and its numbers (``summary``)."""

    name: str
    graph: object
    ir: str
    dot: str
    summary: dict = field(default_factory=dict)

    def headline(self) -> str:
        s = self.summary
        parts = [f"{s.get('nodes', len(self.graph.nodes))} nodes"]
        if s.get("groups"):
            parts.append(f"{s['groups']} groups")
        if s.get("error"):
            parts.append(s["error"])
        elif "kernels" in s:
            parts += [f"{s['kernels']} kernels", f"{fmt_bytes(s['hbm_bytes'])} HBM",
                      f"{s['time_s'] * 1e6:,.1f} us"]
            if "arena_bytes" in s:
                parts.append(f"arena {fmt_bytes(s['arena_bytes'])} (LOAD {fmt_bytes(s['load_bytes'])})")
        return f"after {self.name}: " + ", ".join(parts)

    def details(self) -> str:
        """What the pass explains beyond the numbers: the bytes saved per quantized layer, the memory plan."""
        report = getattr(self.graph, "quant_report", None)
        if self.name == "quantize_weights" and report is not None:
            from .passes.quantize_weights import quant_table

            return "bytes per quantized layer:\n" + quant_table(report)
        plan = getattr(self.graph, "memory_plan", None)
        if self.name == "plan_memory" and plan is not None:
            return plan.explain()
        return ""

    def __str__(self) -> str:
        more = self.details()
        return self.headline() + "\n" + (more + "\n\n" if more else "") + (self.ir or str(self.graph))

    def svg(self) -> "str | None":
        """The drawing as SVG text, or None where no Graphviz renderer is installed (see tinyml.viz)."""
        from ..viz import to_svg

        return to_svg(self.dot or self.graph.to_dot())

    def _repr_svg_(self):
        return self.svg()

    def _repr_html_(self) -> str:
        svg = self.svg()
        body = svg if svg is not None else f"<pre>{html.escape(self.ir or str(self.graph))}</pre>"
        return f"<p><b>{html.escape(self.headline())}</b></p>{body}"

    def draw(self, path):
        """Render the drawing to ``path`` (writes ``.dot`` where no renderer is installed, see tinyml.viz)."""
        from ..viz import render

        return render(self.dot or self.graph.to_dot(), path)

    def to_dict(self) -> dict:
        return {"pass": self.name, **self.summary}


class Compiled:
    """A compiled graph: the passes' steps, the lowered :class:`Plan`, and ``run``."""

    def __init__(self, source, graph, plan: Plan, steps: list, device: str, dtype: str, bindings: dict):
        self.source = source
        self.graph = graph
        self.plan = plan
        self.steps = steps
        self.device = device
        self.dtype = dtype
        self.bindings = bindings

    def run(self, inputs=None, bindings=None, *, count: bool = False):
        """``(outputs, Profile)``: executing on NumPy inputs, or counting (``count=True`` or
        ``tinyml.sim.meta`` inputs; outputs None) at ``bindings`` (default: compile's)."""
        if bindings is None and (count or not inputs):
            bindings = self.bindings
        return self.plan.run(inputs, bindings, device=self.device, dtype=self.dtype, count=count)

    def profile(self, bindings=None):
        """The counting-mode Profile at ``bindings`` (default: compile's)."""
        return self.run(bindings=bindings, count=True)[1]

    def generate(self, ids, steps: int = 4, bindings=None):
        """Greedy decoding: run the graph on ``ids`` (int tokens), append the argmax of the last row of
        the logits, repeat ``steps`` times. Returns ``(tokens, profiles)``: all tokens (the prompt and
        the new ones) and one Profile per run. The graph must take one int32 input ``(n,)`` and return
        logits ``(n, vocab)``; with a memory plan, ``len(ids) + steps - 1`` must be within its bound."""
        g = self.graph
        (name, t), = g.inputs.items() if len(g.inputs) == 1 else ((None, None),)
        if name is None or t.dtype != "int32" or t.rank != 1 or len(g.outputs) != 1:
            raise GraphError(f"generate() needs a language model: one int32 input (n,) and one output of "
                             f"logits (n, vocab); {g.name!r} has inputs {dict(g.inputs)} and "
                             f"{len(g.outputs)} output(s)")
        steps = integer(steps, "generate(steps=...)", lo=1, error=BindingError, hint="generate at least one token")
        tokens = [int(i) for i in input_array(name, ids, "int32").reshape(-1)]   # refuses ids such as 2.7
        if not tokens:
            raise BindingError("generate() needs a prompt of at least one token id")
        profiles = []
        for _ in range(int(steps)):
            (logits,), prof = self.run({name: np.asarray(tokens, dtype=np.int32)}, bindings)
            tokens.append(int(np.argmax(logits[-1])))                  # (vocab,) -> the greedy next token
            profiles.append(prof)
        return np.asarray(tokens, dtype=np.int32), profiles

    def table(self) -> str:
        """One row per step: nodes, groups, kernels, HBM bytes, simulated time, arena (once planned)."""
        planned = any("arena_bytes" in s.summary for s in self.steps)
        rows = [("step", "nodes", "groups", "kernels", "HBM", "time") + (("arena", "peak HBM") if planned else ())]
        for s in self.steps:
            m = s.summary
            if m.get("time_s") is None:
                rows.append((s.name, str(m.get("nodes", "")), str(m.get("groups", "")), "-", "-",
                             "out of HBM" if m.get("error") else "-") + (("-", "-") if planned else ()))
                continue
            row = (s.name, str(m["nodes"]), str(m["groups"]), str(m["kernels"]), fmt_bytes(m["hbm_bytes"]),
                   f"{m['time_s'] * 1e6:,.1f} us")
            if planned:
                row += (fmt_bytes(m["arena_bytes"]) if "arena_bytes" in m else "-",
                        fmt_bytes(m["peak_hbm_bytes"]) if "peak_hbm_bytes" in m else "-")
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                         for r in rows)

    def to_dict(self) -> dict:
        return {"graph": self.graph.name, "device": self.device, "dtype": self.dtype, "bindings": self.bindings,
                "steps": [s.to_dict() for s in self.steps]}

    def __str__(self) -> str:
        return str(self.plan)

    def __repr__(self) -> str:
        return f"<Compiled {self.graph.name!r}: {len(self.steps)} steps, {self.plan.kernels} kernels on {self.device}>"


def compile(graph, device: str = "a100-40gb", passes: "Sequence | str | None" = None, explain: bool = True,
            dtype: str = "fp16", bindings: "dict | None" = None, *, bounds: "dict | None" = None,
            scheme=DEFAULT_SCHEME, skip=(), schedules=None) -> Compiled:
    """Run ``passes`` (default :data:`DEFAULT_PASSES`; ``"all"``: :data:`ALL_PASSES`) on ``graph``
    and lower the result.

    With ``explain``, every step keeps its IR text and drawing and, when the
    graph's symbols are bound (``bindings={"n": 1024}``), its simulated
    kernels, HBM bytes and time on ``device`` in ``dtype`` (see the module docstring).
    ``bounds`` (default: ``bindings``) configures ``plan_memory`` in ``passes="all"``; ``scheme`` and
    ``skip`` configure ``quantize_weights``, in ``passes="all"`` or listed by name (given without it, they
    are refused rather than ignored). ``schedules`` lowers the matmul and conv2d
    nodes it names with a schedule's generated kernel (a dict: node name, workload key or op kind
    -> Schedule, trace or callable; see :mod:`tinyml.compiler.lowering.scheduled`); every step's
    numbers (the per-pass table) then count the generated kernels, as the compiled plan runs them.
    """
    dev = load_device(device).name
    bindings = given_bindings(bindings)
    numbers = explain and graph.symbols <= bindings.keys()
    if explain and bindings and not numbers:
        raise BindingError(f"compile: bindings {bindings} leave symbol(s) "
                           f"{sorted(graph.symbols - bindings.keys())} of {graph.name!r} unbound")
    everything = isinstance(passes, str) and passes == "all"
    if everything:
        bounds = given_bindings(bounds, "bounds") if bounds else bindings
        missing = sorted(graph.symbols - bounds.keys())
        if missing:
            raise BindingError(f"compile(passes='all') plans memory and needs a bound for symbol(s) {missing}: "
                               f"pass bounds={{{missing[0]!r}: 2048}} (or bindings)")
        passes = all_passes(bounds, scheme, skip)
    elif isinstance(passes, str):
        passes = [passes]
    if not everything:
        passes = _bind_quantize(list(DEFAULT_PASSES if passes is None else passes), scheme, skip)
    table = schedules
    if isinstance(schedules, dict) and schedules:
        from .lowering.scheduled import ScheduleTable

        table = ScheduleTable(schedules)         # checked against the compiled graph by lower() below
    summarize = (lambda g: measure(g, bindings, dev, dtype, table or None)) if numbers else None
    result = run_passes(graph, list(DEFAULT_PASSES if passes is None else passes), explain=explain,
                        summarize=summarize)
    steps = [CompiledStep(s.name, s.graph, s.ir, s.dot, dict(s.summary)) for s in result.steps]
    plan = lower(result.graph, schedules=schedules)
    if everything:
        last = steps[-1]
        steps.append(CompiledStep("lower", result.graph, str(plan) if explain else "", last.dot,
                                  dict(last.summary, launches=len(plan.launches))))
    return Compiled(graph, result.graph, plan, steps, dev, dtype, bindings)
