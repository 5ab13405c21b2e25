"""One exception hierarchy for everything tinyml refuses to do.

Every message says what was wrong, the numbers involved, and what to do about
it. The CLI prints ``str(error)`` and exits non-zero; it never shows a
traceback for a ``TinymlError``.
"""

from __future__ import annotations


class TinymlError(Exception):
    """Base class of every error tinyml raises on purpose."""


class DeviceConfigError(TinymlError, ValueError):
    """A device preset or user TOML file is malformed, incomplete or unknown."""


class ShapeError(TinymlError, ValueError):
    """Operand shapes do not fit together (names both shapes)."""


class DTypeError(TinymlError, TypeError):
    """An array or logical dtype is not one the kernel supports."""


class NonFiniteError(TinymlError, ValueError):
    """An input holds NaN or Inf, which tiled kernels would silently spread."""


class TileConfigError(TinymlError, ValueError):
    """Block/tile sizes are invalid (not positive integers, wrong count ...)."""


class SramOverflowError(TinymlError):
    """A thread block's tiles need more SRAM than one SM has."""


class HbmOutOfMemoryError(TinymlError, MemoryError):
    """Allocations on the simulated device exceed its HBM capacity."""


class HostMemoryError(TinymlError, MemoryError):
    """Executing mode would need more host RAM than the machine has available (counting mode would not)."""


class LabError(TinymlError):
    """A lab number, exercise or answer file is wrong."""


class ArgumentError(TinymlError, ValueError, TypeError):
    """A scalar argument has the wrong type or value: a float or string where an integer
    is meant, an integer out of range, anything but True/False for a flag
    (checked by :mod:`tinyml.sim.args`, never truncated or coerced)."""
