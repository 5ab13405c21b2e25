"""Row reductions over the last axis (sum, max, mean): the reduction kernels of
the unfused baselines (``x.max(dim=1)``, ``x.sum(dim=1)``, ``x.mean(dim=-1)``).

Each block owns ``BR`` whole rows; every element is read once, straight into
registers (a warp per row would reduce it with shuffles), and one value per
row is written, kept as a column (R, 1) so that the next kernel can broadcast
it against the rows, as ``keepdim=True`` does.

Tile loop::

    for each block b in parallel:                  # grid ceil(R/BR)
        for each row r of the block:
            acc = identity (0 or -inf)             # fp32 register
            for c in 0..C-1:
                acc = acc (+ or max) x[r, c]       # x read from HBM once
            store acc (mean: acc / C) -> out[r, 0]

HBM traffic (``s`` bytes per element; exact for any shape)::

    reads  = R * C * s
    writes = R * s
    vector FLOPs = R * C      (mean: R * C + R, the divide)
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import FLOAT_DTYPES, bits, current_profile
from ...sim.counters import new_counters
from ...sim.tiles import count_load_direct, count_store_direct, count_vector
from .._classes import blocks_to_walk, launch_counters
from .._contract import block_size, ceil_div, operand
from .._counting import stand_in
from .elementwise import pow2
from .errors import ProgramError

REDUCTIONS = {"sum": 0, "max": 1, "mean": 2}


@njit(parallel=PARALLEL, cache=True)
def _body(x, out, R, C, BR, op, execute, ids, counters, elem_bits):
    for row in prange(len(ids)):                 # every block, or one per class (counting)
        r0 = ids[row] * BR
        rows = min(BR, R - r0)
        count_load_direct(rows * C, counters, row, 0, elem_bits)
        count_vector(rows * C + (rows if op == 2 else 0), counters, row)
        count_store_direct(rows, counters, row, elem_bits)
        if execute:
            for r in range(r0, r0 + rows):
                acc = np.float32(-np.inf) if op == 1 else np.float32(0.0)
                for c in range(C):
                    acc = max(acc, x[r, c]) if op == 1 else acc + x[r, c]
                out[r, 0] = acc / np.float32(C) if op == 2 else acc


def row_reduce(x, op: str, *, dtype: str = "fp16", block_rows: "int | None" = None, name: "str | None" = None):
    """Reduce each row of ``x`` (R, C) with ``op`` ('sum', 'max', 'mean'); returns (R, 1).

    One kernel, named ``reduce_<op>`` unless ``name`` is given. See the module docstring.
    """
    if op not in REDUCTIONS:
        raise ProgramError(f"unknown reduction {op!r}; choose one of {', '.join(REDUCTIONS)}")
    X = operand(x, "x", ndim=2, dtype=dtype, allowed=FLOAT_DTYPES)
    rows, cols = X.shape
    br = block_size(block_rows, "block_rows", max(1, min(pow2(rows), 1024 // pow2(min(cols, 1024)))))
    prof = current_profile()
    prof.hbm.track(X.obj, "x", X.dtype)
    out = prof.hbm.new_tensor(f"{op}(x)", (rows, 1), X.dtype, X.execute)
    grid = (ceil_div(rows, br),)
    ids, run_class, run_length = blocks_to_walk(grid[0], 1, X.execute)   # counting: the first and the last block
    counters = new_counters(len(ids), n_operands=1)
    _body(X.data if X.execute else stand_in(2), out if X.execute else stand_in(2), rows, cols, br, REDUCTIONS[op],
          X.execute, ids, counters, bits(X.dtype))
    prof.record(name or f"reduce_{op}", grid, launch_counters(counters, X.execute, run_class, run_length),
                dtype=X.dtype, sram_per_block=0)
    return out
