"""The errors of the fusion kernels and of op programs."""

from __future__ import annotations

from ...sim import TinymlError


class FusionError(TinymlError, ValueError):
    """A fusion kernel got an argument it cannot use (the message says which and why)."""


class ProgramError(FusionError):
    """A fused op program is malformed: unknown op, wrong operands, empty or too long."""
