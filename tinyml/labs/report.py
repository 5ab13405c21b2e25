"""What ``tinyml lab check N`` says: one result per exercise, for people and for machines."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

OK = "ok"
NOT_ATTEMPTED = "not attempted"
WRONG = "wrong"
STATUSES = (OK, NOT_ATTEMPTED, WRONG)


class ExerciseResult(NamedTuple):
    """One exercise's verdict: ``(id, status, message)``; status is ok | not attempted | wrong."""

    id: str
    status: str
    message: str


@dataclass
class CheckReport:
    """The verdicts on one lab file. ``passed`` is True when every exercise is ok."""

    lab: int
    title: str
    path: Path
    results: list[ExerciseResult] = field(default_factory=list)
    functions: dict[str, str] = field(default_factory=dict)    # exercise id -> function name
    rerun: str = ""                     # the command that checks this file again (default: the repository's lab)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.status == OK for r in self.results)

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in STATUSES}

    def summary(self) -> str:
        c = self.counts()
        n = len(self.results)
        if self.passed:
            return f"All {n} exercises are right. Well done!"
        parts = [f"{c[OK]} of {n} exercises ok"]
        if c[WRONG]:
            parts.append(f"{c[WRONG]} wrong")
        if c[NOT_ATTEMPTED]:
            parts.append(f"{c[NOT_ATTEMPTED]} not attempted")
        return ", ".join(parts) + f". Edit {self.path.name} and run `{self.rerun or f'tinyml lab check {self.lab}'}` again."

    def render(self, width: int = 100) -> str:
        """A plain-text report for people."""
        lines = [f"Lab {self.lab}: {self.title}", f"checking {self.path}", ""]
        tag_width = max(len(s) for s in STATUSES) + 2
        for r in self.results:
            name = self.functions.get(r.id, "")
            head = f"{('[' + r.status + ']'):<{tag_width + 1}} {r.id}  {name}()" if name else \
                   f"{('[' + r.status + ']'):<{tag_width + 1}} {r.id}"
            lines.append(head)
            indent = " " * (tag_width + 2)
            for para in r.message.splitlines() or [""]:
                lines.extend(textwrap.wrap(para, width=width, initial_indent=indent,
                                           subsequent_indent=indent) or [""])
        lines += ["", self.summary()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready: lab, title, path, passed, counts and one entry per exercise."""
        return {
            "lab": self.lab,
            "title": self.title,
            "path": str(self.path),
            "passed": self.passed,
            "counts": self.counts(),
            "results": [{"id": r.id, "function": self.functions.get(r.id), "status": r.status,
                         "message": r.message} for r in self.results],
        }

    def __str__(self) -> str:
        return self.render()
