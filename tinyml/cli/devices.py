"""``tinyml devices [NAME] [--json]``: the simulated GPUs and where their numbers come from."""

from __future__ import annotations

from ..sim.units import fmt_bytes, fmt_rate, fmt_time
from ._out import console, emit_json, table

HELP = """examples:
  tinyml devices                 a table of every preset
  tinyml devices h100-sxm        one device: every number with its source
  tinyml devices my_gpu.toml     your own device file
  tinyml devices --json          everything, machine-readable
"""


def register(sub) -> None:
    p = sub.add_parser("devices", help="list the simulated GPUs", epilog=HELP)
    p.add_argument("name", nargs="?", help="a preset name or a .toml file: show every number with its source "
                                           "(default: a table of every preset)")
    p.add_argument("--json", action="store_true", help="print the devices as JSON instead of a table")
    p.set_defaults(func=run)


def summary_row(d) -> list[str]:
    return [d.name, str(d.sm_count), fmt_bytes(d.sram_per_sm, binary=True), fmt_bytes(d.hbm_capacity), fmt_rate(d.hbm_bandwidth), fmt_rate(d.hbm_bandwidth * d.eff_hbm),
            fmt_rate(d.matmul_rate("fp16"), "FLOP/s"), fmt_rate(d.matmul_rate("fp16") * d.eff_matmul, "FLOP/s"),
            f"{d.ridge_point('fp16'):.0f}", fmt_time(d.launch_overhead_s)]


#: peak = the spec sheet; achievable = peak x the preset's efficiency (what the cost model charges)
SUMMARY_COLUMNS = ["device", "SMs", "SRAM/SM", "HBM", "HBM BW\npeak", "HBM BW\nachievable",
                   "fp16 MMA\npeak", "fp16 MMA\nachievable", "ridge\nFLOP/B", "launch"]
FOOTER = ("peak: the spec sheet; achievable: peak x the preset's efficiency, the rate the cost model charges "
          "(tinyml devices NAME shows each factor and its source); MMA: fp16 tensor-core matmul; ridge: "
          "achievable matmul FLOP/s per achievable HBM byte/s")


def run(args) -> int:
    from ..sim import list_presets, load_device

    if args.name is not None:                       # '' is refused by load_device, not read as no name
        d = load_device(args.name)
        if args.json:
            emit_json({"devices": [d.to_dict()]})
            return 0
        rows = [[key, _value(d, key), src] for key, src in d.sources.items()]
        c = console()
        c.print(f"[bold]{d.name}[/bold]: {d.description}")
        c.print(table(None, ["number", "value", "source"], rows))
        c.print(achievable_line(d))
        return 0
    devices = [load_device(n) for n in list_presets()]
    if args.json:
        emit_json({"devices": [d.to_dict() for d in devices]})
        return 0
    right = set(SUMMARY_COLUMNS) - {"device"}
    c = console()
    c.print(table("Simulated devices (tinyml devices NAME for sources)", SUMMARY_COLUMNS,
                  [summary_row(d) for d in devices], right))
    c.print(FOOTER)
    return 0


def achievable_line(d) -> str:
    """The rates above are peaks (spec sheets); what the cost model charges is peak x efficiency."""
    pairs = [("HBM", d.hbm_bandwidth, d.eff_hbm, "B/s"), ("SRAM", d.sram_bandwidth, d.eff_sram, "B/s")]
    if "fp16" in d.matmul_flops:
        pairs.append(("fp16 matmul", d.matmul_rate("fp16"), d.eff_matmul, "FLOP/s"))
    pairs.append(("fp32 vector", d.vector_rate("fp32"), d.eff_vector, "FLOP/s"))
    parts = [f"{what} {fmt_rate(peak * eff, unit)} achievable of {fmt_rate(peak, unit)} peak"
             for what, peak, eff, unit in pairs]
    return "achievable = peak x efficiency, the rates the cost model charges: " + "; ".join(parts)


_ATTRS = {"sm.count": "sm_count", "sm.clock_hz": "clock_hz", "sm.sram_bytes": "sram_per_sm",
          "sm.max_blocks": "max_blocks_per_sm", "sm.max_threads_per_sm": "max_threads_per_sm",
          "sm.max_threads_per_block": "max_threads_per_block", "sram.bandwidth": "sram_bandwidth",
          "hbm.capacity_bytes": "hbm_capacity", "hbm.bandwidth": "hbm_bandwidth",
          "host.bandwidth": "host_bandwidth", "launch.overhead_s": "launch_overhead_s",
          "efficiency.hbm": "eff_hbm", "efficiency.sram": "eff_sram", "efficiency.matmul": "eff_matmul",
          "efficiency.vector": "eff_vector", "sm.register_bytes": "register_bytes", "l2.capacity_bytes": "l2_bytes",
          "sfu.ops_per_s": "sfu_rate", "int32.ops_per_s": "int_rate", "convert.ops_per_s": "cvt_rate"}


def _value(d, key: str) -> str:
    section, name = key.split(".")
    if section in ("matmul_flops", "vector_flops", "mma_sync_flops"):
        return fmt_rate(getattr(d, section)[name], "FLOP/s")
    v = getattr(d, _ATTRS[key])
    if key.endswith("bandwidth"):
        return fmt_rate(v)
    if key in ("sm.sram_bytes", "sm.register_bytes", "l2.capacity_bytes"):
        return fmt_bytes(v, binary=True)
    if key == "hbm.capacity_bytes":
        return fmt_bytes(v)
    if key == "launch.overhead_s":
        return fmt_time(v)
    if key == "sm.clock_hz":
        return fmt_rate(v, "Hz")
    if key.endswith("ops_per_s"):
        return fmt_rate(v, "op/s")
    return f"{v:g}"
