"""What every selective-scan body does the same way: find its channel block, count a chunk's inputs.

A block ``blk`` of the grid (batch x channel blocks) owns channels
``c0 .. c0 + nd`` of sequence ``b``; each chunk of ``nt`` tokens it walks
loads ``u`` and ``delta`` (nt x nd) and ``B`` and ``C`` (nt x N) from HBM.
"""

from __future__ import annotations

from ...sim.jit import njit
from ...sim.tiles import count_tile_load
from .scan_call import OP_B, OP_C, OP_DELTA, OP_U


@njit(cache=True)
def channel_block(blk, ndb, BD, DM):
    """(b, c0, nd): block ``blk``'s sequence, first channel and channel count (``ndb`` blocks per sequence)."""
    c0 = (blk % ndb) * BD
    return blk // ndb, c0, min(BD, DM - c0)


@njit(cache=True)
def count_chunk_inputs(nt, nd, N, step, elem_bits):
    """Count one chunk's HBM loads into ``step``'s row 0: u, delta (nt x nd) and B, C (nt x N)."""
    count_tile_load(nt, nd, step, 0, OP_U, elem_bits)
    count_tile_load(nt, nd, step, 0, OP_DELTA, elem_bits)
    count_tile_load(nt, N, step, 0, OP_B, elem_bits)
    count_tile_load(nt, N, step, 0, OP_C, elem_bits)
