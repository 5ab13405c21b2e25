"""Printing helpers shared by the commands."""

from __future__ import annotations

import json
import sys


def console():
    from rich.console import Console

    # Piped output (CI logs, docs, README) gets a fixed width wide enough for every table.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


def table(title: str | None, columns: list[str], rows: list[list[str]], right: set[str] | None = None):
    """A rich Table with simple borders; columns in ``right`` are right-aligned."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold")
    for i, c in enumerate(columns):
        last = i == len(columns) - 1      # the last column (messages, sources) may wrap
        t.add_column(c, justify="right" if right and c in right else "left", no_wrap=not last,
                     overflow="fold" if last else "ellipsis")
    for r in rows:
        t.add_row(*r)
    return t


def emit_json(payload) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")
