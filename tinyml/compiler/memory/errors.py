"""The memory planner's errors (both are :class:`~tinyml.compiler.errors.GraphError` s)."""

from __future__ import annotations

from ..errors import BindingError, GraphError


class MemoryPlanError(GraphError):
    """The graph cannot be planned as asked: no types yet, a bad alignment, a size not monotone."""


class MissingBoundError(MemoryPlanError, BindingError):
    """A symbol used by the sizes has no upper bound (names the symbol and the values using it)."""
