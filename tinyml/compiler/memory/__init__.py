"""Static memory planning: where every intermediate lives in one arena (docs/memory-planning.md).

* :mod:`.liveness`: program points (kernel launches) and each value's live interval;
  ``reshape`` views alias their input; inputs, weights, outputs stay out of the arena;
* :mod:`.greedy`: greedy-by-size offsets on concrete sizes (TensorFlow Lite's planner);
* :mod:`.symbolic_greedy`: greedy by size with polynomial offsets, each placement proved for every ``n``;
* :mod:`.plan`: :class:`MemoryPlan` (arena, LOAD, ratio, ``explain()``), :func:`arena_offsets`;
* :mod:`.draw`: the arena picture and the liveness chart (matplotlib, imported lazily).

The pass that builds a plan is :func:`tinyml.compiler.passes.plan_memory.plan_memory`.
"""

from .greedy import DEFAULT_ALIGNMENT, align_up, greedy_by_size
from .errors import MemoryPlanError, MissingBoundError
from .liveness import LiveValue, Liveness, ProgramPoint, liveness
from .plan import Buffer, MemoryPlan, arena_offsets

__all__ = ["DEFAULT_ALIGNMENT", "Buffer", "LiveValue", "Liveness", "MemoryPlan", "MemoryPlanError",
           "MissingBoundError", "ProgramPoint", "align_up", "arena_offsets", "greedy_by_size",
           "liveness"]
