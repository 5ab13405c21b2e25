"""Counting a tuning trial one block per class: :mod:`tinyml.compiler.tensor.block_classes`.

A generated kernel in counting mode counts a grid one block per edge class (the blocks that
load, compute and store the same amounts); :func:`count_by_class` is the tuner's name for it.
"""

from __future__ import annotations

from ...sim import current_profile, meta
from ..tensor.block_classes import block_bases, block_classes, block_signatures, identical_blocks

__all__ = ["block_bases", "block_classes", "block_signatures", "count_by_class", "count_one_class",
           "identical_blocks"]


def count_by_class(kernel):
    """Count ``kernel`` on ``meta`` inputs in the active Profile, one block per class; its
    KernelRecord. Call only for a grid kernel (``kernel.is_grid``)."""
    kernel(*(meta(b.shape, b.dtype) for b in kernel.func.inputs), by_class=True)
    return current_profile().records[-1]


count_one_class = count_by_class      # the name of the identical-blocks case (one class)
