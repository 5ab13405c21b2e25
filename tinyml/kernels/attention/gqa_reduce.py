"""The GQA dK/dV reduction: each group's per-query-head gradients summed into its kv head.

With grouped-query attention (``G = H / KVH`` query heads share a kv head) the
FlashAttention backwards (FA1's ``flash1_bwd``, FA2's ``flash2_bwd``) write dK
and dV per *query* head, ``(B, H, N_k, d)``: the blocks of one group run in
parallel and never add into one buffer. A small elementwise kernel then sums
each group into the kv head's ``(B, KVH, N_k, d)``. Query head ``h = g G + t``
of kv head ``g``, so in the flattened ``(B H N_k, d)`` buffer the group's rows
for key ``r`` are ``((b KVH + g) G + t) N_k + r``, ``t = 0 .. G - 1``.

Tile loop (registers only, no SRAM)::

    for each block (b, g, row block) in parallel:     # B*KVH x ceil(N_k / ROWS), row blocks fastest
        for r in my ROWS keys, x < d:
            dk[b, g, r, x] = sum_t dk_h[b, g G + t, r, x]       # same for dv
        store dk, dv rows                              # the logical dtype

HBM traffic (``s`` bytes per element): reads ``2 B H N_k d s``, writes
``2 B KVH N_k d s``; ``2 (G - 1) B KVH N_k d`` vector FLOPs (the adds).

Every block moves the same bytes but the last row block of each (batch, kv
head) when ROWS does not divide N_k, so counting mode walks one block of each
(:func:`~tinyml.kernels._classes.edge_grid`). FA1 launches it with 64 rows a
block (``flash1_bwd_dkv_reduce``, grid ``(B KVH, tiles)``), FA2 with its B_c
(``flash2_bwd_gqa_sum``, grid ``(B, KVH, tiles)``): one kernel, two launches.
"""

from __future__ import annotations

import math

from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import current_profile
from ...sim.counters import new_counters
from ...sim.tiles import count_load_direct, count_store_direct, count_vector
from .._classes import blocks_to_walk, launch_counters
from .._contract import ceil_div
from .._counting import stand_in


@njit(parallel=PARALLEL, cache=True)
def _body(dk_h, dv_h, dk, dv, G, NK, D, ROWS, execute, ids, counters, elem_bits):
    # dk_h, dv_h: (B*KVH*G*NK, D) per query head; dk, dv: (B*KVH*NK, D)
    n_t = (NK + ROWS - 1) // ROWS
    for row in prange(len(ids)):             # every block, or one per class (counting)
        blk = ids[row]
        bk = blk // n_t                      # b * KVH + kv head
        r0 = (blk % n_t) * ROWS
        rows = min(ROWS, NK - r0)
        count_load_direct(G * rows * D, counters, row, 0, elem_bits)      # the group's dK rows
        count_load_direct(G * rows * D, counters, row, 1, elem_bits)      # the group's dV rows
        count_vector(2 * (G - 1) * rows * D, counters, row)
        count_store_direct(rows * D, counters, row, elem_bits)
        count_store_direct(rows * D, counters, row, elem_bits)
        if execute:
            for r in range(r0, r0 + rows):
                for x in range(D):
                    sk = 0.0
                    sv = 0.0
                    for t in range(G):
                        src = (bk * G + t) * NK + r
                        sk += dk_h[src, x]
                        sv += dv_h[src, x]
                    dk[bk * NK + r, x] = sk
                    dv[bk * NK + r, x] = sv


def gqa_reduce(name: str, grid: tuple, dk_h, dv_h, dk, dv, *, batch: int, kv_heads: int, group: int,
               seq_k: int, head_dim: int, rows: int, execute: bool, dtype: str, elem_bits: int) -> None:
    """Sum ``dk_h, dv_h`` (B, H, N_k, d) over each GQA group into ``dk, dv`` (B, KVH, N_k, d); one
    launch recorded as ``name`` with ``grid`` (``B * KVH * ceil(N_k / rows)`` blocks, row blocks
    fastest, in whatever shape the caller's kernel family records it)."""
    n_bk, n_t = batch * kv_heads, ceil_div(seq_k, rows)
    assert math.prod(grid) == n_bk * n_t, f"{name}: grid {grid} is not {n_bk} x {n_t} blocks"

    def flat(a, n):
        return a.reshape(n * seq_k, head_dim) if execute else stand_in(2)

    ids, run_class, run_length = blocks_to_walk(n_bk, n_t, execute)
    counters = new_counters(len(ids), n_operands=2)
    _body(flat(dk_h, n_bk * group), flat(dv_h, n_bk * group), flat(dk, n_bk), flat(dv, n_bk),
          group, seq_k, head_dim, rows, execute, ids, counters, elem_bits)
    current_profile().record(name, grid, launch_counters(counters, execute, run_class, run_length), dtype=dtype,
                             sram_per_block=0)
