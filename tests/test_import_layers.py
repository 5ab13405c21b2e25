"""Imports point down: no module hides an import cycle behind an import inside a function.

An import inside a function is fine for a heavy optional dependency (Numba,
matplotlib, Graphviz) or to keep ``import tinyml`` light; it must not be the
way two modules import each other. For every function-level import of a tinyml
module B inside module A, this test follows B's module-level imports and fails
if they lead back to A: then A and B form a cycle that only the function-level
import keeps from breaking, and one of them should move (see docs/architecture.md).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "tinyml"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The tinyml modules an import statement names (submodules included)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    subs = [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in MODULES]
    names_only = len(subs) < len(node.names)               # some names come from the module itself
    out = ([prefix] if prefix in MODULES and names_only else []) + subs
    # a module's own packages are imported before it anyway (``from ..sim import Device`` reads the
    # package facade): an edge to them is no cycle between siblings
    return [t for t in out if not (module + ".").startswith(t + ".")]


def _imports(module: str) -> tuple[set, list]:
    """(modules imported at module level, [(function, module) imported inside functions])."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    top, inner = set(), []

    def visit(node, func):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _targets(child, module, is_package):
                    (top.add(target) if func is None else inner.append((func, target)))
            else:
                visit(child, func)

    visit(tree, None)
    return top, inner


@functools.cache
def graph() -> dict:
    """{module: (module-level imports, function-level imports)}, parsed on first use (not at collection,
    which every pytest worker does)."""
    return {m: _imports(m) for m in MODULES}


def _reaches(start: str, goal: str) -> "list[str] | None":
    """A chain of module-level imports from ``start`` to ``goal``, if there is one."""
    seen, stack = {start}, [[start]]
    while stack:
        chain = stack.pop()
        for nxt in graph()[chain[-1]][0]:
            if nxt == goal:
                return chain + [nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append(chain + [nxt])
    return None


def test_no_import_cycle_hides_behind_a_function_level_import():
    cycles = []
    for module, (_, inner) in graph().items():
        for func, target in inner:
            if target == module:
                continue
            chain = _reaches(target, module)
            if chain:
                cycles.append(f"{module}.{func}() imports {target}, which imports it back: {' -> '.join(chain)}")
    assert not cycles, "import cycles hidden inside functions (move the shared part down a layer):\n" + \
        "\n".join(sorted(cycles))


def test_the_scan_sees_imports_and_cycles():
    """The scan finds what it should: module-level and function-level imports, and a planted cycle."""
    top, _ = graph()["tinyml.kernels.attention.kv_cache"]
    assert "tinyml.kernels.attention.decode" in top
    _, inner = graph()["tinyml.kernels.attention.flash"]        # FlashAttention-1 loads on first use
    assert ("flash_attention", "tinyml.kernels.attention.flash1") in inner
    kv, common = "tinyml.kernels.attention.kv_cache", "tinyml.kernels.attention.decode_common"
    assert _reaches(common, kv) is None and _reaches(kv, kv) is None
    saved = graph()[common]
    try:                                                       # plant decode_common -> kv_cache
        graph()[common] = (saved[0] | {kv}, saved[1])
        assert _reaches(kv, kv) in ([kv, common, kv], [kv, "tinyml.kernels.attention.decode", common, kv])
    finally:
        graph()["tinyml.kernels.attention.decode_common"] = saved
