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
kernel per fused group after) and counting it at ``bindings`` on ``device``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Sequence

from ..sim import HbmOutOfMemoryError, load_device
from ..sim.units import fmt_bytes
from .errors import BindingError
from .lower import Plan, lower
from .pipeline import run_passes

#: what compile runs when no passes are given
DEFAULT_PASSES = ("cse", "dead_code", "rewrite_attention", "fuse")


def measure(graph, bindings: dict, device: str, dtype: str = "fp16") -> dict:
    """Lower ``graph`` (by its groups, or op by op) and count it: kernels, HBM bytes, seconds.

    A graph whose tensors do not fit the device's HBM (the op-by-op attention's
    ``(H, n, n)`` scores at long ``n``) gets None for all three and the reason in ``error``.
    """
    try:
        _, prof = lower(graph).run(bindings=bindings, device=device, dtype=dtype, count=True)
    except HbmOutOfMemoryError as exc:
        return {"kernels": None, "hbm_bytes": None, "time_s": None, "error": str(exc).splitlines()[0]}
    return {"kernels": len(prof.records), "hbm_bytes": int(prof.hbm_bytes), "time_s": float(prof.time_s)}


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
        return f"after {self.name}: " + ", ".join(parts)

    def __str__(self) -> str:
        return self.headline() + "\n" + (self.ir or str(self.graph))

    def svg(self) -> "str | None":
        """The drawing as SVG text, or None where Graphviz's ``dot`` is missing."""
        from ..viz import has_dot

        if not has_dot():
            return None
        import graphviz

        return graphviz.Source(self.dot or self.graph.to_dot()).pipe(format="svg").decode()

    def _repr_svg_(self):
        return self.svg()

    def _repr_html_(self) -> str:
        svg = self.svg()
        body = svg if svg is not None else f"<pre>{html.escape(self.ir or str(self.graph))}</pre>"
        return f"<p><b>{html.escape(self.headline())}</b></p>{body}"

    def draw(self, path):
        """Render the drawing to ``path`` (writes ``.dot`` where ``dot`` is missing, see tinyml.viz)."""
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

    def table(self) -> str:
        """One row per step: nodes, groups, kernels, HBM bytes, simulated time."""
        rows = [("step", "nodes", "groups", "kernels", "HBM", "time")]
        for s in self.steps:
            m = s.summary
            if m.get("time_s") is None:
                rows.append((s.name, str(m.get("nodes", "")), str(m.get("groups", "")), "-", "-",
                             "out of HBM" if m.get("error") else "-"))
                continue
            rows.append((s.name, str(m["nodes"]), str(m["groups"]), str(m["kernels"]), fmt_bytes(m["hbm_bytes"]),
                         f"{m['time_s'] * 1e6:,.1f} us"))
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


def compile(graph, device: str = "a100-40gb", passes: "Sequence | None" = None, explain: bool = True,
            dtype: str = "fp16", bindings: "dict | None" = None) -> Compiled:
    """Run ``passes`` (default :data:`DEFAULT_PASSES`) on ``graph`` and lower the result.

    With ``explain``, every step keeps its IR text and drawing and, when the
    graph's symbols are bound (``bindings={"n": 1024}``), its simulated
    kernels, HBM bytes and time on ``device`` in ``dtype`` (see the module docstring).
    """
    dev = load_device(device).name
    bindings = {k: int(v) for k, v in (bindings or {}).items()}
    numbers = explain and graph.symbols <= bindings.keys()
    if explain and bindings and not numbers:
        raise BindingError(f"compile: bindings {bindings} leave symbol(s) "
                           f"{sorted(graph.symbols - bindings.keys())} of {graph.name!r} unbound")
    summarize = (lambda g: measure(g, bindings, dev, dtype)) if numbers else None
    result = run_passes(graph, list(DEFAULT_PASSES if passes is None else passes), explain=explain,
                        summarize=summarize)
    steps = [CompiledStep(s.name, s.graph, s.ir, s.dot, dict(s.summary)) for s in result.steps]
    return Compiled(graph, result.graph, lower(result.graph), steps, dev, dtype, bindings)
