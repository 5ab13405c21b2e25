"""Greedy-by-size offsets in one arena (TensorFlow Lite's arena planner), on concrete byte sizes.

Every intermediate gets one byte offset in a single arena, so that no two
values live at the same point share a byte::

    order the buffers by size, largest first (ties: earlier start, then name)
    for each buffer b in that order:
        placed = the buffers already placed whose intervals overlap b's, by offset
        offset = 0
        for p in placed:                       # walk the gaps between them, lowest first
            if offset + size(b) <= p.offset:   #   b fits below p: take this gap
                break
            offset = max(offset, align_up(p.offset + size(p)))
        b.offset = offset
    arena = max(offset + size)                 # 0 when there is no buffer

Big buffers go first because they are the hard ones to fit; small ones fill
the gaps. The result is never below **LOAD**, the most bytes live at any one
point (the buffers live there sit side by side), and greedy-by-size is
usually within a few percent of it (Pisarchyk & Lee, 2020).

Every offset is a multiple of ``alignment`` (sizes are not rounded: a buffer
may end anywhere; the next one starts at the next aligned byte).
"""

from __future__ import annotations

from .errors import MemoryPlanError

#: the default alignment of every offset (bytes): what cudaMalloc guarantees
DEFAULT_ALIGNMENT = 256


def check_alignment(alignment) -> int:
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment < 1:
        raise MemoryPlanError(f"alignment must be a positive integer number of bytes (e.g. 256), got {alignment!r}")
    return alignment


def align_up(x: int, alignment: int) -> int:
    """The smallest multiple of ``alignment`` that is >= ``x``."""
    return -(-x // alignment) * alignment


def overlaps(a: tuple, b: tuple) -> bool:
    """Do closed intervals ``a = (start, end)`` and ``b`` share a point?"""
    return a[0] <= b[1] and b[0] <= a[1]


def greedy_by_size(sizes: list, intervals: list, alignment: int = DEFAULT_ALIGNMENT,
                   names: "list | None" = None) -> tuple[list, int]:
    """``(offsets, arena_bytes)`` for buffers of ``sizes`` bytes live at ``intervals`` (pseudocode above)."""
    check_alignment(alignment)
    names = names or [str(i) for i in range(len(sizes))]
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], intervals[i][0], names[i]))
    offsets = [0] * len(sizes)
    placed: list[int] = []
    for i in order:
        conflicts = sorted((offsets[j], sizes[j]) for j in placed if overlaps(intervals[i], intervals[j]))
        off = 0
        for o, s in conflicts:
            if off + sizes[i] <= o:
                break
            off = max(off, align_up(o + s, alignment))
        offsets[i] = off
        placed.append(i)
    arena = max((o + s for o, s in zip(offsets, sizes)), default=0)
    return offsets, arena


def reuse_count(offsets: list, sizes: list) -> int:
    """How many buffers reuse bytes of a buffer earlier in the list (list them by start point)."""
    count = 0
    for i in range(len(sizes)):
        if any(offsets[i] < offsets[j] + sizes[j] and offsets[j] < offsets[i] + sizes[i] for j in range(i)):
            count += 1
    return count
