"""``tinyml attention``: standard attention vs FlashAttention-1 vs FlashAttention-2."""

from __future__ import annotations

from ._args import UsageError, choices, hidden_alias, positive_int, probability
from ._out import console, emit_json, table
from .results import add_run_options, execute_preflight, run_profiled, write_files

HELP = """examples:
  tinyml attention --paper fig2                                 the FlashAttention paper's Figure 2, reproduced
  tinyml attention --batch 8 --heads 16 --seq 4096 --head-dim 64 --causal --backward
  tinyml attention --batch 1 --heads 32 --kv-heads 8 --seq 2048 --head-dim 128 --variant flash2
  tinyml attention --batch 1 --heads 2 --seq 100 --head-dim 16 --dropout 0.1   (small: executes and checks)

Shapes with batch*heads*seq*seq_k*head_dim <= 2^24 execute on the CPU and are checked against the
float64 reference; larger ones run in counting mode. --count-only / --execute force either; --execute
first checks that the inputs fit the simulated HBM (else every variant fails with HbmOutOfMemoryError)
and that the inputs and the reference fit this machine's available memory (else it stops, exit 2).
Exit status: 0 if every variant ran, 1 if some failed (out of HBM, ...), 2 for bad input.
"""

VARIANTS = ("standard", "flash1", "flash2", "flash3")
DEFAULT_VARIANTS = VARIANTS[:3]          # flash3 needs a Hopper device (--device h100-sxm or h200)
EXECUTE_LIMIT = 2 ** 24


def register(sub) -> None:
    p = sub.add_parser("attention", help="standard vs FlashAttention on a simulated GPU", epilog=HELP)
    p.add_argument("--paper", choices=["fig2"], help="reproduce a figure of the FlashAttention paper "
                                                     "(its own configuration: only --device and --json go with it; "
                                                     "default: off)")
    p.add_argument("--batch", type=positive_int, default=1, help="sequences in the batch")
    p.add_argument("--heads", type=positive_int, default=16, help="query heads")
    p.add_argument("--kv-heads", type=positive_int, default=None,
                   help="key/value heads for MQA/GQA, dividing --heads (default: --heads)")
    p.add_argument("--seq", type=positive_int, default=1024, help="query sequence length")
    p.add_argument("--seq-k", type=positive_int, default=None, help="key sequence length (default: --seq)")
    p.add_argument("--head-dim", type=positive_int, default=64, help="dimension d of each head")
    p.add_argument("--causal", action="store_true",
                   help="causal mask, bottom-right aligned (default: off, every query sees every key)")
    p.add_argument("--dropout", type=probability, default=0.0, help="dropout probability on the attention weights")
    p.add_argument("--backward", action="store_true", help="forward + backward (default: forward only)")
    p.add_argument("--dtype", default="fp16", help="logical dtype: fp16, bf16, fp32")
    p.add_argument("--device", default="a100-40gb", help="preset name or .toml file")
    p.add_argument("--variant", type=choices(VARIANTS, "variant"), default=list(DEFAULT_VARIANTS), metavar="NAMES",
                   help=f"kernels to run, comma-separated: {', '.join(VARIANTS)} or all "
                        f"(default: {', '.join(DEFAULT_VARIANTS)}; flash3 needs a Hopper device)")
    hidden_alias(p, "--variants", "variant", type=choices(VARIANTS, "variant"))
    add_run_options(p, seed_help="seed of the random inputs and of the dropout mask")
    p.set_defaults(func=run, paper_defaults={dest: p.get_default(dest) for dest in PAPER_IGNORES})


#: what ``--paper`` does not use: the figure has its own shapes, options and mode, and writes no files
PAPER_IGNORES = ("batch", "heads", "kv_heads", "seq", "seq_k", "head_dim", "causal", "dropout", "backward", "dtype",
                 "variant", "count_only", "execute", "seed", "trace", "roofline")


def run(args) -> int:
    if args.paper:
        from .attention_paper import run_paper

        given = [d for d in PAPER_IGNORES if getattr(args, d) != args.paper_defaults[d]]
        if given:
            flags = ", ".join("--" + d.replace("_", "-") for d in given)
            raise UsageError(f"--paper {args.paper} runs the paper's own configuration (B=64 H=16 N=1024 d=64 fp16, "
                             f"causal, dropout 0.1, forward + backward, counting mode) and would ignore {flags}; "
                             f"drop {flags}, or drop --paper to run your own (only --device and --json go with "
                             f"--paper)")

        return run_paper(args)
    import numpy as np

    from ..kernels import reference
    from ..kernels.attention.flash import flash_attention, flash_attention_backward
    from ..kernels.attention.standard import standard_attention, standard_attention_backward
    from ..sim import FLOAT_DTYPES, ShapeError, canonical, load_device, meta

    dtype = canonical(args.dtype, FLOAT_DTYPES)
    device = load_device(args.device)
    variants = args.variant
    b, h, d = args.batch, args.heads, args.head_dim
    kvh = args.kv_heads or h
    nq, nk = args.seq, args.seq_k or args.seq
    if h % kvh:
        raise ShapeError(f"--kv-heads {kvh} does not divide --heads {h}; GQA needs heads to be a multiple "
                         f"of kv_heads (e.g. --heads 32 --kv-heads 8)")
    execute = args.execute or (not args.count_only and b * h * nq * nk * d <= EXECUTE_LIMIT)
    mode = "execute" if execute else "count"
    opts = dict(causal=args.causal, dropout_p=args.dropout, seed=args.seed)
    shapes = {"q": (b, h, nq, d), "k": (b, kvh, nk, d), "v": (b, kvh, nk, d)}
    if args.backward:
        shapes["dout"] = (b, h, nq, d)
    no_room = None
    if execute:
        ref = reference.attention_host_bytes(b, h, nq, nk, d, backward=args.backward, dropout=args.dropout > 0)
        no_room = execute_preflight(device, shapes, dtype, ref, f"attention B={b} H={h} N={nq} Nk={nk} d={d}")
    if execute and no_room is None:
        rng = np.random.default_rng(args.seed)
        q, k, v, dout = (rng.standard_normal(shapes[n]).astype(np.float32) if n in shapes else None
                         for n in ("q", "k", "v", "dout"))               # (B, H, Nq, d), (B, KVH, Nk, d) x 2
        o_ref, _ = reference.attention(q, k, v, **opts)
        grads_ref = reference.attention_backward(q, k, v, dout, **opts) if args.backward else None
    else:                          # counting mode; or inputs that cannot exist on the device (every variant fails)
        q, k, v, dout = (meta(shapes.get(n, shapes["q"]), dtype) for n in ("q", "k", "v", "dout"))

    results, profiles = [], []
    for variant in variants:
        def go(variant=variant):
            if no_room is not None:
                raise no_room
            if variant == "standard":
                o, saved = standard_attention(q, k, v, dtype=dtype, return_saved=True, **opts)
                grads = standard_attention_backward(dout, saved) if args.backward else None
            else:
                o, saved = flash_attention(q, k, v, version=int(variant[-1]), dtype=dtype,
                                           return_saved=True, **opts)
                grads = flash_attention_backward(dout, saved) if args.backward else None
            if not execute:
                return {}
            extra = {"max_abs_err": float(np.abs(o - o_ref).max())}
            if grads is not None:
                extra["max_abs_grad_err"] = float(max(np.abs(g - r).max() for g, r in zip(grads, grads_ref)))
            return extra

        result, prof = run_profiled(variant, device, mode, go)
        results.append(result)
        if prof is not None:
            profiles.append(prof)

    files = write_files(args, device, profiles, "attention")
    payload = {"device": device.name, "command": "attention",
               "params": {"batch": b, "heads": h, "kv_heads": kvh, "seq": nq, "seq_k": nk, "head_dim": d,
                          "dtype": dtype, "backward": args.backward, **opts},
               "results": results}
    if files:
        payload["files"] = files
    if args.json:
        emit_json(payload)
    else:
        _print(args, device, payload, execute)
        for what, path in files.items():
            console().print(f"wrote {what} {path}")
    return 1 if any("error" in r for r in results) else 0


def _print(args, device, payload, execute) -> None:
    from ..sim.units import fmt_bytes, fmt_flops, fmt_time

    c = console()
    p = payload["params"]
    title = (f"attention B={p['batch']} H={p['heads']} KVH={p['kv_heads']} N={p['seq']} Nk={p['seq_k']} "
             f"d={p['head_dim']} {p['dtype']}{' causal' if p['causal'] else ''}"
             f"{' dropout ' + str(p['dropout_p']) if p['dropout_p'] else ''}, "
             f"{'forward + backward' if p['backward'] else 'forward'} on {device.name} "
             f"({'executed and checked against float64' if execute else 'counting mode'})")
    base = next((r for r in payload["results"] if r["variant"] == "standard" and "error" not in r), None)
    rows = []
    for r in payload["results"]:
        if "error" in r:
            rows.append([r["variant"], *["-"] * 7, r["error"]["type"]])
            continue
        speed = f"{base['time_s'] / r['time_s']:.1f}x" if base else "-"
        rows.append([r["variant"], fmt_bytes(r["hbm_read_bytes"]), fmt_bytes(r["hbm_write_bytes"]),
                     fmt_flops(r["flops_matmul"]), fmt_flops(r["flops_vector"]), fmt_bytes(r["peak_hbm_bytes"]),
                     fmt_time(r["time_s"]), speed, r["bound"]])
    cols = ["variant", "HBM read", "HBM write", "matmul", "vector", "peak HBM", "sim time", "speedup", "bound"]
    c.print(table(title, cols, rows, set(cols[1:8])))
    for r in payload["results"]:
        if "error" in r:
            c.print(f"[bold]{r['variant']}[/bold]: {r['error']['message']}")
        elif execute:
            grad = f", gradients {r['max_abs_grad_err']:.1e}" if "max_abs_grad_err" in r else ""
            c.print(f"{r['variant']}: max |error| vs float64: output {r['max_abs_err']:.1e}{grad}")
