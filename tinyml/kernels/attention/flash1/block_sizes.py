"""FlashAttention-1's block sizes and the HBM bytes they give.

Block sizes (Algorithm 1, line 1): with M the SRAM of one SM counted in
elements of the logical dtype (``sram_per_sm // bytes per element``)::

    B_c = ceil(M / (4 d)),  B_r = min(B_c, d)      # a100-40gb, d = 64, fp16: B_c = 384, B_r = 64

then clamped to the sequences (``B_c <= N_k``, ``B_r <= N_q``). If those tiles
overflow SRAM (large d: at d = 128 in fp16, B_c = 192 and B_r = 128 need
214,016 bytes), B_r is halved first (HBM traffic depends only on B_c), then
B_c. Algorithm 4 (line 2) reuses the forward's sizes, but the paper's analysis
is asymptotic: its four B_c x d tiles K_j, V_j, dK~_j, dV~_j alone would fill M.
The backward therefore starts from the same rule and shrinks the same way
until its tile set fits (a100-40gb, d = 64, fp16: B_c = 192, B_r = 32).
Explicit ``block_q`` / ``block_k`` are clamped the same way, and the record says so
(``notes``: ``block_q=128 clamped to N_q = 37 ...``); tiles that do not fit raise :class:`~tinyml.sim.SramOverflowError` with sizes that do, or, when
not even 1 x 1 blocks fit, the largest head_dim that does.

The byte formula (:func:`flash1_expected_bytes`) is derived in the package docstring
(:mod:`tinyml.kernels.attention.flash1`).
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

import numpy as np

from ....sim import Device, check_registers, check_tiles, current_profile, nbytes, tile_budget, tiles_fit
from ....sim.sram import REG
from ..._contract import block_size, ceil_div, clamp_note
from .._common import AttentionCall
from ..masks import k_block_rows, q_block_spans


def forward_tiles(block_q: int, block_k: int, head_dim: int, dtype: str) -> dict:
    """The tiles one forward block keeps on chip: {name: (shape, logical dtype[, "reg"])}."""
    return {
        "K_j": ((block_k, head_dim), dtype), "V_j": ((block_k, head_dim), dtype),
        "Q_i": ((block_q, head_dim), dtype), "O_i": ((block_q, head_dim), dtype),
        "P_ij": ((block_q, block_k), dtype),
        "S_ij": ((block_q, block_k), "fp32", REG), "P_ij V_j": ((block_q, head_dim), "fp32", REG),
        "l_i": ((block_q,), "fp32", REG), "m_i": ((block_q,), "fp32", REG),
    }


def backward_tiles(block_q: int, block_k: int, head_dim: int, dtype: str) -> dict:
    """The tiles one backward block keeps on chip (P_ij is overwritten in place by dS_ij)."""
    return {
        "K_j": ((block_k, head_dim), dtype), "V_j": ((block_k, head_dim), dtype),
        "Q_i": ((block_q, head_dim), dtype), "O_i": ((block_q, head_dim), dtype),
        "dO_i": ((block_q, head_dim), dtype), "P_ij/dS_ij": ((block_q, block_k), dtype),
        "dK~_j": ((block_k, head_dim), "fp32", REG), "dV~_j": ((block_k, head_dim), "fp32", REG),
        "dQ_i": ((block_q, head_dim), "fp32", REG), "S_ij/dP_ij": ((block_q, block_k), "fp32", REG),
        "l_i": ((block_q,), "fp32", REG), "m_i": ((block_q,), "fp32", REG), "D_i": ((block_q,), "fp32", REG),
    }


def _chip(device) -> "Device | SimpleNamespace":
    """A device, or a bare SRAM size in bytes (a chip without a register file)."""
    if isinstance(device, (int, np.integer)):
        return SimpleNamespace(sram_per_sm=int(device), register_bytes=0)
    return device


def paper_blocks(sram_per_sm: int, head_dim: int, dtype: str) -> tuple[int, int]:
    """(B_r, B_c) of Algorithm 1, line 1, before clamping: M = SRAM in elements of ``dtype``."""
    m = sram_per_sm // (nbytes(8, dtype) // 8)
    b_c = ceil_div(m, 4 * head_dim)
    return min(b_c, head_dim), b_c


def default_blocks(device, seq_q: int, seq_k: int, head_dim: int, dtype: str,
                   backward: bool = False) -> "tuple[int, int] | None":
    """(block_q, block_k): the paper's sizes clamped to the sequences, B_r then B_c halved
    until the tiles fit the device's SRAM and register file; None if not even 1 x 1 blocks fit.

    ``device`` is a Device or an SRAM size in bytes (then accumulators count as SRAM).
    """
    chip = _chip(device)
    return _default_blocks(chip.sram_per_sm, chip.register_bytes, seq_q, seq_k, head_dim, dtype, backward)


@lru_cache(maxsize=None)
def _default_blocks(sram: int, regs: int, seq_q: int, seq_k: int, head_dim: int, dtype: str,
                    backward: bool) -> "tuple[int, int] | None":
    chip = SimpleNamespace(sram_per_sm=sram, register_bytes=regs)
    tiles = backward_tiles if backward else forward_tiles
    b_r0, b_c = paper_blocks(sram, head_dim, dtype)
    while True:
        b_r = min(b_r0, b_c)
        while True:
            cand = (min(b_r, seq_q), min(b_c, seq_k))
            if tiles_fit(chip, tiles(*cand, head_dim, dtype)):
                return cand
            if b_r == 1:
                break
            b_r = ceil_div(b_r, 2)
        if b_c == 1:
            return None
        b_c = ceil_div(b_c, 2)


def largest_head_dim(device, dtype: str, backward: bool = False) -> int:
    """The largest head_dim whose 1 x 1 blocks fit: SRAM and register bytes are linear in d."""
    chip = _chip(device)
    tiles = backward_tiles if backward else forward_tiles
    base = tile_budget(chip, tiles(1, 1, 0, dtype))
    per_d = [a - b for a, b in zip(tile_budget(chip, tiles(1, 1, 1, dtype)), base)]
    best = (chip.sram_per_sm - base[0]) // per_d[0]
    if per_d[1] > 0:
        best = min(best, (chip.register_bytes - base[1]) // per_d[1])
    return max(0, best)


def resolve_blocks(call: AttentionCall, block_q, block_k, *, backward: bool, kernel: str
                   ) -> tuple[int, int, int, int]:
    """(block_q, block_k, SRAM bytes, register bytes per block): given or chosen, checked against the device."""
    dev = current_profile().device
    auto = default_blocks(dev, call.seq_q, call.seq_k, call.head_dim, call.dtype, backward)
    tiles = backward_tiles if backward else forward_tiles

    def suggest() -> str:
        if auto is None:
            return (f"No block size fits: even 1 x 1 blocks overflow at head_dim={call.head_dim}; the largest "
                    f"head_dim that fits {dev.name}'s {dev.sram_per_sm:,}-byte SRAM in {call.dtype} is "
                    f"{largest_head_dim(dev, call.dtype, backward)}. Use a smaller head_dim or a "
                    f"device with more SRAM")
        return (f"Blocks that fit: block_q={auto[0]}, block_k={auto[1]} "
                f"({tile_budget(dev, tiles(*auto, call.head_dim, call.dtype))[0]:,} bytes of SRAM); "
                f"or omit the block sizes")

    b_q = block_size(block_q, "block_q", auto[0] if auto else 1)
    b_k = block_size(block_k, "block_k", auto[1] if auto else 1)
    b_q, b_k = min(b_q, call.seq_q), min(b_k, call.seq_k)
    chosen = tiles(b_q, b_k, call.head_dim, call.dtype)
    sram = check_tiles(dev, chosen, kernel=kernel, suggest=suggest)
    return b_q, b_k, sram, check_registers(dev, chosen)


def clamp_notes(block_q, block_k, b_q: int, b_k: int) -> tuple:
    """The record's notes when the caller's ``block_q`` / ``block_k`` were clamped to N_q / N_k
    (:func:`~tinyml.kernels._contract.clamp_note`)."""
    return clamp_note("block_q", block_q, b_q, "N_q") + clamp_note("block_k", block_k, b_k, "N_k")


# ---- the byte formula -------------------------------------------------------------

def flash1_expected_bytes(batch: int, heads: int, seq_q: int, seq_k: int, head_dim: int, *, block_q: int,
                          block_k: int, dtype: str = "fp16", kv_heads: "int | None" = None,
                          key_padding_mask: bool = False, backward: bool = False, num_splits: int = 1,
                          causal: bool = False, skip_masked: bool = False) -> tuple[int, int]:
    """(HBM read bytes, HBM write bytes) of the forward (or the whole backward, GQA reduction
    included), before L2 reuse, from the formulas in the module docstring.

    The defaults are Algorithm 1 (one block per (batch, head), every tile). The shipped kernel's
    grid: ``num_splits`` S re-reads K, V (and the key mask) once per split in the forward; with
    ``causal`` and ``skip_masked`` only the tiles C some query of Q block i sees a key of K/V
    block j in move their Q-side bytes (``T_c N_q`` becomes ``sum over C of r_i``)."""
    s = nbytes(8, dtype) // 8
    n, m, d = seq_q, seq_k, head_dim
    t_c = ceil_div(m, block_k)
    mask = m if key_padding_mask else 0
    if skip_masked and causal:
        lo, hi = q_block_spans(n, m, block_q, True, -1, -1)
        i_lo, i_hi = k_block_rows(lo, hi, m, block_k)
        rows = np.minimum(block_q, n - np.arange(ceil_div(n, block_q)) * block_q)       # r_i
        csum = np.concatenate([[0], np.cumsum(rows)])
        tile_rows = int(sum(csum[i_hi[j]] - csum[i_lo[j]] for j in range(t_c)))        # sum over C of r_i
        seen = np.zeros(len(rows), bool)
        for j in range(t_c):
            seen[i_lo[j]:i_hi[j]] = True
        unseen = int(rows[~seen].sum())                # Q rows no tile reaches: dq = 0 written once
        last = int(rows[seen].sum())                   # each seen Q block writes dq once, at its last tile
    else:
        tile_rows, unseen, last = t_c * n, 0, n
    if not backward:
        reads = num_splits * (2 * m * d * s + mask) + tile_rows * (2 * d * s + 8)
        writes = (n + tile_rows) * (d * s + 2 * 4)
        return batch * heads * reads, batch * heads * writes
    reads = 2 * m * d * s + tile_rows * (3 * d * s + 4 * d + 8) + mask
    writes = n * d * 4 + 2 * m * d * s + (tile_rows - last) * d * 4 + (last + unseen) * d * s + 2 * m * d * s
    reads, writes = batch * heads * reads, batch * heads * writes
    kvh = heads if kv_heads is None else kv_heads
    if heads // kvh > 1:
        reads += 2 * batch * heads * m * d * s
        writes += 2 * batch * kvh * m * d * s
    return reads, writes
