"""Where Numba caches tinyml's compiled kernels.

Numba's ``cache=True`` keys a cached kernel on its *own* source file, so an
edit to a helper it calls from another file (``load_tile``, ``mma_acc``) would
leave the stale machine code in use. tinyml therefore keeps its cache in a
folder named after a hash of all its kernel sources (and the Numba version):
any edit to any of them starts a fresh cache.

The folder is ``$TINYML_CACHE_DIR`` or ``~/.cache/tinyml``; a user's own
``NUMBA_CACHE_DIR`` always wins. Import this module before defining any
jitted function (``tinyml.sim.tiles`` and ``tinyml.kernels`` do).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba

_ROOT = Path(__file__).resolve().parents[1]          # the tinyml package


def source_hash() -> str:
    """Hash of every source file whose functions get jitted, plus Numba's version."""
    h = hashlib.sha256(numba.__version__.encode())
    for folder in ("sim", "kernels"):
        for path in sorted((_ROOT / folder).rglob("*.py")):
            h.update(path.relative_to(_ROOT).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def configure_cache() -> str | None:
    """Point Numba's cache at the versioned folder; returns it (None if the user chose one)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    base = Path(os.environ.get("TINYML_CACHE_DIR") or Path.home() / ".cache" / "tinyml")
    folder = base / f"numba-{source_hash()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:          # read-only home: fall back to Numba's default (__pycache__)
        return None
    numba.config.CACHE_DIR = str(folder)
    _prune(base, keep=folder)
    return str(folder)


def _prune(base: Path, keep: Path, newest: int = 4) -> None:
    """Delete all but the ``newest`` other cache folders (old versions' machine code)."""
    import shutil

    old = sorted((p for p in base.glob("numba-*") if p != keep), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in old[newest:]:
        shutil.rmtree(path, ignore_errors=True)


CACHE_DIR = configure_cache()
