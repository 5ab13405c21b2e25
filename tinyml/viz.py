"""Rendering Graphviz drawings without ever crashing on a machine that lacks a renderer.

tinyml writes its drawings as DOT text (:mod:`tinyml.compiler.draw`) and hands
them to the first renderer it finds:

1. Graphviz's own ``dot`` program, from the operating system;
2. ``graphviz-pure``, a port of Graphviz 16.1 to Rust shipped as a pip wheel with
   its own binary (EPL-2.0, Graphviz's licence). It is in tinyml's ``dev`` and
   ``draw`` extras, so drawings work right after the quick start on a machine
   without Graphviz. Its SVG of the GPT-2 block is byte for byte Graphviz's own
   (Graphviz compiled to WebAssembly), apart from the version comment.

Where neither exists, :func:`render` writes the ``.dot`` source next to the
requested file and says once, per process, how to install a renderer.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

#: The renderers tried, in order: each takes ``-T<format>`` and reads DOT on stdin, as ``dot`` does.
RENDERERS = ("dot", "graphviz-pure")

INSTALL_HINT = ("install a renderer: `pip install graphviz-pure` (any OS; part of tinyml's dev extra), or "
                "Graphviz itself: `apt-get install graphviz` (Debian/Ubuntu), `dnf install graphviz` (Fedora), "
                "`brew install graphviz` (macOS), `winget install graphviz` (Windows) or `conda install graphviz`")
MISSING = f"No Graphviz renderer (`dot` or `graphviz-pure`) was found, so drawings are DOT source (.dot); {INSTALL_HINT}."

_warned = {"missing": False}


@dataclass(frozen=True)
class Rendered:
    """Where a drawing went: ``path`` is the image, or the ``.dot`` source if no renderer exists."""

    path: Path
    rendered: bool
    message: str = ""


def renderer() -> "str | None":
    """The path of the first renderer found on ``PATH`` (:data:`RENDERERS`), or None."""
    for name in RENDERERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def has_dot() -> bool:
    """Whether DOT text can be rendered here (Graphviz's ``dot`` or ``graphviz-pure``)."""
    return renderer() is not None


def _say_missing_once() -> None:
    if not _warned["missing"]:
        _warned["missing"] = True
        warnings.warn(MISSING, stacklevel=3)


def _run(text: str, fmt: str, out: "Path | None" = None) -> bytes:
    exe = renderer()
    args = [exe, f"-T{fmt}"] + (["-o", str(out)] if out is not None else [])
    proc = subprocess.run(args, input=text.encode(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(exe).name} could not render the drawing (exit {proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def to_svg(source) -> "str | None":
    """DOT ``source`` (text or an object with ``.source``) as SVG text; None (said once) without a renderer."""
    text = source.source if hasattr(source, "source") else str(source)
    if not has_dot():
        _say_missing_once()
        return None
    return _run(text, "svg").decode()


def render(source, path: "str | Path") -> Rendered:
    """Render DOT ``source`` (a string or an object with ``.source``) to ``path`` (.svg, .png, .pdf).

    Never raises because no renderer is installed: writes the ``.dot`` source instead and returns
    ``Rendered(path_to_dot, False, message)``; the first time in a process it also warns with
    the install commands.
    """
    path = Path(path)
    text = source.source if hasattr(source, "source") else str(source)
    fmt = path.suffix.lstrip(".") or "svg"
    if not has_dot():
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(text)
        _say_missing_once()
        return Rendered(dot_path, False, f"wrote the DOT source to {dot_path}. {MISSING}")
    _run(text, fmt, path)
    return Rendered(path, True)
