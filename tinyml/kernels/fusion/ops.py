"""The elementwise ops a fused program can contain: opcode, arity, FLOPs, reference.

One row per op. The opcode is what the Numba interpreter
(:mod:`tinyml.kernels.fusion.interp`) dispatches on; ``arity`` counts tensor
operands; ``const`` says the op also takes a number baked into the program
(``scale`` by 0.5, ``pow`` by 3.0, ``const`` 1.0); ``flops`` is the vector
FLOPs one output element costs (tinyml's convention: every add, multiply,
compare, exp, tanh ... is one FLOP; GeLU is written out as its nine); ``ref``
is the float64 NumPy meaning that tests and the compiler's interpreter use.

``causal`` takes no operand: it is 1.0 where the output element's column ``j``
and row ``i`` (over the last two axes, Nq x Nk) satisfy ``j <= i + Nk - Nq``
(a causal mask aligned bottom-right, as in the attention kernels) and 0.0
elsewhere, so ``where(causal, scale * x, -inf)`` is a masked score matrix.

GeLU is the tanh approximation GPT-2 uses::

    gelu(x) = 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

GELU_C = 0.7978845608028654      # sqrt(2 / pi)
GELU_A = 0.044715


# The references below overflow on purpose: exp(x) beyond ~709 is inf in float64 (beyond ~88 in the
# kernels' float32), sigmoid(-1000) = 1 / (1 + inf) = 0 and gelu's x ** 3 -> inf -> tanh = +-1 are the
# exact limits. IEEE overflow is the intended semantics, so NumPy's RuntimeWarning is silenced here,
# where it is raised, instead of in every caller (tests run with -W error::RuntimeWarning).

def _exp(x):
    with np.errstate(over="ignore"):
        return np.exp(x)


def _gelu(x):
    with np.errstate(over="ignore"):
        return 0.5 * x * (1.0 + np.tanh(GELU_C * (x + GELU_A * x ** 3)))


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class OpInfo:
    name: str
    code: int
    arity: int            # tensor operands
    const: bool           # takes a constant baked into the program
    flops: int            # vector FLOPs per output element
    ref: Callable         # float64 NumPy reference: ref(*operands, const?) -> array


#: Opcodes: the numbers the interpreter (interp.py) dispatches on, by these names.
CONST, COPY, NEG, EXP, LOG, TANH, RELU, GELU, SIGMOID, SILU = range(10)
SQRT, RSQRT, SQUARE, ABS, RECIP, SCALE, POW = range(10, 17)
ADD, SUB, MUL, DIV, MAX, MIN, GT, LT, WHERE = range(17, 26)
CAUSAL = 26

_TABLE = (
    #       name        code     arity const flops reference
    OpInfo("const",   CONST,   0, True,  0, lambda c: np.float64(c)),
    OpInfo("copy",    COPY,    1, False, 0, lambda x: x),
    OpInfo("neg",     NEG,     1, False, 1, lambda x: -x),
    OpInfo("exp",     EXP,     1, False, 1, _exp),
    OpInfo("log",     LOG,     1, False, 1, np.log),
    OpInfo("tanh",    TANH,    1, False, 1, np.tanh),
    OpInfo("relu",    RELU,    1, False, 1, lambda x: np.maximum(x, 0.0)),
    OpInfo("gelu",    GELU,    1, False, 9, _gelu),
    OpInfo("sigmoid", SIGMOID, 1, False, 4, _sigmoid),
    OpInfo("silu",    SILU,    1, False, 5, lambda x: x * _sigmoid(x)),
    OpInfo("sqrt",    SQRT,    1, False, 1, np.sqrt),
    OpInfo("rsqrt",   RSQRT,   1, False, 2, lambda x: 1.0 / np.sqrt(x)),
    OpInfo("square",  SQUARE,  1, False, 1, lambda x: x * x),
    OpInfo("abs",     ABS,     1, False, 1, np.abs),
    OpInfo("recip",   RECIP,   1, False, 1, lambda x: 1.0 / x),
    OpInfo("scale",   SCALE,   1, True,  1, lambda x, c: x * c),
    OpInfo("pow",     POW,     1, True,  1, lambda x, c: np.power(x, c)),
    OpInfo("add",     ADD,     2, False, 1, np.add),
    OpInfo("sub",     SUB,     2, False, 1, np.subtract),
    OpInfo("mul",     MUL,     2, False, 1, np.multiply),
    OpInfo("div",     DIV,     2, False, 1, np.divide),
    OpInfo("max",     MAX,     2, False, 1, np.maximum),
    OpInfo("min",     MIN,     2, False, 1, np.minimum),
    OpInfo("gt",      GT,      2, False, 1, lambda x, y: (x > y).astype(np.float64)),
    OpInfo("lt",      LT,      2, False, 1, lambda x, y: (x < y).astype(np.float64)),
    OpInfo("where",   WHERE,   3, False, 1, lambda c, x, y: np.where(c != 0, x, y)),
    OpInfo("causal",  CAUSAL,  0, False, 1, None),     # position-dependent: see Program.evaluate
)

OPS: dict[str, OpInfo] = {op.name: op for op in _TABLE}
BY_CODE: dict[int, OpInfo] = {op.code: op for op in _TABLE}
assert sorted(BY_CODE) == list(range(len(_TABLE)))

#: other spellings people (and the compiler) use
ALIASES = {"maximum": "max", "minimum": "min", "multiply": "mul", "subtract": "sub", "divide": "div",
           "negative": "neg", "reciprocal": "recip", "identity": "copy", "swish": "silu",
           "gelu_tanh": "gelu", "power": "pow"}


def known_ops() -> str:
    """The op names, for error messages."""
    return ", ".join(OPS)
