"""CPU and wall seconds of every executed code block of the docs pages, to find what makes ``mkdocs build`` slow.

Usage (from the repository root)::

    python tools/time_docs.py                       # every page under docs/, then the 25 heaviest blocks
    python tools/time_docs.py docs/compiler.md      # one page

Runs each ``python exec="on"`` block as markdown-exec does (blocks of one ``session`` share
their globals; a block without a session gets fresh ones), with the block's output discarded,
and prints ``cpu wall page:line`` per block, a total per page, and the heaviest blocks. CPU
seconds are this process's (every thread) plus its finished child processes' (a block that runs
the CLI with ``subprocess``); on a shared machine compare those, not wall.
All pages run in one process, so a kernel's Numba compile or cache load is charged to the
first block that runs it: time one page alone to see its cold cost.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import time
from pathlib import Path

FENCE = re.compile(r'^([ \t]*)(`{3,})python ([^\n]*exec="on"[^\n]*)\n(.*?)^\1\2[ \t]*$', re.S | re.M)


def blocks(text: str):
    """(session or None, code, line number) of each executed Python block, in page order."""
    for m in FENCE.finditer(text):
        session = re.search(r'session="([^"]+)"', m.group(3))
        indent = m.group(1)
        code = "\n".join(ln[len(indent):] if ln.startswith(indent) else ln for ln in m.group(4).splitlines())
        yield (session.group(1) if session else None), code, text[:m.start()].count("\n") + 1


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have exited (``subprocess.run``)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(pages: list[str]) -> None:
    pages = pages or sorted(str(p) for p in Path("docs").glob("*.md"))
    timed = []
    for page in pages:
        sessions: dict = {}
        page_cpu = page_wall = 0.0
        for session, code, line in blocks(Path(page).read_text()):
            env = sessions.setdefault(session, {"__name__": "__main__"}) if session else {"__name__": "__main__"}
            c0, w0 = cpu_seconds(), time.perf_counter()
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(code, f"{page}:{line}", "exec"), env)
                err = ""
            except Exception as exc:                  # noqa: BLE001 - reported, the next block still runs
                err = f"  ERROR {type(exc).__name__}: {exc}"[:200]
            cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
            page_cpu, page_wall = page_cpu + cpu, page_wall + wall
            timed.append((cpu, wall, f"{page}:{line}"))
            print(f"{cpu:7.2f} cpu {wall:7.2f} wall  {page}:{line}{err}", flush=True)
        print(f"{page_cpu:7.2f} cpu {page_wall:7.2f} wall  {page} (page)", flush=True)
    print(f"total: {sum(t[0] for t in timed):.1f} CPU s, {sum(t[1] for t in timed):.1f} s wall; heaviest blocks:")
    for cpu, wall, where in sorted(timed, reverse=True)[:25]:
        print(f"{cpu:7.2f} cpu {wall:7.2f} wall  {where}")


if __name__ == "__main__":
    main(sys.argv[1:])
