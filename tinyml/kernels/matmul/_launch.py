"""What every matmul version shares: validation, the C tile a block owns, HBM allocation, launch, recording."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...sim.jit import njit
from ...sim import FLOAT_DTYPES, DTypeError, ShapeError, bits, current_profile
from ...sim.counters import new_counters
from .._classes import edge_grid, launch_counters
from .._contract import Operand, operand, same_mode
from .._counting import input_array, stand_in



@njit(cache=True)
def block_tile(blk, BM, BN, M, N):
    """(r0, c0, rows, cols): the C tile block ``blk`` of a row-major grid of BM x BN tiles owns,
    C[r0 : r0+rows, c0 : c0+cols] (``rows < BM``, ``cols < BN`` only in the last tile row / column)."""
    gn = (N + BN - 1) // BN
    r0 = (blk // gn) * BM
    c0 = (blk % gn) * BN
    return r0, c0, min(BM, M - r0), min(BN, N - c0)


@dataclass
class MatmulCall:
    """A validated matmul call: C (M x N) = A (M x K) @ B (K x N)."""

    a: Operand
    b: Operand
    m: int
    n: int
    k: int
    dtype: str
    execute: bool

    @property
    def elem_bits(self) -> int:
        return bits(self.dtype)


def prepare(a, b, dtype: str, kernel: str) -> MatmulCall:
    """Validate the operands of ``kernel``; shapes must be (M, K) and (K, N)."""
    A = operand(a, "a", ndim=2, dtype=dtype, allowed=FLOAT_DTYPES)
    B = operand(b, "b", ndim=2, dtype=dtype, allowed=FLOAT_DTYPES)
    execute = same_mode(A, B)
    if A.dtype != B.dtype:
        raise DTypeError(f"{kernel}: a is {A.dtype} but b is {B.dtype}; both operands need one logical dtype")
    if A.shape[1] != B.shape[0]:
        raise ShapeError(
            f"{kernel}: inner dimensions differ: a is {A.shape} (M={A.shape[0]}, K={A.shape[1]}) "
            f"but b is {B.shape} (K={B.shape[0]}, N={B.shape[1]}); a's columns must equal b's rows"
        )
    return MatmulCall(A, B, A.shape[0], B.shape[1], A.shape[1], A.dtype, execute)


def run(call: MatmulCall, name: str, body, grid: tuple, n_blocks: int, sizes: tuple,
        sram_per_block: int, panels=None, extra: tuple = (), record: "dict | None" = None):
    """Allocate C, run ``body`` over the grid, record the launch; returns C.

    ``body`` walks the blocks ``ids`` (all of them when executing, one per class when
    counting: :mod:`tinyml.kernels._classes`), block ``ids[row]`` counting into row ``row``.
    ``record``: more arguments of ``Profile.record`` (registers, pipelining, instruction class)."""
    prof = current_profile()
    prof.hbm.track(call.a.obj, "a", call.dtype)
    prof.hbm.track(call.b.obj, "b", call.dtype)
    c = prof.hbm.new_tensor("c", (call.m, call.n), call.dtype, call.execute)
    if call.execute:                 # every block
        ids, run_class, run_length = np.arange(n_blocks, dtype=np.int64), None, None
    else:                            # one block per class: blocks differ only at the edges
        ids, run_class, run_length = edge_grid(grid[0], grid[1])
    counters = new_counters(len(ids), n_operands=2)
    a_data, b_data = input_array(call.a.data), input_array(call.b.data)          # read-only: one compile
    c_data = c if call.execute else stand_in(2)
    body(a_data, b_data, c_data, call.m, call.n, call.k, *sizes, call.execute, ids, counters, call.elem_bits,
         *extra)
    prof.record(name, grid, launch_counters(counters, call.execute, run_class, run_length), dtype=call.dtype,
                sram_per_block=sram_per_block, panels=panels(grid) if panels else None, **(record or {}))
    return c
