"""The op-program interpreter that runs inside the Numba kernels.

``run_program(code, consts, regs, n, row, col0, n_rows, n_cols)`` executes a
program (see program.py) on the first ``n`` lanes of a register file ``regs``
(n_slots, width) float32, lane ``j`` being the element at ``row`` and column
``col0 + j`` of an ``n_rows`` x ``n_cols`` matrix (the last two axes; only the
position-dependent ``causal`` op reads these):
the caller has put the inputs into rows 0 .. n_inputs-1; afterwards every
instruction's result is in its row. The dispatch on the opcode happens once
per instruction per row of lanes, and the lane loop under it is tight, so the
interpreter costs little next to the arithmetic. Opcodes are the names ops.py
gives them (Numba reads the module's integer constants as compile-time constants).

``error_model="numpy"``: division by zero gives inf/NaN as on a GPU (and as
NumPy), instead of Python's ZeroDivisionError.
"""

from __future__ import annotations

import numpy as np

from ...sim.jit import njit
from .ops import (ABS, ADD, CAUSAL, CONST, COPY, DIV, EXP, GELU, GT, LOG, LT, MAX, MIN, MUL, NEG, POW, RECIP,
                  RELU, RSQRT, SCALE, SIGMOID, SILU, SQRT, SQUARE, SUB, TANH, WHERE)

_C = np.float32(0.7978845608028654)     # sqrt(2 / pi), GeLU's tanh approximation
_A = np.float32(0.044715)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)


@njit(cache=True, error_model="numpy")
def run_program(code, consts, regs, n, row, col0, n_rows, n_cols):
    for k in range(code.shape[0]):
        op = code[k, 0]
        d = regs[code[k, 1]]
        c = consts[k]
        if op == CONST:
            for j in range(n):
                d[j] = c
            continue
        if op == CAUSAL:                             # causal: column <= row + Nk - Nq
            last = row + n_cols - n_rows - col0      # the last visible lane
            for j in range(n):
                d[j] = _ONE if j <= last else _ZERO
            continue
        x = regs[code[k, 2]]
        if op == COPY:
            for j in range(n):
                d[j] = x[j]
        elif op == NEG:
            for j in range(n):
                d[j] = -x[j]
        elif op == EXP:
            for j in range(n):
                d[j] = np.exp(x[j])
        elif op == LOG:
            for j in range(n):
                d[j] = np.log(x[j])
        elif op == TANH:
            for j in range(n):
                d[j] = np.tanh(x[j])
        elif op == RELU:
            for j in range(n):
                d[j] = x[j] if x[j] > _ZERO else _ZERO
        elif op == GELU:                             # gelu (tanh approximation)
            for j in range(n):
                v = x[j]
                d[j] = _HALF * v * (_ONE + np.tanh(_C * (v + _A * v * v * v)))
        elif op == SIGMOID:
            for j in range(n):
                d[j] = _ONE / (_ONE + np.exp(-x[j]))
        elif op == SILU:
            for j in range(n):
                d[j] = x[j] / (_ONE + np.exp(-x[j]))
        elif op == SQRT:
            for j in range(n):
                d[j] = np.sqrt(x[j])
        elif op == RSQRT:
            for j in range(n):
                d[j] = _ONE / np.sqrt(x[j])
        elif op == SQUARE:
            for j in range(n):
                d[j] = x[j] * x[j]
        elif op == ABS:
            for j in range(n):
                d[j] = abs(x[j])
        elif op == RECIP:
            for j in range(n):
                d[j] = _ONE / x[j]
        elif op == SCALE:                            # scale by a constant
            for j in range(n):
                d[j] = x[j] * c
        elif op == POW:                              # pow by a constant
            for j in range(n):
                d[j] = x[j] ** c
        else:
            y = regs[code[k, 3]]
            if op == ADD:
                for j in range(n):
                    d[j] = x[j] + y[j]
            elif op == SUB:
                for j in range(n):
                    d[j] = x[j] - y[j]
            elif op == MUL:
                for j in range(n):
                    d[j] = x[j] * y[j]
            elif op == DIV:
                for j in range(n):
                    d[j] = x[j] / y[j]
            elif op == MAX:
                for j in range(n):
                    d[j] = max(x[j], y[j])
            elif op == MIN:
                for j in range(n):
                    d[j] = min(x[j], y[j])
            elif op == GT:
                for j in range(n):
                    d[j] = _ONE if x[j] > y[j] else _ZERO
            elif op == LT:
                for j in range(n):
                    d[j] = _ONE if x[j] < y[j] else _ZERO
            elif op == WHERE:                        # where(x != 0, y, z)
                z = regs[code[k, 4]]
                for j in range(n):
                    d[j] = y[j] if x[j] != _ZERO else z[j]
