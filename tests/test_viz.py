"""Graphviz rendering writes an image where `dot` exists and the .dot source where it doesn't."""

import pytest

from tinyml import viz

SOURCE = 'digraph g { a -> b [label="2 KB"]; }'


def test_missing_dot_writes_source_and_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    with pytest.warns(UserWarning, match="apt-get install graphviz"):
        out = viz.render(SOURCE, tmp_path / "g.svg")
    assert not out.rendered
    assert out.path == tmp_path / "g.dot"
    assert out.path.read_text() == SOURCE
    assert "dot" in out.message


@pytest.mark.skipif(not viz.has_dot(), reason="Graphviz `dot` is not installed")
def test_render_svg_with_dot(tmp_path):
    out = viz.render(SOURCE, tmp_path / "g.svg")
    assert out.rendered
    assert out.path.read_text().lstrip().startswith(("<?xml", "<svg"))
    assert "2 KB" in out.path.read_text()
