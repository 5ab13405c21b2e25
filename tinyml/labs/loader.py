"""Load a lab file's exercise functions *without* running its cells.

A lab is a script: its top-level cells run kernels, print tables and draw
figures. The checker needs only the functions, so it parses the file with
:mod:`ast` and executes just

* the imports (``import``, ``from ... import``, and ``try:`` blocks of them),
* every top-level ``def`` and ``class`` (defining a function runs nothing), and
* the top-level assignments those definitions need (``TOY = load_device("toy")``),
  found by following names, plus ``if``/``else`` blocks that only assign them.

Each kept statement runs on its own in smoke mode (``TINYML_LAB_SMOKE=1``)
with printing silenced, so one broken line costs only the exercises that use
it; what failed is reported as ``setup_errors``.
"""

from __future__ import annotations

import __future__
import ast
import contextlib
import io
import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from ..sim.errors import LabError

SMOKE_ENV = "TINYML_LAB_SMOKE"


@dataclass
class LoadedLab:
    """The namespace the kept statements built, and the lines that failed."""

    path: Path
    namespace: dict
    setup_errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def smoke_mode():
    """Set ``TINYML_LAB_SMOKE=1`` for the duration (labs then use small shapes)."""
    old = os.environ.get(SMOKE_ENV)
    os.environ[SMOKE_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(SMOKE_ENV, None)
        else:
            os.environ[SMOKE_ENV] = old


@contextlib.contextmanager
def quiet():
    """Swallow what student code prints (it would corrupt ``--json`` output)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def parse_lab(path: Path) -> ast.Module:
    """Parse a lab file, turning a syntax error into an actionable :class:`LabError`."""
    try:
        source = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabError(f"cannot read lab file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise LabError(f"{path} is not a Python source file (byte {exc.start} is not UTF-8 text); "
                       f"give the lab's .py file") from None
    if "\x00" in source:
        raise LabError(f"{path} is not a Python source file (it holds NUL bytes); give the lab's .py file")
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        where = f"{path}, line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        text = (exc.text or "").rstrip()
        raise LabError(
            f"{where}: {exc.msg}" + (f"\n    {text}" if text else "")
            + f"\nFix the syntax error first (`python {path}` shows it too), then check again."
        ) from None


def load_lab_functions(path: Path) -> LoadedLab:
    """Execute the imports, definitions and needed constants of the lab at ``path``."""
    tree = parse_lab(path)
    kept = _select(tree.body)
    flags = 0
    if any(isinstance(s, ast.ImportFrom) and s.module == "__future__"
           and any(a.name == "annotations" for a in s.names) for s in tree.body):
        flags |= __future__.annotations.compiler_flag
    module = types.ModuleType("tinyml_lab_under_check")
    module.__file__ = str(path)
    ns = module.__dict__
    errors: list[str] = []
    sys.modules[module.__name__] = module      # dataclasses and pickling look their module up
    try:
        with smoke_mode(), quiet():
            for stmt in kept:
                if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
                    continue
                code = compile(ast.Module(body=[stmt], type_ignores=[]), str(path), "exec",
                               flags=flags, dont_inherit=True)
                try:
                    exec(code, ns)
                except (Exception, SystemExit) as exc:    # noqa: BLE001 - reported, not raised
                    first = ast.get_source_segment(path.read_text(encoding="utf-8"), stmt) or ""
                    first = first.splitlines()[0] if first else type(stmt).__name__
                    errors.append(f"line {stmt.lineno} `{first.strip()}` failed: {type(exc).__name__}: {exc}")
    finally:
        sys.modules.pop(module.__name__, None)
    return LoadedLab(path, ns, errors)


# ---- choosing what to run ---------------------------------------------------------

def _is_main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def _is_import(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, ast.Try):       # try: import x  except ImportError: x = None
        body = node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        return any(isinstance(s, (ast.Import, ast.ImportFrom)) for s in body) and all(
            isinstance(s, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.Pass)) for s in body)
    return False


def _assigned(node: ast.stmt) -> set[str] | None:
    """Names a constant-defining statement binds, or None if it is not one."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        if node.value is None:
            return None
        targets = [node.target]
    elif isinstance(node, ast.If) and not _is_main_guard(node):
        names: set[str] = set()
        for s in node.body + node.orelse:
            if isinstance(s, ast.Pass):
                continue
            inner = _assigned(s)
            if inner is None:
                return None
            names |= inner
        return names
    else:
        return None
    names = set()
    for t in targets:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                names.add(n.id)
            elif isinstance(n, (ast.Attribute, ast.Subscript)):
                return None                     # obj.x = ... / d[k] = ...: a cell's work, not a constant
    return names


def _loaded_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _free_names(node: ast.AST) -> set[str]:
    """Globals a definition reads: the names it loads that are not its own locals."""
    local = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for n in ast.walk(node):
        if isinstance(n, ast.arguments):
            params = [*n.posonlyargs, *n.args, *n.kwonlyargs, *(a for a in (n.vararg, n.kwarg) if a)]
            local |= {a.arg for a in params}
    declared = {name for n in ast.walk(node) if isinstance(n, (ast.Global, ast.Nonlocal)) for name in n.names}
    return _loaded_names(node) - (local - declared)


def _select(body: list[ast.stmt]) -> list[ast.stmt]:
    """The top-level statements to run, in file order (see the module docstring)."""
    defs = [s for s in body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    needed: set[str] = set()
    for d in defs:
        needed |= _free_names(d)
    constants = [(s, _assigned(s)) for s in body]
    constants = [(s, names) for s, names in constants if names]
    chosen: set[int] = set()
    changed = True
    while changed:                                  # follow names to a fixed point
        changed = False
        for s, names in constants:
            if id(s) not in chosen and names & needed:
                chosen.add(id(s))
                needed |= _loaded_names(s)
                changed = True
    return [s for s in body if _is_import(s) or s in defs or id(s) in chosen]
