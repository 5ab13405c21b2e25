"""Counting mode's two idioms: buffers of one element, and arrays that stand in for data.

One code path runs both modes (:mod:`tinyml.kernels._contract`): a body walks
the same tile loops whether it has data or only shapes, and every tile helper
skips the copy or the arithmetic when counting. What is left to say is how big
the on-chip buffers are when nothing will be written to them, and what to pass
for an operand that has no data:

* :func:`extent` is a buffer's extent along one axis: ``n`` when executing, 1
  when counting, so a body declares its SRAM tiles once for both modes::

      a_s = np.zeros((extent(BM, execute), extent(BK, execute)), np.float32)   # (BM, BK) SRAM

* :func:`stand_in` is a one-element array of the right rank and dtype, passed
  to a jitted body in place of an operand's data when counting (Numba compiles
  a body per argument type, so the stand-in must have the data's rank and dtype).

* :func:`input_array` is what a body gets for an input it only reads: the data
  as a read-only view (no copy), or a read-only stand-in when counting. Numba's
  argument type includes writability, and the kernels a compiled graph lowers to
  get its frozen (read-only) weights next to a user's writable arrays: without
  this, each such body compiled twice or three times (3-5 s each).
"""

from __future__ import annotations

import numpy as np

from ..sim.jit import njit  # versioned Numba cache, one compile per argument type


@njit(cache=True)
def extent(n, execute):
    """A buffer extent: ``n`` when executing, 1 when counting (no data will be written)."""
    return n if execute else 1


def stand_in(ndim: int = 2, dtype=np.float32, fill=0) -> np.ndarray:
    """A one-element ``ndim``-D array of ``dtype`` (filled with ``fill``) for an operand counting mode has no data for."""
    return np.full((1,) * ndim, fill, dtype=dtype)


def input_array(data, ndim: int = 2, dtype=np.float32) -> np.ndarray:
    """An input for a jitted body, read-only: ``data`` as a read-only view (executing), or, for ``None``
    (counting, or an optional input that is absent), a read-only :func:`stand_in` of rank ``ndim``."""
    view = stand_in(ndim, dtype) if data is None else data.view()
    view.flags.writeable = False
    return view
