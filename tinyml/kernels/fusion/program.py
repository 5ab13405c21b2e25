"""The op program: an elementwise op chain or small DAG as integer opcodes and slots.

A fused elementwise kernel cannot be compiled anew for every chain (generated
code does not go into Numba's cache), so tinyml *interprets* a tiny program
inside one cached Numba kernel instead. A program is a list of instructions in
static single assignment form over a register file of ``slots``:

    slots 0 .. n_inputs-1        the inputs, loaded from HBM
    slot  n_inputs + k           the result of instruction k
    output                       the slot that is stored to HBM

Printed, ``gelu(x * w + b)`` is::

    program(%0, %1, %2) -> %5
      %3 = mul %0 %1
      %4 = add %3 %2
      %5 = gelu %4

Every instruction is ``(opcode, dst, a, b, c)`` plus one float constant (for
``const``, ``scale``, ``pow``); unused operand fields are -1. A program has
at most ``MAX_SLOTS`` slots (the interpreter's register file: one row of
registers per slot); split a longer chain into two kernels.

Build one with :meth:`Program.chain` (a list of op names), :meth:`Program.trace`
(a Python function over :mod:`~tinyml.kernels.fusion.expr` values), or
:meth:`Program.from_instructions` (what a compiler emits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from . import expr
from .errors import ProgramError
from .ops import ALIASES, OPS, OpInfo, known_ops

MAX_SLOTS = 64


def op_info(name) -> OpInfo:
    """The table row of an op name (or alias); ProgramError listing the known ops otherwise."""
    key = ALIASES.get(str(name).lower(), str(name).lower()) if isinstance(name, str) else None
    if key not in OPS:
        raise ProgramError(f"unknown elementwise op {name!r}; the known ops are: {known_ops()} "
                           f"(aliases: {', '.join(ALIASES)})")
    return OPS[key]


@dataclass(frozen=True)
class Instr:
    """``slot[dst] = op(slot[args[0]], ...; const)``; dst is n_inputs + its index."""

    op: str
    args: tuple[int, ...]
    const: float = 0.0

    def text(self, dst: int) -> str:
        parts = [f"%{dst} = {self.op}"] + [f"%{a}" for a in self.args]
        if OPS[self.op].const:
            parts.append(repr(float(self.const)))
        return " ".join(parts)


@dataclass(frozen=True)
class Program:
    """A validated op program. Build with ``chain``, ``trace`` or ``from_instructions``."""

    n_inputs: int
    instrs: tuple[Instr, ...]
    output: int

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_instructions(cls, n_inputs: int, instrs: Sequence, output: "int | None" = None) -> "Program":
        """A program from ``(op, args)`` or ``(op, args, const)`` tuples (or :class:`Instr` s).

        Instruction k writes slot ``n_inputs + k`` and may read only slots
        before it. ``output`` defaults to the last instruction's slot.
        """
        if isinstance(n_inputs, bool) or not isinstance(n_inputs, (int, np.integer)) or n_inputs < 0:
            raise ProgramError(f"n_inputs must be an integer >= 0, got {n_inputs!r}")
        n_inputs = int(n_inputs)
        if len(instrs) == 0:
            raise ProgramError("an op program needs at least one instruction, got an empty list; "
                               "e.g. Program.chain(['add', 'gelu'])")
        if n_inputs + len(instrs) > MAX_SLOTS:
            raise ProgramError(
                f"the program has {n_inputs} inputs and {len(instrs)} instructions = "
                f"{n_inputs + len(instrs)} slots, but the interpreter's register file holds {MAX_SLOTS}; "
                f"split it into two programs (two kernels)")
        out = []
        for k, ins in enumerate(instrs):
            out.append(_instr(ins, k, n_inputs + k))
        output = n_inputs + len(out) - 1 if output is None else output
        if isinstance(output, bool) or not isinstance(output, (int, np.integer)) \
                or not 0 <= output < n_inputs + len(out):
            raise ProgramError(f"output slot {output!r} does not exist; the program has slots "
                               f"0..{n_inputs + len(out) - 1}")
        return cls(n_inputs, tuple(out), int(output))

    @classmethod
    def chain(cls, ops: Sequence) -> "Program":
        """A chain applied to input 0, each binary op taking the next input.

        ``Program.chain(["mul", "add", "gelu"])`` is ``gelu(x0 * x1 + x2)``. An
        entry may carry a constant instead of an input: ``("add", 1.0)``,
        ``("scale", 0.5)``, ``("pow", 3.0)``, ``("max", 0.0)``.
        """
        if isinstance(ops, (str, bytes)) or len(ops) == 0:
            raise ProgramError(f"Program.chain takes a non-empty list of op names, got {ops!r}; "
                               f"e.g. Program.chain(['mul', 'add', 'gelu'])")
        steps = [_step(s) for s in ops]
        n_inputs = 1 + sum(1 for name, value in steps if op_info(name).arity == 2 and value is None)
        instrs, cur, nxt = [], 0, 1
        for step in steps:
            name, value = step
            info = op_info(name)
            if info.arity == 1:
                if info.const != (value is not None):
                    need = f"needs a constant, e.g. ({info.name!r}, 2.0)" if info.const else "takes no constant"
                    raise ProgramError(f"chain step {step!r}: {info.name} {need}")
                instrs.append((info.name, (cur,), value) if info.const else (info.name, (cur,)))
            elif info.arity == 2:
                if value is None:
                    instrs.append((info.name, (cur, nxt)))
                    nxt += 1
                else:                       # a constant operand: a const instruction first
                    instrs.append(("const", (), value))
                    instrs.append((info.name, (cur, n_inputs + len(instrs) - 1)))
            else:
                raise ProgramError(f"chain step {step!r}: {info.name} takes {info.arity} operands; "
                                   f"build it with Program.trace or Program.from_instructions")
            cur = n_inputs + len(instrs) - 1
        return cls.from_instructions(n_inputs, instrs)

    @classmethod
    def trace(cls, fn: Callable, n_inputs: int) -> "Program":
        """Record ``fn(*inputs)`` written with +, -, *, /, ** and the functions of
        :mod:`tinyml.kernels.fusion.expr` (``exp``, ``gelu``, ``where`` ...)."""
        return cls.from_instructions(*expr.record(fn, n_inputs))

    # -- what the kernel needs ----------------------------------------------------------
    @property
    def n_slots(self) -> int:
        return self.n_inputs + len(self.instrs)

    @property
    def flops_per_element(self) -> int:
        """Vector FLOPs of one output element: the sum over instructions (ops.py)."""
        return sum(OPS[i.op].flops for i in self.instrs)

    def encode(self) -> tuple[np.ndarray, np.ndarray]:
        """``(code, consts)``: int64 (L, 5) rows ``opcode, dst, a, b, c`` and float32 (L,)."""
        code = np.full((len(self.instrs), 5), -1, dtype=np.int64)
        consts = np.zeros(len(self.instrs), dtype=np.float32)
        for k, ins in enumerate(self.instrs):
            code[k, 0] = OPS[ins.op].code
            code[k, 1] = self.n_inputs + k
            code[k, 2:2 + len(ins.args)] = ins.args
            consts[k] = ins.const
        return code, consts

    # -- reference and printing -------------------------------------------------------
    def evaluate(self, inputs: Sequence, *, out_shape=None, all_slots: bool = False):
        """The program's meaning in float64 NumPy (broadcasting as NumPy does).

        ``out_shape`` (default: the inputs' broadcast shape) is where the
        position-dependent ``causal`` op takes its rows and columns from.
        """
        if len(inputs) != self.n_inputs:
            raise ProgramError(f"the program takes {self.n_inputs} inputs, got {len(inputs)}")
        slots = [np.asarray(x, dtype=np.float64) for x in inputs]
        shape = np.broadcast_shapes(*(s.shape for s in slots), *([tuple(out_shape)] if out_shape else []))
        with np.errstate(all="ignore"):
            for ins in self.instrs:
                info = OPS[ins.op]
                if ins.op == "causal":
                    slots.append(_causal(shape))
                    continue
                args = [slots[a] for a in ins.args] + ([ins.const] if info.const else [])
                slots.append(np.asarray(info.ref(*args), dtype=np.float64))
        return slots if all_slots else slots[self.output]

    def op_names(self) -> list[str]:
        """The ops that launch kernels one by one (constants are kernel arguments)."""
        return [i.op for i in self.instrs if i.op != "const"]

    def __str__(self) -> str:
        head = f"program({', '.join(f'%{i}' for i in range(self.n_inputs))}) -> %{self.output}"
        return "\n".join([head] + ["  " + ins.text(self.n_inputs + k) for k, ins in enumerate(self.instrs)])


def _causal(shape: tuple) -> np.ndarray:
    """1.0 where column j <= row i + Nk - Nq over the last two axes of ``shape``, else 0.0."""
    nq = shape[-2] if len(shape) > 1 else 1
    nk = shape[-1] if len(shape) > 0 else 1
    return np.tri(nq, nk, k=nk - nq, dtype=np.float64).reshape((nq, nk)[2 - min(len(shape), 2):] or ())


def _step(s) -> tuple:
    """A chain entry as (name, constant or None)."""
    if isinstance(s, str):
        return s, None
    if isinstance(s, (tuple, list)) and len(s) in (1, 2) and isinstance(s[0], str):
        return s[0], (s[1] if len(s) == 2 else None)
    raise ProgramError(f"chain step {s!r} is not an op name or an (op name, constant) pair")


def _instr(ins, k: int, dst: int) -> Instr:
    """Validate one instruction (k-th, writing slot dst)."""
    if isinstance(ins, Instr):
        name, args, const = ins.op, ins.args, ins.const
    else:
        if not isinstance(ins, (tuple, list)) or len(ins) not in (2, 3):
            raise ProgramError(f"instruction {k} is {ins!r}; write it as (op, args) or (op, args, const)")
        name, args = ins[0], ins[1]
        const = ins[2] if len(ins) == 3 else None
    info = op_info(name)
    args = tuple(args)
    if len(args) != info.arity:
        raise ProgramError(f"instruction {k} ({info.name}) takes {info.arity} operand(s), got {len(args)}: {args}")
    for a in args:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not 0 <= a < dst:
            raise ProgramError(f"instruction {k} ({info.name}) reads slot {a!r}, but only slots 0..{dst - 1} "
                               f"exist before it (inputs first, then earlier results)")
    if info.const:
        if const is None:
            raise ProgramError(f"instruction {k} ({info.name}) needs a constant, e.g. ({info.name!r}, {args}, 2.0)")
        try:
            const = float(const)
        except (TypeError, ValueError):
            raise ProgramError(f"instruction {k} ({info.name}): constant {const!r} is not a number") from None
        if np.isnan(const):
            raise ProgramError(f"instruction {k} ({info.name}): the constant is NaN")
    elif const is not None and const != 0.0:
        raise ProgramError(f"instruction {k} ({info.name}) takes no constant, got {const!r}")
    return Instr(info.name, tuple(int(a) for a in args), float(const or 0.0))
