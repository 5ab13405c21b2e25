"""``tinyml schedule matmul|conv2d|softmax``: a tensor program's loop nest, a schedule applied to it, and the
simulated profile before and after.

The workload is built from the shape options; the schedule comes from a trace file
(``--trace FILE.json``, as :func:`tinyml.compiler.tensor.to_json` writes it) or from a
built-in hand schedule (``--example tiled|mma``); ``--write-trace FILE.json`` saves the
schedule applied as a trace, the starting point to edit. Both nests are generated into
kernels and costed in counting mode on the device. A trace that is not JSON, is not a
trace, or asks for an illegal primitive is refused with the schedule's message (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import _workloads as workloads
from ._args import UsageError, json_file, readable_file
from ._out import console, emit_json, table

HELP = """examples:
  tinyml schedule matmul --m 4096 --n 4096 --k 4096 --example mma       naive nest vs matmul v3's schedule
  tinyml schedule matmul --m 256 --n 256 --k 256 --example tiled --write-trace my.json
  tinyml schedule matmul --m 256 --n 256 --k 256 --trace my.json --show source
  tinyml schedule softmax --m 4096 --n 1024 --example tiled               rows cached in SRAM: X read once
  tinyml schedule conv2d --batch 8 --channels 64 --size 56 --filters 64 --example tiled --json
"""

SHOW = ("tree", "nest", "source", "all", "none")


def register(sub) -> None:
    p = sub.add_parser("schedule", help="a tensor program's loop nest, scheduled, costed before and after",
                       epilog=HELP, description=__doc__)
    wl = p.add_subparsers(dest="workload", metavar="WORKLOAD", required=True)
    m = wl.add_parser("matmul", help="C (M x N) = A (M x K) @ B (K x N)", epilog=HELP)
    workloads.add_matmul(m)
    _common(m)
    c = wl.add_parser("conv2d", help="NCHW 2-D convolution with stride and zero padding", epilog=HELP)
    workloads.add_conv2d(c)
    _common(c)
    r = wl.add_parser("softmax", help="Y = softmax of each row of X (M x N): a row reduction", epilog=HELP)
    workloads.add_softmax(r)
    _common(r)


def _common(p) -> None:
    p.add_argument("--dtype", default="fp16", help="logical dtype bytes are counted in")
    p.add_argument("--device", default="a100-40gb", help="preset name or .toml file")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--trace", type=readable_file, help="apply the schedule in this trace (JSON) file (default: none)")
    src.add_argument("--example", choices=("tiled", "mma"),
                     help="apply a built-in hand schedule: tiled (SRAM and register tiles), "
                          "mma (tiled + tensorized, matmul v3's structure) (default: none, the naive nest only)")
    p.add_argument("--write-trace", type=json_file, metavar="FILE.json",
                   help="write the applied schedule's trace here, a starting point to edit (default: not written)")
    p.add_argument("--show", choices=SHOW, default="tree",
                   help="how to print the nests: tree (loop tree), nest (NumPy-style Python), "
                        "source (the generated Numba kernel), all, none")
    p.add_argument("--json", action="store_true", help="print the nests and numbers as JSON instead")
    p.set_defaults(func=run)


def workload(args):
    """The PrimFunc the options describe."""
    return workloads.build(args, args.dtype)


def load_trace(path: str, func):
    """Replay the trace in ``path`` on ``func`` (any size of the same workload)."""
    from ..compiler.tensor import replay
    from ..compiler.tensor.trace import read

    return replay(func, read(path), same_shapes=False)


def trace_text(text: str) -> str:
    """A trace's JSON with one instruction per line (easy to read and edit by hand)."""
    data = json.loads(text)
    lines = [f'{{"version": {json.dumps(data["version"])},', f' "workload": {json.dumps(data["workload"])},',
             ' "instructions": [']
    ins = [f"  {json.dumps(i)}" for i in data["instructions"]]
    lines += [",\n".join(ins), " ]}"] if ins else [" ]}"]
    return "\n".join(lines) + "\n"


def _profile(rec) -> dict:
    return {"grid": list(rec.grid), "hbm_read_bytes": int(rec.hbm_read_bytes),
            "hbm_write_bytes": int(rec.hbm_write_bytes), "hbm_bytes": int(rec.hbm_bytes),
            "l2_hit_bytes": int(rec.l2_hit_bytes), "sram_per_block_bytes": int(rec.sram_per_block_bytes),
            "flops_matmul": int(rec.flops_matmul), "flops_vector": int(rec.flops_vector),
            "time_s": float(rec.time_s), "bound": rec.bound, "blocks_per_sm": int(rec.blocks_per_sm),
            "occupancy_limit": rec.occupancy_limit, "threads_per_block": int(rec.threads_per_block)}


def _views(sch) -> dict:
    from ..compiler.tensor import build, loop_tree, numpy_source

    return {"tree": loop_tree(sch.nest), "nest": numpy_source(sch.nest), "source": build(sch, parallel=False).source}


def run(args) -> int:
    from ..compiler.tensor import Schedule, simulate, to_json
    from ..compiler.tensor.examples import example
    from ..sim import load_device

    device = load_device(args.device).name
    func = workload(args)
    before = Schedule(func)
    if args.trace:
        after = load_trace(args.trace, func)
    elif args.example:
        after = example(args.example, func, device)
    else:
        after = None
    if args.write_trace:
        if after is None:
            raise UsageError("--write-trace writes the applied schedule: give --example tiled|mma (or --trace)")
        Path(args.write_trace).expanduser().write_text(trace_text(to_json(after)))
    cost_before = _profile(simulate(before, device))
    cost_after = _profile(simulate(after, device)) if after is not None else None
    views = [("before", before)] + ([("after", after)] if after is not None else [])
    if args.json:
        out = {"workload": func.to_dict(), "device": device, "dtype": func.dtype,
               "schedule": None if after is None else
               {"from": args.trace or f"example:{args.example}", "instructions": [i.to_dict() for i in after.trace]},
               "before": {**cost_before, **_views(before)},
               "after": None if after is None else {**cost_after, **_views(after)}}
        if after is not None:
            out["speedup"] = cost_before["time_s"] / max(cost_after["time_s"], 1e-30)
            out["bytes_ratio"] = cost_before["hbm_bytes"] / max(cost_after["hbm_bytes"], 1)
        emit_json(out)
        return 0
    _print(args, func, device, views, cost_before, cost_after)
    return 0


def _print(args, func, device, views, cost_before, cost_after) -> None:
    from ..sim.units import fmt_bytes, fmt_time

    c = console()
    forms = ("tree", "nest", "source") if args.show == "all" else () if args.show == "none" else (args.show,)
    for label, sch in views:
        v = _views(sch) if forms else {}
        for form in forms:
            what = {"tree": "loop tree", "nest": "loop nest (NumPy-style)", "source": "generated kernel"}[form]
            c.print(f"{label}: {what}", style="bold", markup=False)
            c.print(v[form], markup=False)
            c.print()
        if label == "after":
            c.print(f"schedule ({args.trace or 'example ' + args.example}): "
                    + "; ".join(f"{i.kind}({', '.join(map(json.dumps, i.args))})" for i in sch.trace), markup=False)
            c.print()
    rows = []
    for label, p in (("before", cost_before), ("after", cost_after)):
        if p is None:
            continue
        grid = "x".join(map(str, p["grid"]))
        rows.append([label, grid, fmt_bytes(p["hbm_read_bytes"] + p["l2_hit_bytes"] + p["hbm_write_bytes"]),
                     fmt_bytes(p["hbm_bytes"]), fmt_bytes(p["sram_per_block_bytes"]),
                     f"{p['blocks_per_sm']} ({p['occupancy_limit']})", fmt_time(p["time_s"]), p["bound"]])
    shape = "x".join(str(a.extent) for a in func.block.axes)
    c.print(table(f"{func.name} ({shape}) {func.dtype} on {device}",
                  ["nest", "grid", "loaded + stored", "HBM traffic", "SRAM/block", "blocks/SM (limit)", "time",
                   "bound"], rows,
                  {"loaded + stored", "HBM traffic", "SRAM/block", "time"}))
    if cost_after is not None:
        c.print(f"the schedule: {cost_before['hbm_bytes'] / max(cost_after['hbm_bytes'], 1):.1f}x fewer HBM bytes, "
                f"{cost_before['time_s'] / max(cost_after['time_s'], 1e-30):.1f}x less simulated time")
    else:
        c.print("no schedule given: --example tiled|mma applies a built-in one, --trace FILE.json yours")
