"""``tinyml ssm``: a selective-scan layer, naive vs IO-aware vs parallel, beside FlashAttention-2."""

from __future__ import annotations

from ._args import positive_int
from ._out import console, emit_json, table

HELP = """examples:
  tinyml ssm --seq 4096                           Mamba-style layer (D 4096, N 16) on the A100-80GB
  tinyml ssm --seq 65536 --batch 2 --device h100-sxm
  tinyml ssm --seq 2048 --channels 1024 --state 64 --json

Every kernel runs in counting mode (shapes only). FlashAttention-2 is the causal forward of a layer of
the same width: --heads heads of channels / (2 heads) dimensions (Mamba expands its width 2x).
"""


def register(sub) -> None:
    p = sub.add_parser("ssm", help="selective scan: naive vs IO-aware vs parallel, and FlashAttention-2",
                       epilog=HELP)
    p.add_argument("--seq", type=positive_int, default=4096, help="sequence length L (default 4096)")
    p.add_argument("--batch", type=positive_int, default=1, help="sequences (default 1)")
    p.add_argument("--channels", type=positive_int, default=4096, help="scan channels D (default 4096)")
    p.add_argument("--state", type=positive_int, default=16, help="state size N per channel (default 16)")
    p.add_argument("--heads", type=positive_int, default=16,
                   help="FlashAttention-2 heads; 2 x heads must divide --channels (default 16)")
    p.add_argument("--device", default="a100-80gb", help="preset name or .toml file (default a100-80gb)")
    p.add_argument("--json", action="store_true", help="print the numbers as JSON instead of a table")
    p.set_defaults(func=run)


def measure(seq: int, batch: int, channels: int, state: int, heads: int, device: str) -> list[dict]:
    """One row per form: kernels, HBM bytes, simulated time, bound (an error instead, e.g. out of HBM)."""
    from ..kernels.attention import flash_attention
    from ..kernels.ssm import selective_scan_fused, selective_scan_naive, selective_scan_parallel
    from ..sim import Profile, ShapeError, TinymlError, meta

    if channels % (2 * heads):           # never round (or clamp to 1) the head dim: the layers would differ in width
        fits = [h for h in (1, 2, 4, 8, 16, 32, 64) if channels % (2 * h) == 0]
        near = min(fits, key=lambda h: abs(h - heads), default=None)
        hint = (f"use e.g. --heads {near} (head dim {channels // (2 * near)})" if near
                else "use an even --channels, e.g. 4096")
        raise ShapeError(f"--channels {channels} is not a multiple of 2 x --heads = {2 * heads}: the "
                         f"FlashAttention-2 layer is channels / 2 = {channels / 2:g} wide, split into {heads} heads "
                         f"of {channels / (2 * heads):.4g} dimensions, and a head dim must be a whole number "
                         f"(tinyml does not round it); {hint}")
    args = (meta((batch, seq, channels)), meta((batch, seq, channels)), meta((channels, state), "fp32"),
            meta((batch, seq, state)), meta((batch, seq, state)), None)
    head_dim = channels // (2 * heads)
    qkv = [meta((batch, heads, seq, head_dim)) for _ in range(3)]
    forms = {"naive scan": (selective_scan_naive, args, {}), "IO-aware scan": (selective_scan_fused, args, {}),
             "parallel scan (Blelloch)": (selective_scan_parallel, args, {}),
             f"FlashAttention-2 ({heads} x {head_dim})": (flash_attention, qkv, {"causal": True})}
    rows = []
    for name, (fn, a, kw) in forms.items():
        try:
            with Profile(device) as prof:
                fn(*a, **kw)
        except TinymlError as exc:
            rows.append({"form": name, "error": " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip())})
            continue
        rows.append({"form": name, "kernels": len(prof.records), "hbm_bytes": prof.hbm_bytes,
                     "flops": prof.flops_matmul + prof.flops_vector, "time_s": prof.time_s, "bound": prof.bound})
    return rows


def run(args) -> int:
    from ..sim import load_device
    from ..sim.units import fmt_bytes, fmt_time

    dev = load_device(args.device)
    rows = measure(args.seq, args.batch, args.channels, args.state, args.heads, dev)
    failed = any("error" in r for r in rows)
    if args.json:
        emit_json({"command": "ssm", "device": dev.name, "seq": args.seq, "batch": args.batch,
                   "channels": args.channels, "state": args.state, "forms": rows})
        return 1 if failed else 0
    body = [[r["form"], "-", "-", "-", r["error"]] if "error" in r else
            [r["form"], str(r["kernels"]), fmt_bytes(r["hbm_bytes"]), fmt_time(r["time_s"]), r["bound"]]
            for r in rows]
    console().print(table(f"selective scan, batch {args.batch}, L {args.seq:,}, D {args.channels:,}, "
                          f"N {args.state} on {dev.name}", ["form", "kernels", "HBM bytes", "time", "bound"], body,
                          {"kernels", "HBM bytes", "time"}))
    return 1 if failed else 0
