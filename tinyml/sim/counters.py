"""Per-block counters: the one place kernel bodies report what they did.

A launch owns an ``int64`` array of shape ``(n_blocks, FIRST_OPERAND + n_operands)``.
Row ``b`` belongs to thread block ``b``; each block writes only its own row, so
blocks can run in parallel (``numba.prange``) without races.

Columns: HBM bytes read, HBM bytes written, SRAM bytes read, SRAM bytes
written, matmul FLOPs (tensor cores), vector FLOPs (everything else), then the
HBM bytes read from each input operand (used by the L2 reuse model).
"""

from __future__ import annotations

import numpy as np

HBM_READ = 0
HBM_WRITE = 1
SRAM_READ = 2
SRAM_WRITE = 3
FLOPS_MATMUL = 4
FLOPS_VECTOR = 5
FIRST_OPERAND = 6

NAMES = ("hbm_read_bytes", "hbm_write_bytes", "sram_read_bytes", "sram_write_bytes",
         "flops_matmul", "flops_vector")


def new_counters(n_blocks: int, n_operands: int = 0) -> np.ndarray:
    """Zeroed counters for ``n_blocks`` blocks reading ``n_operands`` inputs."""
    return np.zeros((int(n_blocks), FIRST_OPERAND + int(n_operands)), dtype=np.int64)


def totals(counters: np.ndarray) -> dict[str, int]:
    """Sum the standard columns over all blocks."""
    sums = counters[:, :FIRST_OPERAND].sum(axis=0)
    return {name: int(v) for name, v in zip(NAMES, sums)}
