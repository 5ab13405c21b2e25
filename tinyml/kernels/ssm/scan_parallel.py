"""The selective scan as a parallel (associative) scan: more work, less depth.

``h_t = a_t h_{t-1} + b_t`` (``a_t = exp(delta_t A)``, ``b_t = delta_t B_t u_t``)
composes associatively: applying (a1, b1) then (a2, b2) is ``(a2 a1, a2 b1 + b2)``,
one *combine* of 3 FLOPs per state element. So the T states of a chunk are a
prefix scan over pairs, which T threads finish in O(log T) steps instead of T:

* **Hillis-Steele**: at offsets 1, 2, 4, ... every element t >= off combines
  element t - off in: ``ceil(log2 T)`` steps (the depth) but
  ``sum_off (T - off)`` ~ T log2 T combines (the work).
* **Blelloch** (Brent-Kung, work-efficient): an up-sweep of ``sum_s floor(T / 2s)``
  combines and a down-sweep of ``sum_s floor((T - s) / 2s)``, about 2T, in
  ``2 log2 T`` steps.

The sequential scan (:mod:`.scan_fused`) does T - 1 combines in T - 1 steps.
On a GPU the depth is what a warp waits for; the work is what the FLOP
counters see. The simulator's cost model charges work (FLOPs, bytes), not
depth, so the counters show the price of parallelism, and
:func:`scan_stats` reports the depth beside it.

Tile loop, grid (batch, ceil(D / BD)) as the fused scan, chunks of T tokens::

    for each block (b, channels c0 : c0 + BD) in parallel:
        h = zeros(BD, N) fp32                                 # the carry between chunks, registers
        for each chunk:
            load u, delta (T, BD), B, C (T, N)
            (a, b)[t] = (exp(delta_t A), delta_t u_t B_t)     # (T, BD, N) pairs, fp32 SRAM
            prefix-scan the pairs over t (Hillis-Steele or Blelloch)
            h_t = a_t h + b_t;  y_t = C_t h_t (+ D u_t);  h = h_{last}
            store y (T, BD), checkpoint h (BD, N) fp32

HBM traffic: the fused scan's exactly (:func:`.scan_fused.expected_bytes`). Vector FLOPs
per chunk of nt tokens: ``nt nd (7 N + 1) + 3 nd N combines(nt)`` (discretise 3, carry 2, readout 2
per state element, delta u per channel; the skip adds 2 per channel). SRAM: each combine reads two
pairs and writes one (24 bytes per state element), and the chunk's pairs must fit: ``8 T BD N`` bytes.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import TileConfigError, current_profile
from ...sim.args import choice, integer
from ...sim.counters import SRAM_READ, SRAM_WRITE, new_counters
from ...sim.sram import REG
from ...sim.tiles import count_tile_load, count_vector, store_tile
from .._classes import add_scaled, edge_grid, launch_counters, rep_count, rep_tile
from .._contract import ceil_div
from ..attention.fastexp import exp_le0
from .._counting import extent
from .scan_call import (clamp_notes, DUMMY2, OP_A, OP_D, grid_of, pick_blocks, prepare_scan,
                        track_inputs)
from .scan_blocks import channel_block, count_chunk_inputs

KERNEL = "scan_parallel"
METHODS = {"hillis_steele": 0, "blelloch": 1}
METHOD_HINT = ("'blelloch' is work-efficient (~2T combines in 2 log2 T steps), 'hillis_steele' is step-efficient "
               "(T log2 T combines in log2 T steps)")


def _method(method, kernel: str = "scan_parallel") -> int:
    return METHODS[choice(method, f"{kernel} method", METHODS, error=TileConfigError, hint=METHOD_HINT)]


@njit(cache=True)
def combines(nt, method):
    """Combines of an inclusive scan of nt elements: 0 Hillis-Steele, 1 Blelloch."""
    total = 0
    s = 1
    while s < nt:
        if method == 0:
            total += nt - s
        else:
            total += nt // (2 * s) + max(0, (nt - s) // (2 * s))
        s *= 2
    return total


@njit(cache=True)
def depth(nt, method):
    """Dependent combine steps of the scan: ceil(log2 nt) (Hillis-Steele) or twice that (Blelloch)."""
    levels = 0
    s = 1
    while s < nt:
        levels += 1
        s *= 2
    return levels if method == 0 else 2 * levels


@njit(cache=True)
def _combine(a, b, src, dst, m):
    """Element dst absorbs the earlier src: (a, b)[dst] = (a_dst a_src, a_dst b_src + b_dst)."""
    for i in range(m):
        b[dst, i] = a[dst, i] * b[src, i] + b[dst, i]
        a[dst, i] = a[dst, i] * a[src, i]


@njit(cache=True)
def scan_pairs(a, b, nt, m, method):
    """Inclusive prefix scan of the pairs (a, b)[:nt, :m] in place."""
    s = 1
    if method == 0:
        while s < nt:
            for t in range(nt - 1, s - 1, -1):        # descending: t - s still holds the previous level
                _combine(a, b, t - s, t, m)
            s *= 2
        return
    while s < nt:                                     # up-sweep
        for t in range(2 * s - 1, nt, 2 * s):
            _combine(a, b, t - s, t, m)
        s *= 2
    s //= 2
    while s >= 1:                                     # down-sweep
        for t in range(3 * s - 1, nt, 2 * s):
            _combine(a, b, t - s, t, m)
        s //= 2


@njit(parallel=PARALLEL, cache=True)
def _body(u, dt, A, Bm, Cm, Dv, y, ckpt, BT, L, DM, N, BD, T, has_d, method, execute, ids, counters, elem_bits):
    ndb = (DM + BD - 1) // BD
    nch = (L + T - 1) // T
    for row in prange(len(ids)):
        blk = ids[row]
        b, c0, nd = channel_block(blk, ndb, BD, DM)
        m = nd * N
        count_tile_load(nd, N, counters, row, OP_A, 32)
        if has_d:
            count_tile_load(1, nd, counters, row, OP_D, 32)
        h = np.zeros((extent(BD, execute), extent(N, execute)), dtype=np.float32)
        pa = np.zeros((extent(T, execute), extent(BD * N, execute)), dtype=np.float32)
        pb = np.zeros((extent(T, execute), extent(BD * N, execute)), dtype=np.float32)
        y_s = np.zeros((extent(T, execute), extent(BD, execute)), dtype=np.float32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, nch, execute)):
            c, mult = rep_tile(jr, 0, nch, execute)
            t0 = c * T
            nt = min(T, L - t0)
            step[:] = 0
            count_chunk_inputs(nt, nd, N, step, elem_bits)
            nc = combines(nt, method)
            count_vector(nt * nd * (7 * N + 1 + (2 if has_d else 0)) + 3 * m * nc, step, 0)
            step[0, SRAM_READ] += 16 * m * nc          # each combine reads two fp32 pairs ...
            step[0, SRAM_WRITE] += 8 * m * nc          # ... and writes one
            if execute:
                for t in range(nt):
                    r = b * L + t0 + t
                    for d in range(nd):
                        dd = dt[r, c0 + d]
                        du = dd * u[r, c0 + d]
                        for n in range(N):
                            pa[t, d * N + n] = exp_le0(dd * A[c0 + d, n])
                            pb[t, d * N + n] = du * Bm[r, n]
                scan_pairs(pa, pb, nt, m, method)
                for t in range(nt):
                    r = b * L + t0 + t
                    for d in range(nd):
                        acc = np.float32(0.0)
                        for n in range(N):
                            acc += Cm[r, n] * (pa[t, d * N + n] * h[d, n] + pb[t, d * N + n])
                        if has_d:
                            acc += Dv[c0 + d] * u[r, c0 + d]
                        y_s[t, d] = acc
                for d in range(nd):
                    for n in range(N):
                        h[d, n] = pa[nt - 1, d * N + n] * h[d, n] + pb[nt - 1, d * N + n]
            store_tile(y_s, nt, nd, y, b * L + t0, c0, execute, step, 0, elem_bits)
            store_tile(h, nd, N, ckpt, (b * nch + c) * DM + c0, 0, execute, step, 0, 32)
            add_scaled(counters, row, step, mult)


def parallel_tiles(block_d: int, chunk: int, state: int, dtype: str) -> dict:
    return {"u, delta chunk": ((2, chunk, block_d), dtype), "B, C chunk": ((2, chunk, state), dtype),
            "y chunk": ((chunk, block_d), dtype), "(a, b) pairs": ((2, chunk, block_d, state), "fp32"),
            "A": ((block_d, state), "fp32", REG), "carry h": ((block_d, state), "fp32", REG)}


def scan_stats(length: int, chunk: int, method: str) -> dict:
    """Combines (work) and dependent steps (depth) over one channel's sequence, parallel vs sequential.

    The chunks run one after another, so their depths add, plus one step per later chunk to apply the carry."""
    m = _method(method, "scan_stats")
    length = integer(length, "length", lo=1, error=TileConfigError, hint="tokens in one channel's sequence")
    chunk = integer(chunk, "chunk", lo=1, error=TileConfigError, hint="tokens per chunk scanned in parallel")
    full, last = divmod(length, chunk)
    sizes = [chunk] * full + ([last] if last else [])
    return {"combines": sum(int(combines(n, m)) for n in sizes), "depth": sum(int(depth(n, m)) for n in sizes) + len(sizes) - 1,
            "sequential_combines": int(length) - 1, "sequential_depth": int(length) - 1}


def expected_flops(batch, length, channels, state, chunk, method: str, has_d=False):
    """Vector FLOPs of the parallel scan, from the module docstring."""
    m = METHODS[method]
    full, last = divmod(int(length), int(chunk))
    sizes = [chunk] * full + ([last] if last else [])
    per_tok = channels * (7 * state + 1 + (2 if has_d else 0))
    return batch * sum(n * per_tok + 3 * channels * state * int(combines(n, m)) for n in sizes)


def selective_scan_parallel(u, delta, A, B, C, D=None, *, method: str = "blelloch", dtype: str = "fp16",
                            block_d: "int | None" = None, chunk: "int | None" = None):
    """y (batch, L, D) of the selective scan with each chunk scanned in parallel (``method``:
    'blelloch' or 'hillis_steele'); arguments as :func:`.scan_fused.selective_scan_fused`."""
    _method(method, KERNEL)
    call = prepare_scan(u, delta, A, B, C, D, dtype=dtype, kernel=KERNEL)
    bd, t, sram, regs = pick_blocks(call, block_d, chunk,
                                    lambda b, tt: parallel_tiles(b, tt, call.state, call.dtype), KERNEL)
    notes = clamp_notes(block_d, chunk, bd, t)
    prof = current_profile()
    track_inputs(call)
    x = call.execute
    y = prof.hbm.new_tensor("y", (call.batch, call.length, call.channels), call.dtype, x)
    ckpt = prof.hbm.new_tensor("checkpoints", (call.batch, ceil_div(call.length, t), call.channels, call.state),
                               "fp32", x)
    grid = grid_of(call, bd)
    if x:
        ids, rc, rl = np.arange(grid[0] * grid[1], dtype=np.int64), None, None
    else:
        ids, rc, rl = edge_grid(*grid)
    counters = new_counters(len(ids), n_operands=6)
    _body(call.data("u"), call.data("delta"), call.data("A"), call.data("B"), call.data("C"), call.data("D", 1),
          y.reshape(-1, call.channels) if x else DUMMY2, ckpt.reshape(-1, call.state) if x else DUMMY2,
          call.batch, call.length, call.channels, call.state, bd, t, call.has_d, METHODS[method], x, ids,
          counters, call.elem_bits)
    prof.record(f"{KERNEL}_{method}", grid, launch_counters(counters, x, rc, rl), dtype=call.dtype,
                sram_per_block=sram, regs_per_block=regs, notes=notes)
    return y
