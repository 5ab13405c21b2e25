"""The HBM ledger: every tensor a kernel touches lives in simulated HBM.

Inputs are registered the first time a kernel sees them, outputs are allocated
through the ledger, and an entry disappears when its Python object is garbage
collected (``weakref.finalize``), so live bytes follow what the program really
keeps alive. Going over the device's capacity raises
:class:`HbmOutOfMemoryError` listing what is live.

Sizes are Python integers (``math.prod``), never int64 products, so no shape
can overflow into a small or negative size. An executing-mode output is checked
against the simulated capacity first and the host's available memory second
(:mod:`tinyml.sim.host`), both before NumPy allocates anything.

Two additions let a caller (the compiler's lowering) manage memory itself:

* :meth:`HbmLedger.alias` marks an object as a *view* of bytes already
  accounted (a reshape, a slice of an arena) or as not in HBM at all: tracking
  it later adds nothing;
* :meth:`HbmLedger.placing` installs a *placer* for the duration of a block:
  :meth:`new_tensor` first asks it for the output (e.g. a slice of one arena
  allocated up front) and only allocates if it declines (returns None).
"""

from __future__ import annotations

import itertools
import math
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .dtypes import nbytes
from .errors import HbmOutOfMemoryError, ShapeError
from .host import host_empty
from .meta import MetaTensor
from .units import fmt_bytes as _fmt


@dataclass(frozen=True)
class Allocation:
    name: str
    shape: tuple
    dtype: str
    nbytes: int


class HbmLedger:
    """Live allocations, current and peak bytes of one simulated HBM."""

    def __init__(self, capacity: int, device_name: str = "device"):
        self.capacity = int(capacity)
        self.device_name = device_name
        self.live: dict[int, Allocation] = {}
        self.used = 0
        self.peak = 0
        self._ids = itertools.count()
        self._tracked: dict[int, int] = {}      # id(obj) -> allocation id (-1: an alias, no bytes)
        self._placers: list[Callable] = []

    # -- raw allocations ----------------------------------------------------
    @staticmethod
    def size_of(name: str, shape, dtype: str) -> int:
        """Bytes a tensor of ``shape`` and logical ``dtype`` occupies, in exact integer arithmetic."""
        shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ShapeError(f"cannot allocate {name} {shape}: a dimension is negative")
        return nbytes(math.prod(shape), dtype)

    def check_fits(self, name: str, shape, dtype: str) -> int:
        """Raise :class:`HbmOutOfMemoryError` unless ``shape`` fits next to what is live; returns its bytes."""
        size = self.size_of(name, shape, dtype)
        if self.used + size > self.capacity:
            raise HbmOutOfMemoryError(self._oom_message(name, tuple(int(s) for s in shape), dtype, size))
        return size

    def alloc(self, name: str, shape, dtype: str) -> int:
        """Reserve HBM for a tensor; returns a handle for :meth:`free`."""
        size = self.check_fits(name, shape, dtype)
        handle = next(self._ids)
        self.live[handle] = Allocation(name, tuple(int(s) for s in shape), dtype, size)
        self.used += size
        self.peak = max(self.peak, self.used)
        return handle

    def free(self, handle: int) -> None:
        alloc = self.live.pop(handle, None)
        if alloc is not None:
            self.used -= alloc.nbytes

    # -- objects whose lifetime Python manages ----------------------------------
    def track(self, obj, name: str, dtype: str) -> None:
        """Account for ``obj`` (an ndarray or MetaTensor) until it is garbage collected."""
        key = id(obj)
        if key in self._tracked:
            return
        handle = self.alloc(name, obj.shape, dtype)
        self._tracked[key] = handle
        weakref.finalize(obj, self._release, key, handle)

    def _release(self, key: int, handle: int) -> None:
        self._tracked.pop(key, None)
        self.free(handle)

    def alias(self, obj) -> None:
        """Account ``obj`` as zero bytes: a view of bytes someone else holds (a reshape of a
        tracked tensor, a slice of an arena), or a value no kernel keeps in HBM. Tracking it
        later is a no-op. The caller keeps the bytes it views alive for as long as it is."""
        key = id(obj)
        if key in self._tracked:
            return
        self._tracked[key] = -1
        weakref.finalize(obj, self._tracked.pop, key, None)

    def is_tracked(self, obj) -> bool:
        """True if ``obj`` is accounted (its own bytes, or as an alias)."""
        return id(obj) in self._tracked

    @contextmanager
    def placing(self, placer: Callable):
        """While the block runs, :meth:`new_tensor` asks ``placer(name, shape, dtype, execute)``
        first; a non-None answer is used as the output and accounted as an alias (the placer
        owns its bytes, e.g. one arena allocated with :meth:`alloc`)."""
        self._placers.append(placer)
        try:
            yield
        finally:
            self._placers.remove(placer)

    def new_tensor(self, name: str, shape, dtype: str, execute: bool, host_dtype=np.float32):
        """Allocate an output: a ``host_dtype`` array (executing) or a MetaTensor (counting).

        A placer (:meth:`placing`) is asked for float32 outputs only. Executing, the simulated
        capacity is checked first, then the host's memory
        (:func:`tinyml.sim.host.host_empty`), and only then does NumPy allocate.
        """
        shape = tuple(int(s) for s in shape)
        if self._placers and np.dtype(host_dtype) == np.float32:     # placers hold float32 values only
            placed = self._placers[-1](name, shape, dtype, execute)
            if placed is not None:
                self.alias(placed)
                return placed
        if execute:
            self.check_fits(name, shape, dtype)
            obj = host_empty(shape, host_dtype, f"{name} {shape} (executing on {self.device_name})")
        else:
            obj = MetaTensor(shape, dtype)
        self.track(obj, name, dtype)
        return obj

    def _oom_message(self, name: str, shape: tuple, dtype: str, size: int) -> str:
        lines = [
            f"out of HBM on {self.device_name}: allocating {name} {shape} {dtype} needs "
            f"{_fmt(size)}, but {_fmt(self.used)} of {_fmt(self.capacity)} is in use "
            f"({_fmt(self.capacity - self.used)} free).",
        ]
        if self.live:
            lines.append("Live allocations:")
            for a in sorted(self.live.values(), key=lambda a: -a.nbytes)[:10]:
                lines.append(f"  {a.name:<16} {str(a.shape):<24} {a.dtype:<5} {_fmt(a.nbytes)}")
            if len(self.live) > 10:
                lines.append(f"  ... and {len(self.live) - 10} more")
        lines.append("Use a smaller shape, a device with more HBM (`tinyml devices`), "
                     "or a kernel that never materialises this tensor.")
        return "\n".join(lines)
