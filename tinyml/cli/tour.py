"""``tinyml tour``: the guided demo. Each later capability adds a stop."""

from __future__ import annotations

import argparse

from ._args import positive_int
from ._out import console, emit_json, table
from ._progress import AheadOfTime, compile_progress, mark_cache_warm
from .results import COMPARISON_COLUMNS, comparison_rows, run_profiled

HELP = """examples:
  tinyml tour                      memory hierarchy, matmul, attention, decoding, compiler on the A100
  tinyml tour --device h100-sxm    the same on another GPU
  tinyml tour --json               the numbers, machine-readable
"""


def register(sub) -> None:
    p = sub.add_parser("tour", help="the guided demo (the default command)", epilog=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="preset name or .toml file (default a100-40gb)")
    p.add_argument("--size", type=positive_int, default=4096, help="matmul size N for N x N x N (default 4096)")
    p.add_argument("--long-seq", type=positive_int, default=65536, help="sequence length of the memory stop (default 65536)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


#: What each stop is about, for the progress line while its kernels compile.
STOPS = {2: "tour stop 2 of 6 (matmul)", 3: "tour stop 3 of 6 (attention)", 4: "tour stop 4 of 6 (memory)",
         5: "tour stop 5 of 6 (generating text)", 6: "tour stop 6 of 6 (compiler)"}


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
    from ..sim import load_device, meta
    from ..sim.units import fmt_bytes, fmt_rate

    device = load_device(args.device)
    n = args.size
    levels = hierarchy(device)
    # On a cold Numba cache, a second core compiles FlashAttention-2 (stop 3's last row) and stops 5 and 6
    # while this process does 2 to 4: about half of the compile time each (later_stops).
    ahead = AheadOfTime("tinyml.cli.tour:later_stops", args.device)
    results = []
    with compile_progress(STOPS[2]):
        for variant, version in (("naive", 1), ("tiled", 2), ("mma", 3)):
            def go(version=version):
                matmul(meta((n, n), "fp16"), meta((n, n), "fp16"), version=version)
            results.append(run_profiled(variant, device, "count", go)[0])

    if args.json:
        with compile_progress(STOPS[3]):
            attention = attention_results(device)
        ahead.wait(STOPS[5])
        with compile_progress(STOPS[5]):
            inference = inference_results(device)
        with compile_progress(STOPS[6]):
            compiler = compiler_results(device)
        mark_cache_warm()
        emit_json({"device": device.name, "hierarchy": levels, "ridge_flop_per_byte": device.ridge_point("fp16"),
                   "matmul": {"device": device.name, "command": "matmul",
                              "params": {"m": n, "n": n, "k": n, "dtype": "fp16"}, "results": results},
                   "attention": attention, "inference": inference, "compiler": compiler})
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
    failed: dict[str, list[str]] = {}                  # message -> the variants that raised it
    for r in results:
        if "error" in r:
            failed.setdefault(r["error"]["message"], []).append(r["variant"])
    for message, variants in failed.items():
        c.print(f"[bold]{', '.join(variants)}[/bold]: {message}\n")
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
    attention_story(c, device, n_long=args.long_seq)
    ahead.wait(STOPS[5])
    inference_story(c, device)
    compiler_story(c, device)
    mark_cache_warm()
    c.print("[bold]Next:[/bold] tinyml matmul --help  |  tinyml attention --paper fig2  |  "
            "tinyml compile gpt2_block --explain  |  tinyml devices  |  tinyml lab list  |  docs: mkdocs serve (docs/)")
    return 0


def later_stops(device_spec) -> None:
    """What a second process computes on a cold cache to fill Numba's cache, first what this process
    needs first: stop 3's FlashAttention-2 forward + backward, then stops 5 and 6.

    Compile CPU seconds per stop, summed from each kernel's measured compile on a cold cache (numba
    0.68): stop 2 about 13, stop 3 about 72 (standard 22, FlashAttention-1 26, FlashAttention-2 25),
    stop 4 nothing new, stop 5 about 40, stop 6 about 14 more; so about 60 in this process and 78 in
    the second, instead of 85 and 53 with stops 5 and 6 alone ahead.
    """
    from ..kernels.attention.paper import run_variant as run_fig2
    from ..sim import load_device

    device = load_device(device_spec)
    run_fig2("flash2", device)
    inference_results(device)
    compiler_results(device)


def attention_results(device) -> dict:
    """Stop 3 as JSON: the kernel-command schema for the Figure 2 configuration, forward + backward."""
    from ..kernels.attention.paper import FIG2, run_variant as run_fig2
    from .results import profile_result

    return {"device": device.name, "command": "attention", "params": {**FIG2, "backward": True},
            "results": [profile_result(v, run_fig2(v, device), "count") for v in ("standard", "flash1", "flash2")]}


def attention_story(c, device, n_long: int = 65536) -> None:
    """Stops 3 and 4: FlashAttention's bytes and time, then its memory at long sequences."""
    from ..kernels.attention import flash_attention, standard_attention
    from ..kernels.attention.paper import FIG2, run_variant as run_fig2
    from ..sim import HbmOutOfMemoryError, Profile, meta
    from ..sim.units import fmt_bytes, fmt_flops, fmt_time

    cfg = FIG2
    c.print(f"[bold]3. Attention[/bold], GPT-2 medium as in the FlashAttention paper (B={cfg['batch']}, "
            f"H={cfg['heads']}, N={cfg['seq']}, d={cfg['head_dim']}, causal, dropout), forward + backward:")
    with compile_progress(STOPS[3]):
        profs = {v: run_fig2(v, device) for v in ("standard", "flash1", "flash2")}
    std = profs["standard"]
    rows = [[v, str(len(p.records)), fmt_bytes(p.hbm_bytes), fmt_flops(p.flops_matmul + p.flops_vector),
             fmt_time(p.time_s), f"{std.time_s / p.time_s:.1f}x", p.bound] for v, p in profs.items()]
    cols = ["variant", "kernels", "HBM bytes", "FLOPs", "sim time", "speedup", "bound"]
    c.print(table(None, cols, rows, set(cols[1:6])))
    fa = profs["flash1"]
    c.print(f"Standard attention writes the {cfg['seq']}x{cfg['seq']} score matrix of every head to HBM and "
            f"reads it back kernel after kernel: {fmt_bytes(std.hbm_bytes)}. FlashAttention keeps each tile of "
            f"scores in SRAM and recomputes them in the backward pass: "
            f"{(fa.flops_matmul + fa.flops_vector) / (std.flops_matmul + std.flops_vector):.2f}x the FLOPs but "
            f"{std.hbm_bytes / fa.hbm_bytes:.0f}x fewer bytes, so it is {std.time_s / fa.time_s:.1f}x faster. "
            f"(`tinyml attention --paper fig2` puts these next to the paper's numbers.)\n")

    c.print(f"[bold]4. Memory.[/bold] One sequence of {n_long:,} tokens, 16 heads, d=64, causal, forward:")
    heads, d = 16, 64
    for name, fn in (("standard", standard_attention), ("flash2", flash_attention)):
        prof = Profile(device)
        try:
            with compile_progress(STOPS[4]), prof:
                q, k, v = (meta((1, heads, n_long, d), "fp16") for _ in range(3))    # (B, H, N, d)
                fn(q, k, v, causal=True)
            c.print(f"  {name}: fits, peak HBM {fmt_bytes(prof.peak_hbm_bytes)}, {fmt_time(prof.time_s)}")
        except HbmOutOfMemoryError:
            c.print(f"  {name}: [bold]does not fit[/bold]. {_oom_lesson(device, heads, n_long)}")
    c.print("That is the lesson of this stop: standard attention's memory grows as N^2, FlashAttention's as N "
            "(Q, K, V and O), so only FlashAttention reaches long contexts on this GPU.\n")


def _oom_lesson(device, heads: int, n: int) -> str:
    """Why standard attention runs out of HBM at ``n`` tokens, in numbers."""
    from ..sim import nbytes
    from ..sim.units import fmt_bytes

    s_bytes = nbytes(heads * n * n, "fp16")
    cap = device.hbm_capacity
    if s_bytes > cap:
        why = (f"Its score matrix S alone is {heads} heads x {n:,} x {n:,} fp16 = {fmt_bytes(s_bytes)}, "
               f"{s_bytes / cap:.1f}x the {fmt_bytes(cap)} of HBM on {device.name} ")
    else:
        why = (f"Its {n:,} x {n:,} matrices (S, then P: {fmt_bytes(s_bytes)} each over {heads} heads) do not fit "
               f"side by side in the {fmt_bytes(cap)} of HBM on {device.name} ")
    return why + "(the simulator raised HbmOutOfMemoryError, as the GPU would)."


INFERENCE_MODEL, INFERENCE_FORMATS, INFERENCE_CONTEXT = "llama-2-7b", ("fp16", "int8", "q4_0"), 4096


def inference_results(device) -> dict:
    """Stop 5 as JSON: Llama-2-7B decoding at batch 1 per weight format (the `tinyml quant` rows)."""
    from ..inference import serving_rows

    return {"model": INFERENCE_MODEL, "device": device.name, "context": INFERENCE_CONTEXT,
            "rows": serving_rows(INFERENCE_MODEL, device, INFERENCE_FORMATS, context=INFERENCE_CONTEXT)}


def inference_story(c, device) -> None:
    """Stop 5: generating tokens is reading weights; fewer bits per weight, more tokens per second."""
    from ..sim.units import fmt_bytes

    with compile_progress(STOPS[5]):
        r = inference_results(device)
    c.print(f"[bold]5. Generating text[/bold]: {INFERENCE_MODEL} at batch 1, context {INFERENCE_CONTEXT:,}. Every "
            f"new token reads all the weights and the KV cache from HBM:")
    cols = ["weights", "size", "fits", "bound tok/s", "sim tok/s"]
    rows = [[x["format"], fmt_bytes(x["size_bytes"]), "yes" if x["fits"] else "no",
             f"{x['bound_tokens_per_s']:.0f}" if x["bound_tokens_per_s"] else "-",
             f"{x['sim_tokens_per_s']:.0f}" if x["sim_tokens_per_s"] else "-"] for x in r["rows"]]
    c.print(table(None, cols, rows, set(cols[1:])))
    ok = [x for x in r["rows"] if x["sim_tokens_per_s"]]
    if len(ok) >= 2:
        lo, hi = ok[0], ok[-1]
        c.print(f"Decoding is memory-bound: the bound is bytes per token / HBM bandwidth, and the simulated "
                f"kernels (fused dequantize gemvs, FlashDecoding attention) reach "
                f"{min(x['fraction_of_bound'] for x in ok):.0%} of it or more. {hi['format']} weights "
                f"({hi['bits_per_weight']:.1f} bits) give {hi['sim_tokens_per_s'] / lo['sim_tokens_per_s']:.1f}x "
                f"the tokens/s of {lo['format']}. (`tinyml quant` and `tinyml decode` show more.)\n")


def compiler_results(device, seq: int = 1024) -> dict:
    """Stop 6 as JSON: GPT-2 small's block lowered op by op (eager) vs compiled, counting mode."""
    from ..compiler import compile, lower, zoo

    g = zoo.get("gpt2_block")
    compiled = compile(g, device=device, dtype="fp16", bindings={"n": seq}, explain=False)
    out = {"model": "gpt2_block", "seq": seq, "device": device.name}
    for label, plan in (("op_by_op", lower(g, fused=False)), ("compiled", compiled.plan)):
        _, prof = plan.run(bindings={"n": seq}, device=device, dtype="fp16", count=True)
        out[label] = {"kernels": len(prof.records), "hbm_bytes": int(prof.hbm_bytes), "time_s": prof.time_s}
    return out


def compiler_story(c, device, seq: int = 1024) -> None:
    """Stop 6: what a graph compiler's fusion and attention rewrite buy on a GPT-2 block."""
    from ..sim.units import fmt_bytes, fmt_time

    with compile_progress(STOPS[6]):
        r = compiler_results(device, seq)
    eager, comp = r["op_by_op"], r["compiled"]
    c.print(f"[bold]6. A tiny compiler[/bold]: GPT-2 small's block (d=768, 12 heads) at n={seq}, fp16, "
            f"as a graph of ops:")
    cols = ["lowered", "kernels", "HBM bytes", "sim time"]
    c.print(table(None, cols, [["op by op (eager)", str(eager["kernels"]), fmt_bytes(eager["hbm_bytes"]),
                                fmt_time(eager["time_s"])],
                               ["fused + attention rewrite", str(comp["kernels"]), fmt_bytes(comp["hbm_bytes"]),
                                fmt_time(comp["time_s"])]], set(cols[1:])))
    c.print(f"Fusion keeps the elementwise ops (bias, GeLU, residual adds) in the matmul's output tile and "
            f"rewrites the attention pattern into one FlashAttention kernel: {eager['kernels']} kernels become "
            f"{comp['kernels']}, {eager['hbm_bytes'] / comp['hbm_bytes']:.1f}x fewer bytes, "
            f"{eager['time_s'] / comp['time_s']:.1f}x faster. (`tinyml compile gpt2_block --explain` shows "
            f"every pass.)\n")
