"""The docs' structure: the architecture page stays current, the navigation follows the labs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _nav_pages() -> list[str]:
    yaml = pytest.importorskip("yaml")
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    pages: list[str] = []

    def walk(item):
        if isinstance(item, str):
            pages.append(item)
        elif isinstance(item, dict):
            for v in item.values():
                walk(v)
        elif isinstance(item, list):
            for v in item:
                walk(v)

    walk(nav)
    return pages


def test_architecture_page_names_only_paths_that_exist_and_every_package():
    text = (DOCS / "architecture.md").read_text()
    paths = set(re.findall(r"`(tinyml/[\w/.*-]+)`", text))
    assert len(paths) > 20
    for p in paths:
        assert list(ROOT.glob(p.rstrip("/"))), f"docs/architecture.md names {p}, which does not exist"
    packages = {d.relative_to(ROOT).as_posix() for d in (ROOT / "tinyml").iterdir()
                if d.is_dir() and (d / "__init__.py").exists()}
    for sub in ("kernels", "compiler"):
        packages |= {d.relative_to(ROOT).as_posix() for d in (ROOT / "tinyml" / sub).iterdir()
                     if d.is_dir() and (d / "__init__.py").exists()}
    named = {p.rstrip("/") for p in paths} | {str(Path(p).parent) for p in paths}
    assert packages <= named, f"docs/architecture.md does not place {sorted(packages - named)}"


def test_architecture_page_is_linked_and_nothing_points_outside_the_repository():
    assert "architecture.md" in _nav_pages()
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()
    assert "(architecture.md)" in (DOCS / "index.md").read_text()
    for path in [ROOT / "README.md", *DOCS.rglob("*.md"), *(ROOT / "tinyml").rglob("*.py")]:
        text = path.read_text()
        assert "DESIGN.md" not in text and "../shared/" not in text, path


def test_walkthroughs_in_the_navigation_follow_the_lab_numbers():
    pages = _nav_pages()
    positions = []
    for lab in sorted((ROOT / "labs").glob("lab[0-9]*.py")):
        m = re.search(r"^Walkthrough:\s+docs/([\w-]+\.md)", lab.read_text(), re.M)
        assert m, f"{lab.name} names no walkthrough"
        positions.append((pages.index(m.group(1)), lab.name, m.group(1)))
    assert len(positions) >= 10
    assert [p[0] for p in positions] == sorted(p[0] for p in positions), positions
