"""tinyml.compiler.tensor: tensor programs (TVM/MLC's TensorIR), scheduled and costed.

* :mod:`.ir`: buffers with scopes (global = HBM, shared = SRAM, local = registers), a block
  with spatial and reduction axes, the loop nest a schedule transforms;
* :mod:`.workloads`: ``matmul`` (optionally ``+ bias`` and ReLU), ``batched_matmul`` (any
  two-input contraction), ``conv2d`` (NCHW, stride, zero padding), ``softmax`` (a row reduction),
  each with a float64 NumPy reference;
* :mod:`.printer`: the nest as low-level NumPy-style Python and as a loop tree;
* :mod:`.schedule`: :class:`Schedule` and its primitives (split, reorder, fuse, bind,
  parallel / vectorize / unroll, cache_read / cache_write, compute_at / reverse_compute_at,
  decompose_reduction, tensorize, sample_perfect_tile / sample_categorical), each checking
  legality (:mod:`.legality`); :mod:`.trace`: the schedule as JSON that replays deterministically;
* :mod:`.codegen` and :mod:`.launch`: the nest as a Numba kernel through the kernel contract
  (per-block counters, counting mode == executing mode), recorded in the active Profile.

Importing this package loads NumPy only; :func:`build` loads Numba on first use.
"""

from __future__ import annotations

from .errors import (BindError, ComputeAtError, LoweringError, ReorderError, ScheduleError, SplitError,
                     TensorizeError, TensorProgramError, TraceError)
from .ir import Access, Axis, Block, Buffer, Epilogue, Index, Loop, Nest, Piece, PrimFunc, Stage
from .printer import loop_tree, numpy_source
from .schedule import Instruction, Schedule
from .trace import replay, to_json
from .workloads import WORKLOADS, batched_matmul, contraction, conv2d, matmul, softmax


def simulate(nest_or_schedule, device="a100-40gb"):
    """Cost a schedule on a simulated device (counting mode); see :func:`.launch.simulate`."""
    from .launch import simulate as _simulate
    return _simulate(nest_or_schedule, device)


def build(nest_or_schedule, **kwargs):
    """Compile a nest (or a schedule's nest) into a :class:`~.launch.Kernel`; see :mod:`.launch`."""
    from .launch import build as _build
    return _build(nest_or_schedule, **kwargs)


__all__ = [
    "BindError", "ComputeAtError", "LoweringError", "ReorderError", "ScheduleError", "SplitError",
    "TensorizeError", "TensorProgramError", "TraceError", "Access", "Axis", "Block", "Buffer", "Epilogue", "Index", "Loop",
    "Nest",
    "Piece", "PrimFunc", "Stage", "loop_tree", "numpy_source", "Instruction", "Schedule", "replay", "to_json",
    "WORKLOADS", "batched_matmul", "contraction", "conv2d", "matmul", "softmax", "build", "simulate",
]
