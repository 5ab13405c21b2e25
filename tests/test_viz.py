"""Graphviz rendering: the system's `dot`, else the graphviz-pure wheel, else the .dot source and one note."""

import re
import shutil
import warnings
from pathlib import Path

import pytest

from tinyml import viz

SOURCE = 'digraph g { a -> b [label="2 KB"]; }'
REAL_WHICH = shutil.which


def _only(monkeypatch, *available):
    """Pretend that only the renderers named in ``available`` are installed."""
    monkeypatch.setattr(viz.shutil, "which", lambda name: REAL_WHICH(name) if name in available else None)


def test_without_a_renderer_writes_source_and_says_how_to_install_once(tmp_path, monkeypatch):
    _only(monkeypatch)
    monkeypatch.setitem(viz._warned, "missing", False)
    with pytest.warns(UserWarning, match="pip install graphviz-pure") as said:
        out = viz.render(SOURCE, tmp_path / "g.svg")
    assert len(said) == 1
    for command in ("apt-get install graphviz", "brew install graphviz", "winget install graphviz"):
        assert command in str(said[0].message)                         # one install command per OS
    assert not out.rendered and out.path == tmp_path / "g.dot" and out.path.read_text() == SOURCE
    assert "graphviz-pure" in out.message
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                   # said once: no second warning
        again = viz.render(SOURCE, tmp_path / "h.svg")
        assert viz.to_svg(SOURCE) is None
    assert again.path == tmp_path / "h.dot" and not again.rendered


def test_the_system_dot_comes_first(monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert viz.renderer() == "/usr/bin/dot"
    _only(monkeypatch, "graphviz-pure")
    assert viz.renderer() in (None, REAL_WHICH("graphviz-pure"))


@pytest.mark.parametrize("name", viz.RENDERERS)
def test_each_renderer_draws_svg_and_png(tmp_path, monkeypatch, name):
    if REAL_WHICH(name) is None:
        pytest.skip(f"{name} is not installed")
    _only(monkeypatch, name)
    out = viz.render(SOURCE, tmp_path / "g.svg")
    assert out.rendered and out.path == tmp_path / "g.svg"
    text = out.path.read_text()
    assert text.lstrip().startswith(("<?xml", "<svg")) and "2 KB" in text
    assert viz.to_svg(SOURCE).count("<svg") == 1
    png = viz.render(SOURCE, tmp_path / "g.png")
    assert png.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_renderer_exists_after_the_quick_start():
    """`pip install -e ".[dev]"` brings graphviz-pure, so drawings work without the system's Graphviz."""
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    dev = extras["project"]["optional-dependencies"]["dev"]
    assert any(req.startswith("graphviz-pure") for req in dev)
    assert viz.has_dot(), "no renderer: run pip install -e '.[dev]' (it installs graphviz-pure)"


def test_the_compiler_page_never_prints_the_same_ir_twice_in_a_row():
    page = (Path(__file__).resolve().parents[1] / "docs" / "compiler.md").read_text()
    blocks = re.findall(r"```python exec=\"on\"[^\n]*\n(.*?)\n```\n", page, re.S)
    checked = 0
    for before, block in zip(blocks, blocks[1:]):
        for step, args in re.findall(r'^drawing\(steps\["(\w+)"\], [^\n]*?("[^"]*"[^)]*)\)', block, re.M):
            shown = f'steps["{step}"].ir' in before
            assert ("ir_shown=True" in args) == shown, (step, args)
            checked += 1
    assert checked == 3
