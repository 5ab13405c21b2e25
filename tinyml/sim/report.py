"""Text tables and Chrome traces of a Profile."""

from __future__ import annotations

import io

from .units import fmt_bytes, fmt_flops, fmt_time


def profile_table(prof, width: int = 120) -> str:
    """Render a profile as a plain-text table (rich, exported without colour)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{prof.name} on {prof.device.name}", show_footer=len(prof.records) > 1)
    cols = ["kernel", "grid", "waves", "HBM read", "HBM write", "matmul", "vector",
            "FLOP/B", "time", "bound"]
    tot = prof.totals()
    footer = ["total", "", "", fmt_bytes(tot["hbm_read_bytes"]), fmt_bytes(tot["hbm_write_bytes"]),
              fmt_flops(tot["flops_matmul"]), fmt_flops(tot["flops_vector"]), "",
              fmt_time(tot["time_s"]), tot["bound"]]
    for c, f in zip(cols, footer):
        t.add_column(c, footer=f, justify="left" if c in ("kernel", "bound") else "right",
                     no_wrap=c in ("kernel", "grid"))
    for r in prof.records:
        t.add_row(r.name, "x".join(map(str, r.grid)), str(r.waves), fmt_bytes(r.hbm_read_bytes),
                  fmt_bytes(r.hbm_write_bytes), fmt_flops(r.flops_matmul), fmt_flops(r.flops_vector),
                  f"{r.intensity:.3g}", fmt_time(r.time_s), r.bound)
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(t)
    notes = "".join(f"\nnote: {r.name}: {n}" for r in prof.records for n in r.notes)
    return buf.getvalue().rstrip() + f"\npeak HBM: {fmt_bytes(tot['peak_hbm_bytes'])}" + notes


def chrome_trace(prof) -> dict:
    """Chrome trace event format: one complete ("X") event per kernel, one track per stream."""
    events = [{"name": "process_name", "ph": "M", "pid": 0,
               "args": {"name": f"{prof.device.name} (simulated)"}}]
    for stream in sorted({r.stream for r in prof.records}):
        events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": stream,
                       "args": {"name": f"stream {stream}"}})
    for r in prof.records:
        events.append({
            "name": r.name, "cat": "kernel", "ph": "X", "pid": 0, "tid": r.stream,
            "ts": r.start_s * 1e6, "dur": r.time_s * 1e6,
            "args": {k: v for k, v in r.to_dict().items() if k not in ("name", "start_s", "time_s")},
        })
    return {"traceEvents": events, "displayTimeUnit": "ns"}
