"""``tinyml tour``: the guided demo. Each later capability adds a stop."""

from __future__ import annotations

import argparse

from ._out import console, emit_json, table
from .results import COMPARISON_COLUMNS, comparison_rows, run_variant

HELP = """examples:
  tinyml tour                      the A100's memory hierarchy and naive vs tiled matmul
  tinyml tour --device h100-sxm    the same on another GPU
  tinyml tour --json               the numbers, machine-readable
"""


def register(sub) -> None:
    p = sub.add_parser("tour", help="the guided demo (the default command)", epilog=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="preset name or .toml file (default a100-40gb)")
    p.add_argument("--size", type=int, default=4096, help="matmul size N for N x N x N (default 4096)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def hierarchy(device) -> list[dict]:
    return [
        {"level": "SRAM (on chip)", "capacity_bytes": device.sram_total,
         "per_unit": f"{device.sram_per_sm // 1024} KiB x {device.sm_count} SMs", "bandwidth": device.sram_bandwidth},
        {"level": "HBM (GPU memory)", "capacity_bytes": device.hbm_capacity, "per_unit": "",
         "bandwidth": device.hbm_bandwidth},
        {"level": "host DRAM (CPU)", "capacity_bytes": None, "per_unit": "over the host link",
         "bandwidth": device.host_bandwidth},
    ]


def run(args) -> int:
    from ..kernels.matmul import matmul
    from ..sim import ShapeError, load_device, meta
    from ..sim.units import fmt_bytes, fmt_rate

    if args.size < 1:
        raise ShapeError(f"--size must be >= 1, got {args.size}")
    device = load_device(args.device)
    n = args.size
    levels = hierarchy(device)
    results = []
    for variant, version in (("naive", 1), ("tiled", 2), ("mma", 3)):
        def go(version=version):
            matmul(meta((n, n), "fp16"), meta((n, n), "fp16"), version=version)
        results.append(run_variant(variant, device, "count", go)[0])

    if args.json:
        emit_json({"device": device.name, "hierarchy": levels, "ridge_flop_per_byte": device.ridge_point("fp16"),
                   "matmul": {"device": device.name, "command": "matmul",
                              "params": {"m": n, "n": n, "k": n, "dtype": "fp16"}, "results": results}})
        return 0

    c = console()
    c.print(f"[bold]tinyml tour[/bold]: {device.description}\n")
    c.print("[bold]1. The memory hierarchy.[/bold] Fast memory is small, big memory is slow:")
    c.print(table(None, ["level", "capacity", "", "bandwidth"],
                  [[lv["level"], fmt_bytes(lv["capacity_bytes"], binary=lv["level"].startswith("SRAM"))
                    if lv["capacity_bytes"] else "-",
                    lv["per_unit"], fmt_rate(lv["bandwidth"])] for lv in levels], {"capacity", "bandwidth"}))
    ridge = device.ridge_point("fp16")
    c.print(f"The tensor cores do {fmt_rate(device.matmul_rate('fp16') * device.eff_matmul, 'FLOP/s')} (achievable fp16) "
            f"but HBM feeds only {fmt_rate(device.hbm_bandwidth * device.eff_hbm)}: a kernel needs "
            f"[bold]{ridge:.0f} FLOPs per HBM byte[/bold] (the ridge point) or it waits on memory.\n")

    c.print(f"[bold]2. Naive vs tiled matmul[/bold], {n}x{n}x{n} fp16, costed in counting mode:")
    c.print(table(None, COMPARISON_COLUMNS, comparison_rows(results), set(COMPARISON_COLUMNS[1:6])))
    ok = [r for r in results if "error" not in r]
    if len(ok) == 3:
        naive, tiled, mma = ok
        ratio = (naive["hbm_read_bytes"] + naive["hbm_write_bytes"]) / (mma["hbm_read_bytes"] + mma["hbm_write_bytes"])
        c.print(
            f"The naive kernel reads a row of A and a column of B from HBM for every output: "
            f"{fmt_bytes(naive['hbm_read_bytes'])}, so it is {naive['bound']}-bound. Tiling keeps "
            f"blocks of A and B in SRAM and reuses each element many times: {ratio:,.0f}x fewer HBM bytes. "
            f"v2 then waits on the fp32 vector units ({tiled['bound']}-bound); v3 hands each tile product "
            f"to the tensor cores and is {mma['bound']}-bound: {naive['time_s'] / mma['time_s']:,.0f}x faster "
            f"than naive.\n")
    c.print("[bold]Next:[/bold] tinyml matmul --help  |  tinyml devices  |  tinyml lab list  |  "
            "docs: mkdocs serve (docs/)")
    return 0
