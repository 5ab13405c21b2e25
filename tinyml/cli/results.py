"""The one JSON schema every kernel command prints with ``--json``::

    {"device": "a100-40gb", "command": "matmul", "params": {...},
     "results": [{"variant", "mode", "hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes",
                  "flops_matmul", "flops_vector", "peak_hbm_bytes", "time_s", "bound",
                  "kernels": [per-kernel records: the same fields plus "name", "grid", ...]},
                 {"variant": "naive", "error": {"type": "HbmOutOfMemoryError", "message": "..."}}],
     "files": {"trace": "mm.json", "roofline": "mm.png"}}     (only when --trace / --roofline wrote them)

A variant that fails (out of HBM, tiles that overflow SRAM) is a result with an
``error`` field, so a sweep shows where each variant stops fitting.
"""

from __future__ import annotations

from ..sim.errors import TinymlError

FIELDS = ("hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes", "flops_matmul", "flops_vector")


def add_run_options(p, *, seed_help: str) -> None:
    """The options every kernel-comparing command shares: counting vs executing, the seed, and
    what to write (JSON, a Chrome trace, a roofline); :func:`write_files` writes the files."""
    from ._args import image_file, seed, writable_file

    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--count-only", action="store_true",
                      help="shapes only: cost without numerics (default: only for shapes too big to execute)")
    mode.add_argument("--execute", action="store_true",
                      help="run the numerics even for big shapes, slow (default: only small shapes execute)")
    p.add_argument("--seed", type=seed, default=0, help=seed_help)
    p.add_argument("--json", action="store_true",
                   help="print the results as JSON (the schema every kernel command shares) instead of a table")
    p.add_argument("--trace", metavar="FILE", type=writable_file,
                   help="write a Chrome trace of every variant, open it in ui.perfetto.dev (default: none)")
    p.add_argument("--roofline", metavar="FILE", type=image_file,
                   help="write a roofline plot: .png, .svg or .pdf (default: none)")


def profile_result(variant: str, prof, mode: str, **extra) -> dict:
    """A result entry from a Profile holding one variant's kernels."""
    out = {"variant": variant, "mode": mode}
    out.update({f: sum(getattr(r, f) for r in prof.records) for f in FIELDS})
    out.update(peak_hbm_bytes=prof.peak_hbm_bytes, time_s=prof.time_s, bound=prof.bound)
    out.update(extra)
    out["kernels"] = [r.to_dict() for r in prof.records]
    return out


def error_result(variant: str, exc: TinymlError, mode: str) -> dict:
    return {"variant": variant, "mode": mode, "error": {"type": type(exc).__name__, "message": str(exc)}}


def execute_preflight(device, shapes: dict, dtype: str, reference_bytes: int, what: str):
    """Before an executing run builds its inputs ``{name: shape}``: simulated HBM first, then the host.

    Returns the ``HbmOutOfMemoryError`` the inputs alone raise on ``device`` (every variant would
    raise it: report it per variant, build nothing), or None. Raises ``HostMemoryError`` if the
    float32 inputs (each drawn in float64 first) and the float64 reference (``reference_bytes``)
    would not fit the host's available memory.
    """
    import math

    from ..sim import HbmLedger, HbmOutOfMemoryError, check_host_memory
    from ..sim.units import fmt_bytes

    ledger = HbmLedger(device.hbm_capacity, device.name)
    try:
        for name, shape in shapes.items():
            ledger.alloc(name, shape, dtype)
    except HbmOutOfMemoryError as exc:
        return exc
    sizes = [math.prod(shape) for shape in shapes.values()]
    inputs = 4 * sum(sizes) + 8 * max(sizes)
    check_host_memory(inputs + reference_bytes, f"executing {what} (float32 inputs {fmt_bytes(inputs)}, "
                                                f"float64 reference {fmt_bytes(reference_bytes)})")
    return None


def run_profiled(variant: str, device, mode: str, fn) -> tuple[dict, object]:
    """Run ``fn()`` in a fresh Profile on ``device``; returns (result, profile or None).

    (The CLI's wrapper for one variant of a comparison; the FlashAttention paper's
    ``kernels.attention.paper.run_variant`` runs one variant of Figure 2.)"""
    from ..sim import Profile

    prof = Profile(device, name=variant)
    try:
        with prof:
            extra = fn() or {}
    except TinymlError as exc:
        return error_result(variant, exc, mode), None
    return profile_result(variant, prof, mode, **extra), prof


def comparison_rows(results: list[dict]) -> list[list[str]]:
    """Rows for people: one per variant, with the speedup over the first that ran."""
    from ..sim.units import fmt_bytes, fmt_flops, fmt_time

    base = next((r for r in results if "error" not in r), None)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["variant"], "-", "-", "-", "-", "-", r["error"]["type"]])
            continue
        flops = r["flops_matmul"] + r["flops_vector"]
        speedup = base["time_s"] / r["time_s"] if base else 1.0
        rows.append([r["variant"], fmt_bytes(r["hbm_read_bytes"] + r["hbm_write_bytes"]),
                     fmt_bytes(r["l2_hit_bytes"]), fmt_flops(flops), fmt_time(r["time_s"]),
                     f"{speedup:.1f}x", r["bound"]])
    return rows


COMPARISON_COLUMNS = ["variant", "HBM bytes", "L2 hits", "FLOPs", "sim time", "speedup", "bound"]


def write_files(args, device, profiles, name: str) -> dict:
    """``--trace``: the variants back to back, one Perfetto track each; ``--roofline``: all kernels.

    Returns what was written, ``{"trace": path, "roofline": path}`` (the JSON output's ``files``);
    nothing when no variant ran."""
    from ..sim import Profile

    files: dict = {}
    if args.trace and profiles:
        merged = Profile(device, name=name)
        for stream, prof in enumerate(profiles):
            for r in prof.records:
                r.start_s, r.stream = merged.time_s, stream
                merged.records.append(r)
        merged.to_chrome_trace(args.trace)
        files["trace"] = str(args.trace)
    if args.roofline and profiles:
        from ..sim.roofline import draw_roofline

        draw_roofline(profiles, args.roofline, dtype=args.dtype)
        files["roofline"] = str(args.roofline)
    return files
