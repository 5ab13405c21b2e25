"""The compiler's errors, all under :class:`~tinyml.sim.errors.TinymlError`.

Each message names the node (``%3 = add(...)``), the shapes involved and what
to do, so a person reading it can fix the graph without a debugger.
"""

from __future__ import annotations

from ..sim.errors import DTypeError, NonFiniteError, ShapeError, TinymlError


class SymbolicError(TinymlError, ValueError):
    """A symbolic dimension is malformed (``"2*n+"``) or an operation leaves the affine world."""


class GraphError(TinymlError, ValueError):
    """A graph is malformed: a cycle, a dangling value, a type that does not match its op."""


class GraphShapeError(GraphError, ShapeError):
    """An op's shape rule rejects its operands (names both shapes)."""


class GraphDTypeError(GraphError, DTypeError):
    """An op's operands have dtypes it does not accept, or that disagree."""


class BindingError(GraphError):
    """Interpreting a graph: a missing or inconsistent symbol binding, or a wrong input array."""


class GraphValueError(GraphError, NonFiniteError):
    """A weight or input array holds values the kernels cannot take as they are: a float
    beyond float32's range, a complex number, a non-integer token id (named, never converted)."""
