"""What a graph's weights and input arrays may hold, checked where they enter (by name).

The kernels compute in float32 and index with integers. A value that would
change on the way in is refused here, naming the weight or input, rather than
deep inside a kernel under an internal operand name (``in0``) or not at all:

* a complex, string or object array (the imaginary part would be dropped);
* a float beyond float32's range (a float64 1e39 would become inf);
* an int32 (index) value that is not an integer (token id 2.7 would become 2);
* a symbol binding that is not an integer >= 1 (``{"n": 2.7}`` would become 2).

The interpreter and the compiled plan both take their inputs through
:func:`input_array`, so they refuse the same arrays.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..sim.finite import as_float32
from ..sim.args import integer
from ..sim.errors import NonFiniteError
from .errors import BindingError, GraphValueError
from .types import INDEX_DTYPES


def weight_array(name: str, data, dtype: str) -> np.ndarray:
    """The stored array of weight ``name`` (a copy): float32, or int64 for an ``int32`` (index) weight."""
    arr = _convert(f"weight {name!r}", data, dtype)
    if dtype in INDEX_DTYPES:
        return np.array(arr, dtype=np.int64)                     # always a copy
    return np.array(arr, copy=True) if np.shares_memory(arr, np.asarray(data)) else arr


def input_array(name: str, data, dtype: str) -> np.ndarray:
    """Input ``%name``'s array as the kernels read it: float32 (not a copy if it already is),
    or for an ``int32`` input the caller's integer array (whole floats become int64)."""
    return _convert(f"input %{name}", data, dtype)


def _convert(what: str, data, dtype: str) -> np.ndarray:
    try:
        arr = np.asarray(data)
    except Exception as e:                                        # noqa: BLE001  (ragged lists ...)
        raise GraphValueError(f"{what}: cannot make an array of {type(data).__name__} ({e})") from None
    if arr.dtype.kind not in "biuf":
        raise GraphValueError(f"{what} has NumPy dtype {arr.dtype}; tinyml computes on real numbers "
                              f"(float, int or bool arrays){' - the imaginary part would be lost' if arr.dtype.kind == 'c' else ''}")
    if dtype in INDEX_DTYPES:
        if arr.dtype.kind == "f":
            whole = np.isfinite(arr) & (arr == np.trunc(arr)) & (np.abs(arr) < 2.0 ** 63)
            if not whole.all():
                first = tuple(int(i) for i in np.argwhere(~whole)[0])
                raise GraphValueError(
                    f"{what} is {dtype} (integer ids) but holds {int((~whole).sum())} value(s) that are not whole "
                    f"numbers, the first at index {first} (value {float(arr[first]):g}); they are not truncated "
                    f"for you: pass an integer array (np.rint(x).astype(np.int64) if rounding is what you mean)")
        # an integer array is the caller's own (the HBM ledger tracks it for as long as they hold it)
        return arr if arr.dtype.kind in "iu" else np.asarray(arr, dtype=np.int64)
    try:
        return as_float32(arr, what)
    except NonFiniteError as e:
        raise GraphValueError(str(e)) from None


def given_bindings(bindings: "Mapping[str, int] | None", what: str = "bindings") -> dict[str, int]:
    """The caller's ``{symbol: length}``, each value an integer >= 1 (a float such as 2.7 or a
    string is refused, never truncated)."""
    if bindings is None:
        return {}
    if not isinstance(bindings, Mapping):
        raise BindingError(f"{what} must be a dict such as {{'n': 1024}}, got {bindings!r}")
    return {k: integer(v, f"{what}[{k!r}]", lo=1, error=BindingError, hint="a symbol is a length")
            for k, v in bindings.items()}
