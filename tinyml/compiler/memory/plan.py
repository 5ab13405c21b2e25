""":class:`MemoryPlan`: where every intermediate lives in one arena, and how good that is.

A plan records, for every intermediate (see :mod:`.liveness`), its size as an
expression (``1536*n``), its bytes at the bound, its interval of program points
and its offset. Beside the arena's size it always reports **LOAD**, the most
bytes live at any one point: no plan can use less, so ``arena / LOAD`` (>= 1)
is the planner's score.

Two modes (see :func:`tinyml.compiler.passes.plan_memory`):

* ``"concrete"``: greedy by size on the sizes at the bound (:mod:`.arena`);
  offsets are numbers, valid for every symbol value up to the bound;
* ``"symbolic"``: greedy by size where every placement is proved for every ``n``,
  offsets are polynomials (:mod:`.symbolic_greedy`); :func:`arena_offsets`
  evaluates them at any ``n`` up to the bound.

Lowering places intermediates with :func:`arena_offsets` (views get their
root's offset) in one allocation of :meth:`MemoryPlan.arena_at` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...sim.units import fmt_bytes
from ..errors import BindingError
from ..sizes import Poly
from ..values import given_bindings
from ..types import shape_str
from .symbolic_greedy import arena_at as _symbolic_arena_at
from .symbolic_greedy import concrete_offsets


@dataclass(frozen=True)
class Buffer:
    """One intermediate in the arena."""

    name: str
    size: Poly                 # bytes, an expression in the graph's symbols
    nbytes: int                # bytes at the bound
    start: int                 # program point that writes it
    end: int                   # last program point that reads it (or one of its views)
    offset: int                # bytes, at the bound
    dtype: str = ""
    shape: tuple = ()
    aliases: tuple = ()        # reshape views that share these bytes
    offset_expr: "Poly | None" = None   # symbolic mode: offset = align_up(offset_expr(n))

    @property
    def interval(self) -> tuple[int, int]:
        return (self.start, self.end)


@dataclass(frozen=True)
class MemoryPlan:
    """The result of :func:`~tinyml.compiler.passes.plan_memory` (attached as ``graph.memory_plan``)."""

    graph_name: str
    mode: str                        # "concrete" or "symbolic"
    fused: bool                      # one program point per fused group (True) or per node
    alignment: int
    bounds: dict                     # symbol -> upper bound (what "at the bound" means)
    points: tuple                    # ProgramPoint s
    buffers: tuple                   # Buffer s, by start point then name
    externals: tuple                 # LiveValue s of inputs, weights, outputs (not in the arena)
    aliases: dict                    # view -> root
    arena_bytes: int                 # at the bound
    load_bytes: int                  # at the bound
    reuses: int                      # buffers placed on bytes of an earlier buffer (proved, if symbolic)
    refusals: tuple = ()             # symbolic placements that fit at the bound but were not proved
    arena_expr: "Poly | None" = None  # symbolic mode: an upper bound of the arena for every n, if found

    # ---- numbers ----------------------------------------------------------------------------
    @property
    def ratio(self) -> float:
        """arena / LOAD at the bound (1.0 when nothing is planned): 1.0 is optimal."""
        return self.arena_bytes / self.load_bytes if self.load_bytes else 1.0

    def buffer(self, name: str) -> Buffer:
        name = name[1:] if name.startswith("%") else name
        name = self.aliases.get(name, name)
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(f"%{name} is not an intermediate of this plan (inputs, weights and outputs are not)")

    def check_bindings(self, bindings) -> dict:
        """``bindings`` (default: the bounds) checked: every symbol given, within ``1..bound``."""
        if bindings is None:
            return dict(self.bounds)
        b = given_bindings(bindings)
        for s, hi in self.bounds.items():
            if s not in b:
                raise BindingError(f"the memory plan of {self.graph_name!r} needs a value for symbol {s!r}; "
                                   f"pass bindings={{{s!r}: <1..{hi}>}}")
            if not 1 <= b[s] <= hi:
                raise BindingError(
                    f"{s}={b[s]} is outside 1..{hi}, the range the memory plan of {self.graph_name!r} was "
                    f"made for; plan again with bounds={{{s!r}: {max(b[s], 1)}}}")
        return b

    def offsets_at(self, bindings=None) -> dict:
        """name -> byte offset at ``bindings`` for every intermediate and every view of one."""
        b = self.check_bindings(bindings)
        if self.mode == "symbolic":
            offs = concrete_offsets([x.offset_expr for x in self.buffers], b, self.alignment)
            out = {x.name: o for x, o in zip(self.buffers, offs)}
        else:
            out = {x.name: x.offset for x in self.buffers}
        out.update({v: out[r] for v, r in self.aliases.items() if r in out})
        return out

    def arena_at(self, bindings=None) -> int:
        """Bytes to allocate for the arena at ``bindings`` (the bound's arena in concrete mode)."""
        b = self.check_bindings(bindings)
        if self.mode == "symbolic":
            return _symbolic_arena_at([x.offset_expr for x in self.buffers], [x.size for x in self.buffers],
                                      b, self.alignment)
        return self.arena_bytes

    def live_bytes(self, bindings=None) -> list:
        """Bytes of intermediates live at each program point."""
        b = self.check_bindings(bindings)
        sizes = [(x.start, x.end, x.size.evaluate(b)) for x in self.buffers]
        return [sum(s for lo, hi, s in sizes if lo <= p <= hi) for p in range(len(self.points))]

    def load_at(self, bindings=None) -> int:
        """LOAD at ``bindings``: the most bytes live at one point."""
        return max(self.live_bytes(bindings), default=0)

    def external_bytes(self, bindings=None) -> dict:
        """Bytes outside the arena by role: inputs, weights, outputs."""
        b = self.check_bindings(bindings)
        out = {"input": 0, "weight": 0, "output": 0}
        for x in self.externals:
            out[x.role] += x.size.evaluate(b)
        return out

    # ---- explaining -------------------------------------------------------------------------
    def _at(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.bounds.items())) or "fixed shapes"

    def table(self) -> str:
        """One row per buffer: name, size expression, bytes at the bound, interval, offset."""
        sym = self.mode == "symbolic"
        head = f"  {'value':<8} {'shape':<16} {'size (bytes)':<16} {'at bound':>10}  {'live':<9} {'offset':>10}"
        rows = [head + ("  offset (symbolic)" if sym else "")]
        for x in self.buffers:
            live = f"[{x.start}, {x.end}]"
            row = (f"  {'%' + x.name:<8} {shape_str(x.shape):<16} {str(x.size):<16} "
                   f"{fmt_bytes(x.nbytes, True):>10}  {live:<9} {x.offset:>10,}")
            rows.append(row + (f"  {x.offset_expr}" if sym else ""))
        return "\n".join(rows)

    def explain(self) -> str:
        """A readable account: what was planned, the score, every buffer, the views, the proofs."""
        how = ("greedy by size" if self.mode == "concrete"
               else "greedy by size on symbolic sizes (every placement proved)")
        kind = "fused groups" if self.fused else "nodes, op by op"
        ext = self.external_bytes()
        lines = [
            f"memory plan of {self.graph_name!r}: {len(self.points)} program points ({kind}), {how}, "
            f"at {self._at()}, offsets aligned to {self.alignment} B",
            f"  arena {fmt_bytes(self.arena_bytes, True)} ({self.arena_bytes:,} B)   "
            f"LOAD {fmt_bytes(self.load_bytes, True)} ({self.load_bytes:,} B)   arena/LOAD {self.ratio:.3f}",
            f"  {len(self.buffers)} intermediates, {self.reuses} placed on bytes freed by an earlier one"
            + (" (each fit proved for every value up to the bound)" if self.mode == "symbolic" else ""),
            f"  outside the arena: inputs {fmt_bytes(ext['input'], True)}, weights {fmt_bytes(ext['weight'], True)}, "
            f"outputs {fmt_bytes(ext['output'], True)}",
            "",
            self.table(),
        ]
        if self.aliases:
            lines += ["", "  views (no bytes of their own): " +
                      ", ".join(f"%{v} -> %{r}" for v, r in self.aliases.items())]
        if self.mode == "symbolic":
            bound = (f"arena <= {self.arena_expr} bytes for every value up to the bound" if self.arena_expr
                     is not None else "no single buffer provably ends last: arena(n) = the highest end at n")
            lines += ["", f"  {bound}; a buffer sits at align_up(offset(n))"]
            if self.refusals:
                lines.append(f"  {len(self.refusals)} placement(s) fitted at the bound but were refused, "
                             "the proof failed:")
                for r in self.refusals[:8]:
                    at = ", ".join(f"{k}={v}" for k, v in r.at.items())
                    lines.append(f"    %{r.value} ({self.buffer(r.value).size} B) at offset {r.offset}: "
                                 f"collides with %{r.blocker} ({self.buffer(r.blocker).size} B) at {at}")
                if len(self.refusals) > 8:
                    lines.append(f"    ... and {len(self.refusals) - 8} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.explain()

    def summary(self) -> dict:
        """The numbers a pipeline step shows: arena, LOAD, ratio."""
        return {"arena_bytes": self.arena_bytes, "load_bytes": self.load_bytes, "arena/load": round(self.ratio, 3)}

    def to_dict(self) -> dict:
        return {
            "graph": self.graph_name, "mode": self.mode, "fused": self.fused, "alignment": self.alignment,
            "bounds": dict(self.bounds), "arena_bytes": self.arena_bytes, "load_bytes": self.load_bytes,
            "ratio": self.ratio, "reuses": self.reuses,
            "arena_expr": None if self.arena_expr is None else str(self.arena_expr),
            "points": [p.label for p in self.points],
            "buffers": [{"name": x.name, "size": str(x.size), "bytes": x.nbytes, "interval": [x.start, x.end],
                         "offset": x.offset,
                         "offset_expr": None if x.offset_expr is None else str(x.offset_expr),
                         "aliases": list(x.aliases)} for x in self.buffers],
            "externals": [{"name": x.name, "role": x.role, "size": str(x.size)} for x in self.externals],
            "aliases": dict(self.aliases),
        }

    # ---- drawing (matplotlib, imported lazily) ------------------------------------------------
    def draw(self, bindings=None, ax=None):
        """The arena: program points across, offset down, one labelled rectangle per buffer."""
        from .draw import draw_arena

        return draw_arena(self, bindings, ax=ax)

    def draw_liveness(self, bindings=None, ax=None):
        """Live bytes at each program point, with the LOAD line and the arena line."""
        from .draw import draw_liveness

        return draw_liveness(self, bindings, ax=ax)

    def svg(self, bindings=None) -> str:
        """Both pictures side by side, as SVG text (for a pipeline step or a notebook)."""
        from .draw import plan_svg

        return plan_svg(self, bindings)


def arena_offsets(plan: MemoryPlan, bindings=None) -> dict:
    """Concrete byte offsets ``{value name: offset}`` of every intermediate (and view) at ``bindings``.

    Allocate :meth:`MemoryPlan.arena_at` ``(bindings)`` bytes once and place value ``v`` at
    ``arena[offsets[v] : offsets[v] + nbytes(v)]``. ``bindings`` must give every bounded symbol a
    value in ``1..bound`` (default: the bounds).
    """
    return plan.offsets_at(bindings)
