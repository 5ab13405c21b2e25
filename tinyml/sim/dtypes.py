"""Logical dtypes: what a tensor *would* occupy on the GPU.

tinyml computes in float32 on the CPU, but counts bytes from the logical dtype
a GPU kernel would move, exactly as the FlashAttention paper's IO analysis does.
int4 is half a byte per element; a load of ``n`` int4 elements moves
``ceil(n / 2)`` bytes.
"""

from __future__ import annotations

from .errors import DTypeError

#: bits per element of every logical dtype tinyml knows.
BITS = {"fp32": 32, "tf32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 4}

#: dtypes a floating-point kernel (matmul, attention) accepts as its logical dtype.
FLOAT_DTYPES = ("fp16", "bf16", "fp32")

_ALIASES = {
    "float32": "fp32", "f32": "fp32", "float": "fp32",
    "float16": "fp16", "f16": "fp16", "half": "fp16",
    "bfloat16": "bf16",
}


def canonical(dtype: str, allowed: tuple[str, ...] | None = None) -> str:
    """Return the canonical logical dtype name, or raise :class:`DTypeError`.

    >>> canonical("float16")
    'fp16'
    """
    if not isinstance(dtype, str):
        raise DTypeError(f"logical dtype must be a string such as 'fp16', got {dtype!r}")
    name = _ALIASES.get(dtype.lower(), dtype.lower())
    choices = allowed if allowed is not None else tuple(BITS)
    if name not in choices:
        raise DTypeError(
            f"unknown or unsupported logical dtype {dtype!r}; choose one of {', '.join(choices)}"
        )
    return name


def bits(dtype: str) -> int:
    """Bits per element of a logical dtype."""
    return BITS[canonical(dtype)]


def nbytes(n_elements: int, dtype: str) -> int:
    """Bytes that ``n_elements`` of ``dtype`` occupy (rounded up to whole bytes)."""
    return (int(n_elements) * bits(dtype) + 7) // 8
