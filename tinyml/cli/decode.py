"""``tinyml decode``: the kernels of one decode step of a model, simulated on a device."""

from __future__ import annotations

from ._args import positive_int
from ._out import console, emit_json, table
from .quant import add_model_args

HELP = """examples:
  tinyml decode --context 4096                                Llama-2-7B, fp16, batch 1, A100-80GB
  tinyml decode --model llama-2-7b --format q4_0 --context 4096 --batch 1
  tinyml decode --model llama-2-70b --format int4-g128 --context 8192 --batch 16 --split-kv 1
  tinyml decode --model gpt2 --device rtx-4090 --json

One layer's kernels run in counting mode (shapes only) and are multiplied by the number of
layers (every layer is the same); the embedding, final norm and LM head run once per step.
--split-kv S: the attention's KV splits (Flash-Decoding; 1 = no split; default: the kernel's
heuristic from the device's SM count).
"""


def register(sub) -> None:
    p = sub.add_parser("decode", help="the per-token kernel profile of a model's decode step", epilog=HELP)
    add_model_args(p)
    p.add_argument("--format", default="fp16", help="weight format, one (e.g. q4_0, int4-g128, int8; "
                                                    "`tinyml quant --format a,b` compares several)")
    p.add_argument("--context", type=positive_int, default=None, help="tokens in each sequence's KV cache "
                                                                       "(default: the model's max context)")
    p.add_argument("--batch", type=positive_int, default=1, help="sequences decoding together")
    p.add_argument("--split-kv", type=positive_int, default=None,
                   help="KV splits of the attention, 1 = no split (default: a heuristic from the SM count)")
    p.add_argument("--json", action="store_true", help="print the step's kernels as JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..inference.memory import fit
    from ..inference.step import simulate_step
    from ..sim import load_device
    from ..sim.models import load_model
    from ..sim.units import fmt_bytes, fmt_time

    model, device = load_model(args.model), load_device(args.device)
    if "," in args.format:
        from ..inference.formats import FormatError

        raise FormatError(f"decode simulates one weight format, got --format {args.format}; compare several "
                          f"with `tinyml quant --format {args.format}`")
    context = model.max_context if args.context is None else args.context
    fi = fit(model, args.format, device, context=context, batch=args.batch)
    step = simulate_step(model, args.format, device, context=context, batch=args.batch, split_kv=args.split_kv)
    d = step.to_dict()
    d["fit"] = fi.to_dict()
    if args.json:
        emit_json({"command": "decode", **d})
        return 0
    columns = ["role", "kernel", "grid", "x", "time", "total", "HBM bytes", "total HBM", "bound"]
    body = [[r["role"], r["kernel"], "x".join(map(str, r["grid"])), str(r["times"]), fmt_time(r["time_s"]),
             fmt_time(r["total_s"]), fmt_bytes(r["hbm_bytes"]), fmt_bytes(r["total_hbm_bytes"]), r["bound"]]
            for r in d["kernels"]]
    c = console()
    c.print(table(f"{model.name} {step.format} decode step on {device.name}: batch {args.batch}, "
                  f"context {context:,} (one layer x {model.layers}, then once per step)",
                  columns, body, {"x", "time", "total", "HBM bytes", "total HBM"}))
    b = step.bound
    c.print(f"step: {step.kernels_per_step} kernels, {fmt_bytes(step.hbm_bytes)} of HBM traffic; "
            f"{fmt_time(step.graph_s)} as one CUDA graph = {step.tokens_per_s:,.1f} tokens/s "
            f"({step.tokens_per_s / b.tokens_per_s:.0%} of the bound); eager (a launch per kernel): "
            f"{fmt_time(step.eager_s)} = {step.eager_tokens_per_s:,.1f} tokens/s")
    c.print(f"bound: {fmt_bytes(b.bytes_per_step)} per step / achievable HBM bandwidth "
            f"({fmt_bytes(b.hbm_bandwidth)}/s peak x {b.efficiency:g} efficiency = "
            f"{fmt_bytes(b.hbm_bandwidth * b.efficiency)}/s) = {fmt_time(b.step_s)} = {b.tokens_per_s:,.1f} tokens/s")
    if not fi.fits:
        from rich.markup import escape

        from ..inference.report import capacity_source

        c.print(f"[bold]note[/bold]: the weights ({fmt_bytes(fi.weight_bytes)}) and {args.batch} x {context:,} "
                f"tokens of KV cache ({fmt_bytes(fi.kv_bytes)}) do not fit {device.name}'s "
                f"{fmt_bytes(fi.capacity_bytes)} of HBM: the timing assumes they did (max batch here: "
                f"{fi.max_batch}). That capacity: {escape(capacity_source(device))}. "
                f"`tinyml quant --model {model.name} --device {device.name} --context {context}` shows the "
                f"formats that fit and their tokens/s")
    return 0
