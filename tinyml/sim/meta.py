"""Shape-only tensors for counting mode.

Pass :class:`MetaTensor` inputs to any kernel and it walks the very same tile
loops without touching data: the counters come out identical to executing mode,
but a 16384^3 matmul or a 64K-token attention is costed in about a second.
(The idea is PyTorch's "meta" device.)
"""

from __future__ import annotations

import math

import numpy as np

from .args import integer
from .dtypes import canonical, nbytes
from .errors import ShapeError


class MetaTensor:
    """A tensor that has a shape and a logical dtype but no data."""

    __slots__ = ("shape", "dtype", "__weakref__")

    def __init__(self, shape, dtype: str = "fp16"):
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
            shape = (shape,)                                  # meta(5) is meta((5,)), as np.zeros(5)
        if isinstance(shape, (str, bytes, dict)) or not hasattr(shape, "__iter__"):
            raise ShapeError(f"a shape is a tuple of integers such as (4096, 4096), got {shape!r} "
                             f"({type(shape).__name__})")
        shape = tuple(shape)                                  # a list, an array of ints, x.shape ...
        self.shape = tuple(integer(s, f"shape[{i}]", error=ShapeError, hint=f"shape {tuple(shape)!r}")
                           for i, s in enumerate(shape))
        if any(s < 0 for s in self.shape):
            raise ShapeError(f"a tensor's dimensions cannot be negative, got shape {self.shape}")
        self.dtype = canonical(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes this tensor would occupy in HBM (from its logical dtype)."""
        return nbytes(self.size, self.dtype)

    def __repr__(self) -> str:
        return f"MetaTensor(shape={self.shape}, dtype={self.dtype!r})"


def meta(shape, dtype: str = "fp16") -> MetaTensor:
    """Make a shape-only tensor, e.g. ``meta((4096, 4096), "fp16")``."""
    return MetaTensor(shape, dtype)
