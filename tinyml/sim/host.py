"""Host memory: ask before a large NumPy allocation, so a run too big for this machine fails with a
message instead of NumPy's ``MemoryError`` or the operating system killing the process.

Executing mode keeps every simulated tensor as a real float32 array in the host's RAM. The order of
checks for a new tensor is: simulated HBM capacity first (:class:`~tinyml.sim.memory.HbmLedger`,
``HbmOutOfMemoryError``: the lesson), then the host's available memory (:class:`HostMemoryError`:
this machine's limit, with the way out, counting mode).

    check_host_memory(nbytes, what)     raise HostMemoryError if nbytes > available (large requests only)
    host_empty(shape, dtype, what)      check, then np.empty

Available memory is the kernel's estimate (``MemAvailable`` in ``/proc/meminfo``), or free physical
pages (``os.sysconf``) where there is no ``/proc``; where neither exists the check is skipped.
Requests below :data:`SMALL` are not checked: they cannot exhaust a machine that runs Python.
"""

from __future__ import annotations

import math
import os

import numpy as np

from .errors import HostMemoryError
from .units import fmt_bytes

#: requests below this many bytes are allocated without reading the available memory.
SMALL = 64 * 2 ** 20


def available_bytes() -> int | None:
    """The host memory a new allocation can take without swapping, in bytes (None if unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024          # the file says kB (KiB)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


#: what to do about it, for a kernel run in executing mode (the default advice)
COUNT_INSTEAD = ("(executing mode keeps every tensor as a real array in RAM). Cost this shape in counting mode "
                 "instead: pass tinyml.sim.meta(shape, dtype) tensors (on the command line: drop --execute, or "
                 "pass --count-only), or execute a smaller shape.")


def check_host_memory(nbytes: int, what: str, advice: str = COUNT_INSTEAD) -> None:
    """Raise :class:`HostMemoryError` if ``nbytes`` (for ``what``) exceed the host's available memory;
    the message ends with ``advice`` (why so much, and the way out)."""
    nbytes = int(nbytes)
    if nbytes < SMALL:
        return
    avail = available_bytes()
    if avail is None or nbytes <= avail:
        return
    raise HostMemoryError(
        f"{what} needs {fmt_bytes(nbytes)} of host memory, but this machine has {fmt_bytes(avail)} available "
        f"{advice}")


def host_empty(shape, dtype, what: str) -> np.ndarray:
    """``np.empty(shape, dtype)`` after :func:`check_host_memory` (sizes in Python integers: no overflow)."""
    shape = tuple(int(s) for s in shape)
    check_host_memory(math.prod(shape) * np.dtype(dtype).itemsize, what)
    return np.empty(shape, dtype=dtype)
