"""Chunked linear attention: matmuls inside a chunk (tensor cores), the d x dv state passed between chunks.

The recurrent form (:mod:`.linear_recurrent`) does rank-1 updates, on the vector
units; the quadratic form (:mod:`.linear_quadratic`) does N^2 work. The chunked
form (GLA, RetNet's chunkwise form, RWKV's and Mamba-2's training kernels) splits the
sequence into chunks of C tokens: inside a chunk it is the quadratic form, as
matmuls; across chunks it is the recurrence, one state per chunk. With
``g = decay`` (per head) and positions i, j in [0, nc) of a chunk of nc tokens::

    O_c = ((Q_c K_c^T) * M) V_c + diag(g^(i+1)) Q_c S        M[i, j] = g^(i-j) if i >= j else 0
    S   = g^nc S + (diag(g^(nc-1-j)) K_c)^T V_c

Tile loop, grid (batch, H), one block per head (the state must see the chunks in order)::

    for each block (b, h) in parallel:
        S = zeros(d, dv) fp32                          # registers, the whole sequence
        for each chunk c of C tokens:
            Q_c, K_c = load q, k[b, h, c*C : +C]       # (C, d) each
            V_c = load v[b, h, c*C : +C]               # (C, dv)
            P = (Q_c K_c^T) * M                        # (C, C) tensor cores, then the mask
            O = P V_c + diag(g^(i+1)) Q_c S            # (C, dv) tensor cores
            S = g^nc S + (diag(g^(nc-1-j)) K_c)^T V_c  # (d, dv) tensor cores
            store O -> o[b, h, c*C : +C]

HBM traffic (``s`` bytes per element): reads ``batch H N (2 d + dv) s``, writes
``batch H N dv s``: every input once, whatever C. Per chunk of nc tokens,
matmul FLOPs ``2 nc^2 (d + dv) + 4 nc d dv`` and vector FLOPs
``nc^2 + 2 nc d + d dv`` (the mask, the two row scalings, S's decay). Larger
chunks move more of the work into the nc^2 terms (more FLOPs, on the fast tensor
cores); smaller chunks mean more, smaller, less efficient steps and more state
updates. The grid has only batch x H blocks: at small batch x heads most SMs idle.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import check_registers, check_tiles, current_profile, tiles_fit
from ...sim.counters import new_counters
from ...sim.sram import REG
from ...sim.tiles import count_mma, count_vector, load_tile, store_tile
from .._classes import add_scaled, launch_counters, rep_count, rep_tile
from .._contract import blas_single_thread, block_size, clamp_note
from .._counting import extent
from .linear_call import DUMMY2, OP_K, OP_Q, OP_V, LinearCall, prepare_linear

KERNEL = "linear_chunked"
CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)
DEFAULT_CHUNK = 64


def chunk_tiles(chunk: int, d: int, dv: int, dtype: str) -> dict:
    """One chunked block on chip: Q_c, K_c, V_c in SRAM; P, O and the state S in registers."""
    return {"Q_c, K_c": ((2, chunk, d), dtype), "V_c": ((chunk, dv), dtype),
            "P": ((chunk, chunk), "fp32", REG), "O": ((chunk, dv), "fp32", REG), "S": ((d, dv), "fp32", REG)}


def resolve_chunk(call: LinearCall, chunk, tiles_of, kernel: str, default: int = DEFAULT_CHUNK):
    """(C, SRAM bytes, register bytes): the caller's chunk (clamped to N; the record's notes say so) or the largest of 256 .. 1 up to
    ``default`` that fits the chip."""
    dev = current_profile().device
    fits = [c for c in dict.fromkeys(min(x, call.length) for x in CHUNKS)
            if tiles_fit(dev, tiles_of(c))]
    if chunk is None:
        under = [c for c in fits if c <= default]
        c = (under or fits or [1])[0]
    else:
        c = min(block_size(chunk, "chunk", 1), call.length)

    def suggest() -> str:
        if not fits:
            return (f"Even chunk=1 does not fit: the ({call.dk}, {call.dv}) fp32 state of one head takes "
                    f"{4 * call.dk * call.dv:,} bytes; use smaller heads or a device with more SRAM")
        return f"chunk={fits[0]} fits; or omit chunk to let tinyml choose"

    tiles = tiles_of(c)
    return c, check_tiles(dev, tiles, kernel=kernel, suggest=suggest), check_registers(dev, tiles)


@njit(cache=True)
def decay_mask(P, nc, g):
    """P[i, j] *= g^(i-j) for j <= i, 0 above the diagonal."""
    for i in range(nc):
        w = 1.0
        for j in range(i, -1, -1):
            P[i, j] *= w
            w *= g
        for j in range(i + 1, nc):
            P[i, j] = 0.0


@njit(cache=True)
def row_powers(nc, g, up, down):
    """up[i] = g^(i+1), down[j] = g^(nc-1-j): the row scalings diag(g^(i+1)) and diag(g^(nc-1-j))."""
    w = g
    for i in range(nc):
        up[i] = w
        w *= g
    w = np.float32(1.0)
    for j in range(nc - 1, -1, -1):
        down[j] = w
        w *= g


# The chunk algebra below is written as small loops rather than NumPy expressions
# (``x * w[:n].reshape(n, 1)``, ``np.add(a, b, out)``, ``S * s + X``): Numba compiles each array
# expression into the kernel body with its own broadcasting code, about half a second apiece,
# and these compile once, shared by the forward, the backward and the quadratic form (the
# backward's body: 9 -> 5 s of CPU to compile). Slice assignments with an array on the right
# (``x[:n] = a + b``) are avoided for the same reason: they compile the text of a shape error.

@njit(cache=True)
def scale_rows(x, w):
    """diag(w) x for x (n, m), w (>= n,): a new (n, m) array, row i of x times w[i]."""
    out = np.empty((x.shape[0], x.shape[1]), dtype=np.float32)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] * w[i]
    return out


@njit(cache=True)
def add_into(a, b, out):
    """out[:n] = a + b for a, b (n, m): the first n rows of out, in place."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i, j] = a[i, j] + b[i, j]


@njit(cache=True)
def decay_add(S, s, X):
    """S = s S + X, in place: a state decayed over a chunk plus the chunk's contribution."""
    for i in range(S.shape[0]):
        for j in range(S.shape[1]):
            S[i, j] = S[i, j] * s + X[i, j]


@njit(parallel=PARALLEL, cache=True)
def _body(q, k, v, o, decay, BT, H, N, D, DV, C, execute, ids, counters, elem_bits):
    # q, k: (BT*H*N, D); v, o: (BT*H*N, DV); decay: (H,)
    nch = (N + C - 1) // C
    for row in prange(len(ids)):
        blk = ids[row]
        r_base = blk * N
        g = decay[blk % H]
        q_s = np.zeros((extent(C, execute), extent(D, execute)), dtype=np.float32)
        k_s = np.zeros((extent(C, execute), extent(D, execute)), dtype=np.float32)
        v_s = np.zeros((extent(C, execute), extent(DV, execute)), dtype=np.float32)
        S = np.zeros((extent(D, execute), extent(DV, execute)), dtype=np.float32)
        o_s = np.zeros((extent(C, execute), extent(DV, execute)), dtype=np.float32)
        up = np.zeros(extent(C, execute), dtype=np.float32)
        down = np.zeros(extent(C, execute), dtype=np.float32)
        step = np.zeros((1, counters.shape[1]), dtype=np.int64)
        for jr in range(rep_count(0, nch, execute)):
            c, mult = rep_tile(jr, 0, nch, execute)
            r0 = r_base + c * C
            nc = min(C, N - c * C)
            step[:] = 0
            load_tile(q, r0, 0, nc, D, q_s, execute, step, 0, OP_Q, elem_bits)
            load_tile(k, r0, 0, nc, D, k_s, execute, step, 0, OP_K, elem_bits)
            load_tile(v, r0, 0, nc, DV, v_s, execute, step, 0, OP_V, elem_bits)
            count_mma(nc, nc, D, step, 0, elem_bits)             # Q K^T
            count_vector(nc * nc, step, 0)                       # the decay mask
            count_mma(nc, DV, nc, step, 0, elem_bits)            # P V
            count_vector(nc * D, step, 0)                        # diag(g^(i+1)) Q
            count_mma(nc, DV, D, step, 0, elem_bits)             # (g Q) S
            count_vector(nc * D + D * DV, step, 0)               # diag(g^(nc-1-j)) K, g^nc S
            count_mma(D, DV, nc, step, 0, elem_bits)             # K^T V
            if execute:
                qc, kc, vc = q_s[:nc], k_s[:nc], v_s[:nc]
                P = np.dot(qc, kc.T)                             # (nc, nc)
                decay_mask(P, nc, g)
                row_powers(nc, g, up, down)
                qd = scale_rows(qc, up)                          # diag(g^(i+1)) Q_c
                kd = scale_rows(kc, down)                        # diag(g^(nc-1-j)) K_c
                add_into(np.dot(P, vc), np.dot(qd, S), o_s)     # O = P V_c + (g Q_c) S, written into o_s
                decay_add(S, np.float32(g ** nc), np.dot(kd.T, vc))    # S = g^nc S + (g K_c)^T V_c
            store_tile(o_s, nc, DV, o, r0, 0, execute, step, 0, elem_bits)
            add_scaled(counters, row, step, mult)


def expected_bytes(batch, heads, length, d, dv, elem_bytes):
    """(HBM read bytes, HBM write bytes) of the chunked form: every input once, the output once."""
    return batch * heads * length * (2 * d + dv) * elem_bytes, batch * heads * length * dv * elem_bytes


def expected_flops(batch, heads, length, d, dv, chunk):
    """(matmul FLOPs, vector FLOPs) of the chunked form, from the per-chunk counts above."""
    full, last = divmod(length, chunk)
    sizes = [chunk] * full + ([last] if last else [])
    mm = sum(2 * n * n * (d + dv) + 4 * n * d * dv for n in sizes)
    vec = sum(n * n + 2 * n * d + d * dv for n in sizes)
    return batch * heads * mm, batch * heads * vec


def run_linear(call: LinearCall, body, kernel: str, grid, ids, run_class, run_length, sram, regs, *args,
               notes: tuple = ()):
    """Allocate o, run ``body`` over ``ids``, record the launch (with ``notes``: a clamped chunk); returns o
    (shared by the three forms)."""
    prof = current_profile()
    for op in (call.q, call.k, call.v):
        prof.hbm.track(op.obj, op.name, call.dtype)
    x = call.execute
    o = prof.hbm.new_tensor("o", (call.batch, call.heads, call.length, call.dv), call.dtype, x)
    counters = new_counters(len(ids), n_operands=3)
    with blas_single_thread():
        body(call.flat("q"), call.flat("k"), call.flat("v"), o.reshape(-1, call.dv) if x else DUMMY2,
             call.decay, call.batch, call.heads, call.length, call.dk, call.dv, *args, x, ids, counters,
             call.elem_bits)
    prof.record(kernel, grid, launch_counters(counters, x, run_class, run_length), dtype=call.dtype,
                sram_per_block=sram, regs_per_block=regs, notes=notes)
    return o


def per_head_ids(call: LinearCall):
    """Every (batch, head) block when executing; one (they are all alike) when counting."""
    n = call.batch * call.heads
    if call.execute:
        return np.arange(n, dtype=np.int64), None, None
    return np.zeros(1, dtype=np.int64), [0], [n]


def linear_attention_chunked(q, k, v, *, decay=None, chunk: "int | None" = None, dtype: str = "fp16"):
    """Causal linear attention (with per-head ``decay``), chunked (see the module docstring).

    q, k: (batch, H, N, d); v: (batch, H, N, dv); arrays (executing) or ``tinyml.sim.meta`` (counting).
    ``chunk`` tokens per chunk (default: 64, or the largest that fits). Returns o (batch, H, N, dv).
    """
    call = prepare_linear(q, k, v, decay, dtype=dtype, kernel=KERNEL)
    c, sram, regs = resolve_chunk(call, chunk, lambda cc: chunk_tiles(cc, call.dk, call.dv, call.dtype), KERNEL)
    ids, rc, rl = per_head_ids(call)
    return run_linear(call, _body, KERNEL, (call.batch, call.heads), ids, rc, rl, sram, regs, c,
                      notes=clamp_note("chunk", chunk, c, "N"))
