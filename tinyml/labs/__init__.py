"""The course labs: find them, run them, check the answers in them.

Labs are plain Python scripts in the repository's ``labs/`` folder
(``labs/lab01_memory_hierarchy.py`` ...), written in ``# %%`` cells so they
run as scripts and open as notebooks. Each has a few exercises: functions whose
shipped body is ``raise NotImplementedError("Exercise N.M: ...")``.

    list_labs()          -> [Lab(number, title, path, exercises), ...]
    run_lab(2, smoke=True)   runs the script (output streams through), returns its exit code
    check_lab(2)         -> CheckReport: ok / not attempted / wrong for each exercise

``check_lab`` never runs a lab's cells: it loads only the imports, function
definitions and the constants they need (:mod:`tinyml.labs.loader`), then
checks each function against answers tinyml computes itself
(:mod:`tinyml.labs.checks`; each lab's exercises are listed in
:mod:`tinyml.labs.exercises`). The labs folder is found next to the package, or
wherever ``$TINYML_LABS_DIR`` points. The CLI is ``tinyml lab list|run|check``.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..sim.errors import LabError
from .checks import Exercise, Wrong, run_checks
from .exercises import exercises_for
from .loader import SMOKE_ENV, load_lab_functions, parse_lab
from .report import NOT_ATTEMPTED, OK, WRONG, CheckReport, ExerciseResult

LABS_DIR_ENV = "TINYML_LABS_DIR"
_LAB_FILE = re.compile(r"^lab(\d+)_(\w+)\.py$")


@dataclass(frozen=True)
class Lab:
    """One lab script: its number, its title (the docstring's first line) and its file."""

    number: int
    title: str
    path: Path

    @property
    def exercises(self) -> tuple[Exercise, ...]:
        return exercises_for(self.number)

    @property
    def solution(self) -> Path | None:
        """The reference solution (``labs/solutions/<same name>``), if it ships."""
        p = self.path.parent / "solutions" / self.path.name
        return p if p.is_file() else None

    def to_dict(self) -> dict:
        return {"number": self.number, "title": self.title, "path": str(self.path),
                "exercises": [e.to_dict() for e in self.exercises]}


def labs_dir() -> Path:
    """The folder holding ``labNN_*.py``: ``$TINYML_LABS_DIR``, else ``labs/`` next to the package."""
    env = os.environ.get(LABS_DIR_ENV)
    if env:
        folder = Path(env).expanduser().resolve()
        if not folder.is_dir():
            raise LabError(f"${LABS_DIR_ENV} is {env!r}, which is not a folder; point it at the "
                           f"folder holding lab01_*.py, or unset it")
        return folder
    import tinyml

    folder = Path(tinyml.__file__).resolve().parents[1] / "labs"
    if not folder.is_dir():
        raise LabError(f"no labs folder at {folder}: the labs ship with the tinyml repository, not the "
                       f"wheel. Clone the repository and `pip install -e .`, or set ${LABS_DIR_ENV} "
                       f"to the folder holding lab01_*.py")
    return folder


def _title(path: Path, number: int) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (SyntaxError, OSError, UnicodeDecodeError):
        doc = ""
    line = doc.strip().splitlines()[0].strip() if doc.strip() else ""
    line = re.sub(rf"^lab\s*0*{number}\s*[:.\-]\s*", "", line, flags=re.IGNORECASE).rstrip(".")
    return line or _LAB_FILE.match(path.name).group(2).replace("_", " ").capitalize()


def list_labs() -> list[Lab]:
    """Every lab in the labs folder, by number."""
    labs = []
    for path in sorted(labs_dir().glob("lab*.py")):
        m = _LAB_FILE.match(path.name)
        if m:
            number = int(m.group(1))
            labs.append(Lab(number, _title(path, number), path))
    return sorted(labs, key=lambda lab: lab.number)


def _available(labs: "list[Lab] | None" = None) -> str:
    if labs is None:
        try:
            labs = list_labs()
        except LabError as exc:
            return str(exc)
    if not labs:
        return "there are no labs in the labs folder"
    return "available labs: " + ", ".join(f"{lab.number} ({lab.title})" for lab in labs)


def _number(number) -> int:
    try:
        return int(number)
    except (TypeError, ValueError):
        raise LabError(f"a lab is named by its number, got {number!r}; {_available()}") from None


def get_lab(number: int) -> Lab:
    """The lab with this number, or :class:`LabError` listing the available ones."""
    number = _number(number)
    labs = list_labs()
    for lab in labs:
        if lab.number == number:
            return lab
    raise LabError(f"there is no lab {number!r}; {_available(labs)}. See `tinyml lab list`.")


def run_lab(number: int, smoke: bool = False, path: "str | Path | None" = None) -> int:
    """Run lab ``number`` (the file in labs/, or ``path``: your copy) as a script with this
    Python; its output streams through.

    ``smoke=True`` sets ``TINYML_LAB_SMOKE=1``: small shapes, a few seconds.
    Returns the script's exit code.
    """
    lab = get_lab(number)
    file = lab.path if path is None else _existing(path, number)
    env = dict(os.environ)
    if smoke:
        env[SMOKE_ENV] = "1"
    # The script imports tinyml: make sure it is this tinyml, installed or not.
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    return subprocess.run([sys.executable, str(file)], env=env).returncode


def _existing(path: "str | Path", number: int) -> Path:
    """``path`` as a Path, or :class:`LabError` if it is not a file."""
    file = Path(path).expanduser()
    if not file.is_file():
        try:
            default = str(get_lab(number).path)
        except LabError:
            default = f"labs/lab{number:02d}_*.py"
        raise LabError(f"lab file {str(path)!r} does not exist; check the path, or leave it out "
                       f"to use {default}")
    return file


def check_lab(number: int, path: "str | Path | None" = None) -> CheckReport:
    """Check the exercises of lab ``number`` in ``path`` (default: the lab file in labs/).

    The file's cells are not run (see the module docstring). Raises
    :class:`~tinyml.sim.LabError` for an unknown lab, a missing file, a syntax
    error, or a file that defines none of the lab's exercise functions.
    """
    number = _number(number)
    exercises = exercises_for(number)
    shipped = None                              # the lab's own file in labs/, if there is one
    if path is None:
        lab = get_lab(number)
        file = shipped = lab.path
    else:
        file = _existing(path, number)
        try:
            lab = get_lab(number)
            shipped = lab.path
        except LabError:
            if not exercises:
                raise
            lab = Lab(number, _title(file, number), file)
    if not exercises:
        raise LabError(f"lab {number} has no exercises to check; {_available()}")
    file = file.resolve()
    tree = parse_lab(file)                      # syntax errors -> LabError
    defined = {s.name for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))}
    wanted = [e.function for e in exercises]
    if not defined & set(wanted):
        raise LabError(f"{file} defines none of lab {number}'s exercise functions "
                       f"({', '.join(f + '()' for f in wanted)}); is it the right file for lab {number}? "
                       f"{_available()}")
    loaded = load_lab_functions(file)
    results = run_checks(exercises, loaded)
    # the lab's own file (the lab script checking itself passes its __file__): the plain command
    own = shipped is not None and file == Path(shipped).resolve()
    rerun = f"tinyml lab check {number}" + ("" if own else f" --file {shlex.quote(str(path))}")
    return CheckReport(lab=number, title=lab.title, path=file, results=results,
                       functions={e.id: e.function for e in exercises}, rerun=rerun)


__all__ = [
    "Lab", "CheckReport", "ExerciseResult", "Exercise", "Wrong", "LabError", "OK", "NOT_ATTEMPTED", "WRONG",
    "labs_dir", "list_labs", "get_lab", "run_lab", "check_lab",
]
