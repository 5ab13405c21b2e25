"""What every benchmark prints at the end: its targets, one line each, and the JSON file.

A target row is ``(name, measured, ok, counts)``: ``ok`` is True, False or None
(skipped); a row that does not count is printed as INFO (or as the label
``info_label(ok)`` gives) and never fails the run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def parallel_build(when: bool = True) -> None:
    """Build tinyml's kernels parallel (``TINYML_PARALLEL_KERNELS=1``: every core runs blocks) for a
    benchmark's full run, which times them executing on the CPU beside multithreaded BLAS, PyTorch or
    NumPy; tinyml's default is the serial build, which is all that counting needs. Nothing changes when
    ``when`` is False (a test imports the benchmark as a module, ``__name__ != "__main__"``, to check its
    helpers: the test process keeps its build) or under ``--quick`` (CI's smoke run, whose CPU ratios are
    INFO only: it keeps the serial build the tests, docs and labs compiled instead of compiling every
    kernel a second time; :func:`build_line` says which build ran). Call it before tinyml's kernels are
    imported (it says so otherwise); a value the user set wins."""
    if not when or "--quick" in sys.argv:
        return
    if "tinyml.sim.jit" in sys.modules:
        raise RuntimeError("parallel_build() must run before tinyml's kernels are imported: move it above the "
                           "first tinyml import of the benchmark")
    os.environ.setdefault("TINYML_PARALLEL_KERNELS", "1")


def build_line() -> str:
    """Which build of tinyml's kernels this run times, for a benchmark's header."""
    from tinyml.sim.jit import parallel_kernels

    if parallel_kernels():
        return "tinyml's kernels: the parallel build (prange: blocks on every core)"
    return ("tinyml's kernels: the serial build (one core; --quick does not compile the parallel build, so its "
            "CPU ratios set one core against every core)")


def report_targets(rows, *, title: str = "== Targets", width: int = 72, info_label=None,
                   note: "str | None" = None) -> int:
    """Print the target table; return how many counted targets failed."""
    def status(ok, counts) -> str:
        if ok is None:
            return "SKIP"
        if counts:
            return "PASS" if ok else "FAIL"
        return info_label(ok) if info_label else "INFO"

    labels = [status(ok, counts) for _, _, ok, counts in rows]
    pad = max((len(s) for s in labels), default=4)
    print(f"\n{title}")
    for label, (name, measured, _, _) in zip(labels, rows):
        print(f"   {label:<{pad}}  {name:<{width}} {measured}")
    if note:
        print(f"   ({note})")
    return sum(bool(counts and ok is False) for _, _, ok, counts in rows)


def verdict(failed: int) -> str:
    return "all targets pass" if not failed else f"{failed} target(s) FAIL"


def write_json(path, result: dict, rows, failed: int) -> None:
    """``result`` plus the target rows and the failure count, as JSON at ``path``."""
    result = {**result, "targets": [{"name": n, "measured": m, "ok": ok, "counts": c} for n, m, ok, c in rows],
              "failed": failed}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2, default=str))
    print(f"results written to {path}")
