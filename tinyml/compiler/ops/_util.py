"""Small helpers shared by the op definitions."""

from __future__ import annotations

from ...sim.args import flag, integer
from ..errors import GraphError, GraphShapeError


def flag_attr(op: str, what: str, value) -> bool:
    """A boolean attribute (True/False, or ONNX's 0/1); ``"no"`` or None is refused, not made a bool."""
    return flag(value, f"{op}: {what}", error=GraphError)


def int_attr(op: str, what: str, value, lo: "int | None" = None) -> int:
    """An integer attribute (>= ``lo``); a float such as 2.7 or a string is refused, not truncated."""
    return integer(value, f"{op}: {what}", lo=lo, error=GraphShapeError)


def norm_axis(axis, rank: int, op: str) -> int:
    """``axis`` in ``[-rank, rank)`` as a non-negative int, or :class:`GraphShapeError`."""
    if isinstance(axis, bool) or not isinstance(axis, int) and not hasattr(axis, "__index__"):
        raise GraphShapeError(f"{op}: axis must be an int, got {axis!r}")
    axis = int(axis)
    if not -rank <= axis < rank:
        raise GraphShapeError(f"{op}: axis {axis} is out of range for a rank-{rank} operand "
                              f"(use -{rank} .. {rank - 1})")
    return axis % rank


def need_rank(op: str, what: str, t, at_least: int) -> None:
    if t.rank < at_least:
        raise GraphShapeError(f"{op}: {what} must have rank >= {at_least}, got {t}")
