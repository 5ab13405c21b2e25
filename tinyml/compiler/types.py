"""``TensorType(shape, dtype)``: the type of every value in a graph.

A shape is a tuple of dimensions (``int`` or :class:`~tinyml.compiler.symbolic.Affine`),
so ``tensor<n x 768, fp16>`` is one type for every sequence length. The dtype
is a *logical* dtype (what the GPU would store, for byte counts); the
interpreter computes in float64 and returns float32 whatever it is. Token ids
are ``int32``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..sim.dtypes import BITS as _SIM_BITS
from ..sim.dtypes import canonical as _sim_canonical
from .errors import BindingError, GraphDTypeError, GraphShapeError
from .sizes import Poly
from .symbolic import Affine, Dim, dim, dim_str, evaluate, symbols_of

#: bits per element of every dtype a graph value may have: the simulator's logical
#: dtypes plus ``int32`` for indices (token ids)
BITS = {**_SIM_BITS, "int32": 32}
INDEX_DTYPES = ("int32",)
FLOAT_DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8")


def canonical_dtype(dtype: str) -> str:
    """``'float16'`` -> ``'fp16'``; ``'int32'`` stays; anything else raises :class:`GraphDTypeError`."""
    if isinstance(dtype, str) and dtype.lower() in INDEX_DTYPES:
        return dtype.lower()
    try:
        return _sim_canonical(dtype)
    except Exception:
        raise GraphDTypeError(
            f"unknown dtype {dtype!r} for a graph value; choose one of {', '.join(BITS)}") from None


@dataclass(frozen=True)
class TensorType:
    """The static type of a value: symbolic shape and logical dtype."""

    shape: tuple
    dtype: str

    @staticmethod
    def of(shape, dtype: str) -> "TensorType":
        """Normalise ``shape`` entries (``'n'``, ``'2*n'``, ints) and the dtype name."""
        dims = tuple(dim(d) for d in shape)
        for d in dims:
            if isinstance(d, int) and d < 1:
                raise GraphShapeError(f"shape {tuple(shape)} has dimension {d}; every dimension must be >= 1")
        return TensorType(dims, canonical_dtype(dtype))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def symbols(self) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for d in self.shape:
            out |= symbols_of(d)
        return out

    @property
    def numel(self) -> Poly:
        """Element count as a polynomial (``12*n^2`` for ``12 x n x n``)."""
        return Poly.product(self.shape)

    @property
    def bits(self) -> int:
        return BITS[self.dtype]

    @property
    def nbytes(self) -> Poly:
        """Bytes as a polynomial (dtypes of whole bytes; use :meth:`nbytes_at` for int4)."""
        if self.bits % 8:
            raise GraphDTypeError(f"{self.dtype} is not a whole number of bytes per element; use nbytes_at(bindings)")
        return self.numel * (self.bits // 8)

    def nbytes_at(self, bindings: Mapping[str, int]) -> int:
        """Bytes for concrete symbol values, rounded up to a whole byte."""
        return (self.numel.evaluate(bindings) * self.bits + 7) // 8

    def concrete(self, bindings: Mapping[str, int]) -> tuple[int, ...]:
        """The shape with every symbol bound; a dimension below 1 raises :class:`BindingError`."""
        out = tuple(evaluate(d, bindings) for d in self.shape)
        for d, v in zip(self.shape, out):
            if v < 1:
                raise BindingError(f"dimension {d} of {self} is {v} with bindings {dict(bindings)}; it must be >= 1")
        return out

    def with_shape(self, shape) -> "TensorType":
        return TensorType(tuple(shape), self.dtype)

    def __str__(self) -> str:
        if not self.shape:
            return f"tensor<{self.dtype}>"
        return f"tensor<{' x '.join(dim_str(d) for d in self.shape)}, {self.dtype}>"


def shape_str(shape) -> str:
    """``(n, 768)`` written the way types print: ``n x 768``."""
    return " x ".join(dim_str(d) for d in shape) if shape else "scalar"


def broadcast_shapes(a: tuple, b: tuple) -> tuple:
    """NumPy broadcasting on symbolic shapes; dims must be equal or 1 (a symbol is never assumed 1)."""
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise GraphShapeError(
                f"shapes ({shape_str(a)}) and ({shape_str(b)}) do not broadcast: dimension {-i} is {x} vs {y} "
                "(NumPy rules: equal, or one of them 1; symbols must match exactly)")
    return tuple(reversed(out))


def same_dtype(op: str, types) -> str:
    """The common dtype of ``types``, or :class:`GraphDTypeError` naming each."""
    dts = [t.dtype for t in types]
    if len(set(dts)) > 1:
        raise GraphDTypeError(
            f"{op} needs operands of one dtype, got {', '.join(str(t) for t in types)}; convert one of them")
    if dts and dts[0] in INDEX_DTYPES:
        raise GraphDTypeError(f"{op} computes on floating-point values, got {types[0]} (an index dtype)")
    return dts[0]


def is_symbolic(d: Dim) -> bool:
    return isinstance(d, Affine)
