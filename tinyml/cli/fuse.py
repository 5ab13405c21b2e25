"""``tinyml fuse --ops mul,add,gelu``: one chain of ops, unfused (a kernel per op) vs fused (one kernel).

The chain starts at an input ``x (M, N)``; every binary op takes a new
``(M, N)`` input; ``scale:0.5`` scales by a constant; a leading ``matmul``
multiplies ``x (M, N)`` by ``w (N, N)`` (an input, so any size is costed by
shape alone) and the rest becomes its epilogue. Both forms are lowered by the compiler and counted on the
simulated device.
"""

from __future__ import annotations

import math

from ._args import comma_items
from ._out import console, emit_json, table

HELP = """examples:
  tinyml fuse --ops mul,add,gelu                    three eager kernels vs one fused kernel
  tinyml fuse --ops matmul,add,gelu --shape 4096,4096   a matmul with its epilogue
  tinyml fuse --ops exp,scale:0.5,tanh --json
"""

UNARY = ("exp", "tanh", "relu", "gelu")
BINARY = ("add", "sub", "mul", "div")


def register(sub) -> None:
    p = sub.add_parser("fuse", help="one op chain: unfused vs fused kernels, bytes and time", epilog=HELP)
    p.add_argument("--ops", required=True, help="comma-separated ops: " + ", ".join(UNARY + BINARY) +
                   ", scale:C, and matmul first")
    p.add_argument("--shape", default="4096,4096", help="M,N (default 4096,4096)")
    p.add_argument("--device", default="a100-40gb", help="preset name or .toml file (default a100-40gb)")
    p.add_argument("--dtype", default="fp16", help="logical dtype bytes are counted in (default fp16)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    p.set_defaults(func=run)


def _shape(text: str) -> tuple[int, int]:
    from ..sim import ShapeError

    try:
        m, n = (int(v) for v in text.split(","))
    except ValueError:
        raise ShapeError(f"--shape must be two integers M,N such as 4096,4096, got {text!r}") from None
    if m < 1 or n < 1:
        raise ShapeError(f"--shape {text}: both dimensions must be >= 1")
    return m, n


def build_chain(ops_text: str, m: int, n: int, dtype: str = "fp16"):
    """The graph of the chain (see the module docstring)."""
    from ..compiler import Graph
    from ..compiler.errors import GraphError

    ops = comma_items(ops_text, "op", flag="--ops", error=GraphError, example="--ops mul,add,gelu")
    if not ops:
        raise GraphError(f"--ops {ops_text!r} names no op; e.g. --ops mul,add,gelu")
    g = Graph("chain", dtype=dtype)
    x = g.input("x", (m, n))                                               # (M, N)
    for i, op in enumerate(ops):
        name, colon, arg = op.partition(":")
        if colon and name != "scale" and name in UNARY + BINARY + ("matmul",):
            raise GraphError(f"--ops: {name} takes no argument, got {op!r}; only scale takes one (scale:0.5)")
        if name == "matmul":
            if i:
                raise GraphError(f"--ops: matmul must come first (it was op {i + 1} of {ops})")
            # w is an input, not a drawn weight: counting mode costs it by shape, at any size (a weight
            # would be drawn in host RAM first); the kernels and bytes are the same either way
            x = g.matmul(x, g.input("w", (n, n)))                          # (M, N)
        elif name in UNARY:
            x = getattr(g, name)(x)
        elif name in BINARY:
            x = getattr(g, name)(x, g.input(f"a{i}", (m, n)))              # (M, N)
        elif name == "scale":
            try:
                factor = float(arg)
            except ValueError:
                raise GraphError(f"--ops: write scale with its factor, e.g. scale:0.5 (got {op!r})") from None
            if not math.isfinite(factor):
                raise GraphError(f"--ops: scale needs a finite factor, got {op!r}; e.g. scale:0.5")
            x = g.scale(x, factor)
        else:
            raise GraphError(f"--ops: unknown op {op!r}; choose from {', '.join(UNARY + BINARY)}, scale:C, "
                             f"matmul (first)")
    g.output(x)
    return g


def measure_chain(graph, device: str, dtype: str) -> dict:
    from ..compiler import fuse, lower

    out = {}
    for label, plan in (("unfused", lower(graph, fused=False)), ("fused", lower(fuse(graph)))):
        _, prof = plan.run(device=device, dtype=dtype, count=True)
        out[label] = {"kernels": len(prof.records), "names": [r.name for r in prof.records],
                      "hbm_read_bytes": int(prof.hbm_read_bytes), "hbm_write_bytes": int(prof.hbm_write_bytes),
                      "hbm_bytes": int(prof.hbm_bytes), "time_s": float(prof.time_s)}
    return out


def run(args) -> int:
    from ..sim import load_device
    from ..sim.units import fmt_bytes, fmt_time

    m, n = _shape(args.shape)
    device = load_device(args.device).name
    res = measure_chain(build_chain(args.ops, m, n, args.dtype), device, args.dtype)
    u, f = res["unfused"], res["fused"]
    if args.json:
        emit_json({"ops": args.ops, "shape": [m, n], "device": device, "dtype": args.dtype, **res,
                   "bytes_ratio": u["hbm_bytes"] / max(f["hbm_bytes"], 1),
                   "time_ratio": u["time_s"] / max(f["time_s"], 1e-30)})
        return 0
    rows = [[label, str(r["kernels"]), fmt_bytes(r["hbm_read_bytes"]), fmt_bytes(r["hbm_write_bytes"]),
             fmt_time(r["time_s"]), ", ".join(r["names"])] for label, r in (("unfused", u), ("fused", f))]
    c = console()
    c.print(table(f"{args.ops} over ({m}, {n}) {args.dtype} on {device}",
                  ["form", "kernels", "HBM read", "HBM write", "time", "kernels launched"], rows,
                  {"kernels", "HBM read", "HBM write", "time"}))
    c.print(f"fusion: {u['hbm_bytes'] / max(f['hbm_bytes'], 1):.2f}x fewer HBM bytes, "
            f"{u['time_s'] / max(f['time_s'], 1e-30):.2f}x less time")
    return 0
