"""How an exercise is checked, and the registry of every lab's exercises.

An :class:`Exercise` names the function a student fills in and a ``check``
that calls it. The check computes the right answer *with tinyml itself* (by
running the simulator or a kernel in counting mode, or from the device's
numbers), never from numbers copied out of a lab's output, and either returns
a short "ok" message or raises :class:`Wrong` saying what is wrong and giving a
hint. A student function that still raises ``NotImplementedError`` is "not
attempted".
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from .loader import LoadedLab, quiet, smoke_mode
from .report import NOT_ATTEMPTED, OK, WRONG, ExerciseResult


class Wrong(Exception):
    """An answer is wrong; ``str()`` says what is wrong and how to fix it."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: the function the student writes and how to check it."""

    id: str                                  # "2.3"
    function: str                            # "toy_tiles"
    title: str                               # one line, for `tinyml lab list`
    check: Callable[[Callable], str]         # returns an "ok" message or raises Wrong

    def to_dict(self) -> dict:
        return {"id": self.id, "function": self.function, "title": self.title}


# ---- helpers the lab checks share -------------------------------------------------

def show(value: Any) -> str:
    """A short repr: devices by name, everything else as Python would write it."""
    from ..sim import Device

    if isinstance(value, Device):
        return f"<{value.name}>"
    return repr(value)


def call_text(name: str, args: tuple, kwargs: dict | None = None) -> str:
    parts = [show(a) for a in args] + [f"{k}={show(v)}" for k, v in (kwargs or {}).items()]
    return f"{name}({', '.join(parts)})"


def call(fn: Callable, *args, **kwargs):
    """Call a student's function. ``NotImplementedError`` passes through; any other
    exception becomes :class:`Wrong` naming the call."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the student's bug, reported as such
        raise Wrong(f"{call_text(fn.__name__, args, kwargs)} raised {type(exc).__name__}: {exc}") from None


def as_number(value: Any, what: str) -> float:
    """``value`` as a float, or :class:`Wrong` if it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise Wrong(f"{what} returned {value!r} ({type(value).__name__}); it must return a number")
    x = float(value)
    if not math.isfinite(x):
        raise Wrong(f"{what} returned {value!r}; it must return a finite number")
    return x


def as_int(value: Any, what: str) -> int:
    """``value`` as an int (a whole float such as 418.0 is accepted), or :class:`Wrong`."""
    x = as_number(value, what)
    if x != int(x):
        raise Wrong(f"{what} returned {value!r}; it must return a whole number")
    return int(x)


def close(got: float, expected: float, rel: float = 1e-6) -> bool:
    return math.isclose(got, expected, rel_tol=rel, abs_tol=1e-12)


# ---- running the checks ------------------------------------------------------------

def run_checks(exercises: tuple[Exercise, ...], loaded: LoadedLab) -> list[ExerciseResult]:
    """Check every exercise against the functions in ``loaded``."""
    results = []
    note = ""
    if loaded.setup_errors:
        note = "\nWhile loading the file: " + "; ".join(loaded.setup_errors)
    for ex in exercises:
        fn = loaded.namespace.get(ex.function)
        if not callable(fn):
            results.append(ExerciseResult(ex.id, WRONG, (
                f"there is no function {ex.function}() at the top level of {loaded.path.name}; "
                f"Exercise {ex.id} needs it (restore it from the original lab file)") + note))
            continue
        try:
            with smoke_mode(), quiet():
                message = ex.check(fn)
            results.append(ExerciseResult(ex.id, OK, message))
        except NotImplementedError as exc:
            text = (str(exc) or f"Exercise {ex.id}").strip()
            if not text.endswith((".", "?", "!")):
                text += "."
            results.append(ExerciseResult(ex.id, NOT_ATTEMPTED, (
                f"{text} Replace the `raise NotImplementedError(...)` in {ex.function}() with your answer.")))
        except Wrong as exc:
            text = str(exc)
            results.append(ExerciseResult(ex.id, WRONG, text + (note if "NameError" in text else "")))
    return results


def exercises_for(number: int) -> tuple[Exercise, ...]:
    """The exercises of lab ``number`` (empty if the lab has none)."""
    from . import lab01, lab02, lab03, lab04, lab05, lab06, lab07, lab08, lab09, lab10, lab11, lab12

    return {1: lab01.EXERCISES, 2: lab02.EXERCISES, 3: lab03.EXERCISES, 4: lab04.EXERCISES, 5: lab05.EXERCISES,
            6: lab06.EXERCISES, 7: lab07.EXERCISES, 8: lab08.EXERCISES, 9: lab09.EXERCISES,
            10: lab10.EXERCISES, 11: lab11.EXERCISES,
            12: lab12.EXERCISES}.get(number, ())
