"""``tinyml matmul``: run or cost the matmul versions on a simulated device."""

from __future__ import annotations

from ._args import choices, hidden_alias, positive_int
from ._out import console, emit_json, table
from .results import add_run_options, COMPARISON_COLUMNS, comparison_rows, execute_preflight, run_profiled, write_files

HELP = """examples:
  tinyml matmul --m 4096 --n 4096 --k 4096                 all versions on the A100, costed
  tinyml matmul --m 256 --n 256 --k 256 --variant tiled    execute (small shapes run the numerics)
  tinyml matmul --m 1024 --n 1024 --k 1024 --variant naive,mma
  tinyml matmul --m 64 --n 64 --k 64 --device toy --block-m 16 --block-n 16 --block-k 16
  tinyml matmul --m 4096 --n 4096 --k 4096 --json --trace mm.json --roofline mm.png

Shapes with M*N*K <= 2^27 execute on the CPU and are checked against NumPy; larger ones
run in counting mode (shapes only, same tile loops). --count-only / --execute force either; --execute
first checks that the inputs fit the simulated HBM (else every variant fails with HbmOutOfMemoryError)
and that the inputs and the reference fit this machine's available memory (else it stops, exit 2).
Exit status: 0 if every variant ran, 1 if some failed (their "error" is in the output), 2 for bad input.
"""

VARIANTS = {"naive": 1, "tiled": 2, "mma": 3}
EXECUTE_LIMIT = 2 ** 27


def register(sub) -> None:
    p = sub.add_parser("matmul", help="naive vs tiled matmul on a simulated GPU", epilog=HELP)
    p.add_argument("--m", type=positive_int, required=True, help="rows of A and C")
    p.add_argument("--n", type=positive_int, required=True, help="columns of B and C")
    p.add_argument("--k", type=positive_int, required=True, help="columns of A, rows of B")
    p.add_argument("--dtype", default="fp16", help="logical dtype for byte counts: fp16, bf16, fp32")
    p.add_argument("--device", default="a100-40gb", help="preset name or .toml file")
    p.add_argument("--variant", type=choices(VARIANTS, "variant"), default=list(VARIANTS), metavar="NAMES",
                   help=f"versions to run, comma-separated: {', '.join(VARIANTS)} or all (default: all)")
    hidden_alias(p, "--variants", "variant", type=choices(VARIANTS, "variant"))
    p.add_argument("--block-m", type=positive_int, default=None, help="tile rows (default: chosen from SRAM)")
    p.add_argument("--block-n", type=positive_int, default=None, help="tile columns (default: chosen from SRAM)")
    p.add_argument("--block-k", type=positive_int, default=None, help="tile depth (default: chosen from SRAM)")
    add_run_options(p, seed_help="random inputs' seed when executing")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from ..kernels.matmul import matmul
    from ..kernels.reference import matmul as reference
    from ..kernels.reference import matmul_host_bytes
    from ..sim import FLOAT_DTYPES, canonical, load_device, meta

    args.dtype = canonical(args.dtype, FLOAT_DTYPES)
    device = load_device(args.device)
    m, n, k = args.m, args.n, args.k
    execute = args.execute or (not args.count_only and m * n * k <= EXECUTE_LIMIT)
    mode = "execute" if execute else "count"
    no_room = None
    if execute:
        no_room = execute_preflight(device, {"a": (m, k), "b": (k, n)}, args.dtype, matmul_host_bytes(m, n, k),
                                    f"matmul M={m} N={n} K={k}")
    if execute and no_room is None:
        rng = np.random.default_rng(args.seed)
        a = rng.standard_normal((m, k)).astype(np.float32)   # (M, K)
        b = rng.standard_normal((k, n)).astype(np.float32)   # (K, N)
        expected = reference(a, b)                           # (M, N) float64
    else:                          # counting mode; or inputs that cannot exist on the device (every variant fails)
        a, b = meta((m, k), args.dtype), meta((k, n), args.dtype)
    blocks = {"block_m": args.block_m, "block_n": args.block_n, "block_k": args.block_k}
    variants = args.variant

    results, profiles = [], []
    for variant in variants:
        version = VARIANTS[variant]
        sizes = {key: v for key, v in blocks.items() if v is not None and not (version == 1 and key == "block_k")}

        def go(version=version, sizes=sizes):
            if no_room is not None:
                raise no_room
            c = matmul(a, b, version=version, dtype=args.dtype, **sizes)
            return {"max_abs_err": float(np.abs(c - expected).max())} if execute else {}

        result, prof = run_profiled(variant, device, mode, go)
        results.append(result)
        if prof is not None:
            profiles.append(prof)

    files = write_files(args, device, profiles, "matmul")

    payload = {"device": device.name, "command": "matmul",
               "params": {"m": m, "n": n, "k": k, "dtype": args.dtype, **blocks}, "results": results}
    if files:
        payload["files"] = files
    if args.json:
        emit_json(payload)
    else:
        c = console()
        title = (f"matmul {m}x{k} @ {k}x{n} {args.dtype} on {device.name} "
                 f"({'executed and checked against NumPy' if execute else 'counting mode: shapes only'})")
        c.print(table(title, COMPARISON_COLUMNS, comparison_rows(results), set(COMPARISON_COLUMNS[1:6])))
        if args.block_k is not None and "naive" in variants:
            c.print("note: naive has no K tiling (each thread streams a whole row and column); "
                    "--block-k applies to tiled and mma only")
        for r in results:
            if "error" in r:
                c.print(f"[bold]{r['variant']}[/bold]: {r['error']['message']}")
            elif execute:
                c.print(f"{r['variant']}: max |error| vs float64 NumPy = {r['max_abs_err']:.2e}")
        for what, path in files.items():
            c.print(f"wrote {what} {path}")
    return 1 if any("error" in r for r in results) else 0
