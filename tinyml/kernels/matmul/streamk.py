"""Stream-K: the pipelined GEMM's tiles shared out by MAC iterations, so no SM waits out a tail wave.

``matmul_v4(..., schedule="stream-k")``. Data-parallel scheduling (the default) launches one block
per C tile; with ``T`` tiles on a GPU that runs ``W`` blocks at a time (SMs x resident blocks per SM)
the last wave holds ``T mod W`` tiles and the other SMs idle through it: 2048 tiles of 128 x 256 on an
H100's 132 SMs are 15.5 waves, paid as 16. Stream-K (Osama, Merrill, Cecka, Garland, Kerr, PPoPP 2023)
counts work in *MAC iterations* instead, one BK step of one tile (``I = ceil(K / BK)`` per tile), and
gives every block of one wave an equal, contiguous range of them; a tile whose iterations two blocks
share is finished by a *fixup*: the block that computed the tile's first iteration (its *owner*) reads
the other blocks' fp32 partial accumulators from a workspace in global memory, adds them to its own
and stores the tile.

The hybrid that CUTLASS's stream-K swizzle (``ThreadblockSwizzleStreamK::get_blocks``) uses, and
tinyml with it::

    full, rest = divmod(T, W)
    rest == 0:   data-parallel (no tail to balance)
    full == 0:   every tile is stream-K; min(W, T * I // 2) blocks (at least 2 iterations each)
    otherwise:   the last full wave and the partial one are stream-K (T_sk = rest + W tiles, W blocks:
                 each block between one and two tiles' worth of iterations); the T - T_sk other tiles
                 are data-parallel, one block each, launched after the stream-K blocks
    stream-K tiles are the first T_sk tiles (row-major); block j of the B stream-K blocks gets the
    iterations [j q + min(j, r), (j + 1) q + min(j + 1, r)) of the T_sk * I, where q, r = divmod(T_sk I, B)

and if the stream-K blocks' longest range (``ceil(T_sk I / B)`` iterations) is not shorter than the
data-parallel tail it replaces (``ceil(T_sk / W) I``), the launch stays data-parallel. (CUTLASS
also prices the fixup in iteration equivalents measured on its GPUs; tinyml charges the fixup's
bytes and additions instead, below, and lets the cost model decide what they cost.)

Extra traffic, exact: a *seam* is a block boundary ``b_j`` (``0 < j < B``) inside a tile
(``b_j mod I != 0``); each seam is one partial accumulator, written by the block that starts there
and read back by the tile's owner::

    partial bytes = sum over seams of rows(t) * cols(t) * 4,   t = b_j // I (the tile it cuts)
    HBM writes    = M N s + partial bytes       (C, then the partials: fp32)
    HBM reads     = v4's (M K ceil(N/BN) + K N ceil(M/BM)) s + partial bytes     (before L2 reuse)
    vector FLOPs  = partial bytes / 4           (the owner adds each partial element once)

``rows(t)``, ``cols(t)``: the valid rows and columns of tile ``t`` (smaller only at the matrix edge).
The A and B bytes are v4's: every (tile, iteration) pair is loaded exactly once, by whichever block
owns that iteration. The workspace holds one BM x BN fp32 tile per stream-K block (a block writes
at most one partial: its first range, when it starts inside a tile).

The cost model needs nothing new: the stream-K blocks are ordinary blocks with unequal counters,
launched first, so they fill the first wave one per slot and each SM's time is its own block's
work (``tinyml.sim.cost``'s list scheduling); the data-parallel tiles follow in full waves.
What is not modelled: the owner's wait for its peers' partials (a peer computes its share of the
tile at the start of its range, the owner its share at the end of its own, and ranges differ by at
most one iteration, so the wait is at most about one iteration), and L2 absorbing the partials
(they are charged to HBM, an upper bound). A stream-K block's L2 panels are those of the tile its range starts in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import current_profile
from ...sim.counters import FLOPS_VECTOR, HBM_READ, SRAM_WRITE, new_counters
from ...sim.tiles import copy_rect, count_mma, count_warp_reads, load_tile, store_tile
from .._classes import launch_counters
from .._contract import ceil_div
from .._counting import extent, stand_in
from .._mma import mma_acc
from ._launch import block_tile

DATA_PARALLEL = "data-parallel"
STREAM_K = "stream-k"
SCHEDULES = (DATA_PARALLEL, STREAM_K)
#: fewest MAC iterations per stream-K block (CUTLASS's ``kMinItersPerSkBlock``)
MIN_ITERS = 2
PARTIAL_BYTES = 4        # fp32 accumulators


@dataclass(frozen=True)
class StreamKPlan:
    """How the launch is split (module doc): ``sk_tiles`` tiles shared by ``sk_blocks`` blocks by
    MAC iteration (``iters`` per tile), then ``tiles - sk_tiles`` data-parallel tiles."""

    tiles: int
    iters: int
    wave: int
    sk_tiles: int
    sk_blocks: int

    @property
    def dp_tiles(self) -> int:
        return self.tiles - self.sk_tiles

    @property
    def n_blocks(self) -> int:
        return self.sk_blocks + self.dp_tiles

    @property
    def split(self) -> tuple[int, int]:
        """(q, r): every stream-K block gets q iterations, the first r one more."""
        if self.sk_blocks == 0:
            return 1, 0
        return divmod(self.sk_tiles * self.iters, self.sk_blocks)

    def block_range(self, j: int) -> tuple[int, int]:
        """[begin, end) of stream-K block ``j``'s MAC iterations."""
        q, r = self.split
        begin = j * q + min(j, r)
        return begin, begin + q + (1 if j < r else 0)

    def seams(self) -> list[int]:
        """The stream-K tiles cut by a block boundary, one entry per cut (module doc)."""
        cuts = (self.block_range(j)[0] for j in range(1, self.sk_blocks))
        return [b // self.iters for b in cuts if b % self.iters]

    def tiles_per_block(self) -> list[float]:
        """Each block's work in tiles (stream-K blocks first): what the docs' picture shows."""
        sk = [(e - b) / self.iters for b, e in map(self.block_range, range(self.sk_blocks))]
        return sk + [1.0] * self.dp_tiles


def plan_stream_k(tiles: int, iters: int, wave: int) -> StreamKPlan:
    """The module doc's rule for ``tiles`` C tiles of ``iters`` MAC iterations on ``wave`` slots."""
    full, rest = divmod(tiles, wave)
    none = StreamKPlan(tiles, iters, wave, 0, 0)
    if rest == 0:
        return none
    sk_tiles = tiles if full == 0 else rest + wave
    sk_iters = sk_tiles * iters
    sk_blocks = min(wave, max(1, sk_iters // MIN_ITERS)) if full == 0 else wave
    if ceil_div(sk_iters, sk_blocks) >= ceil_div(sk_tiles, wave) * iters:
        return none                     # no shorter than the data-parallel tail it would replace
    return StreamKPlan(tiles, iters, wave, sk_tiles, sk_blocks)


def partial_bytes(plan: StreamKPlan, m: int, n: int, bm: int, bn: int) -> int:
    """The partial accumulators' bytes (written once, read once): the module doc's sum over seams."""
    gn = ceil_div(n, bn)
    total = 0
    for t in plan.seams():
        total += min(bm, m - (t // gn) * bm) * min(bn, n - (t % gn) * bn) * PARTIAL_BYTES
    return total


@njit(cache=True)
def mac_iterations(a, b, r0, c0, rows, cols, K, BK, it0, it1, a_s, b_s, acc, WM, WN, execute, counters, row,
                   elem_bits, gemm):
    """``acc += A[r0 : +rows, k] @ B[k, c0 : +cols]`` over MAC iterations ``it0 <= it < it1`` of one tile
    (``k`` = ``it * BK`` to ``+ BK``): the pipelined GEMM's K loop, whole (data-parallel) or a range."""
    for it in range(it0, it1):
        k0 = it * BK
        depth = min(BK, K - k0)
        if execute and depth < BK:     # masked load: the padding must be zero
            a_s[:] = 0.0
            b_s[:] = 0.0
        load_tile(a, r0, k0, rows, depth, a_s, execute, counters, row, 0, elem_bits)
        load_tile(b, k0, c0, depth, cols, b_s, execute, counters, row, 1, elem_bits)
        count_mma(rows, cols, depth, counters, row, elem_bits)
        count_warp_reads(rows, cols, depth, WM, WN, counters, row, elem_bits)
        if execute:
            mma_acc(a_s, b_s, acc, gemm)     # every warp's MMAs: acc += (BM, BK) @ (BK, BN)


@njit(cache=True)
def _block_of(i, Q, R):
    """The stream-K block whose range holds MAC iteration ``i``."""
    big = R * (Q + 1)
    if i < big:
        return i // (Q + 1)
    return R + (i - big) // Q


@njit(parallel=PARALLEL, cache=True)
def _body(a, b, c, ws, held, M, N, K, BM, BN, BK, WM, WN, ITERS, SK_TILES, SK_BLOCKS, Q, R, execute, ids,
          counters, elem_bits, gemm):
    for row in prange(len(ids)):          # every block, or one per class (counting)
        blk = ids[row]
        a_s = np.zeros((extent(BM, execute), extent(BK, execute)), dtype=np.float32)   # one stage
        b_s = np.zeros((extent(BK, execute), extent(BN, execute)), dtype=np.float32)
        acc = np.zeros((extent(BM, execute), extent(BN, execute)), dtype=np.float32)   # registers
        if blk >= SK_BLOCKS:              # a data-parallel tile: all its iterations
            r0, c0, rows, cols = block_tile(SK_TILES + blk - SK_BLOCKS, BM, BN, M, N)
            mac_iterations(a, b, r0, c0, rows, cols, K, BK, 0, ITERS, a_s, b_s, acc, WM, WN, execute, counters,
                           row, elem_bits, gemm)
            store_tile(acc, rows, cols, c, r0, c0, execute, counters, row, elem_bits)
            continue
        it = blk * Q + min(blk, R)         # this stream-K block's range of MAC iterations
        end = it + Q + (1 if blk < R else 0)
        while it < end:
            t = it // ITERS
            t0 = t * ITERS
            stop = min(end, t0 + ITERS)
            r0, c0, rows, cols = block_tile(t, BM, BN, M, N)
            if execute:
                acc[:] = 0.0
            mac_iterations(a, b, r0, c0, rows, cols, K, BK, it - t0, stop - t0, a_s, b_s, acc, WM, WN, execute,
                           counters, row, elem_bits, gemm)
            if it > t0:                   # started inside the tile: a partial, to the workspace
                store_tile(acc, rows, cols, ws[blk if execute else 0], 0, 0, execute, counters, row, 32)
            elif stop < t0 + ITERS:       # the owner of a tile its peers finish: fixup, then store
                peers = _block_of(t0 + ITERS - 1, Q, R) - blk
                pb = peers * rows * cols * 4
                counters[row, HBM_READ] += pb           # the peers' partials, HBM -> SRAM
                counters[row, SRAM_WRITE] += pb
                counters[row, FLOPS_VECTOR] += peers * rows * cols
                store_tile(acc, rows, cols, c, r0, c0, False, counters, row, elem_bits)   # written by _fixup
                if execute:
                    copy_rect(acc, 0, 0, rows, cols, held[t], 0, 0)     # the accumulators it keeps while it waits
            else:                         # the whole tile
                store_tile(acc, rows, cols, c, r0, c0, execute, counters, row, elem_bits)
            it = stop


@njit(cache=True)
def _fixup(c, ws, held, M, N, BM, BN, ITERS, SK_TILES, Q, R):
    """Executing only, after every block ran: each owner adds its peers' partials and stores the tile
    (on the GPU the owner waits on a flag per peer; the bytes were counted in ``_body``)."""
    for t in range(SK_TILES):
        first = _block_of(t * ITERS, Q, R)
        last = _block_of(t * ITERS + ITERS - 1, Q, R)
        if last == first:
            continue
        r0, c0, rows, cols = block_tile(t, BM, BN, M, N)
        out = held[t, :rows, :cols].copy()
        for j in range(first + 1, last + 1):
            out += ws[j, :rows, :cols]
        copy_rect(out, 0, 0, rows, cols, c, r0, c0)      # (a slice assignment: Numba compiles its error text, 4 s)


def _classes(plan: StreamKPlan, gm: int, gn: int):
    """(ids, run_class, run_length) for counting: each stream-K block alone, the data-parallel tiles
    by their edge class (last tile row? last tile column?), in launch order."""
    ids = list(range(plan.sk_blocks))
    run_class = list(range(plan.sk_blocks))
    run_length = [1] * plan.sk_blocks
    seen: dict = {}

    def add(tile: int, length: int):
        key = (tile // gn == gm - 1, tile % gn == gn - 1)
        if key not in seen:
            seen[key] = len(ids)
            ids.append(plan.sk_blocks + tile - plan.sk_tiles)
        run_class.append(seen[key])
        run_length.append(length)

    t = plan.sk_tiles
    while t < plan.tiles:                       # one tile row (or its rest) at a time
        row_end = (t // gn + 1) * gn
        if row_end - 1 > t:
            add(t, row_end - 1 - t)             # interior columns
        add(row_end - 1, 1)                     # the last column
        t = row_end
    as_array = lambda xs: np.asarray(xs, dtype=np.int64)   # noqa: E731
    return as_array(ids), as_array(run_class), as_array(run_length)


def _panels(plan: StreamKPlan, gn: int) -> dict:
    """L2 panels per block in launch order: a stream-K block's first tile, a data-parallel block's tile."""
    first = np.array([plan.block_range(j)[0] // plan.iters for j in range(plan.sk_blocks)], dtype=np.int64)
    tiles = np.concatenate([first, np.arange(plan.sk_tiles, plan.tiles, dtype=np.int64)])
    rows, cols = np.divmod(tiles, gn)
    return {0: rows, 1: cols}


def launch(call, name: str, sizes: tuple, plan: StreamKPlan, sram: int, extra: tuple, record: dict,
           tile_grid: tuple):
    """Run the stream-K launch of ``plan`` (module doc); returns C. ``sizes``: (BM, BN, BK, WM, WN);
    ``tile_grid``: the data-parallel grid (ceil(M/BM), ceil(N/BN)), the launch's grid when nothing is split."""
    bm, bn, bk, wm, wn = sizes
    prof = current_profile()
    prof.hbm.track(call.a.obj, "a", call.dtype)
    prof.hbm.track(call.b.obj, "b", call.dtype)
    x = call.execute
    c = prof.hbm.new_tensor("c", (call.m, call.n), call.dtype, x)
    ws = prof.hbm.new_tensor("streamk_partials", (plan.sk_blocks, bm, bn), "fp32", x) if plan.sk_blocks else None
    gm, gn = ceil_div(call.m, bm), ceil_div(call.n, bn)
    if x:
        ids, run_class, run_length = np.arange(plan.n_blocks, dtype=np.int64), None, None
        held = np.zeros((max(plan.sk_tiles, 1), bm, bn), dtype=np.float32)
        ws_data = ws if ws is not None else stand_in(3)
    else:
        ids, run_class, run_length = _classes(plan, gm, gn)
        held, ws_data = stand_in(3), stand_in(3)
    counters = new_counters(len(ids), n_operands=2)
    q, r = plan.split
    a_data = call.a.data if x else stand_in(2)
    b_data = call.b.data if x else stand_in(2)
    c_data = c if x else stand_in(2)
    _body(a_data, b_data, c_data, ws_data, held, call.m, call.n, call.k, bm, bn, bk, wm, wn, plan.iters,
          plan.sk_tiles, plan.sk_blocks, q, r, x, ids, counters, call.elem_bits, *extra)
    if x and plan.sk_blocks:
        _fixup(c_data, ws_data, held, call.m, call.n, bm, bn, plan.iters, plan.sk_tiles, q, r)
    grid = (plan.n_blocks,) if plan.sk_blocks else tile_grid
    prof.record(name, grid, launch_counters(counters, x, run_class, run_length), dtype=call.dtype,
                sram_per_block=sram, panels=_panels(plan, gn), **record)
    return c


__all__ = ["StreamKPlan", "plan_stream_k", "partial_bytes", "mac_iterations", "launch", "SCHEDULES",
           "DATA_PARALLEL", "STREAM_K"]
