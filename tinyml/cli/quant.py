"""``tinyml quant``: a model's size per weight format, does it fit, tokens/s (bound and simulated), max batch."""

from __future__ import annotations

from ._args import comma_items, hidden_alias, positive_int
from ._out import console, emit_json, table

HELP = """examples:
  tinyml quant                                               Llama-2-7B on the A100-80GB
  tinyml quant --model llama-2-70b --device m2-max
  tinyml quant --model llama-2-7b --format fp16,int8,q4_0,int4-g128 --context 4096
  tinyml quant --model gpt2 --device rtx-4090 --json

Per format: bits per weight (scales included), model size, fits (weights + one sequence of
--context tokens of KV cache <= HBM), the KV budget (tokens the rest of HBM holds), the
largest batch at --context, and tokens/s at batch 1: the HBM-bandwidth bound (at the
device preset's efficiency) next to one decode step simulated through the kernels
(a CUDA graph: one launch per step; eager: one launch per kernel).
Models: tinyml.sim.models presets or your own .toml file; no weights are downloaded.
"""

DEFAULT_MODEL = "llama-2-7b"
DEFAULT_DEVICE = "a100-80gb"


def register(sub) -> None:
    p = sub.add_parser("quant", help="model size per weight format, fit, tokens/s and max batch", epilog=HELP)
    add_model_args(p)
    p.add_argument("--format", default=None, metavar="FORMATS",
                   help="weight formats to compare, comma-separated (default fp16,int8,q4_0,int4-g128)")
    hidden_alias(p, "--formats", "format")
    p.add_argument("--context", type=positive_int, default=None,
                   help="tokens of context per sequence (default: the model's max context)")
    p.add_argument("--no-sim", action="store_true", help="skip the kernel simulation (sizes and bounds only)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.set_defaults(func=run)


def add_model_args(p) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model preset or .toml file (default {DEFAULT_MODEL})")
    p.add_argument("--device", default=DEFAULT_DEVICE, help=f"device preset or .toml file (default {DEFAULT_DEVICE})")


def parse_formats(text: "str | None") -> list[str]:
    from ..inference.formats import DEFAULT_FORMATS, FormatError, valid_names

    if text is None:
        return list(DEFAULT_FORMATS)
    names = comma_items(text, "format", flag="--format", error=FormatError, example="--format fp16,int8,q4_0")
    if not names:
        raise FormatError(f"--format is empty; give a comma-separated list from {valid_names()}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FormatError(f"--format {text!r} names {', '.join(twice)} twice; each format is one row, give it once")
    return names


def _gb(n) -> str:
    return f"{n / 1e9:.2f} GB"


def _tps(x) -> str:
    return "-" if x is None else f"{x:,.1f}"


def run(args) -> int:
    from rich.markup import escape

    from ..inference.report import capacity_source, serving_rows
    from ..sim import load_device
    from ..sim.models import load_model

    model, device = load_model(args.model), load_device(args.device)
    rows = serving_rows(model, device, parse_formats(args.format), context=args.context,
                        simulate=not args.no_sim)
    context = rows[0]["context"]
    if args.json:
        emit_json({"command": "quant", "model": model.name, "device": device.name, "context": context,
                   "params": model.n_params, "hbm_capacity_bytes": device.hbm_capacity,
                   "hbm_capacity_source": capacity_source(device),
                   "hbm_efficiency": device.eff_hbm, "results": rows})
        return 0
    columns = ["format", "bits/w", "size", "fits", "KV budget", "max batch", "bound tok/s", "sim tok/s",
               "sim/bound", "eager tok/s"]
    body = [[r["format"], f"{r['bits_per_weight']:.3f}", _gb(r["size_bytes"]), "yes" if r["fits"] else "no",
             f"{r['kv_budget_tokens']:,}", f"{r['max_batch']:,}", _tps(r["bound_tokens_per_s"]),
             _tps(r["sim_tokens_per_s"]),
             "-" if r["fraction_of_bound"] is None else f"{r['fraction_of_bound']:.0%}",
             _tps(r["sim_eager_tokens_per_s"])] for r in rows]
    c = console()
    title = (f"{model.name} ({model.n_params / 1e9:.2f}B params) on {device.name} "
             f"({device.hbm_capacity / 1e9:.0f} GB HBM, {device.hbm_bandwidth / 1e9:,.0f} GB/s peak), "
             f"context {context:,}, batch 1")
    c.print(table(title, columns, body, set(columns[1:])))
    c.print(f"bound: bytes per token / achievable HBM bandwidth ({device.hbm_bandwidth / 1e9:,.0f} GB/s peak x "
            f"{device.eff_hbm:g} efficiency = {device.hbm_bandwidth * device.eff_hbm / 1e9:,.0f} GB/s); "
            f"sim: one layer's kernels x {model.layers} layers + embedding, final norm, LM head, "
            f"as one CUDA graph (eager: a launch per kernel). `tinyml decode` shows the kernels.")
    notes = [r["note"] for r in rows if r["note"]]
    for note in notes:
        c.print(f"[bold]note[/bold]: {escape(note)}")
    if notes:
        c.print(f"{device.name}'s capacity, {device.hbm_capacity / 1e9:.2f} GB: {escape(capacity_source(device))}")
    return 0
