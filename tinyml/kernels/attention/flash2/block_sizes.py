"""FlashAttention-2's block sizes: the largest that fit SRAM and the register file.

A forward block keeps Q_i (B_r x d), K_j, V_j (B_c x d) in SRAM
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
block), each clamped to its sequence length. A caller's sizes are clamped too
(no tile is longer than its sequence), and the launch's record says so in its
``notes`` (:meth:`Flash2Blocks.notes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace

from ....sim import Device, SramOverflowError, check_registers, check_tiles, tile_budget, tiles_fit
from ....sim.sram import REG
from ..._contract import block_size, clamp_note

SIZES = (128, 64, 32, 16)


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

    def notes(self, block_q, block_k) -> tuple:
        """The record's notes when the caller's ``block_q`` / ``block_k`` were clamped to the sequences."""
        return clamp_note("block_q", block_q, self.block_q, "N_q") + clamp_note("block_k", block_k, self.block_k, "N_k")

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
