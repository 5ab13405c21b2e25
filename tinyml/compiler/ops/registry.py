"""The op registry: one :class:`OpDef` per op, the single source of truth about it.

Each op says

* ``shape_rule(types, attrs) -> TensorType``: its output type, on symbolic shapes;
* ``reference(*arrays, **attrs) -> ndarray``: its float64 NumPy meaning (the interpreter runs it);
* ``pattern``: its fusion class in TVM's vocabulary (:data:`PATTERNS`);
* ``lowering``: how it lowers to kernels, a string the lowering pass maps to a kernel (:data:`LOWERINGS`);
* ``canon(types, attrs) -> attrs`` (optional): fills defaults and normalises attributes
  (negative axes, lists -> tuples) so that equal nodes compare equal (CSE relies on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..errors import GraphError

#: TVM's OpPatternKind, in its order: a group's kind is the largest of its ops'.
PATTERNS = ("elementwise", "broadcast", "injective", "reduction", "out-elementwise-fusable", "opaque")
PATTERN_RANK = {p: i for i, p in enumerate(PATTERNS)}

#: the kinds of lowering an op (or a fused group) asks for
#: ("library": an op without a tiled tinyml kernel, costed as a vendor library call: reads its inputs
#: once, writes its output once, FLOPs by the formula in :mod:`.library`)
LOWERINGS = ("elementwise", "matmul", "softmax", "layernorm", "attention", "reduce", "view", "copy", "gather",
             "library")

#: patterns that anchor a fused group; two of them never share one
COMPLEX_PATTERNS = ("reduction", "out-elementwise-fusable", "opaque")


@dataclass(frozen=True)
class OpDef:
    name: str
    arity: "int | None"                 # tensor inputs; None = any number >= 1 (concat)
    shape_rule: Callable
    reference: Callable
    pattern: str
    lowering: str
    doc: str
    canon: "Callable | None" = field(default=None)
    commutative: bool = False

    @property
    def is_complex(self) -> bool:
        return self.pattern in COMPLEX_PATTERNS


_REGISTRY: dict[str, OpDef] = {}


def register(op: OpDef) -> OpDef:
    if op.pattern not in PATTERNS:
        raise ValueError(f"op {op.name}: pattern {op.pattern!r} is not one of {PATTERNS}")
    if op.lowering not in LOWERINGS:
        raise ValueError(f"op {op.name}: lowering {op.lowering!r} is not one of {LOWERINGS}")
    if op.name in _REGISTRY:
        raise ValueError(f"op {op.name!r} is registered twice")
    _REGISTRY[op.name] = op
    return op


def get(name: str) -> OpDef:
    """The op called ``name``; an unknown name raises :class:`GraphError` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise GraphError(f"unknown op {name!r}; the registry has {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)
