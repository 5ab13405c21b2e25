"""Weight formats a model can be stored in, and what one weight costs in each.

| format    | bits per weight (rows of K weights)     | from                                      |
|-----------|-----------------------------------------|-------------------------------------------|
| fp32      | 32                                      | plain                                     |
| fp16/bf16 | 16                                      | plain                                     |
| int8      | 8 + 16 / K (one fp16 scale per row)     | ``tinyml.kernels.quant``                  |
| q8_0      | 8.5  (8 + 16/32)                        | ``tinyml.kernels.quant`` (llama.cpp)      |
| int4-g128 | 4.125 (4 + 16/128)                      | ``tinyml.kernels.quant``                  |
| q4_0      | 4.5  (4 + 16/32)                        | ``tinyml.kernels.quant`` (llama.cpp)      |
| int4-asym-g32 | 5 (4 + 32/32: a scale and a zero)   | ``tinyml.kernels.quant`` (gpt-fast)       |

Every 2-D weight (embeddings, projections, LM head) is stored in the format;
1-D weights (norms, biases) and activations stay in the *activation dtype*
(fp32 for fp32 weights, bf16 for bf16, fp16 otherwise), as llama.cpp and the
GPTQ/AWQ kernels keep them. Byte counts are exact: a quantized row of K weights
takes the quant package's ``Layout.row_bytes`` (padding and scales included).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sim.dtypes import nbytes
from ..sim.errors import TinymlError

#: plain floating-point formats: bits per weight
PLAIN = {"fp32": 32, "fp16": 16, "bf16": 16}
#: the formats the issue's tables list, in order
FORMATS = ("fp32", "fp16", "int8", "q8_0", "int4-g128", "q4_0")
#: what ``tinyml quant`` shows by default
DEFAULT_FORMATS = ("fp16", "int8", "q4_0", "int4-g128")


class FormatError(TinymlError, ValueError):
    """An unknown weight format name."""


@dataclass(frozen=True)
class WeightFormat:
    """A weight format: its name, the activation dtype next to it, and its quant scheme (None if plain)."""

    name: str
    act_dtype: str
    scheme: object = None

    @property
    def plain(self) -> bool:
        return self.scheme is None

    def matrix_bytes(self, rows: int, cols: int) -> int:
        """HBM bytes of a (rows, cols) weight matrix (out, in); quantized along ``cols``."""
        if self.plain:
            return nbytes(rows * cols, self.name)
        return int(rows) * self.scheme.layout(int(cols)).row_bytes

    def bits_per_weight(self, cols: "int | None" = None) -> float:
        """Storage bits per weight (for rows of ``cols`` weights if given; scales included)."""
        if self.plain:
            return float(PLAIN[self.name])
        return float(self.scheme.bits_per_weight(cols))


def valid_names() -> str:
    return ", ".join(("fp32", "fp16", "bf16", "int8", "q8_0", "q4_0", "int4-g32", "int4-g64", "int4-g128",
                      "int4-asym-g32", "int4-asym-g64", "int4-asym-g128")) + \
        " (any int4-g<N> or int4-asym-g<N> with N even)"


def weight_format(fmt) -> WeightFormat:
    """A :class:`WeightFormat` from a name ('fp16', 'q4_0', 'int4-g128' ...) or a quant Scheme instance."""
    if isinstance(fmt, WeightFormat):
        return fmt
    if isinstance(fmt, str) and fmt.lower() in PLAIN:
        name = fmt.lower()
        return WeightFormat(name, name if name != "fp32" else "fp32")
    from ..kernels.quant.errors import UnknownFormatError
    from ..kernels.quant.registry import get_scheme

    try:
        scheme = get_scheme(fmt.lower() if isinstance(fmt, str) else fmt)
    except UnknownFormatError:
        raise FormatError(f"unknown weight format {fmt!r}; choose one of {valid_names()}") from None
    return WeightFormat(scheme.name, "fp16", scheme)
