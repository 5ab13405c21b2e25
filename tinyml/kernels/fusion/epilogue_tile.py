"""Finishing an output tile in SRAM: the epilogue every matmul-like kernel can end with.

A matmul kernel's block ends with its output tile in the fp32 accumulator. An
*epilogue* finishes that tile where it is, before the one store to HBM: it
loads the matching slice of a bias ``(N,)`` and a tile of a residual ``(M, N)``
(each only if given) and runs an op program (program.py) over
``(acc, bias?, residual?)``, e.g. ``gelu(acc + bias) + residual``::

    bias_s = load bias[c0 : c0 + cols]                          # if bias
    res_s  = load residual[r0 : r0 + rows, c0 : c0 + cols]      # if residual
    acc = program(acc, bias_s, res_s)                           # row by row, in registers

The tensor-core matmul (``matmul_epilogue``) and the dequantizing
``quantized_matmul`` / ``quantized_gemv`` all end this way. Bias and residual
are the kernel's operands 2 and 3 in its counters (x / A is 0, W / B is 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...sim.jit import njit
from ...sim import DTypeError, ShapeError
from ...sim.tiles import count_vector, load_tile
from .._contract import operand
from .._counting import extent, input_array
from .interp import run_program
from .ops import OPS
from .errors import ProgramError
from .program import Program

BIAS_OPERAND, RESIDUAL_OPERAND = 2, 3


@njit(cache=True)
def finish_tile(acc, rows, cols, r0, c0, M, N, bias, res, code, consts, n_slots, out_slot, flops,
                bias_slot, res_slot, execute, counters, blk, elem_bits):
    """Apply the epilogue to ``acc[:rows, :cols]``, the output tile at (r0, c0) of an (M, N) result.

    bias: (1, N); res: (M, N); code/consts: the encoded program (no rows: nothing to do);
    bias_slot / res_slot: their registers, or -1 when absent. Counts the loads and
    ``flops * rows * cols`` vector FLOPs in both modes.
    """
    bias_s = np.empty((1, extent(cols, execute)), dtype=np.float32)            # (1, cols) SRAM
    res_s = np.empty((extent(rows, execute), extent(cols, execute)), dtype=np.float32)   # (rows, cols)
    if bias_slot >= 0:
        load_tile(bias, 0, c0, 1, cols, bias_s, execute, counters, blk, BIAS_OPERAND, elem_bits)
    if res_slot >= 0:
        load_tile(res, r0, c0, rows, cols, res_s, execute, counters, blk, RESIDUAL_OPERAND, elem_bits)
    count_vector(flops * rows * cols, counters, blk)
    if execute and code.shape[0] > 0:
        regs = np.empty((n_slots, cols), dtype=np.float32)                     # (slots, cols) registers
        for i in range(rows):
            for j in range(cols):
                regs[0, j] = acc[i, j]
                if bias_slot >= 0:
                    regs[bias_slot, j] = bias_s[0, j]
                if res_slot >= 0:
                    regs[res_slot, j] = res_s[i, j]
            run_program(code, consts, regs, cols, r0 + i, c0, M, N)
            for j in range(cols):
                acc[i, j] = regs[out_slot, j]


def epilogue_program(has_bias: bool, activation, has_residual: bool) -> "Program | None":
    """``act(acc + bias) + residual`` as an op program over (acc, bias?, residual?); None if empty."""
    n_in = 1 + has_bias + has_residual
    instrs, cur = [], 0
    if has_bias:
        instrs.append(("add", (cur, 1)))
        cur = n_in + len(instrs) - 1
    if activation is not None:
        info = OPS.get(activation) if isinstance(activation, str) else None
        if info is None or info.arity != 1 or info.const:
            choices = ", ".join(n for n, o in OPS.items() if o.arity == 1 and not o.const and n != "copy")
            raise ProgramError(f"unknown activation {activation!r}; choose None or one of {choices}")
        instrs.append((info.name, (cur,)))
        cur = n_in + len(instrs) - 1
    if has_residual:
        instrs.append(("add", (cur, n_in - 1)))
    return Program.from_instructions(n_in, instrs) if instrs else None


@dataclass(frozen=True)
class Epilogue:
    """A validated epilogue: the program (or None), the bias / residual operands (or None) and
    what :func:`finish_tile` takes."""

    program: "Program | None"
    bias: object                      # Operand or None
    residual: object                  # Operand or None

    @classmethod
    def prepare(cls, kernel: str, bias, residual, activation, program, m: int, n: int, dtype: str,
                execute: bool) -> "Epilogue":
        """Check bias (N,) and residual (M, N) against the (M, N) output and the kernel's dtype and
        mode, and the program against them (``activation`` builds the default one)."""
        B = _extra(kernel, bias, "bias", (n,), dtype, m, n, execute)
        R = _extra(kernel, residual, "residual", (m, n), dtype, m, n, execute)
        if program is None:
            program = epilogue_program(B is not None, activation, R is not None)
        else:
            if activation is not None:
                raise ProgramError("give either activation or an epilogue program, not both")
            need = 1 + (B is not None) + (R is not None)
            if not isinstance(program, Program) or program.n_inputs != need:
                raise ProgramError(f"the epilogue must be a Program over (acc{', bias' if B is not None else ''}"
                                   f"{', residual' if R is not None else ''}): {need} input(s), got {program!r}")
        return cls(program, B, R)

    def operands(self) -> list:
        return [op for op in (self.bias, self.residual) if op is not None]

    def args(self, execute: bool) -> tuple:
        """(bias (1, N), residual (M, N), code, consts, n_slots, out_slot, flops, bias_slot, res_slot)."""
        if self.program is None:
            code, consts = np.zeros((0, 5), np.int64), np.zeros(0, np.float32)
            n_slots, out_slot, flops = 1, 0, 0
        else:
            code, consts = self.program.encode()
            n_slots, out_slot, flops = self.program.n_slots, self.program.output, self.program.flops_per_element
        B, R = self.bias, self.residual
        bias2d = input_array(B.data.reshape(1, -1) if execute and B is not None else None)          # (1, N)
        res2d = input_array(R.data if execute and R is not None else None)                          # (M, N)
        bias_slot = 1 if B is not None else -1
        res_slot = 1 + (B is not None) if R is not None else -1
        return bias2d, res2d, code, consts, n_slots, out_slot, flops, bias_slot, res_slot


def _extra(kernel: str, x, name: str, shape: tuple, dtype: str, m: int, n: int, execute: bool):
    if x is None:
        return None
    op = operand(x, name, ndim=len(shape), dtype=dtype, allowed=("fp16", "bf16", "fp32"))
    if op.shape != shape:
        raise ShapeError(f"{kernel}: {name} must have shape {shape}, got {op.shape}; "
                         f"the output is (M, N) = ({m}, {n})")
    if op.execute != execute:
        raise DTypeError(f"{kernel}: {name} is {'an array' if op.execute else 'a MetaTensor'} but the other "
                         f"operands are {'arrays' if execute else 'MetaTensors'}; pass all real to execute or "
                         f"all shape-only to count")
    if op.dtype != dtype:
        raise DTypeError(f"{kernel}: {name} is {op.dtype} but the other operands are {dtype}; use one dtype")
    return op
