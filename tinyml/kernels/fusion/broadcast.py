"""Broadcasting for the fused kernels: the output shape and each input's load plan.

The kernel sees the output as a 2-D matrix (M, N): N is the last dimension
and M the product of the others (a 0-d output is (1, 1)). An input that
broadcasts (NumPy rules) maps each output row ``r`` to one of its own rows,
``src[r]``, and its columns either match (N of them) or are one column
broadcast along the row.

The load model: a block of BM x BN outputs loads each *distinct* source row it
needs once, ``cols`` elements wide (one element for a broadcast column), and
keeps it in registers for all its output rows. ``fresh[r]`` marks the output
rows whose source row is new to their block, so the kernel charges exactly
those loads. For the common cases this gives::

    full input      (M, N)   reads M * N * s
    row bias        (N,)     reads ceil(M / BM) * N * s   (once per block row of the grid)
    column          (M, 1)   reads M * ceil(N / BN) * s   (once per block column)
    scalar          ()       reads ceil(M / BM) * ceil(N / BN) * s  (once per block)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...sim import ShapeError


def broadcast_shape(shapes: list[tuple], names: list[str], out_shape=None) -> tuple:
    """NumPy's broadcast of ``shapes`` (and ``out_shape`` if given, which must be the result)."""
    try:
        shape = np.broadcast_shapes(*shapes, *([tuple(out_shape)] if out_shape is not None else []))
    except ValueError:
        listed = ", ".join(f"{n} {s}" for n, s in zip(names, shapes))
        extra = f" and out_shape {tuple(out_shape)}" if out_shape is not None else ""
        raise ShapeError(f"the inputs do not broadcast together: {listed}{extra}. NumPy rules: align the "
                         f"shapes on the right; each dimension must be equal or 1") from None
    if out_shape is not None and tuple(shape) != tuple(out_shape):
        raise ShapeError(f"out_shape {tuple(out_shape)} is smaller than the broadcast of the inputs "
                         f"{tuple(shape)} ({', '.join(f'{n} {s}' for n, s in zip(names, shapes))}); "
                         f"out_shape may only make the output bigger")
    if any(d < 1 for d in shape):
        raise ShapeError(f"the output shape {tuple(shape)} has an empty dimension; every dimension must be >= 1")
    return tuple(int(d) for d in shape)


def as_matrix(shape: tuple) -> tuple[int, int]:
    """(M, N) of the 2-D view of an output of ``shape``."""
    if len(shape) == 0:
        return 1, 1
    return math.prod(shape[:-1]), shape[-1]


@dataclass(frozen=True)
class LoadPlan:
    """How one input is read: its source row for each output row, and which loads are new."""

    src: np.ndarray        # int64 (M,): the input's row for output row r
    fresh: np.ndarray      # uint8 (M,): 1 if row r's source row is new to its block
    width: int             # the input's row length: N, or 1 (broadcast along the row)
    n_rows: int            # rows of the input's own 2-D view


def load_plan(in_shape: tuple, out_shape: tuple, block_m: int) -> LoadPlan:
    """The plan for an input of ``in_shape`` broadcast to ``out_shape`` (see module doc)."""
    rank = len(out_shape)
    padded = (1,) * (rank - len(in_shape)) + tuple(in_shape)
    lead_in, lead_out = padded[:-1], tuple(out_shape[:-1])
    n_rows = math.prod(lead_in)
    src = np.broadcast_to(np.arange(n_rows, dtype=np.int64).reshape(lead_in), lead_out).ravel()   # (M,)
    src = np.ascontiguousarray(src)
    width = padded[-1] if rank else 1
    m = src.shape[0]
    block = np.arange(m, dtype=np.int64) // block_m
    key = block * n_rows + src
    fresh = np.zeros(m, dtype=np.uint8)
    fresh[np.unique(key, return_index=True)[1]] = 1
    return LoadPlan(src, fresh, int(width), int(n_rows))
