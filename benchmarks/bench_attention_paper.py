"""The FlashAttention paper's Figure 2 on the simulated A100, in counting mode, with targets.

Counting mode only (``tinyml.sim.meta`` shapes, no numerics), so the numbers are
the same on every machine; only the wall time of the run depends on the CPU::

    python benchmarks/bench_attention_paper.py               # a few seconds
    python benchmarks/bench_attention_paper.py --json out.json

1. Figure 2 (left), ``tinyml.kernels.attention.paper.reproduce`` on
   ``a100-40gb``: GPT-2 medium attention (batch 64, 16 heads, N 1024, d 64,
   fp16, causal, dropout 0.1), forward + backward. Per variant: simulated
   matmul and vector GFLOPs, HBM reads + writes (after L2, and before it),
   runtime, next to the paper's numbers and the ratios. The paper's
   "FlashAttention" row is FlashAttention-1 (tinyml's ``flash1``); ``flash2``
   is shown for comparison (the paper has no such row).
2. Figure 2 (middle): FlashAttention-1's forward at the same configuration,
   sweeping the K/V block size ``block_k`` (B_c) with ``block_q`` (B_r) fixed
   (default 32, so every size fits the A100's SRAM): HBM traffic and
   simulated time per block size.
3. Peak HBM (the ledger's high-water mark) vs sequence length 256 .. 65,536,
   batch 1, 16 heads, d 64, fp16, no mask, forward: standard attention vs
   FlashAttention-2; standard's ``HbmOutOfMemoryError`` prints as OOM. The
   standard / FA2 ratio at 2K and 4K next to the 10x and 20x the
   FlashAttention authors report (their README; a real training step, so the
   forward + backward ratio is printed too).

Targets (PASS/FAIL, exit 1 on any FAIL), as ``tinyml attention --paper fig2``
checks them: HBM reads + writes and runtime within 20% of the paper for
standard and for FlashAttention-1, and the FLOP ratio FlashAttention-1 /
standard within 10% of the paper's 75.2 / 66.6 = 1.13. The paper's claims
about the sweep and the memory ratios print as INFO.

Known FAIL: tinyml's FA1 moves about 1.9x the paper's HBM bytes and takes
about 2.1x its runtime. tinyml charges every re-read of a tile (FA1 re-reads
Q, O, l, m for every K/V block, and Q, O, dO and the fp32 dQ accumulator in
the backward) as HBM traffic; the paper measured DRAM traffic after the A100's
40 MB L2, which serves most of those re-reads. The benchmark reports that gap
as FAIL, on purpose.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from _report import report_targets, verdict, write_json  # noqa: E402

from bench_matmul import environment  # noqa: E402
from tinyml.kernels.attention.flash import flash_attention, flash_attention_backward  # noqa: E402
from tinyml.kernels.attention.flash1 import flash_attention_v1  # noqa: E402
from tinyml.kernels.attention.paper import FIG2, PAPER, PAPER_FLASH1, reproduce  # noqa: E402
from tinyml.kernels.attention.standard import standard_attention, standard_attention_backward  # noqa: E402
from tinyml.sim import HbmOutOfMemoryError, Profile, meta  # noqa: E402

DEVICE = "a100-40gb"
TOLERANCE = {"hbm": 0.20, "time": 0.20, "flops_ratio": 0.10}     # the same as tinyml attention --paper fig2
SWEEP_BLOCK_K = (32, 64, 128, 256, 512)
SEQS = tuple(256 * 2 ** i for i in range(9))                      # 256 ... 65,536
MEMORY_CLAIMS = {2048: 10.0, 4096: 20.0}                           # standard / FlashAttention peak memory


def pre_l2(prof: Profile) -> int:
    """HBM reads + writes before L2 reuse: what the algorithm asks of HBM."""
    return sum(r.hbm_read_bytes + r.l2_hit_bytes + r.hbm_write_bytes for r in prof.records)


# ---------------------------------------------------------------------------- 1. Figure 2 (left)

def figure2_left(device: str) -> dict:
    rows = reproduce(device)
    out = {"config": FIG2, "device": device, "paper": {k: dict(zip(("gflops", "hbm_gb", "ms"), v))
                                                       for k, v in PAPER.items()}, "variants": {}}
    from tinyml.kernels.attention.paper import run_variant

    for r in rows:
        prof = run_variant(r.variant, device)          # for the pre-L2 bytes (reproduce keeps only totals)
        v = {"flops_matmul": r.flops_matmul, "flops_vector": r.flops_vector,
             "flops": r.flops_matmul + r.flops_vector, "hbm_bytes": r.hbm_bytes, "pre_l2_bytes": pre_l2(prof),
             "time_s": r.time_s, "peak_hbm_bytes": r.peak_hbm_bytes, "paper_gflops": r.paper_gflops,
             "paper_hbm_gb": r.paper_hbm_gb, "paper_ms": r.paper_ms, "kernels": len(prof.records)}
        if r.paper_hbm_gb:
            v["hbm_vs_paper"] = r.hbm_bytes / 1e9 / r.paper_hbm_gb
            v["time_vs_paper"] = r.time_s * 1e3 / r.paper_ms
        out["variants"][r.variant] = v
    s, f = out["variants"]["standard"], out["variants"]["flash1"]
    out["flops_ratio"] = f["flops"] / s["flops"]
    out["paper_flops_ratio"] = PAPER["flash"][0] / PAPER["standard"][0]
    return out


def print_left(res: dict) -> None:
    c = res["config"]
    print(f"\n== 1. Figure 2 (left): B {c['batch']}, H {c['heads']}, N {c['seq']}, d {c['head_dim']}, {c['dtype']}, "
          f"causal, dropout {c['dropout_p']}, forward + backward,\n   {res['device']}, counting mode "
          f"(paper.reproduce); the paper's 'FlashAttention' row is FA1 (flash1)")
    print(f"   {'variant':<10}{'matmul GF':>10}{'vector GF':>10}{'total GF':>10}{'paper GF':>9}"
          f"{'HBM GB':>9}{'pre-L2 GB':>10}{'paper GB':>9}{'x paper':>8}{'ms':>8}{'paper ms':>9}{'x paper':>8}")
    for name, v in res["variants"].items():
        def fmt(x, spec):
            return "-" if x is None else format(x, spec)
        print(f"   {name:<10}{v['flops_matmul'] / 1e9:>10.1f}{v['flops_vector'] / 1e9:>10.1f}{v['flops'] / 1e9:>10.1f}"
              f"{fmt(v['paper_gflops'], '.1f'):>9}{v['hbm_bytes'] / 1e9:>9.2f}{v['pre_l2_bytes'] / 1e9:>10.2f}"
              f"{fmt(v['paper_hbm_gb'], '.1f'):>9}{fmt(v.get('hbm_vs_paper'), '.2f'):>8}{v['time_s'] * 1e3:>8.2f}"
              f"{fmt(v['paper_ms'], '.1f'):>9}{fmt(v.get('time_vs_paper'), '.2f'):>8}")
    print(f"   FLOPs flash1 / standard: {res['flops_ratio']:.3f} (the paper: {PAPER['flash'][0]} / "
          f"{PAPER['standard'][0]} = {res['paper_flops_ratio']:.3f})")
    print("   (HBM GB = reads + writes after the simulated L2; pre-L2 adds the bytes L2 served. The paper's GFLOPs "
          "do not follow\n    from the shapes: the matmuls alone are 12 N^2 d B H = 824.6 GFLOPs, so only the "
          "flash / standard ratio is compared.)")


# ---------------------------------------------------------------------------- 2. Figure 2 (middle)

def figure2_middle(device: str, block_q: int) -> dict:
    b, h, n, d, dt = FIG2["batch"], FIG2["heads"], FIG2["seq"], FIG2["head_dim"], FIG2["dtype"]
    out = {"block_q": block_q, "sweep": {}}
    for bk in SWEEP_BLOCK_K:
        with Profile(device) as prof:
            q, k, v = (meta((b, h, n, d), dt) for _ in range(3))
            flash_attention_v1(q, k, v, causal=FIG2["causal"], dropout_p=FIG2["dropout_p"], dtype=dt,
                               block_q=block_q, block_k=bk, **PAPER_FLASH1)
        r = prof.records[0]
        out["sweep"][bk] = {"hbm_bytes": r.hbm_bytes, "pre_l2_bytes": pre_l2(prof), "time_s": r.time_s,
                            "bound": r.bound, "limiter": r.limiter, "sram_per_block_bytes": r.sram_per_block_bytes,
                            "blocks_per_sm": r.blocks_per_sm}
    sw = out["sweep"]
    bks = list(sw)
    out["traffic_falls"] = all(sw[a]["hbm_bytes"] > sw[c]["hbm_bytes"] for a, c in zip(bks, bks[1:]))
    out["gain_256_to_512"] = sw[256]["time_s"] / sw[512]["time_s"]
    out["gain_64_to_256"] = sw[64]["time_s"] / sw[256]["time_s"]
    return out


def print_middle(res: dict) -> None:
    c = FIG2
    print(f"\n== 2. Figure 2 (middle): FA1 forward, B {c['batch']}, H {c['heads']}, N {c['seq']}, d {c['head_dim']}, "
          f"{c['dtype']}, causal, dropout {c['dropout_p']};\n   block_q (B_r) = {res['block_q']}, block_k (B_c) swept")
    print(f"   {'block_k':>8}{'HBM GB':>9}{'pre-L2 GB':>10}{'ms':>8}{'x prev ms':>10}  {'bound (limiter)':<26}"
          f"{'SRAM/block':>11}{'blocks/SM':>10}")
    prev = None
    for bk, r in res["sweep"].items():
        change = "" if prev is None else f"{prev / r['time_s']:.2f}"
        print(f"   {bk:>8}{r['hbm_bytes'] / 1e9:>9.2f}{r['pre_l2_bytes'] / 1e9:>10.2f}{r['time_s'] * 1e3:>8.2f}"
              f"{change:>10}  {r['bound'] + ' (' + r['limiter'] + ')':<26}{r['sram_per_block_bytes']:>11,}"
              f"{r['blocks_per_sm']:>10}")
        prev = r["time_s"]
    print("   (x prev ms = the previous row's time / this row's: > 1 means faster)")


# ---------------------------------------------------------------------------- 3. peak memory

def _peak(variant: str, device: str, n: int, backward: bool) -> "int | None":
    """Peak HBM of one forward (+ backward) at batch 1, 16 heads, d 64, fp16; None on OOM."""
    try:
        with Profile(device) as prof:
            q, k, v = (meta((1, 16, n, 64), "fp16") for _ in range(3))
            if variant == "standard":
                _, saved = standard_attention(q, k, v, return_saved=True)
                if backward:
                    standard_attention_backward(meta((1, 16, n, 64), "fp16"), saved)
            else:
                _, saved = flash_attention(q, k, v, version=2, return_saved=True)
                if backward:
                    flash_attention_backward(meta((1, 16, n, 64), "fp16"), saved)
        return prof.peak_hbm_bytes
    except HbmOutOfMemoryError:
        return None


def peak_memory(device: str) -> dict:
    out = {"seqs": list(SEQS), "forward": {"standard": {}, "flash2": {}}, "fwd_bwd": {}, "oom_message": None}
    for n in SEQS:
        for variant in ("standard", "flash2"):
            out["forward"][variant][n] = _peak(variant, device, n, backward=False)
    try:                                               # the first line of standard's error, where it occurs
        with Profile(device):
            n = next(n for n in SEQS if out["forward"]["standard"][n] is None)
            q, k, v = (meta((1, 16, n, 64), "fp16") for _ in range(3))
            standard_attention(q, k, v)
    except (StopIteration, HbmOutOfMemoryError) as e:
        out["oom_message"] = str(e).splitlines()[0] if isinstance(e, HbmOutOfMemoryError) else None
    for n in MEMORY_CLAIMS:
        s, f = (_peak(v, device, n, backward=True) for v in ("standard", "flash2"))
        out["fwd_bwd"][n] = {"standard": s, "flash2": f}
    out["ratios"] = {}
    for n, claim in MEMORY_CLAIMS.items():
        fs, ff = out["forward"]["standard"][n], out["forward"]["flash2"][n]
        bs, bf = out["fwd_bwd"][n]["standard"], out["fwd_bwd"][n]["flash2"]
        out["ratios"][n] = {"claim": claim, "forward": fs / ff if fs and ff else None,
                            "fwd_bwd": bs / bf if bs and bf else None}
    return out


def gb(x) -> str:
    return "OOM" if x is None else f"{x / 1e9:.3f}"


def print_memory(res: dict, device: str) -> None:
    print(f"\n== 3. Peak HBM (ledger high-water mark) vs sequence length: batch 1, H 16, d 64, fp16, no mask, "
          f"forward, {device}")
    print(f"   {'N':>7}{'standard GB':>13}{'flash2 GB':>11}{'standard / flash2':>19}")
    fw = res["forward"]
    for n in res["seqs"]:
        s, f = fw["standard"][n], fw["flash2"][n]
        ratio = f"{s / f:.1f}x" if s and f else "-"
        print(f"   {n:>7,}{gb(s):>13}{gb(f):>11}{ratio:>19}")
    if res["oom_message"]:
        print(f"   standard's HbmOutOfMemoryError: {res['oom_message']}")
    print("   Memory saving at 2K and 4K vs the FlashAttention authors' 10x and 20x (their README: a training step, "
          "forward + backward):")
    for n, r in res["ratios"].items():
        fb = res["fwd_bwd"][n]
        print(f"   N = {n:,}: forward {r['forward']:.1f}x; forward + backward {r['fwd_bwd']:.1f}x "
              f"({gb(fb['standard'])} / {gb(fb['flash2'])} GB); claimed {r['claim']:.0f}x")


# ---------------------------------------------------------------------------- targets

def targets(left: dict, middle: dict, memory: dict) -> list:
    """[(name, measured text, ok, counts?)]: counts=False prints INFO."""
    rows = []
    for variant, label in (("standard", "standard"), ("flash1", "FA1 (paper's FlashAttention)")):
        v = left["variants"][variant]
        rows.append((f"{label}: HBM R/W within 20% of the paper's {v['paper_hbm_gb']} GB",
                     f"{v['hbm_bytes'] / 1e9:.2f} GB = {v['hbm_vs_paper']:.2f}x",
                     abs(v["hbm_vs_paper"] - 1) <= TOLERANCE["hbm"], True))
        rows.append((f"{label}: runtime within 20% of the paper's {v['paper_ms']} ms",
                     f"{v['time_s'] * 1e3:.2f} ms = {v['time_vs_paper']:.2f}x",
                     abs(v["time_vs_paper"] - 1) <= TOLERANCE["time"], True))
    rel = left["flops_ratio"] / left["paper_flops_ratio"]
    rows.append((f"FLOPs FA1 / standard within 10% of the paper's {left['paper_flops_ratio']:.2f}",
                 f"{left['flops_ratio']:.3f} = {rel:.3f}x", abs(rel - 1) <= TOLERANCE["flops_ratio"], True))
    sw = middle["sweep"]
    rows.append(("sweep: FA1 forward HBM traffic falls with every larger block_k",
                 " > ".join(f"{sw[b]['hbm_bytes'] / 1e9:.2f}" for b in sw) + " GB", middle["traffic_falls"], False))
    rows.append(("sweep: runtime stops improving beyond block_k 256 (< 5% gain to 512)",
                 f"256 -> 512: {middle['gain_256_to_512']:.2f}x faster (64 -> 256: {middle['gain_64_to_256']:.2f}x)",
                 middle["gain_256_to_512"] < 1.05, False))
    for n, r in memory["ratios"].items():
        rows.append((f"memory: standard / FA2 peak at {n // 1024}K, fwd+bwd within 25% of {r['claim']:.0f}x",
                     f"forward {r['forward']:.1f}x, forward + backward {r['fwd_bwd']:.1f}x",
                     abs(r["fwd_bwd"] / r["claim"] - 1) <= 0.25, False))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--device", default=DEVICE, help=f"device preset (default {DEVICE}: the paper's GPU)")
    p.add_argument("--block-q", type=int, default=32, help="block_q (B_r) of the block-size sweep (default 32)")
    p.add_argument("--quick", action="store_true", help="accepted for symmetry with the other benchmarks: "
                   "this one is counting only and always runs in full")
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    env = environment()
    print("tinyml attention: the FlashAttention paper's Figure 2, simulated (counting mode)")
    print(f"   CPU: {env['cpu']}, {env['cores']} cores; Python {env['python']}, NumPy {env['numpy']}, "
          f"Numba {env['numba']} (the numbers below do not depend on the machine)")
    left = figure2_left(args.device)
    print_left(left)
    middle = figure2_middle(args.device, args.block_q)
    print_middle(middle)
    memory = peak_memory(args.device)
    print_memory(memory, args.device)

    rows = targets(left, middle, memory)
    failed = report_targets(rows, title="== Targets (INFO: the paper's qualitative claims, printed, not counted)",
                            info_label=lambda ok: f"INFO ({'agrees' if ok else 'differs'})")
    wall = time.perf_counter() - t0
    print(f"\n{verdict(failed)} (wall time {wall:.1f} s)")

    if args.json:
        def keys(d):          # JSON object keys must be strings
            return {str(k): keys(v) if isinstance(v, dict) else v for k, v in d.items()}
        write_json(args.json, {"args": vars(args), "tolerance": TOLERANCE, "environment": env,
                               "figure2_left": keys(left), "figure2_middle": keys(middle),
                               "peak_memory": keys(memory), "wall_s": wall}, rows, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
