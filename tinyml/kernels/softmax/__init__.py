"""Row-wise softmax in numbered versions: three passes -> online -> fused.

| version | idea                                                | HBM reads   | vector FLOPs                 |
|---------|-----------------------------------------------------|-------------|------------------------------|
| v1      | safe softmax: max, then sum, then output            | `3 R C s`   | `7 R C`                      |
| v2      | online softmax: max and sum in one pass, rescaling  | `2 R C s`   | `7 R C + 3 R ceil(C / BC)`   |
| v3      | fused: whole rows in SRAM, one read                 | `R C s`     | `5 R C`                      |

``x`` is (R, C), softmax runs over the last axis; ``s`` is bytes per element
of the logical dtype; every version writes ``R C s``. The FLOP convention:
max 1, subtract 1, exp 1, add 1, divide 1 per element, and v2's rescale
``d * exp(m - m_new)`` (subtract, exp, multiply) once per row per column tile.

``-inf`` entries are allowed (masked logits: probability 0); a row that is
``-inf`` everywhere gives zeros, never NaN. NaN and ``+inf`` are refused.
"""

from __future__ import annotations

from ...sim import TileConfigError
from .block_sizes import SoftmaxTiles, choose_tiles, longest_row
from .v1_three_pass import softmax_v1
from .v2_online import softmax_v2
from .v3_fused import softmax_v3

VERSIONS = {1: softmax_v1, 2: softmax_v2, 3: softmax_v3}
NAMES = {"three_pass": 1, "three-pass": 1, "v1": 1, "online": 2, "v2": 2, "fused": 3, "v3": 3}


def softmax(x, *, version: "int | str" = 3, dtype: str = "fp16", block_rows: int | None = None,
            block_cols: int | None = None):
    """y = softmax(x) over the last axis, with the chosen kernel version
    (1, 2, 3 or 'three_pass', 'online', 'fused').

    ``x``: an (R, C) NumPy array (executing mode) or ``tinyml.sim.meta`` tensor
    (counting mode). ``dtype`` is the logical dtype bytes are counted in.
    Records one kernel in the active Profile. v3 raises
    :class:`~tinyml.sim.SramOverflowError` when a row does not fit SRAM; v2 fits any row.
    """
    v = NAMES.get(version, version) if isinstance(version, str) else version
    if isinstance(v, bool) or v not in VERSIONS:
        raise TileConfigError(f"unknown softmax version {version!r}; choose 1, 2, 3 or one of {', '.join(NAMES)}")
    return VERSIONS[v](x, dtype=dtype, block_rows=block_rows, block_cols=block_cols)


__all__ = ["softmax", "softmax_v1", "softmax_v2", "softmax_v3", "SoftmaxTiles", "choose_tiles", "longest_row",
           "VERSIONS"]
