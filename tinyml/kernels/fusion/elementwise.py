"""Fused elementwise kernel: a whole op chain in one pass, vs one kernel per op.

Eager PyTorch runs ``gelu(x * w + b)`` as three kernels, and each one reads its
operands from HBM and writes its result back: the intermediates ``x * w`` and
``x * w + b`` make a round trip through HBM that nobody needed. The fused
kernel loads each input once, runs the whole op program (program.py) on the
values in registers, and writes only the output.

Tile loop (``fused_elementwise``)::

    for each block (bi, bj) in parallel:          # grid ceil(M/BM) x ceil(N/BN), one thread per output
        for each output row r of the block:
            for each input j:                      # registers, no SRAM
                reg[j] = load x_j[src_j(r), cols of the block]   # once per distinct source row per block
            run the program on reg                # vector units, all in registers
            store reg[output] -> out[r, cols of the block]

The output is viewed as (M, N) (N = last dimension, M = the rest); broadcasting
follows NumPy (see broadcast.py for the load model). HBM traffic, with
``s`` = bytes per element and ``F`` = the program's FLOPs per element::

    reads  = sum over inputs of  (distinct source rows per block, summed over blocks) * width * s
             e.g. full (M, N): M N s;  bias (N,): ceil(M/BM) N s;  column (M, 1): M ceil(N/BN) s;
                  scalar: ceil(M/BM) ceil(N/BN) s
    writes = M * N * s
    vector FLOPs = F * M * N

``unfused_elementwise`` runs the same program as eager PyTorch would: one
kernel per instruction (constants are kernel arguments, not tensors), each
with the traffic above for its own operands and output shape. For a chain over
full (M, N) tensors with ``k`` ops and ``i`` inputs: fused reads ``i M N s``
and writes ``M N s``; unfused reads ``(i + k - 1) M N s`` and writes ``k M N s``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import FLOAT_DTYPES, DTypeError, MetaTensor, bits, canonical, current_profile
from ...sim.counters import new_counters
from ...sim.tiles import count_load_direct, count_store_direct, count_vector
from .._classes import blocks_to_walk, launch_counters, row_edge_grid
from .._contract import Operand, block_size, ceil_div, operand, same_mode
from .._counting import extent, stand_in
from .broadcast import as_matrix, broadcast_shape, load_plan
from .interp import run_program
from .ops import OPS
from .errors import ProgramError
from .program import Instr, Program

TILE_ELEMS = 1024      # default block: 1024 threads, one output element each


@njit(parallel=PARALLEL, cache=True)
def _body(flat, offs, widths, src, fresh, out, M, N, BM, BN, code, consts, n_slots, out_slot, flops,
          execute, ids, counters, in_bits, out_bits, n_rows):
    gn = (N + BN - 1) // BN
    n_in = offs.shape[0]
    for row in prange(len(ids)):                 # every block, or one per class (counting)
        blk = ids[row]
        r0 = (blk // gn) * BM
        c0 = (blk % gn) * BN
        rows = min(BM, M - r0)
        cols = min(BN, N - c0)
        for j in range(n_in):                    # each distinct source row once per block
            width = cols if widths[j] > 1 else 1
            n_el = 0
            for i in range(rows):
                if fresh[j, r0 + i]:
                    n_el += width
            count_load_direct(n_el, counters, row, j, in_bits[j])
        count_vector(flops * rows * cols, counters, row)
        count_store_direct(rows * cols, counters, row, out_bits)
        regs = np.empty((extent(n_slots, execute), extent(BN, execute)), dtype=np.float32)   # (slots, BN)
        if execute:
            for i in range(rows):
                r = r0 + i
                for j in range(n_in):
                    base = offs[j] + src[j, r] * widths[j]
                    reg = regs[j]
                    if widths[j] > 1:
                        for c in range(cols):
                            reg[c] = flat[base + c0 + c]
                    else:
                        v = flat[base]
                        for c in range(cols):
                            reg[c] = v
                run_program(code, consts, regs, cols, r % n_rows, c0, n_rows, N)
                res = regs[out_slot]
                for c in range(cols):
                    out[r, c0 + c] = res[c]


def expected_chain_bytes(m: int, n: int, n_inputs: int, n_ops: int, elem_bytes: float) -> dict:
    """{"fused": (reads, writes), "unfused": (reads, writes)} of a chain of ``n_ops`` ops over
    ``n_inputs`` full (M, N) inputs, from the formula above."""
    mn = m * n * elem_bytes
    return {"fused": (n_inputs * mn, mn), "unfused": ((n_inputs + n_ops - 1) * mn, n_ops * mn)}


def as_program(program_or_ops, n_inputs: int) -> Program:
    """A Program from a Program, a list of op names (``Program.chain``) or a function (``Program.trace``)."""
    if isinstance(program_or_ops, Program):
        return program_or_ops
    if callable(program_or_ops):
        return Program.trace(program_or_ops, n_inputs)
    if isinstance(program_or_ops, (list, tuple)):
        return Program.chain(program_or_ops)
    raise ProgramError(f"expected a Program, a list of op names or a function, got {program_or_ops!r}")


def validate_inputs(inputs: Sequence, dtype: str) -> list[Operand]:
    """Each input as an Operand of its own rank; all in one logical dtype."""
    if isinstance(inputs, (np.ndarray, MetaTensor)) or not isinstance(inputs, (list, tuple)):
        raise ProgramError(f"inputs must be a list of arrays (or MetaTensors), got {type(inputs).__name__}; "
                           f"wrap a single input as [x]")
    ops = []
    for j, x in enumerate(inputs):
        ndim = x.ndim if isinstance(x, MetaTensor) else np.ndim(x)
        # +-inf is a value (a masked logit), NaN is not
        op = operand(x, f"inputs[{j}]", ndim=ndim, dtype=dtype, allowed=FLOAT_DTYPES, allow=("-inf", "+inf"))
        ops.append(op)
    kinds = {op.dtype for op in ops}
    if len(kinds) > 1:
        listed = ", ".join(f"{op.name}={op.dtype}" for op in ops)
        raise DTypeError(f"the inputs have different logical dtypes ({listed}); a fused kernel "
                         f"counts bytes in one dtype: make them the same")
    return ops


def default_blocks(m: int, n: int) -> tuple[int, int]:
    """BN: the power of two covering a row, at most 1024; BM fills the block up to 1024 threads."""
    bn = min(pow2(n), TILE_ELEMS)
    return min(pow2(m), max(1, TILE_ELEMS // bn)), bn


def pow2(n: int) -> int:
    return 1 << (int(n) - 1).bit_length()


def launch(program: Program, ops: list[Operand], *, dtype: str, out_shape=None, execute: "bool | None" = None,
           block_m=None, block_n=None, name: str = "fused_elementwise"):
    """Run ``program`` on validated inputs as one kernel; returns the output (array or MetaTensor)."""
    if len(ops) != program.n_inputs:
        raise ProgramError(f"the program takes {program.n_inputs} input(s) but {len(ops)} were given\n{program}")
    if not ops and out_shape is None:
        raise ProgramError("a program without inputs needs out_shape (the shape to fill)")
    execute = same_mode(*ops) if ops else (True if execute is None else execute)
    dtype = ops[0].dtype if ops else canonical(dtype, FLOAT_DTYPES)
    shape = broadcast_shape([op.shape for op in ops], [op.name for op in ops], out_shape)
    m, n = as_matrix(shape)
    auto_m, auto_n = default_blocks(m, n)
    bm = block_size(block_m, "block_m", auto_m)
    bn = block_size(block_n, "block_n", auto_n)

    plans = [load_plan(op.shape, shape, bm) for op in ops]
    src = np.stack([p.src for p in plans]) if plans else np.zeros((0, m), np.int64)          # (n_in, M)
    fresh = np.stack([p.fresh for p in plans]) if plans else np.zeros((0, m), np.uint8)      # (n_in, M)
    widths = np.array([p.width for p in plans], dtype=np.int64)
    sizes = np.array([p.n_rows * p.width for p in plans], dtype=np.int64)
    offs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if plans else np.zeros(0, np.int64)
    flat = (np.concatenate([op.data.ravel() for op in ops]) if execute and ops
            else stand_in(1))                                                 # all inputs, flat
    code, consts = program.encode()

    prof = current_profile()
    for op in ops:
        prof.hbm.track(op.obj, op.name, dtype)
    out = prof.hbm.new_tensor("out", shape, dtype, execute)
    grid = (ceil_div(m, bm), ceil_div(n, bn))
    # counting: one block per class; a tile row's blocks differ only in the last column
    ids, run_class, run_length = blocks_to_walk(grid[0], grid[1], execute, row_edge_grid)
    counters = new_counters(len(ids), n_operands=len(ops))
    in_bits = np.full(len(ops), bits(dtype), dtype=np.int64)
    out2d = out.reshape(m, n) if execute else stand_in(2)                                        # (M, N) view
    _body(flat, offs, widths, src, fresh, out2d, m, n, bm, bn, code, consts, program.n_slots, program.output,
          program.flops_per_element, execute, ids, counters, in_bits, bits(dtype), shape[-2] if len(shape) > 1 else 1)
    prof.record(name, grid, launch_counters(counters, execute, run_class, run_length), dtype=dtype, sram_per_block=0)
    return out


def fused_elementwise(program_or_ops: "Program | Sequence | Callable", inputs: Sequence, *, dtype: str = "fp16",
                      out_shape=None, block_m: "int | None" = None, block_n: "int | None" = None,
                      name: str = "fused_elementwise"):
    """Evaluate an elementwise op program in one kernel: each input read once, the output written once.

    ``program_or_ops``: a :class:`Program`, a list of op names for
    :meth:`Program.chain` (``["mul", "add", "gelu"]``), or a function traced by
    :meth:`Program.trace`. ``inputs``: NumPy arrays (executing mode) or
    ``tinyml.sim.meta`` tensors (counting mode) that broadcast together (NumPy
    rules); ``out_shape`` may make the output bigger still. ``dtype`` is the
    logical dtype bytes are counted in. ``block_m`` x ``block_n`` is the thread
    block over the (M, N) view of the output (default: up to 1024 threads).
    Records one kernel named ``name`` in the active Profile. See the module
    docstring for the tile loop and the byte formula.
    """
    ops = validate_inputs(inputs, dtype)
    program = as_program(program_or_ops, len(ops))
    return launch(program, ops, dtype=dtype, out_shape=out_shape, block_m=block_m, block_n=block_n, name=name)


def unfused_elementwise(program_or_ops: "Program | Sequence | Callable", inputs: Sequence, *, dtype: str = "fp16",
                        out_shape=None, block_m: "int | None" = None, block_n: "int | None" = None):
    """The same program as eager PyTorch runs it: one kernel per instruction.

    Each kernel reads its operands from HBM and writes its result back (a
    constant is a kernel argument, not a tensor). An intermediate is freed
    after its last use, as a refcounted framework would. Kernels are named
    ``elementwise_<op>``; the result equals :func:`fused_elementwise`'s exactly
    (the same float32 arithmetic in the same order).
    """
    ops = validate_inputs(inputs, dtype)
    program = as_program(program_or_ops, len(ops))
    if len(ops) != program.n_inputs:
        raise ProgramError(f"the program takes {program.n_inputs} input(s) but {len(ops)} were given\n{program}")
    execute = same_mode(*ops) if ops else True
    dtype = ops[0].dtype if ops else canonical(dtype, FLOAT_DTYPES)
    shape = broadcast_shape([op.shape for op in ops], [op.name for op in ops], out_shape)
    last_use = _last_uses(program)
    slots: list = list(ops) + [None] * len(program.instrs)     # Operand, or ("const", value)
    kw = dict(dtype=dtype, execute=execute, block_m=block_m, block_n=block_n)
    for k, ins in enumerate(program.instrs):
        dst = program.n_inputs + k
        if ins.op == "const":
            slots[dst] = ("const", ins.const)
        else:
            sub, tensors = _one_op_program(ins, slots)
            if ins.op == "causal":           # the mask is a tensor of the last two axes, as eager builds it
                sub_shape = shape[-2:]
            else:                               # constants only: a 0-d tensor
                sub_shape = None if tensors else ()
            res = launch(sub, tensors, out_shape=sub_shape, name=f"elementwise_{ins.op}", **kw)
            slots[dst] = _as_operand(res, f"t{dst}", dtype)
        for a in set(ins.args):                  # free what is dead (the caller keeps its inputs)
            if last_use[a] == k and a >= program.n_inputs and a != program.output:
                slots[a] = None
    result = slots[program.output]
    if isinstance(result, Operand) and result.shape == shape and program.output >= program.n_inputs:
        return result.obj
    # the result is a constant, an input, or smaller than out_shape: one more kernel writes it
    sub, tensors = _one_op_program(Instr("copy", (program.output,)), slots)
    return launch(sub, tensors, out_shape=shape, name="elementwise_copy", **kw)


def _last_uses(program: Program) -> dict[int, int]:
    last = {}
    for k, ins in enumerate(program.instrs):
        for a in ins.args:
            last[a] = k
    return last


def _one_op_program(ins, slots) -> tuple[Program, list[Operand]]:
    """A program of one op whose tensor operands are inputs and constants are const instructions."""
    tensors, instrs, where = [], [], {}
    for a in ins.args:
        if a in where:
            continue
        if isinstance(slots[a], Operand):
            where[a] = len(tensors)
            tensors.append(slots[a])
    n_in = len(tensors)
    for a in ins.args:
        if a not in where:
            instrs.append(("const", (), slots[a][1]))
            where[a] = n_in + len(instrs) - 1
    instrs.append((ins.op, tuple(where[a] for a in ins.args)) + ((ins.const,) if OPS[ins.op].const else ()))
    return Program.from_instructions(n_in, instrs), tensors


def _as_operand(res, name: str, dtype: str) -> Operand:
    """An intermediate result as an Operand (already float32 and finite-unchecked)."""
    if isinstance(res, MetaTensor):
        return Operand(name, res, None, res.shape, dtype)
    return Operand(name, res, res, res.shape, dtype)
