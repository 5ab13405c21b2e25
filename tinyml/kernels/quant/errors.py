"""What quantization refuses to do, as :class:`~tinyml.sim.TinymlError` subclasses.

NaN/Inf weights raise :class:`tinyml.sim.NonFiniteError` (the shared one);
the errors here are specific to quantized formats.
"""

from __future__ import annotations

from ...sim.errors import ShapeError, TinymlError


class UnknownFormatError(TinymlError, ValueError):
    """A format name that is neither registered nor of the form ``int4-g<N>``."""


class SchemeDefinitionError(TinymlError, ValueError):
    """A (user) scheme whose bits, group size or quantize output cannot be packed."""


class BlockAlignmentError(ShapeError):
    """A row length the format cannot pad (gguf Q4_0/Q8_0 need multiples of 32)."""


class ScaleOverflowError(TinymlError, ValueError):
    """A group's scale (or minimum) does not fit in fp16 (|value| > 65504)."""


class ScaleUnderflowError(TinymlError, ValueError):
    """A group of non-zero weights whose fp16 scale rounds to 0, so it would decode to all zeros
    (``quantize(..., underflow="zero")`` accepts that, as llama.cpp does)."""
