"""Weight quantization: formats, and matmul/gemv kernels that read packed weights.

| format      | group along K | code              | scale      | bits / weight |
|-------------|---------------|-------------------|------------|---------------|
| int8        | whole row     | int8, symmetric   | fp16 / row | 8 + 16/K      |
| int4-g<g>   | g (32/64/128) | int4, symmetric   | fp16       | 4 + 16/g      |
| int4-asym-g<g> | g          | int4, scale+zero  | fp16 + fp16| 4 + 32/g (gpt-fast, torchao) |
| q8_0        | 32            | int8 (llama.cpp)  | fp16       | 8.5           |
| q4_0        | 32            | int4 (llama.cpp)  | fp16       | 4.5           |
| your Scheme | any           | 2/4/8-bit + table | fp16 (+min)| bits + 16(1+m)/g |

``W`` is ``(N, K)`` (out, in), quantized along K. ``quantize(w, fmt)``
returns a :class:`QuantizedTensor`; the kernels (``quantized_gemv``,
``quantized_matmul``) dequantize tile by tile on chip, and the baseline
``unfused_quantized_matmul`` writes fp16 weights to HBM first.
See :mod:`.scheme` for the byte layout and how to bring your own scheme.
"""

from __future__ import annotations

from .errors import (BlockAlignmentError, ScaleOverflowError, ScaleUnderflowError, SchemeDefinitionError,
                     UnknownFormatError)
from .gguf import Q4_0, Q8_0
from .int4 import Int4Grouped
from .int4_asym import Int4GroupedZero
from .int8 import Int8PerChannel
from .registry import SCHEMES, get_scheme, register
from .scheme import Layout, Scheme, to_fp16
from .tensor import QuantizedTensor, quantize

__all__ = [
    "quantize", "QuantizedTensor", "Scheme", "Layout", "SCHEMES", "register", "get_scheme", "to_fp16",
    "Int8PerChannel", "Int4Grouped", "Int4GroupedZero", "Q8_0", "Q4_0",
    "BlockAlignmentError", "ScaleOverflowError", "ScaleUnderflowError", "SchemeDefinitionError", "UnknownFormatError",
    "quantized_gemv", "quantized_matmul", "dequantize_kernel", "unfused_quantized_matmul",
    "error_report", "format_report", "sample_weights",
]


def __getattr__(name: str):
    """The kernels load on first use (they import Numba and compile)."""
    kernels = {"quantized_gemv": "gemv", "quantized_matmul": "matmul", "dequantize_kernel": "unfused",
               "unfused_quantized_matmul": "unfused", "error_report": "report", "format_report": "report",
               "sample_weights": "report"}
    if name in kernels:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{kernels[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
