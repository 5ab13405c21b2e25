"""FlashAttention-2's padded q tile (``pad_queries=True``): the CUDA kernel's fixed tile shape.

A query sequence shorter than the tile (decoding's single row) runs in a full B_r-row tile: the
same HBM bytes as the clamped tile (only real rows are loaded and stored), tensor-core and
softmax work and SRAM for B_r rows. Closed forms written out here, counting == executing, the
same output as the unpadded kernel, and the Flash-Decoding blog's shape (A100, 16 query heads,
2 kv heads, d = 128) compute-bound on the padding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyml.kernels.attention.flash import flash_attention
from tinyml.sim import Profile, TileConfigError, meta
from tinyml.sim.errors import ArgumentError

RECORD_FIELDS = ("grid", "n_blocks", "time_s", "hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes",
                 "flops_matmul", "flops_vector", "sram_per_block_bytes")


def fwd(q, k, v, device="a100-40gb", **kw):
    with Profile(device) as prof:
        o = flash_attention(q, k, v, version=2, **kw)
    (rec,) = prof.records
    return o, rec


def test_single_query_pads_the_tile_to_128_rows_closed_form():
    """Nq = 1, d = 128 on the A100: B_r = 128 rows of MMA and softmax per tile, bytes of the one row."""
    b, h, kvh, nk, d, s = 2, 4, 2, 1000, 128, 2
    shapes = meta((b, h, 1, d)), meta((b, kvh, nk, d)), meta((b, kvh, nk, d))
    _, clamped = fwd(*shapes, block_k=64)
    _, padded = fwd(*shapes, block_k=64, pad_queries=True)
    br, bc = 128, 64
    assert padded.grid == clamped.grid == (b, h, 1)
    assert padded.flops_matmul == 4 * d * br * nk * b * h == 128 * clamped.flops_matmul
    tiles = math.ceil(nk / bc)
    per_score = 1 + 1 + 2 + 1                                      # scale, max, exp (2), sum
    assert padded.flops_vector == b * h * br * (per_score * nk + tiles * (d + 3) + d + 2)
    for f in ("hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes"):
        assert getattr(padded, f) == getattr(clamped, f)
    assert padded.hbm_read_bytes + padded.l2_hit_bytes == b * h * d * s + 2 * b * h * nk * d * s
    assert padded.sram_per_block_bytes == (br * d + 2 * bc * d) * s       # Q_i, K_j, V_j for 128 rows
    assert clamped.sram_per_block_bytes == (1 * d + 2 * bc * d) * s
    assert padded.resource_s["matmul"] == pytest.approx(128 * clamped.resource_s["matmul"])
    assert padded.time_s > clamped.time_s


def test_partial_last_block_is_padded_too():
    """Nq = 130, B_r = 64: three q blocks, the last with 2 real rows, each computing 64 rows."""
    b, h, nq, nk, d = 1, 2, 130, 96, 16
    shapes = meta((b, h, nq, d)), meta((b, h, nk, d)), meta((b, h, nk, d))
    _, rec = fwd(*shapes, block_q=64, block_k=32, pad_queries=True)
    _, ref = fwd(*shapes, block_q=64, block_k=32)
    assert rec.flops_matmul == 4 * d * 64 * 3 * nk * b * h
    assert ref.flops_matmul == 4 * d * nq * nk * b * h
    assert rec.hbm_read_bytes + rec.l2_hit_bytes == ref.hbm_read_bytes + ref.l2_hit_bytes


@given(nq=st.integers(1, 40), nk=st.integers(1, 90), kvh=st.sampled_from((1, 2)), g=st.sampled_from((1, 2)),
       causal=st.booleans(), br=st.sampled_from((None, 16, 32)))
def test_padded_output_equals_unpadded_and_counting_equals_executing(nq, nk, kvh, g, causal, br):
    rng = np.random.default_rng(nq * 1000 + nk)
    h, d = kvh * g, 16
    q = rng.standard_normal((1, h, nq, d)).astype(np.float32)
    k = rng.standard_normal((1, kvh, nk, d)).astype(np.float32)
    v = rng.standard_normal((1, kvh, nk, d)).astype(np.float32)
    kw = dict(causal=causal, block_q=br, block_k=16)
    o_pad, executed = fwd(q, k, v, pad_queries=True, **kw)
    o_ref, _ = fwd(q, k, v, **kw)
    # the same arithmetic on a taller tile: BLAS may take another path for another number of rows
    # (OpenBLAS forwards a one-row GEMM to GEMV, and picks its small-matrix kernels by size), so a sum of
    # O(1) terms may round differently in its last bits; absolute, since a sum that cancels to ~0.08 keeps
    # the rounding of its O(1) terms (seen: 2.7e-7 at nq=32, nk=31)
    np.testing.assert_allclose(o_pad, o_ref, rtol=1e-5, atol=2e-6)
    _, counted = fwd(meta(q.shape), meta(k.shape), meta(v.shape), pad_queries=True, **kw)
    for f in RECORD_FIELDS:
        assert getattr(counted, f) == getattr(executed, f), f


def test_flash_decoding_blog_baseline_is_bound_by_the_padded_matmuls():
    """The blog's FA2 baseline at B = 1, 64K tokens: 16 blocks (one per query head), each a 128-row tile
    over 65,536 keys: 4 d 128 N FLOPs at one SM's share of the tensor-core rate, within 2x of that bound."""
    n, d = 65536, 128
    _, rec = fwd(meta((1, 16, 1, d)), meta((1, 2, n, d)), meta((1, 2, n, d)), device="a100-80gb",
                 pad_queries=True)
    assert rec.n_blocks == 16 and rec.waves == 1
    assert rec.flops_matmul == 16 * 4 * d * 128 * n
    per_sm = 312e12 / 108                                            # A100 fp16 tensor-core peak, per SM
    bound = 4 * d * 128 * n / per_sm
    assert bound < rec.time_s < 2 * bound


def test_pad_queries_is_refused_by_flash_attention_1():
    with pytest.raises(TileConfigError, match="pad_queries"):
        flash_attention(meta((1, 1, 1, 16)), meta((1, 1, 8, 16)), meta((1, 1, 8, 16)), version=1,
                        pad_queries=True)


@pytest.mark.parametrize("bad", ["no", None, 2])
def test_pad_queries_is_a_flag_not_a_truthy_value(bad):
    """``bool("no")`` is True: pad_queries goes through the shared flag check instead."""
    with Profile("a100-80gb"):
        q = meta((1, 1, 1, 64), "fp16")
        kv = meta((1, 1, 256, 64), "fp16")
        with pytest.raises(ArgumentError, match="pad_queries"):
            flash_attention(q, kv, kv, version=2, pad_queries=bad)
