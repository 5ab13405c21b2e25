"""One decoding step with a fixed-size state: what an SSM or an RNN reads per generated token.

A Transformer decoding step reads its whole KV cache, ``2 L_ctx KVH d s`` bytes
per layer and sequence, growing with the context
(:func:`tinyml.kernels.attention.decode_attention`). A recurrent model reads and
writes its state instead, whose size does not depend on the context at all.

Selective-scan step (Mamba), grid (batch, ceil(D / BD)), the state updated in place::

    for each block (b, channels c0 : c0 + BD) in parallel:
        h = load state[b, c0 : +BD]                       # (BD, N) fp32
        load u, delta[b, c0 : +BD], B, C[b], A[c0 : +BD] (and D)
        h = exp(delta A) h + delta u B;   y = C h (+ D u)
        store h -> state[b, c0 : +BD];   store y[b, c0 : +BD]

    reads  = 4 batch D N (state) + 4 batch D N (A) + 2 batch D s + 2 batch N s nD (+ 4 batch D)
    writes = 4 batch D N + batch D s;      vector FLOPs = 7 batch D N + batch D (+ 2 batch D)

Linear-attention step (RWKV-style, per head), grid (batch, H)::

    S = load state[b, h]                                  # (d, dv) fp32
    S = g S + k^T v;   o = q S;   store S, o

    reads  = batch H ((2 d + dv) s + 4 d dv);   writes = batch H (dv s + 4 d dv)
    vector FLOPs = 5 batch H d dv
"""

from __future__ import annotations

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import FLOAT_DTYPES, DTypeError, ShapeError, bits, current_profile
from ...sim.counters import new_counters
from ...sim.tiles import count_tile_load, count_vector, store_tile
from .._contract import ceil_div, operand, same_mode
from ..attention.fastexp import exp_le0
from .linear_call import check_decay
from .scan_call import DUMMY2, prepare_scan, track_inputs
from .scan_blocks import channel_block

SCAN_KERNEL = "ssm_decode_step"
LINEAR_KERNEL = "linear_decode_step"
OP_STATE = 6


def _state(state, shape: tuple, kernel: str):
    S = operand(state, "state", ndim=len(shape), dtype="fp32", allowed=FLOAT_DTYPES)
    if S.shape != shape:
        raise ShapeError(f"{kernel}: state is {S.shape} but must be {shape} (fp32, one per sequence)")
    if not S.execute and S.dtype != "fp32":
        raise DTypeError(f"{kernel}: the state is fp32 (it accumulates over the whole sequence), got a "
                         f"{S.dtype} MetaTensor; pass meta({shape}, 'fp32')")
    if S.execute and not (isinstance(state, np.ndarray) and state.dtype == np.float32 and state.flags.c_contiguous):
        raise ShapeError(f"{kernel}: the state is updated in place, so it must be a C-contiguous float32 array "
                         f"(got {getattr(state, 'dtype', type(state).__name__)}); make it with np.zeros({shape}, np.float32)")
    return S


@njit(parallel=PARALLEL, cache=True)
def _scan_step(u, dt, A, Bm, Cm, Dv, st, y, BT, DM, N, BD, has_d, execute, counters, elem_bits):
    # u, dt, y: (BT, DM); Bm, Cm: (BT, N); A: (DM, N); st: (BT*DM, N) fp32
    ndb = (DM + BD - 1) // BD
    for blk in prange(BT * ndb):
        b, c0, nd = channel_block(blk, ndb, BD, DM)
        count_tile_load(nd, N, counters, blk, OP_STATE, 32)
        count_tile_load(nd, N, counters, blk, 2, 32)
        count_tile_load(2, nd, counters, blk, 0, elem_bits)          # u, delta
        count_tile_load(2, N, counters, blk, 3, elem_bits)           # B, C
        if has_d:
            count_tile_load(1, nd, counters, blk, 5, 32)
        count_vector(nd * (7 * N + 1 + (2 if has_d else 0)), counters, blk)
        none = np.zeros((1, 1), dtype=np.float32)
        store_tile(none, nd, N, none, 0, 0, False, counters, blk, 32)          # the state, in place below
        store_tile(none, 1, nd, none, 0, 0, False, counters, blk, elem_bits)   # y, below
        if execute:
            for d in range(c0, c0 + nd):
                dd = dt[b, d]
                du = dd * u[b, d]
                acc = np.float32(0.0)
                for n in range(N):
                    hv = exp_le0(dd * A[d, n]) * st[b * DM + d, n] + du * Bm[b, n]
                    st[b * DM + d, n] = hv
                    acc += Cm[b, n] * hv
                if has_d:
                    acc += Dv[d] * u[b, d]
                y[b, d] = acc


def ssm_decode_step(u, delta, A, B, C, D=None, *, state, dtype: str = "fp16", block_d: int = 64):
    """One token of the selective scan: y (batch, D), updating ``state`` (batch, D, N) fp32 in place.

    u, delta: (batch, D); B, C: (batch, N); A: (D, N) <= 0; D: (D,) or None. See the module docstring.
    """
    from .._contract import block_size

    # one token: validate as a scan of length 1, (batch, 1, D) and (batch, 1, N)
    ex = lambda a: None if a is None else (a[:, None] if isinstance(a, np.ndarray) else  # noqa: E731
                                           type(a)((a.shape[0], 1) + tuple(a.shape[1:]), a.dtype))
    call = prepare_scan(ex(u), ex(delta), A, ex(B), ex(C), D, dtype=dtype, kernel=SCAN_KERNEL)
    S = _state(state, (call.batch, call.channels, call.state), SCAN_KERNEL)
    if same_mode(call.u, S) != call.execute:
        raise ShapeError(f"{SCAN_KERNEL}: mixing arrays and MetaTensors")
    bd = min(block_size(block_d, "block_d", 64), call.channels)
    prof = current_profile()
    track_inputs(call)
    prof.hbm.track(S.obj, "state", "fp32")
    x = call.execute
    y = prof.hbm.new_tensor("y", (call.batch, call.channels), call.dtype, x)
    grid = (call.batch, ceil_div(call.channels, bd))
    counters = new_counters(grid[0] * grid[1], n_operands=7)
    _scan_step(call.data("u"), call.data("delta"), call.data("A"), call.data("B"), call.data("C"),
               call.data("D", 1), state.reshape(-1, call.state) if x else DUMMY2, y if x else DUMMY2,
               call.batch, call.channels, call.state, bd, call.has_d, x, counters, call.elem_bits)
    prof.record(SCAN_KERNEL, grid, counters, dtype=call.dtype, sram_per_block=0)
    return y


@njit(parallel=PARALLEL, cache=True)
def _linear_step(q, k, v, st, o, decay, BH, H, D, DV, execute, counters, elem_bits):
    # q, k: (BH, D); v, o: (BH, DV); st: (BH*D, DV) fp32
    for blk in prange(BH):
        count_tile_load(D, DV, counters, blk, 3, 32)
        count_tile_load(2, D, counters, blk, 0, elem_bits)
        count_tile_load(1, DV, counters, blk, 2, elem_bits)
        count_vector(5 * D * DV, counters, blk)
        none = np.zeros((1, 1), dtype=np.float32)
        store_tile(none, D, DV, none, 0, 0, False, counters, blk, 32)
        store_tile(none, 1, DV, none, 0, 0, False, counters, blk, elem_bits)
        if execute:
            g = np.float32(decay[blk % H])
            for j in range(DV):
                o[blk, j] = 0.0
            for i in range(D):
                r = blk * D + i
                for j in range(DV):
                    s = g * st[r, j] + k[blk, i] * v[blk, j]
                    st[r, j] = s
                    o[blk, j] += q[blk, i] * s


def linear_decode_step(q, k, v, *, state, decay=None, dtype: str = "fp16"):
    """One token of causal linear attention: o (batch, H, dv), updating ``state`` (batch, H, d, dv) fp32
    in place. q, k: (batch, H, d); v: (batch, H, dv)."""
    Q = operand(q, "q", ndim=3, dtype=dtype, allowed=FLOAT_DTYPES)
    K = operand(k, "k", ndim=3, dtype=dtype, allowed=FLOAT_DTYPES)
    V = operand(v, "v", ndim=3, dtype=dtype, allowed=FLOAT_DTYPES)
    x = same_mode(Q, K, V)
    if Q.shape != K.shape or V.shape[:2] != Q.shape[:2]:
        raise ShapeError(f"{LINEAR_KERNEL}: q {Q.shape}, k {K.shape}, v {V.shape}: q and k must be (batch, H, d), "
                         f"v (batch, H, dv) with the same batch and heads")
    b, h, d = Q.shape
    dv = V.shape[2]
    S = _state(state, (b, h, d, dv), LINEAR_KERNEL)
    if S.execute != x:
        raise ShapeError(f"{LINEAR_KERNEL}: mixing arrays and MetaTensors")
    g = check_decay(decay, h, LINEAR_KERNEL)
    prof = current_profile()
    for op in (Q, K, V):
        prof.hbm.track(op.obj, op.name, Q.dtype)
    prof.hbm.track(S.obj, "state", "fp32")
    o = prof.hbm.new_tensor("o", (b, h, dv), Q.dtype, x)
    counters = new_counters(b * h, n_operands=4)
    _linear_step(Q.data.reshape(b * h, d) if x else DUMMY2, K.data.reshape(b * h, d) if x else DUMMY2,
                 V.data.reshape(b * h, dv) if x else DUMMY2, state.reshape(-1, dv) if x else DUMMY2,
                 o.reshape(b * h, dv) if x else DUMMY2, g, b * h, h, d, dv, x, counters, bits(Q.dtype))
    prof.record(LINEAR_KERNEL, (b, h), counters, dtype=Q.dtype, sram_per_block=0)
    return o


def scan_step_bytes(batch, channels, state, elem_bytes, block_d, has_d=False):
    """(HBM read bytes, HBM write bytes) of :func:`ssm_decode_step`."""
    nd = ceil_div(channels, block_d)
    r = 8 * batch * channels * state + 2 * batch * channels * elem_bytes + 2 * batch * state * elem_bytes * nd
    return r + (4 * batch * channels if has_d else 0), 4 * batch * channels * state + batch * channels * elem_bytes


def linear_step_bytes(batch, heads, d, dv, elem_bytes):
    """(HBM read bytes, HBM write bytes) of :func:`linear_decode_step`."""
    return batch * heads * ((2 * d + dv) * elem_bytes + 4 * d * dv), batch * heads * (dv * elem_bytes + 4 * d * dv)

