"""Rendering Graphviz drawings without ever crashing on a machine that lacks ``dot``.

The Python ``graphviz`` package only writes DOT text; the ``dot`` program from
the operating system (``apt-get install graphviz``, ``brew install graphviz``)
turns it into SVG/PNG. Where ``dot`` is missing, :func:`render` writes the
``.dot`` source next to the requested file and says how to install ``dot``.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = ("install Graphviz's `dot` program to render it: `apt-get install graphviz` (Debian/Ubuntu), "
                "`brew install graphviz` (macOS) or `conda install graphviz`")


@dataclass(frozen=True)
class Rendered:
    """Where a drawing went: ``path`` is the image, or the ``.dot`` source if ``dot`` is missing."""

    path: Path
    rendered: bool
    message: str = ""


def has_dot() -> bool:
    return shutil.which("dot") is not None


def render(source, path: "str | Path") -> Rendered:
    """Render DOT ``source`` (a string or a ``graphviz.Digraph``) to ``path`` (.svg, .png, .pdf).

    Never raises because ``dot`` is missing: returns ``Rendered(path_to_dot, False, message)``
    and emits a warning with the install hint instead.
    """
    path = Path(path)
    text = source.source if hasattr(source, "source") else str(source)
    fmt = path.suffix.lstrip(".") or "svg"
    if not has_dot():
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(text)
        msg = f"Graphviz `dot` not found: wrote the DOT source to {dot_path}; {INSTALL_HINT}."
        warnings.warn(msg, stacklevel=2)
        return Rendered(dot_path, False, msg)
    import graphviz

    graphviz.Source(text).render(outfile=str(path), format=fmt, cleanup=True)
    return Rendered(path, True)
