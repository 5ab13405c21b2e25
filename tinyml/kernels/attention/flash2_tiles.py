"""FlashAttention-2's tiles: block sizes from SRAM, which tiles are computed, FLOP conventions.

Block sizes. A forward block keeps Q_i (B_r x d), K_j, V_j (B_c x d) in SRAM
in the logical dtype, and in registers the fp32 scores S_ij (B_r x B_c; P_ij
is converted in place and fed to the P V product straight from registers), the
fp32 output accumulator O_i (B_r x d) and the row statistics m_i, l_i. A
backward block keeps K_j, V_j (B_c x d), Q_i, dO_i (B_r x d), P_ij and dS_ij
(B_r x B_c, the transposed operands of dV += P^T dO and dK += dS^T Q) in SRAM
in the logical dtype, and in registers the fp32 accumulators dK_j, dV_j
(B_c x d), the fp32 S_ij and dP_ij, the fp32 dQ_i tile it adds into HBM
(B_r x d), and lse_i, D_i. (On a device without a register file all of it is
SRAM.) The default is the largest pair that fits one SM's SRAM and register file, trying the block's own
(outer) dimension first: B_r in 128, 64, 32, 16 then B_c in 128, 64, 32, 16
for the forward; B_c first for the backward (whose blocks own a K/V column
block), each clamped to its sequence length.

Which tiles are computed. With a causal mask or a sliding window the (i, j)
tile grid has tiles no query of block i may see any key of; FlashAttention-2
skips them (no loads, no FLOPs). The keys visible to the rows of q block i form
one contiguous span ``[span_lo[i], span_hi[i])`` (every row's range starts and
ends no earlier than the previous row's, and moves by at most one key), so tile
(i, j) is computed iff that span meets K/V block j. Key padding never skips a
tile: it is applied inside computed tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit

from types import SimpleNamespace

from ...sim import Device, SramOverflowError, check_registers, check_tiles, tile_budget, tiles_fit
from ...sim.sram import REG
from .flops import DROPOUT, EXP, MASK, SCALE, SOFTMAX_BWD, forward_per_score
from .masks import key_range

SIZES = (128, 64, 32, 16)

#: vector FLOPs per computed tile row to rescale the running state when the max grows:
#: alpha = exp(m_old - m_new) (EXP) and l *= alpha (1); plus d per row for O *= alpha
RESCALE_PER_ROW = EXP + 1
#: vector FLOPs per output row at the end of the forward: lse = m + log(l) (2); plus d for O / l
FINAL_PER_ROW = 2


def fwd_per_score(masked: bool, dropout: bool) -> int:
    """Forward vector FLOPs per computed score (P stays unnormalised: no NORMALIZE)."""
    return forward_per_score(masked, dropout, normalize=False)


def bwd_per_score(masked: bool, dropout: bool) -> int:
    """Backward vector FLOPs per computed score: recompute s (SCALE, MASK), P = exp(s - lse) (EXP),
    regenerate the dropout mask and apply it to P and to dP (DROPOUT + 1), dS (SOFTMAX_BWD)."""
    return SCALE + (MASK if masked else 0) + EXP + ((DROPOUT + 1) if dropout else 0) + SOFTMAX_BWD


# ---- block sizes --------------------------------------------------------------------------

@dataclass(frozen=True)
class Flash2Blocks:
    """B_r (rows of Q per tile) and B_c (rows of K/V per tile)."""

    block_q: int
    block_k: int

    def fwd_tiles(self, d: int, dtype: str) -> dict:
        br, bc = self.block_q, self.block_k
        return {
            "Q_i": ((br, d), dtype), "K_j": ((bc, d), dtype), "V_j": ((bc, d), dtype),
            "S_ij/P_ij": ((br, bc), "fp32", REG), "O_i accumulator": ((br, d), "fp32", REG),
            "m_i, l_i": ((2, br), "fp32", REG),
        }

    def bwd_tiles(self, d: int, dtype: str) -> dict:
        br, bc = self.block_q, self.block_k
        return {
            "K_j": ((bc, d), dtype), "V_j": ((bc, d), dtype), "Q_i": ((br, d), dtype), "dO_i": ((br, d), dtype),
            "P_ij": ((br, bc), dtype), "dS_ij": ((br, bc), dtype),
            "S_ij, dP_ij": ((2, br, bc), "fp32", REG),
            "dK_j, dV_j accumulators": ((2, bc, d), "fp32", REG), "dQ_i tile": ((br, d), "fp32", REG),
            "lse_i, D_i": ((2, br), "fp32", REG),
        }

    def tiles(self, kind: str, d: int, dtype: str) -> dict:
        return self.fwd_tiles(d, dtype) if kind == "fwd" else self.bwd_tiles(d, dtype)


def _candidates(kind: str, seq_q: int, seq_k: int):
    rows = sorted({min(s, seq_q) for s in SIZES}, reverse=True)
    cols = sorted({min(s, seq_k) for s in SIZES}, reverse=True)
    if kind == "fwd":
        return [Flash2Blocks(r, c) for r in rows for c in cols]
    return [Flash2Blocks(r, c) for c in cols for r in rows]


def _auto_blocks(device: Device, kind: str, seq_q: int, seq_k: int, d: int, dtype: str):
    return _auto_blocks_cached(device.sram_per_sm, device.register_bytes, kind, seq_q, seq_k, d, dtype)


@lru_cache(maxsize=None)
def _auto_blocks_cached(sram: int, regs: int, kind: str, seq_q: int, seq_k: int, d: int, dtype: str):
    chip = SimpleNamespace(sram_per_sm=sram, register_bytes=regs)
    for blocks in _candidates(kind, seq_q, seq_k):
        if tiles_fit(chip, blocks.tiles(kind, d, dtype)):
            return blocks
    return None


def largest_head_dim(device: Device, kind: str, seq_q: int, seq_k: int, dtype: str) -> int:
    """The largest head dim whose tiles fit SRAM and registers with the smallest blocks (0 if none)."""
    smallest = Flash2Blocks(min(SIZES[-1], seq_q), min(SIZES[-1], seq_k))
    fixed = tile_budget(device, smallest.tiles(kind, 0, dtype))               # bytes independent of d
    per_d = [a - b for a, b in zip(tile_budget(device, smallest.tiles(kind, 1, dtype)), fixed)]  # per unit of d
    best = (device.sram_per_sm - fixed[0]) // per_d[0]
    if per_d[1] > 0:
        best = min(best, (device.register_bytes - fixed[1]) // per_d[1])
    return max(0, best)


def _head_dim_problem(device: Device, kind: str, seq_q: int, seq_k: int, d: int, dtype: str) -> str:
    smallest = Flash2Blocks(min(SIZES[-1], seq_q), min(SIZES[-1], seq_k))
    sram, regs = tile_budget(device, smallest.tiles(kind, d, dtype))
    best = largest_head_dim(device, kind, seq_q, seq_k, dtype)
    regs_part = (f" and {regs:,} bytes of registers (the register file has {device.register_bytes:,})"
                 if regs else "")
    return (f"head_dim {d} is too large for {device.name}: even the smallest blocks "
            f"(block_q={smallest.block_q}, block_k={smallest.block_k}) need {sram:,} bytes of SRAM{regs_part} "
            f"but an SM has {device.sram_per_sm:,} bytes of SRAM; the largest head dim that fits ({dtype}) is "
            f"{best}. Use a smaller head dim or a device with more SRAM per SM (`tinyml devices`)")


def choose_blocks(device: Device, kind: str, seq_q: int, seq_k: int, d: int, dtype: str,
                  kernel: str) -> Flash2Blocks:
    """The default blocks of ``kind`` ("fwd" or "bwd"); SramOverflowError if none fits."""
    blocks = _auto_blocks(device, kind, seq_q, seq_k, d, dtype)
    if blocks is None:
        raise SramOverflowError(f"{kernel}: {_head_dim_problem(device, kind, seq_q, seq_k, d, dtype)}.")
    return blocks


def resolve_blocks(device: Device, kind: str, seq_q: int, seq_k: int, d: int, dtype: str, kernel: str,
                   block_q: "int | None", block_k: "int | None") -> tuple[Flash2Blocks, int, int]:
    """The caller's block sizes (validated, clamped to the sequences) or the defaults, and their SRAM
    and register bytes."""
    from .._contract import block_size

    if block_q is None or block_k is None:
        auto = choose_blocks(device, kind, seq_q, seq_k, d, dtype, kernel)
        block_q = auto.block_q if block_q is None else block_q
        block_k = auto.block_k if block_k is None else block_k
    blocks = Flash2Blocks(min(block_size(block_q, "block_q", 0), seq_q), min(block_size(block_k, "block_k", 0), seq_k))

    def suggest() -> str:
        auto = _auto_blocks(device, kind, seq_q, seq_k, d, dtype)
        if auto is None:
            return _head_dim_problem(device, kind, seq_q, seq_k, d, dtype)
        return (f"Blocks that fit: block_q={auto.block_q}, block_k={auto.block_k}; "
                f"or omit them to let tinyml choose")

    tiles = blocks.tiles(kind, d, dtype)
    return blocks, check_tiles(device, tiles, kernel=kernel, suggest=suggest), check_registers(device, tiles)


# ---- which tiles are computed ---------------------------------------------------------------

@njit(cache=True)
def q_block_spans(n_q, n_k, br, causal, win_left, win_right):
    """(span_lo, span_hi), each (ceil(n_q / br),): the keys visible to some row of each q block."""
    nqb = (n_q + br - 1) // br
    offset = n_k - n_q
    span_lo = np.zeros(nqb, dtype=np.int64)
    span_hi = np.zeros(nqb, dtype=np.int64)              # hi <= lo: nothing visible
    for ib in range(nqb):
        r0 = ib * br
        r1 = min(n_q, r0 + br)
        first = -1
        for r in range(r0, r1):                          # first row that sees any key
            lo, hi = key_range(r, offset, n_k, causal, win_left, win_right)
            if lo < hi:
                first = r
                span_lo[ib] = lo
                break
        if first < 0:
            continue
        for r in range(r1 - 1, first - 1, -1):           # last row that sees any key
            lo, hi = key_range(r, offset, n_k, causal, win_left, win_right)
            if lo < hi:
                span_hi[ib] = hi
                break
    return span_lo, span_hi


@njit(cache=True)
def k_block_rows(span_lo, span_hi, n_k, bc):
    """(i_lo, i_hi), each (ceil(n_k / bc),): the q blocks [i_lo, i_hi) whose span meets K/V block j.

    Spans move right monotonically with i, so those q blocks are contiguous: two binary searches
    per K/V block (O(blocks log blocks); a 10M-token sequence has 78,000 of each). Spans that are
    not monotone (no mask of tinyml's makes them) take the direct O(q blocks) scan per K/V block.
    """
    nkb = (n_k + bc - 1) // bc
    i_lo = np.zeros(nkb, dtype=np.int64)
    i_hi = np.zeros(nkb, dtype=np.int64)
    a = 0                                                # the non-empty spans are [a, z) ...
    while a < len(span_lo) and span_lo[a] >= span_hi[a]:
        a += 1
    z = len(span_lo)
    while z > a and span_lo[z - 1] >= span_hi[z - 1]:
        z -= 1
    monotone = True                                      # ... contiguous, with lo and hi non-decreasing
    for ib in range(a + 1, z):
        if span_lo[ib] >= span_hi[ib] or span_lo[ib] < span_lo[ib - 1] or span_hi[ib] < span_hi[ib - 1]:
            monotone = False
    for jb in range(nkb):
        c0 = jb * bc
        c1 = min(n_k, c0 + bc)
        if monotone:
            first = a + np.searchsorted(span_hi[a:z], c0, side="right")    # first span with hi > c0
            last = a + np.searchsorted(span_lo[a:z], c1, side="left") - 1  # last span with lo < c1
            if first <= last:
                i_lo[jb] = first
                i_hi[jb] = last + 1
            continue
        found = False
        for ib in range(len(span_lo)):
            if span_lo[ib] < span_hi[ib] and span_lo[ib] < c1 and span_hi[ib] > c0:
                if not found:
                    i_lo[jb] = ib
                    found = True
                i_hi[jb] = ib + 1
    return i_lo, i_hi


def tile_grid(call, blocks: Flash2Blocks):
    """Spans of the q blocks and the q-block ranges of the K/V blocks for ``call``'s masks."""
    wl, wr = call.window
    span_lo, span_hi = q_block_spans(call.seq_q, call.seq_k, blocks.block_q, call.causal, wl, wr)
    i_lo, i_hi = k_block_rows(span_lo, span_hi, call.seq_k, blocks.block_k)
    return span_lo, span_hi, i_lo, i_hi
