"""Standard attention: the separate kernels PyTorch launched for it in 2022.

This is the baseline of the FlashAttention paper (Dao et al. 2022, Algorithm 0):
every step is its own kernel, which reads its input from HBM and writes its
output back, so the (Nq x Nk) score matrix of every (batch, head) goes to HBM
and back several times. Forward::

    S      = scale * Q K^T          attn_std_qk        bmm, scale in the epilogue
    S      = masked_fill(S, -inf)   attn_std_mask      only with causal / window / key padding
    P      = softmax(S)             attn_std_softmax   (a fully masked row gives P = 0)
    P_drop = dropout(P), keep mask  attn_std_dropout   only with dropout_p > 0
    O      = P_drop V               attn_std_pv        bmm

Backward (``standard_attention_backward``)::

    dV      = P_drop^T dO           attn_std_bwd_dv       bmm, GQA group summed in the K loop
    dP_drop = dO V^T                attn_std_bwd_dp       bmm
    dP      = dP_drop * keep/(1-p)  attn_std_bwd_dropout  only with dropout
    dS      = P * (dP - rowsum(dP * P))   attn_std_bwd_softmax
    dS      = masked_fill(dS, 0)    attn_std_bwd_mask     only with a mask
    dQ      = scale * dS K          attn_std_bwd_dq       bmm
    dK      = scale * dS^T Q        attn_std_bwd_dk       bmm, GQA group summed in the K loop

GQA: K and V are never copied per query head: the bmm maps query head h to kv
head h // group. dK and dV are summed over each group *inside* the bmm (its K
loop runs over the group's heads, :mod:`.bmm`), so no per-query-head dK/dV is
written and no reduction kernel runs; their reads are the same as a per-head
product's (every query head's dS / P_drop and Q / dO are read once per tile).

HBM traffic per kernel. Units: ``X = B H Nq Nk s`` (one score matrix), ``Q = B H
Nq d s`` (q, o, dO, dq), ``K' = B H Nk d s`` (k or v read once per *query*
head, before L2 reuse), ``KV = B KVH Nk d s`` (dk, dv), ``s`` bytes per
element, ``cdiv`` = ceiling division, BM/BN each bmm's tile sizes, BR/BC the
row kernels' tiles, ``pad = B H cdiv(Nq, BR) Nk`` bytes of key padding mask::

    kernel                 reads                                 writes
    attn_std_qk            Q cdiv(Nk, BN) + K' cdiv(Nq, BM)      X
    attn_std_mask          X  (+ pad)                            X
    attn_std_softmax       X  (2X when Nk > BC: two passes)      X
    attn_std_dropout       X                                     X + X/s  (mask, 1 B/elem)
    attn_std_pv            X cdiv(d, BN) + K' cdiv(Nq, BM)       Q
    attn_std_bwd_dv        X cdiv(d, BN) + Q cdiv(Nk, BM)        KV
    attn_std_bwd_dp        Q cdiv(Nk, BN) + K' cdiv(Nq, BM)      X
    attn_std_bwd_dropout   X + X/s                               X
    attn_std_bwd_softmax   2X (4X when Nk > BC)                  X
    attn_std_bwd_mask      X  (+ pad)                            X
    attn_std_bwd_dq        X cdiv(d, BN) + K' cdiv(Nq, BM)       Q
    attn_std_bwd_dk        X cdiv(d, BN) + Q cdiv(Nk, BM)        KV

(two passes: a row of Nk elements does not fit a row kernel's share of SRAM;
:func:`standard_expected_bytes` evaluates the table with the tiles the kernels
pick). So with d <= BN the forward moves about 8.5 X with a mask and dropout,
the backward about 11.5 X, plus the bmms' re-reads of the N x d operands (K'
and Q once per tile row or column, mostly served by L2): quadratic in N, which
is why standard attention is memory-bound and runs out of HBM long before
FlashAttention does (at 64K tokens, 16 heads, S alone is 137 GB). FLOPs: matmul ``4 B H Nq Nk d`` forward and
``8 B H Nq Nk d`` backward; vector per score as :mod:`.flops` says (SCALE in
the QK^T epilogue, MASK, ROW_MAX + EXP + ROW_SUM + NORMALIZE, DROPOUT;
backward DROPOUT - RNG_OPS, SOFTMAX_BWD, MASK, and SCALE per element of dq, dk).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...sim import FLOAT_DTYPES, DTypeError, Profile, ShapeError, canonical, current_profile, nbytes
from .._contract import Operand, ceil_div, operand
from ..matmul._tiled import resolve_tiles
from ..matmul.batched import BmmShape, launch_bmm
from ._common import AttentionCall, check_saved, prepare_attention
from .standard_dropout import dropout_backward, dropout_forward
from .standard_mask import mask_tiles, masked_fill
from .standard_rows import new_mask_tensor, row_tiles
from .standard_softmax import softmax_backward, softmax_forward, softmax_tiles


@dataclass
class StandardSaved:
    """What the forward keeps in HBM for the backward, as PyTorch's autograd does.

    * ``call``: the validated call, holding q, k (saved by the QK^T bmm for dQ
      and dK) and v (saved by the PV bmm for dP_drop = dO V^T); they are the
      caller's inputs, already in HBM: saving them costs nothing;
    * ``p``: P (B, H, Nq, Nk), saved by softmax, whose backward needs only its output;
    * ``p_drop``: P_drop, saved by the PV bmm for dV = P_drop^T dO (the same
      tensor as ``p`` without dropout);
    * ``keep``: the dropout keep mask, 1 byte per element, saved by dropout
      for its backward (None without dropout).

    S is not saved: masked_fill's backward needs only the mask (recomputed
    from the indices and the key padding mask), softmax's only P. With dropout
    that is 2 X + X / s bytes (X = B H Nq Nk s), without it X.
    """

    call: AttentionCall
    p: object
    p_drop: object
    keep: object
    blocks: dict


def _op(name: str, x, call: AttentionCall) -> Operand:
    """An intermediate (already in the HBM ledger) as a bmm operand."""
    return Operand(name, x, x if call.execute else None, tuple(x.shape), call.dtype)


def _new(name: str, call: AttentionCall):
    shape = (call.batch, call.heads, call.seq_q, call.seq_k)
    return current_profile().hbm.new_tensor(name, shape, call.dtype, call.execute)


def standard_attention(q, k, v, *, causal: bool = False, key_padding_mask=None, dropout_p: float = 0.0,
                       seed: int = 0, scale=None, window=None, dtype: str = "fp16", check_finite: bool = True,
                       return_saved: bool = False, block_m: int | None = None, block_n: int | None = None,
                       block_k: int | None = None, block_rows: int | None = None,
                       block_cols: int | None = None):
    """Attention as separate kernels, each through HBM (see the module docstring).

    q: (B, H, Nq, d); k, v: (B, KVH, Nk, d), H a multiple of KVH. Returns O
    (B, H, Nq, d) (float32 array, or a MetaTensor when counting), or (O, saved)
    with ``return_saved``. ``block_m/n/k`` fix every bmm's tiles and
    ``block_rows/cols`` the row kernels' (default: chosen from SRAM).
    """
    call = prepare_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask, dropout_p=dropout_p,
                             seed=seed, scale=scale, window=window, dtype=dtype, kernel="standard_attention",
                             check_finite=check_finite)
    mm = {"block_m": block_m, "block_n": block_n, "block_k": block_k}
    rows = {"block_rows": block_rows, "block_cols": block_cols}
    prof = current_profile()
    for op in (call.q, call.k, call.v):
        prof.hbm.track(op.obj, op.name, op.dtype)
    if call.key_padding_obj is not None:
        prof.hbm.track(call.key_padding_obj, "key_padding_mask", "int8")
    s = launch_bmm(call.q, call.k, trans_b=True, alpha=call.scale, name="attn_std_qk", out_name="S", **mm)
    if call.masked:
        masked_fill(call, s, float("-inf"), "attn_std_mask", **rows)
    p = _new("P", call)
    softmax_forward(call, s, p, "attn_std_softmax", **rows)
    del s                                         # S is dead: softmax's backward needs only P
    p_drop, keep = p, None
    if call.dropout_p > 0:
        p_drop = _new("P_drop", call)
        keep = new_mask_tensor("dropout_mask", (call.batch, call.heads, call.seq_q, call.seq_k), call.execute)
        dropout_forward(call, p, p_drop, keep, "attn_std_dropout", **rows)
    o = launch_bmm(_op("P_drop", p_drop, call), call.v, name="attn_std_pv", out_name="O", **mm)
    if return_saved:
        return o, StandardSaved(call, p, p_drop, keep, {**mm, **rows})
    return o


def standard_attention_backward(dout, saved: StandardSaved, *, check_finite: bool = True):
    """(dq, dk, dv) of ``sum(O * dout)``; dk, dv are (B, KVH, Nk, d), summed over each GQA group."""
    check_saved(saved, (StandardSaved,), "standard_attention_backward", "standard_attention")
    call = saved.call
    dO = operand(dout, "dout", ndim=4, dtype=call.dtype, allowed=FLOAT_DTYPES, check_finite=check_finite)
    want = (call.batch, call.heads, call.seq_q, call.head_dim)
    if dO.shape != want:
        raise ShapeError(f"standard_attention_backward: dout must be shaped like the output {want}, got {dO.shape}")
    if dO.execute != call.execute:
        raise DTypeError("standard_attention_backward: pass dout as an array after an executing forward, "
                         "as tinyml.sim.meta(...) after a counting one")
    if dO.dtype != call.dtype:
        raise DTypeError(f"standard_attention_backward: dout is {dO.dtype} but the forward ran in {call.dtype}")
    blocks = saved.blocks
    mm = {key: blocks[key] for key in ("block_m", "block_n", "block_k")}
    rows = {key: blocks[key] for key in ("block_rows", "block_cols")}
    prof = current_profile()
    for name, x, dt in (("P", saved.p, call.dtype), ("P_drop", saved.p_drop, call.dtype),
                        ("dropout_mask", saved.keep, "int8")):
        if x is not None:
            prof.hbm.track(x, name, dt)           # no-op in the forward's profile
    g = call.group
    dv = launch_bmm(_op("P_drop", saved.p_drop, call), dO, trans_a=True, reduce_group=g,
                    name="attn_std_bwd_dv", out_name="dv", **mm)
    dp = launch_bmm(dO, call.v, trans_b=True, name="attn_std_bwd_dp", out_name="dP_drop", **mm)
    if call.dropout_p > 0:
        dp_drop, dp = dp, _new("dP", call)
        dropout_backward(call, dp_drop, saved.keep, dp, "attn_std_bwd_dropout", **rows)
        del dp_drop
    ds = _new("dS", call)
    softmax_backward(call, saved.p, dp, ds, "attn_std_bwd_softmax", **rows)
    del dp
    if call.masked:
        masked_fill(call, ds, 0.0, "attn_std_bwd_mask", **rows)
    dq = launch_bmm(_op("dS", ds, call), call.k, alpha=call.scale, name="attn_std_bwd_dq", out_name="dq", **mm)
    dk = launch_bmm(_op("dS", ds, call), call.q, trans_a=True, alpha=call.scale, reduce_group=g,
                    name="attn_std_bwd_dk", out_name="dk", **mm)
    return dq, dk, dv


def standard_expected_bytes(batch: int, heads: int, kv_heads: int, seq_q: int, seq_k: int, head_dim: int, *,
                            dtype: str = "fp16", masked: bool = False, padded: bool = False,
                            dropout: bool = False, device=None, **blocks) -> dict:
    """{kernel name: (HBM read bytes before L2 reuse, HBM write bytes)}: the table above, evaluated
    with the tiles the kernels pick on ``device`` (or the given ``block_m/n/k``, ``block_rows/cols``)."""
    dtype = canonical(dtype, FLOAT_DTYPES)
    s = nbytes(1, dtype)                                 # fp16/bf16/fp32: whole bytes
    B, H, KVH, Nq, Nk, d = batch, heads, kv_heads, seq_q, seq_k, head_dim
    X, E = B * H * Nq * Nk * s, B * H * Nq * Nk          # a score matrix; its elements (mask bytes)
    Q, K_, KV = B * H * Nq * d * s, B * H * Nk * d * s, B * KVH * Nk * d * s
    mm = {key: blocks.get(key) for key in ("block_m", "block_n", "block_k")}
    rb = {key: blocks.get(key) for key in ("block_rows", "block_cols")}
    with Profile(device if device is not None else current_profile().device):
        def tiles(m, n, k, group=1):
            shape = BmmShape(B, H, H, m, n, k, group, False, False, dtype)
            t, _ = resolve_tiles(shape, mm["block_m"], mm["block_n"], mm["block_k"], "standard_expected_bytes")
            return t.block_m, t.block_n
        qk_m, qk_n = tiles(Nq, Nk, d)
        pv_m, pv_n = tiles(Nq, d, Nk)
        dv_m, dv_n = tiles(Nk, d, Nq, H // KVH)
        rows = {name: row_tiles(Nq, Nk, fn, name, **rb) for name, fn in (
            ("mask", mask_tiles(dtype, padded)), ("softmax", softmax_tiles(dtype, 1)),
            ("softmax_bwd", softmax_tiles(dtype, 2)))}
    pad = B * H * ceil_div(Nq, rows["mask"].block_rows) * Nk if padded else 0
    two_fwd = rows["softmax"].chunks(Nk) > 1
    two_bwd = rows["softmax_bwd"].chunks(Nk) > 1
    out = {"attn_std_qk": (Q * ceil_div(Nk, qk_n) + K_ * ceil_div(Nq, qk_m), X)}
    if masked:
        out["attn_std_mask"] = (X + pad, X)
    out["attn_std_softmax"] = ((2 if two_fwd else 1) * X, X)
    if dropout:
        out["attn_std_dropout"] = (X, X + E)
    out["attn_std_pv"] = (X * ceil_div(d, pv_n) + K_ * ceil_div(Nq, pv_m), Q)
    out["attn_std_bwd_dv"] = (X * ceil_div(d, dv_n) + Q * ceil_div(Nk, dv_m), KV)
    out["attn_std_bwd_dp"] = (Q * ceil_div(Nk, qk_n) + K_ * ceil_div(Nq, qk_m), X)
    if dropout:
        out["attn_std_bwd_dropout"] = (X + E, X)
    out["attn_std_bwd_softmax"] = ((4 if two_bwd else 2) * X, X)
    if masked:
        out["attn_std_bwd_mask"] = (X + pad, X)
    out["attn_std_bwd_dq"] = (X * ceil_div(d, pv_n) + K_ * ceil_div(Nq, pv_m), Q)
    out["attn_std_bwd_dk"] = (X * ceil_div(d, dv_n) + Q * ceil_div(Nk, dv_m), KV)
    return out
