"""Write a fused program as a Python function; tracing records its op program.

    from tinyml.kernels.fusion import Program, expr as F

    prog = Program.trace(lambda x, b: F.gelu(x + b) * 0.5, n_inputs=2)

Each :class:`Value` is one slot of the program being built; operators and the
functions below append an instruction and return its slot. Python numbers
become ``const`` instructions (one per distinct number). Only what the output
depends on is kept.
"""

from __future__ import annotations

import math
from typing import Callable

from .errors import ProgramError


class _Builder:
    def __init__(self, n_inputs: int):
        self.n_inputs = n_inputs
        self.instrs: list[tuple] = []
        self.consts: dict[float, int] = {}

    def emit(self, op: str, args: tuple, const=None) -> "Value":
        self.instrs.append((op, args) if const is None else (op, args, const))
        return Value(self, self.n_inputs + len(self.instrs) - 1)

    def lift(self, x) -> "Value":
        if isinstance(x, Value):
            if x.builder is not self:
                raise ProgramError("a value from another traced program was mixed into this one")
            return x
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ProgramError(f"cannot use {x!r} ({type(x).__name__}) in a fused program; "
                               f"use the traced inputs, Python numbers and tinyml.kernels.fusion.expr functions")
        key = float(x)
        if key not in self.consts:
            self.consts[key] = self.emit("const", (), key).slot
        return Value(self, self.consts[key])


class Value:
    """A slot of a program under construction."""

    __slots__ = ("builder", "slot")

    def __init__(self, builder: _Builder, slot: int):
        self.builder = builder
        self.slot = slot

    def _op(self, op: str, *others) -> "Value":
        args = (self.slot,) + tuple(self.builder.lift(o).slot for o in others)
        return self.builder.emit(op, args)

    def _rop(self, op: str, other) -> "Value":
        return self.builder.lift(other)._op(op, self)

    __add__ = lambda self, o: self._op("add", o)          # noqa: E731
    __radd__ = lambda self, o: self._rop("add", o)        # noqa: E731
    __sub__ = lambda self, o: self._op("sub", o)          # noqa: E731
    __rsub__ = lambda self, o: self._rop("sub", o)        # noqa: E731
    __mul__ = lambda self, o: self._op("mul", o)          # noqa: E731
    __rmul__ = lambda self, o: self._rop("mul", o)        # noqa: E731
    __truediv__ = lambda self, o: self._op("div", o)      # noqa: E731
    __rtruediv__ = lambda self, o: self._rop("div", o)    # noqa: E731
    __gt__ = lambda self, o: self._op("gt", o)            # noqa: E731
    __lt__ = lambda self, o: self._op("lt", o)            # noqa: E731

    def __neg__(self) -> "Value":
        return self._op("neg")

    def __pow__(self, c) -> "Value":
        if isinstance(c, Value):
            raise ProgramError("x ** y needs a constant exponent (pow-by-constant); use exp(y * log(x))")
        if c == 2:
            return self._op("square")
        return self.builder.emit("pow", (self.slot,), float(c))

    def __bool__(self):
        raise ProgramError("a traced value has no truth value while tracing; use where(cond, a, b)")


def _unary(name: str) -> Callable[[Value], Value]:
    def f(x: Value) -> Value:
        if not isinstance(x, Value):
            raise ProgramError(f"{name}() takes a traced value, got {x!r}")
        return x._op(name)
    f.__name__ = name
    f.__doc__ = f"``{name}(x)`` elementwise (see tinyml.kernels.fusion.ops)."
    return f


exp, log, tanh, relu, gelu = (_unary(n) for n in ("exp", "log", "tanh", "relu", "gelu"))
sigmoid, silu, sqrt, rsqrt, square, recip = (_unary(n) for n in ("sigmoid", "silu", "sqrt", "rsqrt", "square",
                                                                  "recip"))
abs_ = _unary("abs")


def _operands(*xs) -> tuple[Value, _Builder]:
    vals = [x for x in xs if isinstance(x, Value)]
    if not vals:
        raise ProgramError("at least one operand must be a traced value")
    b = vals[0].builder
    return tuple(b.lift(x) for x in xs), b


def maximum(x, y) -> Value:
    (x, y), _ = _operands(x, y)
    return x._op("max", y)


def minimum(x, y) -> Value:
    (x, y), _ = _operands(x, y)
    return x._op("min", y)


def where(cond, x, y) -> Value:
    """``x`` where ``cond != 0``, else ``y``."""
    (cond, x, y), _ = _operands(cond, x, y)
    return cond._op("where", x, y)


def scale(x: Value, c: float) -> Value:
    """``x * c`` with c baked into the instruction (no const slot)."""
    return x.builder.emit("scale", (x.slot,), float(c))


def causal_mask(x: Value, scale_by: float = 1.0, fill: float = -math.inf) -> Value:
    """``where(j <= i + Nk - Nq, scale_by * x, fill)`` over the last two axes (bottom-right
    aligned, as the attention kernels and the compiler's ``causal_mask`` op)."""
    visible = x.builder.emit("causal", ())
    return where(visible, x if scale_by == 1.0 else scale(x, scale_by), fill)


def record(fn: Callable, n_inputs: int) -> tuple[int, list, int]:
    """Run ``fn`` on ``n_inputs`` traced inputs and keep what its result depends on:
    ``(n_inputs, instructions, output slot)``, what ``Program.from_instructions`` takes
    (:meth:`Program.trace <tinyml.kernels.fusion.program.Program.trace>` calls this)."""
    b = _Builder(int(n_inputs))
    result = fn(*(Value(b, i) for i in range(b.n_inputs)))
    if not isinstance(result, Value) or result.builder is not b:
        raise ProgramError(f"the traced function must return a traced value, got {result!r}")
    if result.slot < b.n_inputs:
        raise ProgramError("the traced function returns an input unchanged: an empty program "
                           "(there is nothing to fuse)")
    return _prune(b, result.slot)


def _prune(b: _Builder, output: int) -> tuple[int, list, int]:
    """Drop instructions the output does not depend on; renumber the slots."""
    live = {output}
    for k in range(len(b.instrs) - 1, -1, -1):
        if b.n_inputs + k in live:
            live.update(b.instrs[k][1])
    new_slot = {i: i for i in range(b.n_inputs)}
    kept = []
    for k, ins in enumerate(b.instrs):
        if b.n_inputs + k in live:
            args = tuple(new_slot[a] for a in ins[1])
            kept.append((ins[0], args) + tuple(ins[2:]))
            new_slot[b.n_inputs + k] = b.n_inputs + len(kept) - 1
    return b.n_inputs, kept, new_slot[output]
