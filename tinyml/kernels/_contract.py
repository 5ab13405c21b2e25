"""The kernel contract: what every public kernel does before it launches.

1. ``operand`` validates each input (type, dtype, rank, NaN/Inf) and says
   whether we are executing (NumPy data) or counting (MetaTensor shapes).
2. The kernel checks shapes, picks or validates block sizes, and checks its
   tiles against SRAM (``tinyml.sim.check_tiles``).
3. Inputs are registered and outputs allocated in the active profile's HBM
   ledger, so capacity is enforced.
4. The Numba body walks the tile loops, filling per-block counters.
5. ``Profile.record`` costs the counters and appends the kernel record.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numpy as np

from ..sim import DTypeError, MetaTensor, ShapeError, TileConfigError, canonical
from ..sim.args import integer
from ..sim.finite import as_float32, refuse_float32_overflow, refuse_nonfinite  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Operand:
    """A validated kernel input: float32 data (executing) or None (counting)."""

    name: str
    obj: object                 # the caller's object, registered in the HBM ledger
    data: "np.ndarray | None"
    shape: tuple
    dtype: str                  # logical dtype (byte accounting)

    @property
    def execute(self) -> bool:
        return self.data is not None


def operand(x, name: str, *, ndim: int, dtype: str, allowed: tuple[str, ...],
            check_finite: bool = True, allow: tuple[str, ...] = (), check_range: bool = True) -> Operand:
    """Validate one input of a kernel; see the module docstring.

    Values (executing mode): NaN and +-inf are refused unless ``check_finite`` is
    False or ``allow`` names them (``"-inf"``: a masked logit, ``"+inf"``); a
    finite value float32 cannot hold (a float64 1e39) is always refused, since
    the kernels compute in float32 and it would silently become inf. A kernel that
    reads only part of ``x`` (decoding reads a KV cache's first ``len`` rows) passes
    ``check_range=False, check_finite=False`` and checks that part itself.
    """
    logical = canonical(dtype, allowed)      # validate the argument in both modes
    if isinstance(x, MetaTensor):
        if x.ndim != ndim:
            raise ShapeError(f"{name} must be {ndim}-D, got shape {x.shape}")
        if min(x.shape, default=1) < 1:
            raise ShapeError(f"{name} has shape {x.shape}; every dimension must be >= 1")
        # a MetaTensor carries its own logical dtype, which wins over the argument
        return Operand(name, x, None, x.shape, canonical(x.dtype, allowed))
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception:
            raise DTypeError(f"{name} must be a NumPy array or tinyml.sim.meta(...), got {type(x).__name__}") from None
    if x.dtype.kind not in "fiu":
        raise DTypeError(
            f"{name} has NumPy dtype {x.dtype}; tinyml kernels take real numbers "
            f"(float or int arrays; the logical dtype {logical!r} sets the byte count)"
        )
    if x.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if 0 in x.shape:
        raise ShapeError(f"{name} has an empty dimension, shape {x.shape}; every dimension must be >= 1")
    data = as_float32(x, name, check_range=check_range)
    if check_finite:
        refuse_nonfinite(x, data, name, allow=allow)
    return Operand(name, x, data, tuple(x.shape), logical)


def same_mode(*ops: Operand) -> bool:
    """True if executing; raise if some inputs are data and others MetaTensors."""
    modes = {op.execute for op in ops}
    if len(modes) > 1:
        kinds = ", ".join(f"{op.name}={'array' if op.execute else 'MetaTensor'}" for op in ops)
        raise DTypeError(f"mixing NumPy arrays and MetaTensors ({kinds}); pass all arrays to execute "
                         f"or all tinyml.sim.meta(...) to count")
    return modes.pop()


def block_size(value, name: str, default: int) -> int:
    """A user-given block size (positive int) or the default."""
    if value is None:
        return int(default)
    return integer(value, name, lo=1, error=TileConfigError)


def clamp_note(name: str, requested, used: int, seq_name: str) -> tuple:
    """The record note saying a caller's block size was clamped to a sequence; ``()`` when it was not.

    FlashAttention (block_q, block_k) and decoding (block_k) run no tile longer than its sequence:
    asked for 128 over 37 keys, the kernel runs a 37-key tile, and its SRAM, FLOPs and bytes are
    those of the 37-key tile. The kernels clamp rather than refuse (a default or tuned size serves
    every sequence length), and ``Profile.record(notes=...)`` shows it::

        clamp_note("block_k", 128, 37, "N_k")
        # ('block_k=128 clamped to N_k = 37: no tile is longer than its sequence',)
    """
    if requested is None or int(requested) <= used:
        return ()
    return (f"{name}={int(requested)} clamped to {seq_name} = {used}: no tile is longer than its sequence",)


@contextlib.contextmanager
def blas_single_thread():
    """Pin BLAS to one thread while Numba's prange runs blocks in parallel.

    ``np.dot`` inside a prange body calls BLAS from every worker; a
    multi-threaded BLAS there oversubscribes the cores.
    """
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


@functools.lru_cache(maxsize=None)
def _blas_controller():
    """One threadpoolctl controller (building it scans the loaded libraries: ~1 ms)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))
