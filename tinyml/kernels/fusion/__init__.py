"""Kernel fusion: do several ops in one pass over HBM instead of one pass each.

Memory-bound ops (elementwise chains, softmax, layernorm, a matmul's bias and
activation) spend their time moving bytes, so running them one kernel at a
time, as eager PyTorch does, pays an HBM round trip for every intermediate.
Each module here has a fused kernel and the unfused baseline it replaces,
with both byte counts in its docstring:

| module          | fused                                    | baseline (eager, one kernel per op)                  |
|-----------------|------------------------------------------|------------------------------------------------------|
| ``elementwise`` | ``fused_elementwise`` (op program)       | ``unfused_elementwise``                              |
| ``softmax``     | ``softmax_fused`` (reads MN, writes MN)  | ``softmax_naive`` (reads 5MN + 2M, writes 3MN + 2M)  |
| ``layernorm``   | ``layernorm_fused``                      | ``layernorm_unfused`` (9 kernels)                    |
| ``epilogue``    | ``matmul_epilogue``                      | ``matmul_epilogue_unfused``                          |
| ``reduce``      |                                          | ``row_reduce`` (sum, max, mean of each row)          |

The elementwise kernels run an *op program* (:class:`Program`): integer
opcodes interpreted inside one cached Numba kernel, built from a list of op
names, a traced Python function, or raw instructions (what a compiler emits).
"""

from __future__ import annotations

from . import expr
from .elementwise import fused_elementwise, unfused_elementwise
from .epilogue import matmul_epilogue, matmul_epilogue_unfused
from .ops import OPS
from .layernorm import layernorm_fused, layernorm_unfused
from .errors import FusionError, ProgramError
from .program import MAX_SLOTS, Instr, Program
from .reduce import row_reduce
from .softmax import softmax_fused, softmax_naive

__all__ = ["Program", "Instr", "ProgramError", "FusionError", "MAX_SLOTS", "OPS", "expr", "fused_elementwise",
           "unfused_elementwise", "row_reduce", "softmax_fused", "softmax_naive", "matmul_epilogue", "matmul_epilogue_unfused",
           "layernorm_fused", "layernorm_unfused"]
