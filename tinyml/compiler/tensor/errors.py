"""The errors of tensor programs, all under :class:`~tinyml.sim.errors.TinymlError`.

Every message names the loop or stage, the dependence or limit involved and the numbers,
and says what to do instead; a refused primitive leaves the schedule unchanged.
"""

from __future__ import annotations

from ...sim.errors import TinymlError


class TensorProgramError(TinymlError, ValueError):
    """A workload definition is malformed (unknown buffer, shapes that disagree)."""


class ScheduleError(TensorProgramError):
    """A schedule primitive was refused: the request would change what the program computes."""


class SplitError(ScheduleError):
    """split: factors that do not cover the loop, or a non-dividing factor where a guard cannot go."""


class ReorderError(ScheduleError):
    """reorder / fuse: the new order would move a loop across a dependence or a stage."""


class ComputeAtError(ScheduleError):
    """compute_at / reverse_compute_at / decompose_reduction: a location that does not cover the stage."""


class BindError(ScheduleError):
    """bind / parallel / vectorize: a reduction loop, a reused thread axis, too many threads."""


class TensorizeError(ScheduleError):
    """tensorize: the loops under the chosen loop are not one whole tile product."""


class TraceError(TensorProgramError):
    """A trace (JSON) is malformed or does not replay on the workload."""


class LoweringError(TensorProgramError):
    """A scheduled nest cannot become a kernel (a grid loop inside a serial loop ...)."""
