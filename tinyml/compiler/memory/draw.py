"""Pictures of a memory plan (matplotlib, imported only when drawing).

* :func:`draw_arena`: program points across, arena offset down; one rectangle per
  buffer spanning its live interval, at its offset, as tall as its size. Gaps are
  wasted bytes; the dashed line is the arena's end, the dotted one LOAD.
* :func:`draw_liveness`: live bytes at each program point (bars), with the LOAD
  line (their maximum) and the arena line (what the plan allocates).
* :func:`plan_svg`: both side by side, as SVG text (a pipeline step, a web page).

Each takes ``bindings`` (default: the bounds) to draw the plan at one ``n``; a
symbolic plan is redrawn at that ``n``, a concrete one keeps the bound's offsets.
Functions build :class:`matplotlib.figure.Figure` s directly (no pyplot state, no
backend switch), or draw into the ``ax`` they are given.
"""

from __future__ import annotations

import io

from ...sim.units import fmt_bytes

_UNITS = ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"), (1, "B"))


def _unit(nbytes: int) -> tuple[int, str]:
    for scale, name in _UNITS:
        if nbytes >= 2 * scale:
            return scale, name
    return 1, "B"


def _axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot(1, 1, 1)


def _at(plan, bindings) -> str:
    b = plan.check_bindings(bindings)
    return ", ".join(f"{k}={v}" for k, v in sorted(b.items())) or "fixed shapes"


def draw_arena(plan, bindings=None, ax=None):
    """The arena as rectangles (time across, offset down); returns the Figure."""
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    b = plan.check_bindings(bindings)
    offs = plan.offsets_at(b)
    arena, load = plan.arena_at(b), plan.load_at(b)
    scale, unit = _unit(max(arena, 1))
    fig, ax = _axes(ax, (max(6.0, 0.45 * len(plan.points) + 2), 4.5))
    colors = colormaps["tab20"]
    for k, x in enumerate(plan.buffers):
        size = x.size.evaluate(b)
        y0, h = offs[x.name] / scale, size / scale
        ax.add_patch(Rectangle((x.start - 0.42, y0), x.end - x.start + 0.84, h, facecolor=colors(k % 20),
                               edgecolor="black", linewidth=0.6, alpha=0.85))
        if h >= 0.035 * max(arena / scale, 1e-9):
            ax.text((x.start + x.end) / 2, y0 + h / 2, f"%{x.name}\n{fmt_bytes(size, True)}",
                    ha="center", va="center", fontsize=7)
    ax.axhline(arena / scale, color="black", ls="--", lw=1, label=f"arena {fmt_bytes(arena, True)}")
    ax.axhline(load / scale, color="firebrick", ls=":", lw=1.2, label=f"LOAD {fmt_bytes(load, True)}")
    ax.set_xlim(-0.6, max(len(plan.points), 1) - 0.4)
    ax.set_ylim(max(arena, 1) / scale * 1.04, 0)                              # offset 0 at the top
    ax.set_xticks(range(len(plan.points)))
    ax.set_xticklabels([p.label for p in plan.points], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("program point (kernel launch)")
    ax.set_ylabel(f"offset in the arena ({unit})")
    ratio = arena / load if load else 1.0
    ax.set_title(f"{plan.graph_name}: {plan.mode} plan at {_at(plan, b)}, arena / LOAD = {ratio:.3f}", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def draw_liveness(plan, bindings=None, ax=None):
    """Live bytes per program point with the LOAD and arena lines; returns the Figure."""
    b = plan.check_bindings(bindings)
    live = plan.live_bytes(b)
    arena, load = plan.arena_at(b), max(live, default=0)
    scale, unit = _unit(max(arena, 1))
    fig, ax = _axes(ax, (max(6.0, 0.45 * len(plan.points) + 2), 3.8))
    xs = range(len(live))
    ax.bar(xs, [v / scale for v in live], color="steelblue", alpha=0.8, label="live intermediates")
    ax.axhline(load / scale, color="firebrick", ls=":", lw=1.2, label=f"LOAD {fmt_bytes(load, True)}")
    ax.axhline(arena / scale, color="black", ls="--", lw=1, label=f"arena {fmt_bytes(arena, True)}")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([p.label for p in plan.points], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("program point (kernel launch)")
    ax.set_ylabel(f"live bytes ({unit})")
    ax.set_ylim(0, max(arena, load, 1) / scale * 1.12)
    ax.set_title(f"{plan.graph_name}: bytes live at each launch ({_at(plan, b)})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def plan_svg(plan, bindings=None) -> str:
    """The arena picture and the liveness chart side by side, as SVG text."""
    from matplotlib.figure import Figure

    width = max(6.0, 0.45 * len(plan.points) + 2)
    fig = Figure(figsize=(2 * width, 4.8))
    left, right = fig.subplots(1, 2)
    draw_arena(plan, bindings, ax=left)
    draw_liveness(plan, bindings, ax=right)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    return buf.getvalue()
