"""The value checks every kernel input (and every graph weight and input) goes through.

tinyml's kernels compute in float32. Two things would change a value silently
on the way in, and both are refused here with the value, its index and what to do:

* a NaN or an infinity, which a tiled kernel spreads through a whole row or tile
  (:func:`refuse_nonfinite`; a caller may allow ``-inf``, a masked logit);
* a finite float64 beyond float32's range (1e39), which the cast turns into inf
  (:func:`as_float32` / :func:`refuse_float32_overflow`): matmul would return NaN,
  FlashAttention-2 a row of zeros, with no error.

Used by the kernel contract (:func:`tinyml.kernels._contract.operand`) and by the
compiler for graph weights and inputs, so every entry point refuses the same values.
"""

from __future__ import annotations

import numpy as np

from .errors import NonFiniteError


#: the largest float32 (3.4e38): a float64 beyond it becomes inf when a kernel casts its input
FLOAT32_MAX = float(np.finfo(np.float32).max)


def as_float32(x: np.ndarray, name: str, *, check_range: bool = True) -> np.ndarray:
    """``x`` as a C-contiguous float32 array, refusing a finite value float32 cannot hold.

    NumPy casts a float64 beyond +-3.4e38 to +-inf (with a RuntimeWarning); tinyml's
    kernels would then return NaN, zeros or inf with no error. The cast runs with
    the warning silenced because the overflow is found here and named instead.
    """
    with np.errstate(over="ignore"):
        data = np.ascontiguousarray(x, dtype=np.float32)
    if check_range and x.dtype.kind == "f" and x.dtype.itemsize > 4:   # only wider floats overflow float32
        refuse_float32_overflow(x, data, name)
    return data


def refuse_float32_overflow(x: np.ndarray, data: np.ndarray, name: str, offset: tuple = ()) -> None:
    """Raise NonFiniteError if ``data`` (``x`` cast to float32) is +-inf where ``x`` is finite.

    ``x`` may be a slice of the caller's array; ``offset`` is prepended to the index reported."""
    if x.dtype.kind != "f" or x.dtype.itemsize <= 4:
        return
    lost = ~np.isfinite(data)
    if not lost.any():
        return
    lost &= np.isfinite(x)
    if not lost.any():
        return
    first = tuple(int(i) for i in np.argwhere(lost)[0])
    where = offset + first
    raise NonFiniteError(
        f"{name} holds {int(lost.sum())} value(s) beyond float32's range (|x| > {FLOAT32_MAX:.4g}), "
        f"the first at index {where} (value {float(x[first]):g}, {x.dtype}); tinyml kernels compute in float32, "
        f"where it would become inf. Rescale the values (e.g. divide by a power of two) or clip them to "
        f"+-np.finfo(np.float32).max."
    )


def refuse_nonfinite(x: np.ndarray, data: np.ndarray, name: str, *, allow: tuple[str, ...] = (),
                     fix: str = "") -> None:
    """Raise NonFiniteError for NaN or +-inf in ``x`` (checked on its float32 copy ``data``),
    except the infinities ``allow`` names (``"-inf"``, ``"+inf"``); ``fix`` replaces the default advice."""
    if x.dtype.kind != "f" or np.isfinite(data).all():
        return
    bad = np.isnan(data)
    if "-inf" not in allow:
        bad |= np.isneginf(data)
    if "+inf" not in allow:
        bad |= np.isposinf(data)
    if not bad.any():
        return
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    refused = "/".join(["NaN"] + [s for s in ("+inf", "-inf") if s not in allow]) if allow else "NaN/Inf"
    allowed = f" ({' and '.join(allow)} {'is' if len(allow) == 1 else 'are'} allowed)" if allow else ""
    raise NonFiniteError(
        f"{name} {tuple(x.shape)} holds {int(bad.sum())} {refused} value(s){allowed}, the first at index {first} "
        f"(value {x[first]}); a tiled kernel would spread them silently. "
        + (fix or f"Clean the input first, e.g. np.nan_to_num({name}).")
    )
