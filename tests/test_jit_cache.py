"""Numba's cache folder: a read-only install with an unwritable home still runs every kernel.

Reproduced in a subprocess, faithfully even as root (who may write anywhere despite permissions):
the package is copied into a folder where ``__pycache__`` is a *file* in every package (so Numba's
in-tree cache cannot exist), and HOME lies below a file (so no ``~/.cache`` can be created).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tinyml

PROGRAM = """
import sys, tempfile
if {break_temp}:                                   # no writable temporary folder either
    tempfile.gettempdir = lambda: {blocked!r}
import tinyml.kernels                              # decorates every @njit(cache=True): this used to raise
from tinyml.sim import jit
from tinyml.sim.tiles import tile_bytes
assert tile_bytes(5, 4) == 3                       # compiled (and cached, if a folder was found)
print("CACHE_DIR", jit.CACHE_DIR)
"""


@pytest.fixture(scope="module")
def read_only_install(tmp_path_factory):
    """(folder holding the copied package, an environment with an unusable HOME and no cache settings)."""
    root = tmp_path_factory.mktemp("ro")
    src = Path(tinyml.__file__).parent
    shutil.copytree(src, root / "tinyml", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for folder in [root / "tinyml", *(p for p in (root / "tinyml").rglob("*") if p.is_dir())]:
        (folder / "__pycache__").write_text("not a folder: no in-tree cache\n")
    blocker = root / "blocker"
    blocker.write_text("a file, so nothing below it can be created\n")
    for path in (root / "tinyml").rglob("*"):
        path.chmod(0o444 if path.is_file() else 0o555)
    env = {k: v for k, v in os.environ.items()
           if k not in ("TINYML_CACHE_DIR", "NUMBA_CACHE_DIR", "XDG_CACHE_HOME", "PYTHONPATH")}
    env.update(HOME=str(blocker / "home"), PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    yield root, env, str(blocker / "tmp")
    for path in [root / "tinyml", *(root / "tinyml").rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _run(root, env, break_temp: bool, blocked: str, tmpdir: Path | None = None):
    env = dict(env)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    code = PROGRAM.format(break_temp=break_temp, blocked=blocked)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600, cwd=root)


def test_read_only_install_caches_in_the_temporary_folder(read_only_install, tmp_path):
    root, env, blocked = read_only_install
    out = _run(root, env, False, blocked, tmpdir=tmp_path)
    assert "no locator available" not in out.stderr
    assert out.returncode == 0, out.stderr[-2000:]
    cache = Path(out.stdout.split("CACHE_DIR ")[1].strip())
    assert cache.parent.parent == tmp_path and cache.parent.name.startswith("tinyml-cache-")
    assert any(cache.rglob("*.nbi"))                      # compiled kernels were saved there
    assert "NoCacheWarning" not in out.stderr


def test_nothing_writable_runs_without_a_cache_and_one_warning(read_only_install):
    root, env, blocked = read_only_install
    out = _run(root, env, True, blocked)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("CACHE_DIR ")[1].strip() == "None"
    warning = [line for line in out.stderr.splitlines() if "NoCacheWarning" in line]
    assert len(warning) == 1 and "TINYML_CACHE_DIR" in warning[0]


def test_tinyml_cache_dir_comes_first(tmp_path, monkeypatch):
    from tinyml.sim import jit

    monkeypatch.setenv("TINYML_CACHE_DIR", str(tmp_path / "mine"))
    assert jit.candidate_bases()[0] == tmp_path / "mine"
    assert jit.candidate_bases()[1] == Path.home() / ".cache" / "tinyml"
    monkeypatch.delenv("TINYML_CACHE_DIR")
    assert jit.candidate_bases()[0] == Path.home() / ".cache" / "tinyml"
