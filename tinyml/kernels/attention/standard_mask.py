"""masked_fill over the (B, H, Nq, Nk) score matrix, forward (-inf) and backward (0).

PyTorch's standard attention hides keys with ``S.masked_fill(~visible, -inf)``
and its backward with ``dS.masked_fill(~visible, 0)``: an elementwise kernel
that reads and rewrites every element, hidden or not. Visibility (causal,
window) is computed from the indices; a key padding mask is read from HBM,
one byte per key, for every column chunk a block visits.

Tile loop::

    for each block (b, h, row block) in parallel:     # grid B*H x ceil(Nq/BR)
        for c0 in range(0, Nk, BC):
            X = load S[b, h, rows, c0 : +BC]          # HBM -> SRAM
            kv = load key_valid[b, c0 : +BC]          # 1 byte per key, if padding
            X[i, j] = fill where key j is hidden from query i
            store X -> S[b, h, rows, c0 : +BC]        # in place

HBM traffic (``s`` bytes per element): reads ``B H Nq Nk s`` (+ ``B H
ceil(Nq/BR) Nk`` bytes of key padding mask), writes ``B H Nq Nk s``;
``flops.MASK`` vector FLOPs per element.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim.tiles import count_load_direct, count_vector, load_tile, store_tile
from .._counting import extent, stand_in
from .flops import MASK
from .masks import visible
from .standard_rows import block_rows_of, row_tiles, run_rows


@njit(parallel=PARALLEL, cache=True)
def _body(x, key_valid, fill, B, H, NQ, NK, offset, causal, wl, wr, has_pad, execute, elem_bits,
          BR, BC, ids, counters):
    for row in prange(len(ids)):                     # every block, or one per class (counting)
        blk = ids[row]
        b, h, r0, rows = block_rows_of(blk, H, NQ, BR)
        x2 = x[b * execute, h * execute]                                           # (Nq, Nk)
        t = np.empty((extent(BR, execute), extent(BC, execute)), dtype=np.float32)     # (BR, BC) SRAM
        for c0 in range(0, NK, BC):
            cols = min(BC, NK - c0)
            load_tile(x2, r0, c0, rows, cols, t, execute, counters, row, 0, elem_bits)
            if has_pad:
                count_load_direct(cols, counters, row, 1, 8)     # key_valid[b, c0:c0+cols]
            count_vector(MASK * rows * cols, counters, row)
            if execute:
                for i in range(rows):
                    for j in range(cols):
                        if not (visible(r0 + i, c0 + j, offset, causal, wl, wr) and key_valid[b, c0 + j]):
                            t[i, j] = fill
            store_tile(t, rows, cols, x2, r0, c0, execute, counters, row, elem_bits)


def mask_tiles(dtype: str, padded: bool):
    def tiles(br: int, bc: int) -> dict:
        t = {"score tile": ((br, bc), dtype)}
        if padded:
            t["key padding row"] = ((1, bc), "int8")
        return t
    return tiles


def masked_fill(call, x, fill: float, name: str, block_rows=None, block_cols=None) -> None:
    """Set the hidden entries of ``x`` (B, H, Nq, Nk) to ``fill``, in place; one kernel launch."""

    shape = (call.batch, call.heads, call.seq_q, call.seq_k)
    padded = call.key_valid is not None or call.key_padding_obj is not None
    tiles = row_tiles(call.seq_q, call.seq_k, mask_tiles(call.dtype, padded), name, block_rows, block_cols)
    wl, wr = call.window
    args = (x if call.execute else stand_in(4), call.key_valid_array(), np.float32(fill), *shape, call.offset,
            call.causal, wl, wr, padded, call.execute, call.elem_bits)
    run_rows(name, _body, args, shape, tiles, call.dtype, execute=call.execute, n_operands=2, batch_panel=1 if padded else None)
