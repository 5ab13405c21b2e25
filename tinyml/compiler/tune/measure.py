"""A trial's result, and how a measurer turns a candidate into one.

Every candidate the search proposes is a *trial*, and every trial is recorded, failed ones
included: a template whose decisions make an illegal schedule (``illegal``), tiles that do
not fit the device (``failed``: SRAM or register overflow), a wrong answer on the CPU
(``wrong``). A failure is never a time: it carries ``time_s = None`` and the error's class
and message, so a log can say what went wrong and no search mistakes it for a fast result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field


@dataclass
class Result:
    """``status`` is ``ok``, ``illegal`` (the schedule was refused), ``failed`` (it did not run on
    the device) or ``wrong`` (its output differs from the NumPy reference)."""

    status: str
    time_s: "float | None" = None
    error: "str | None" = None
    message: "str | None" = None
    profile: dict = field(default_factory=dict)     # simulated: the kernel record; CPU: the runs
    noise: "float | None" = None                     # CPU: spread of the runs / median

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        d = {"status": self.status, "time_s": self.time_s}
        if self.error is not None:
            d["error"], d["message"] = self.error, self.message
        if self.profile:
            d["profile"] = self.profile
        if self.noise is not None:
            d["noise"] = self.noise
        return d

    @staticmethod
    def from_dict(d: dict) -> "Result":
        return Result(d["status"], d.get("time_s"), d.get("error"), d.get("message"), d.get("profile", {}),
                      d.get("noise"))


def failure(status: str, exc: BaseException) -> Result:
    return Result(status, None, type(exc).__name__, str(exc))


def digest(obj) -> str:
    """16 hex digits of SHA-256 over ``obj`` as canonical JSON (the device hash of a log)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
