"""Decoding attention (plain and Flash-Decoding split-KV) and the KV cache.

Numerics against the float64 reference with FlashAttention's rule (each
sequence attends to its first cache_len keys: the reference runs on that
prefix): max error <= 2x the naive float32 implementation's + 1e-6 + the
float32 rounding floor of the scores (as in test_attention_flash2).

Also: counting mode == executing mode; HBM bytes and FLOPs == the docstring
formulas, written out here from the shapes and lengths; the split count rule;
the simulated Flash-Decoding speed-up against the cost model's bounds; the KV
cache's append kernel, overflow and bytes per token; errors; NUMBA_DISABLE_JIT.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import (ELEM_BYTES, any_devices, attention_tolerance, block_sizes, logical_dtypes,
                        naive_float32_attention, seeds)
from tinyml.kernels import reference
from tinyml.kernels.attention.decode import decode_attention
from tinyml.kernels.attention.decode_split import auto_splits
from tinyml.kernels.attention.kv_cache import CacheLengthError, KVCache, KVCacheFullError, bytes_per_token
from tinyml.sim import (DTypeError, MetaTensor, NonFiniteError, Profile, ShapeError, SramOverflowError,
                        TileConfigError, TinymlError, load_device, meta)

COUNTER_FIELDS = ("name", "grid", "n_blocks", "dtype", "time_s", "cycles", "bound", "limiter", "waves",
                  "blocks_per_sm", "sram_per_block_bytes", "hbm_read_bytes", "hbm_write_bytes", "l2_hit_bytes",
                  "sram_read_bytes", "sram_write_bytes", "flops_matmul", "flops_vector", "peak_hbm_bytes",
                  "resource_s", "stream")
EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module", autouse=True)
def warm():
    """Compile (or load) every decode body once, in both modes, outside the hypothesis examples."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 1, 4)).astype(np.float32)
    k, v = (rng.standard_normal((1, 1, 5, 4)).astype(np.float32) for _ in range(2))
    with Profile("a100-40gb"):
        for x in ((q, k, v), (meta(q.shape), meta(k.shape), meta(v.shape))):
            for s in (1, 2):
                decode_attention(*x, cache_len=5, split_kv=s, block_k=2)
        for execute in (True, False):
            cache = KVCache(1, 1, 5, 4, execute=execute)
            new = k[:, :, :2] if execute else meta((1, 1, 2, 4))
            cache.append(new, new)


def run(q, k, v, device="a100-40gb", **kw):
    """decode_attention in a fresh profile: (o, records)."""
    with Profile(device) as prof:
        o = decode_attention(q, k, v, **kw)
    return o, prof.records


def max_err(x, ref):
    return float(np.abs(np.asarray(x, np.float64) - ref).max())


def output_tolerance(q, k, v, ref_o, scale=None):
    """FlashAttention's rule for one sequence (q (1, H, 1, d), k, v its cache prefix): 2x the naive float32
    error + 1e-6 + eps x the drift that holding each score in float32 causes (see test_attention_flash2)."""
    naive = naive_float32_attention(q, k, v, scale=scale)
    g = q.shape[1] // k.shape[1]
    k64, v64 = np.repeat(k, g, axis=1).astype(np.float64), np.repeat(v, g, axis=1).astype(np.float64)
    sc = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = np.abs(sc * (q.astype(np.float64) @ np.swapaxes(k64, -1, -2)))            # (1, H, 1, n)
    p, _, _ = reference._attention_probs(q, k, False, None, 0.0, 0, scale, (-1, -1))
    drift = (p * s) @ np.abs(v64) + np.abs(ref_o) * (p * s).sum(axis=-1, keepdims=True)
    return attention_tolerance(max_err(naive, ref_o)) + EPS32 * float(drift.max())


def assert_matches_reference(o, q, k, v, lens, scale=None):
    q4 = q if q.ndim == 4 else q[:, :, None, :]                                    # (B, H, 1, d)
    o4 = o if o.ndim == 4 else o[:, :, None, :]
    for b, n in enumerate(lens):
        qb, kb, vb = q4[b:b + 1], k[b:b + 1, :, :n], v[b:b + 1, :, :n]
        ref_o, _ = reference.attention(qb, kb, vb, scale=scale)
        assert max_err(o4[b:b + 1], ref_o) <= output_tolerance(qb, kb, vb, ref_o, scale), f"sequence {b}"


@st.composite
def decode_inputs(draw, max_len: int = 70, head_dims=(1, 3, 8, 16, 59, 64)):
    """q (B, H, 1, d) or (B, H, d), k, v caches (B, KVH, L, d) and cache lengths (ints, incl. 1 and L)."""
    b = draw(st.integers(1, 3))
    kvh = draw(st.sampled_from((1, 2)))
    h = kvh * draw(st.sampled_from((1, 2, 3)))
    L = draw(st.one_of(st.sampled_from((1, 2, 17, 64)), st.integers(1, max_len)))
    d = draw(st.sampled_from(head_dims))
    lens = [draw(st.one_of(st.just(1), st.just(L), st.integers(1, L))) for _ in range(b)]
    rng = np.random.default_rng(draw(seeds()))
    amp = draw(st.sampled_from((1.0, 1.0, 10.0, 100.0)))
    q_shape = (b, h, 1, d) if draw(st.booleans()) else (b, h, d)
    q = (amp * rng.standard_normal(q_shape)).astype(np.float32)
    k = (amp * rng.standard_normal((b, kvh, L, d))).astype(np.float32)             # (B, KVH, L, d)
    v = rng.standard_normal((b, kvh, L, d)).astype(np.float32)                     # (B, KVH, L, d)
    for i, n in enumerate(lens):                     # positions past the length are never read
        k[i, :, n:] = np.nan
        v[i, :, n:] = np.inf
    cache_len = lens[0] if b == 1 and draw(st.booleans()) else np.array(lens)
    return q, k, v, cache_len, lens


def splits():
    return st.one_of(st.none(), st.integers(1, 8))


# ---- numerics ----------------------------------------------------------------------------------

@given(inputs=decode_inputs(), split=splits(), bk=st.one_of(st.none(), block_sizes(20)),
       scale=st.sampled_from((None, None, 0.05, 1.0)))
def test_decode_matches_reference(inputs, split, bk, scale):
    q, k, v, cache_len, lens = inputs
    o, recs = run(q, k, v, cache_len=cache_len, split_kv=split, block_k=bk, scale=scale)
    assert o.shape == q.shape and o.dtype == np.float32
    assert_matches_reference(o, q, k, v, lens, scale)
    names = [r.name for r in recs]
    assert names == ["decode"] or names == ["decode_split", "decode_combine"]
    if split is not None:
        assert names == (["decode"] if split == 1 else ["decode_split", "decode_combine"])


def test_more_splits_than_tiles_and_uneven_lengths():
    """S = 8 on caches of 1 to 3 tiles: the empty chunks do nothing and the result is still exact."""
    rng = np.random.default_rng(5)
    q = rng.standard_normal((3, 4, 1, 16)).astype(np.float32)
    k, v = (rng.standard_normal((3, 2, 40, 16)).astype(np.float32) for _ in range(2))
    lens = np.array([1, 16, 40])
    o, recs = run(q, k, v, cache_len=lens, split_kv=8, block_k=16)
    assert_matches_reference(o, q, k, v, lens)
    assert recs[0].grid == (3, 2, 8)
    # used chunks: 1 tile -> 1, 1 tile -> 1, 3 tiles -> 3 (one tile each); each used chunk of a
    # (sequence, kv head) writes group x (4 d + 4) bytes: 2 x (1 + 1 + 3) x 2 x 68
    assert recs[0].hbm_write_bytes == 2 * 5 * 2 * 68


def test_big_logits_stay_finite():
    rng = np.random.default_rng(2)
    q = (1e3 * rng.standard_normal((1, 2, 1, 16))).astype(np.float32)
    k = (1e3 * rng.standard_normal((1, 1, 300, 16))).astype(np.float32)
    v = rng.standard_normal((1, 1, 300, 16)).astype(np.float32)
    for split in (1, 4):
        o, _ = run(q, k, v, cache_len=300, split_kv=split, block_k=32)
        assert np.all(np.isfinite(o))
        assert_matches_reference(o, q, k, v, [300])


# ---- counting mode == executing mode --------------------------------------------------------------

@given(dev=any_devices(), inputs=decode_inputs(head_dims=(1, 3, 8, 16)), split=splits(),
       bk=st.one_of(st.none(), block_sizes(20)), dtype=logical_dtypes())
def test_counting_mode_equals_executing_mode(dev, inputs, split, bk, dtype):
    q, k, v, cache_len, lens = inputs
    kw = dict(cache_len=[int(n) for n in lens], split_kv=split, block_k=bk, dtype=dtype)
    try:
        _, executed = run(q, k, v, device=dev, **kw)
    except SramOverflowError:
        with pytest.raises(SramOverflowError):
            run(meta(q.shape, dtype), meta(k.shape, dtype), meta(v.shape, dtype), device=dev, **kw)
        return
    o, counted = run(meta(q.shape, dtype), meta(k.shape, dtype), meta(v.shape, dtype), device=dev, **kw)
    assert isinstance(o, MetaTensor) and o.shape == q.shape and o.dtype == dtype
    assert len(counted) == len(executed)
    for c, e in zip(counted, executed):
        for field in COUNTER_FIELDS:
            assert getattr(c, field) == getattr(e, field), (c.name, field)


# ---- HBM bytes and FLOPs == the docstring formulas --------------------------------------------------

def expected_plain(b, h, kvh, d, s, lens, bc):
    """(reads, writes, matmul FLOPs, vector FLOPs) of `decode` (decode.py's docstring)."""
    total = sum(lens)
    tiles = sum(math.ceil(n / bc) for n in lens)
    return (b * h * d * s + 2 * kvh * d * s * total, b * h * d * s, 4 * h * d * total,
            h * (5 * total + (d + 3) * tiles) + b * h * d)


def used_chunks(n, bc, splits):
    """How many of the S chunks of a cache of n keys hold a tile, by walking the chunks."""
    tiles = math.ceil(n / bc)
    per = math.ceil(tiles / splits)
    return sum(1 for c in range(splits) if c * per < tiles)


def expected_split(b, h, kvh, d, s, lens, bc, splits):
    """[(reads, writes, matmul FLOPs, vector FLOPs)] of `decode_split` and `decode_combine` (decode_split.py)."""
    total = sum(lens)
    tiles = sum(math.ceil(n / bc) for n in lens)
    used = sum(used_chunks(n, bc, splits) for n in lens)
    return [(h * d * s * used + 2 * kvh * d * s * total, h * (4 * d + 4) * used, 4 * h * d * total,
             h * (5 * total + (d + 3) * tiles + (d + 2) * used)),
            (h * (4 * d + 4) * used, b * h * d * s, 0, h * (2 * d + 4) * used + b * h * d)]


def raw(rec):
    return rec.hbm_read_bytes + rec.l2_hit_bytes, rec.hbm_write_bytes, rec.flops_matmul, rec.flops_vector


@given(b=st.integers(1, 3), kvh=st.sampled_from((1, 2, 4)), g=st.sampled_from((1, 2, 8)),
       L=st.integers(1, 3000), d=st.sampled_from((1, 64, 80, 128)), bc=st.one_of(st.none(), block_sizes(128)),
       split=st.one_of(st.none(), st.integers(1, 40)), dtype=logical_dtypes(), data=st.data())
def test_bytes_and_flops_equal_the_formulas(b, kvh, g, L, d, bc, split, dtype, data):
    h, s = kvh * g, ELEM_BYTES[dtype]
    lens = data.draw(st.lists(st.one_of(st.just(1), st.just(L), st.integers(1, L)), min_size=b, max_size=b))
    _, recs = run(meta((b, h, 1, d), dtype), meta((b, kvh, L, d), dtype), meta((b, kvh, L, d), dtype),
                  cache_len=lens, split_kv=split, block_k=bc, dtype=dtype)
    block_k = min(bc, L) if bc else min(128, L)          # d <= 128, group <= 8: 128 rows always fit an A100
    assert all(r.l2_hit_bytes == 0 for r in recs)
    if recs[0].name == "decode":
        assert split in (None, 1)
        assert recs[0].grid == (b, kvh)
        assert raw(recs[0]) == expected_plain(b, h, kvh, d, s, lens, block_k)
    else:
        S = recs[0].grid[2]
        assert split in (None, S) and recs[0].grid == (b, kvh, S) and recs[1].grid == (b, h)
        assert [raw(r) for r in recs] == expected_split(b, h, kvh, d, s, lens, block_k, S)


def test_gqa_reads_each_kv_head_once():
    """Llama-2-70B-like GQA (64 query heads, 8 kv heads): K and V are read once per kv head, not per query head."""
    b, h, kvh, n, d = 2, 64, 8, 4096, 128
    _, recs = run(meta((b, h, 1, d)), meta((b, kvh, n, d)), meta((b, kvh, n, d)), cache_len=n, split_kv=1)
    assert recs[0].hbm_read_bytes == b * h * d * 2 + 2 * b * kvh * n * d * 2
    assert recs[0].grid == (b, kvh)


@pytest.mark.parametrize("split", (1, 2))
def test_a_requested_block_k_longer_than_the_cache_is_clamped_visibly(split):
    """block_k=128 over a cache of L = 5 runs 5-row tiles: the same records as block_k=5, and the
    (split) kernel's notes say so; the combine kernel has no block_k."""
    x = (meta((1, 2, 1, 8)), meta((1, 1, 5, 8)), meta((1, 1, 5, 8)))
    _, asked = run(*x, cache_len=4, split_kv=split, block_k=128)
    _, exact = run(*x, cache_len=4, split_kv=split, block_k=5)
    for a, e in zip(asked, exact):
        assert {**a.to_dict(), "notes": []} == e.to_dict()
    assert asked[0].notes == ("block_k=128 clamped to the cache's L = 5: no tile is longer than its sequence",)
    assert all(r.notes == () for r in asked[1:] + exact)


def test_default_block_k_and_sram():
    """B_c = 128 for Llama-2-7B shapes; one block keeps Q, K_j, V_j (fp16) in SRAM and S/P, O, m, l (fp32)
    in registers, or everything in SRAM on a device without a register file (m2-max)."""
    _, recs = run(meta((1, 32, 1, 128)), meta((1, 32, 4096, 128)), meta((1, 32, 4096, 128)), cache_len=4096,
                  split_kv=1)
    assert recs[0].sram_per_block_bytes == (128 + 2 * 128 * 128) * 2
    _, recs = run(meta((1, 1, 1, 8)), meta((1, 1, 5, 8)), meta((1, 1, 5, 8)), cache_len=3, split_kv=1)
    assert recs[0].sram_per_block_bytes == (8 + 2 * 5 * 8) * 2                       # B_c clamped to L = 5
    assert recs[0].notes == ()                                                        # (not asked for)
    _, recs = run(meta((1, 2, 1, 8)), meta((1, 1, 5, 8)), meta((1, 1, 5, 8)), device="m2-max", cache_len=3,
                  split_kv=1, block_k=4)
    assert recs[0].sram_per_block_bytes == (2 * 8 + 2 * 4 * 8) * 2 + (2 * 4 + 2 * 8 + 2 * 2) * 4


# ---- the split count ---------------------------------------------------------------------------------

def test_auto_splits_worked_examples():
    a100 = load_device("a100-40gb")            # 108 SMs
    # Llama-2-7B, batch 1, 64K tokens (512 tiles): 32 S blocks; S = 1, 2 fill 30%, 59% of a wave;
    # S = 3 fills 96 / 108 = 89% >= 85% of the best (S = 27: 864 blocks = 8 full waves)
    assert auto_splits(a100, 1, 32, 512) == 3
    assert auto_splits(a100, 3, 32, 512) == 1          # 96 blocks >= 0.8 x 108: no split
    assert auto_splits(a100, 1, 1, 512) == 103         # MQA: 103 / 108 = 95% is the first >= 85% of 100%
    assert auto_splits(a100, 1, 1, 5) == 5             # bounded by the number of tiles
    assert auto_splits(a100, 1, 1, 1) == 1


@given(dev=any_devices(), b=st.integers(1, 64), kvh=st.integers(1, 64), tiles=st.integers(1, 3000))
def test_auto_splits_rule(dev, b, kvh, tiles):
    s = auto_splits(dev, b, kvh, tiles)
    sms = dev.sm_count
    if b * kvh >= 0.8 * sms:
        assert s == 1
        return
    top = min(128, sms, tiles)
    assert 1 <= s <= top

    def eff(x):
        return (b * kvh * x / sms) / math.ceil(b * kvh * x / sms)

    ok = [x for x in range(1, top + 1) if x == 1 or -(-tiles // x) != -(-tiles // (x - 1))]
    best = max(eff(x) for x in ok)
    assert s in ok and eff(s) >= 0.85 * best
    assert all(eff(x) < 0.85 * best for x in ok if x < s)


def test_split_kv_none_uses_the_auto_rule():
    _, recs = run(meta((1, 32, 1, 128)), meta((1, 32, 65536, 128)), meta((1, 32, 65536, 128)), cache_len=65536)
    assert recs[0].grid == (1, 32, 3)
    _, recs = run(meta((4, 32, 1, 128)), meta((4, 32, 1024, 128)), meta((4, 32, 1024, 128)), cache_len=1024)
    assert [r.name for r in recs] == ["decode"]


# ---- the simulated effect: Flash-Decoding at batch 1 ---------------------------------------------------

def fair_share_time(dev, n_bytes, n_sms):
    """Seconds to stream n_bytes on n_sms SMs, each at its 1/sm_count share of the achievable HBM bandwidth."""
    return n_bytes / (dev.hbm_bandwidth * dev.eff_hbm * n_sms / dev.sm_count)


@pytest.mark.parametrize("kvh", [32, 8, 1])
def test_split_kv_speedup_at_64k_is_bounded_by_the_idle_sms(kvh):
    """Batch 1, 32 query heads, d = 128, 64K tokens, fp16 on a100-40gb. The plain kernel runs kvh blocks,
    each on its own SM at its share of the bandwidth: it can be no faster than streaming K and V on kvh
    SMs. Flash-Decoding uses (nearly) every SM, so it is no faster than streaming on all 108, and the
    speed-up is at most 108 / kvh: ~3x for Llama-2-7B (32 kv heads), ~13x for GQA-8, ~100x for MQA."""
    dev = load_device("a100-40gb")
    n, d = 65536, 128
    kv_bytes = 2 * kvh * n * d * 2
    times = {}
    for split in (1, None):
        with Profile(dev) as prof:
            decode_attention(meta((1, 32, 1, d)), meta((1, kvh, n, d)), meta((1, kvh, n, d)), cache_len=n,
                             split_kv=split)
        times[split] = prof.time_s
    plain_floor = fair_share_time(dev, kv_bytes, kvh)
    split_floor = fair_share_time(dev, kv_bytes, dev.sm_count)
    assert plain_floor <= times[1] <= 1.3 * plain_floor          # memory-bound: within 30% of the floor
    assert split_floor <= times[None]
    ceiling = dev.sm_count / kvh
    assert 0.5 * ceiling <= times[1] / times[None] <= ceiling     # launches and the combine cost the rest


# ---- the KV cache ------------------------------------------------------------------------------------------

def test_bytes_per_token():
    assert bytes_per_token(32, 32, 128, "fp16") == 2 * 32 * 32 * 128 * 2     # Llama-2-7B: 512 KiB
    assert bytes_per_token(80, 8, 128, "fp16") == 2 * 80 * 8 * 128 * 2      # Llama-2-70B (GQA-8)
    assert bytes_per_token(1, 1, 3, "fp32") == 2 * 3 * 4
    with pytest.raises(ShapeError):
        bytes_per_token(0, 32, 128)


def test_cache_allocates_k_and_v_in_hbm():
    with Profile("a100-40gb") as prof:
        cache = KVCache(2, 4, 1000, 64, dtype="bf16", execute=False)
        assert prof.hbm.used == 2 * 2 * 4 * 1000 * 64 * 2 == cache.nbytes
        assert isinstance(cache.k, MetaTensor) and cache.k.shape == (2, 4, 1000, 64)
        del cache
        assert prof.hbm.used == 0


def test_append_writes_the_right_rows_and_counts_its_bytes():
    rng = np.random.default_rng(7)
    B, KVH, L, d = 3, 2, 6, 5
    with Profile("a100-40gb") as prof:
        cache = KVCache(B, KVH, L, d)
        prompt_k, prompt_v = (rng.standard_normal((B, KVH, 4, d)).astype(np.float32) for _ in range(2))
        cache.append(prompt_k, prompt_v, n_new=[4, 1, 2])                 # a ragged prompt
        step_k, step_v = (rng.standard_normal((B, KVH, d)).astype(np.float32) for _ in range(2))
        cache.append(step_k, step_v)                                      # one token each
    assert cache.lengths.tolist() == [5, 2, 3]
    for b, n in enumerate([4, 1, 2]):
        np.testing.assert_array_equal(cache.k[b, :, :n], prompt_k[b, :, :n])
        np.testing.assert_array_equal(cache.v[b, :, :n], prompt_v[b, :, :n])
        np.testing.assert_array_equal(cache.k[b, :, n], step_k[b])
        np.testing.assert_array_equal(cache.v[b, :, n], step_v[b])
        assert np.all(cache.k[b, :, n + 1:] == 0)                         # nothing else written
    first, second = prof.records
    assert first.name == "kv_append" and first.grid == (B, KVH)
    assert first.hbm_read_bytes == first.hbm_write_bytes == 2 * KVH * d * 2 * (4 + 1 + 2)
    assert second.hbm_read_bytes == second.hbm_write_bytes == 2 * KVH * d * 2 * B


@given(seed=seeds(), b=st.integers(1, 3), kvh=st.integers(1, 2), L=st.integers(1, 12), d=st.sampled_from((1, 3, 8)),
       steps=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 2 ** 16)), min_size=1, max_size=6))
def test_append_matches_a_list_model(seed, b, kvh, L, d, steps):
    """Random ragged appends: the cache holds exactly what a list-of-rows model holds, every launch moves
    2 kv_heads d s bytes per token each way, and an append is refused exactly when a sequence would pass L."""
    rng = np.random.default_rng(seed)
    model = [[] for _ in range(b)]                       # model[i]: the (KVH, d) rows of K of sequence i
    with Profile("a100-40gb") as prof:
        cache = KVCache(b, kvh, L, d, dtype="fp32")
        for t, pick in steps:
            n_new = np.random.default_rng(pick).integers(0, t + 1, size=b)
            new = rng.standard_normal((b, kvh, t, d)).astype(np.float32)          # (B, KVH, T, d)
            if any(len(model[i]) + n_new[i] > L for i in range(b)):
                with pytest.raises(KVCacheFullError):
                    cache.append(new, -new, n_new=n_new)
                continue
            launches = len(prof.records)
            cache.append(new, -new, n_new=n_new)
            for i in range(b):
                model[i].extend(new[i, :, j] for j in range(n_new[i]))
            rec = prof.records[launches]
            assert rec.hbm_read_bytes == rec.hbm_write_bytes == 2 * kvh * d * 4 * int(n_new.sum())
    assert cache.lengths.tolist() == [len(m) for m in model]
    for i, rows in enumerate(model):
        if rows:
            np.testing.assert_array_equal(cache.k[i, :, :len(rows)], np.stack(rows, axis=1))
            np.testing.assert_array_equal(cache.v[i, :, :len(rows)], -np.stack(rows, axis=1))


def test_partials_live_only_during_the_step():
    """The fp32 partials are allocated for the split kernel and freed after the combine: peak HBM
    includes them, what stays live is q, the caches and o."""
    b, h, kvh, n, d, S = 1, 4, 2, 256, 64, 4
    with Profile("a100-40gb") as prof:
        q, k, v = meta((b, h, 1, d)), meta((b, kvh, n, d)), meta((b, kvh, n, d))
        o = decode_attention(q, k, v, cache_len=n, split_kv=S)
        live = b * h * d * 2 + 2 * b * kvh * n * d * 2 + b * h * d * 2        # q, k, v, o
        assert prof.hbm.used == live
        assert prof.hbm.peak == live + S * b * h * d * 4 + S * b * h * 4       # + o_partial, lse_partial
    del o


def test_append_counting_equals_executing():
    recs = {}
    for execute in (True, False):
        with Profile("a100-40gb") as prof:
            cache = KVCache(2, 3, 9, 4, execute=execute)
            new = np.ones((2, 3, 5, 4), np.float32) if execute else meta((2, 3, 5, 4))
            cache.append(new, new, n_new=[5, 0])
            cache.append(new, new, n_new=2)
        recs[execute] = prof.records
        assert cache.lengths.tolist() == [7, 2]
    for c, e in zip(recs[False], recs[True]):
        for field in COUNTER_FIELDS:
            assert getattr(c, field) == getattr(e, field), field


def test_append_refuses_to_overflow():
    with Profile("a100-40gb"):
        cache = KVCache(2, 1, 3, 4)
        cache.append(np.ones((2, 1, 3, 4), np.float32), np.ones((2, 1, 3, 4), np.float32), n_new=[3, 1])
        with pytest.raises(KVCacheFullError, match=r"sequence 0 holds 3 tokens and appends 1.*max_len 3"):
            cache.append(np.ones((2, 1, 4), np.float32), np.ones((2, 1, 4), np.float32))
        assert cache.lengths.tolist() == [3, 1]                          # nothing appended
        cache.append(np.ones((2, 1, 4), np.float32), np.ones((2, 1, 4), np.float32), n_new=[0, 1])
        assert cache.lengths.tolist() == [3, 2]
        with pytest.raises(ShapeError):
            cache.append(np.ones((2, 2, 4), np.float32), np.ones((2, 2, 4), np.float32))   # wrong kv_heads
        with pytest.raises(CacheLengthError):
            cache.append(np.ones((2, 1, 4), np.float32), np.ones((2, 1, 4), np.float32), n_new=[2, 0])  # 2 > T
        with pytest.raises(DTypeError):
            cache.append(meta((2, 1, 4)), meta((2, 1, 4)))               # arrays cache, meta tokens


def test_generate_with_the_cache_matches_the_reference():
    """Prefill a ragged batch, then decode three steps; every step equals attention over the prefix."""
    rng = np.random.default_rng(11)
    B, H, KVH, L, d = 2, 4, 2, 12, 8
    ks, vs = (rng.standard_normal((B, KVH, L, d)).astype(np.float32) for _ in range(2))
    prompt = np.array([5, 2])
    with Profile("a100-40gb") as prof:
        cache = KVCache(B, KVH, L, d)
        cache.append(ks[:, :, :5], vs[:, :, :5], n_new=prompt)
        for step in range(3):
            pos = cache.lengths.copy()
            cache.append(ks[np.arange(B), :, pos], vs[np.arange(B), :, pos])
            q = rng.standard_normal((B, H, d)).astype(np.float32)
            o = cache.attend(q, split_kv=2, block_k=2)
            assert_matches_reference(o, q, ks, vs, cache.lengths.tolist())
    assert [r.name for r in prof.records][:4] == ["kv_append", "kv_append", "decode_split", "decode_combine"]


# ---- errors -------------------------------------------------------------------------------------------------

def test_errors():
    q, k = meta((2, 4, 1, 16)), meta((2, 2, 8, 16))
    with pytest.raises(ShapeError, match="one new query token"):
        decode_attention(meta((2, 4, 3, 16)), k, k, cache_len=8)
    with pytest.raises(ShapeError):
        decode_attention(meta((2, 4, 16, 1, 1)), k, k, cache_len=8)
    with pytest.raises(ShapeError):
        decode_attention(q, k, meta((2, 2, 9, 16)), cache_len=8)          # k and v differ
    with pytest.raises(ShapeError, match="does not divide"):
        decode_attention(q, meta((2, 3, 8, 16)), meta((2, 3, 8, 16)), cache_len=8)
    with pytest.raises(ShapeError, match="batch"):
        decode_attention(q, meta((1, 2, 8, 16)), meta((1, 2, 8, 16)), cache_len=8)
    with pytest.raises(ShapeError, match="head_dim"):
        decode_attention(q, meta((2, 2, 8, 15)), meta((2, 2, 8, 15)), cache_len=8)
    for bad in (0, 9, [8, 0], [9, 1]):
        with pytest.raises(CacheLengthError, match=r"outside \[1, 8\]"):
            decode_attention(q, k, k, cache_len=bad)
    with pytest.raises(CacheLengthError, match="2 ints"):
        decode_attention(q, k, k, cache_len=[1, 2, 3])
    with pytest.raises(DTypeError):
        decode_attention(q, k, k, cache_len=[1.5, 2.0])
    with pytest.raises(DTypeError):
        decode_attention(q, k, k, cache_len=True)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(TileConfigError, match="split_kv"):
            decode_attention(q, k, k, cache_len=8, split_kv=bad)
    with pytest.raises(TileConfigError):
        decode_attention(q, k, k, cache_len=8, block_k=0)
    with pytest.raises(TileConfigError):
        decode_attention(q, k, k, cache_len=8, scale=float("nan"))
    with pytest.raises(SramOverflowError, match="block_k"):
        decode_attention(meta((1, 1, 1, 512)), meta((1, 1, 4096, 512)), meta((1, 1, 4096, 512)), cache_len=8,
                         block_k=1024)
    with pytest.raises(TinymlError):
        decode_attention(np.zeros((2, 4, 1, 16), np.float32), k, k, cache_len=8)   # arrays mixed with meta


def test_nan_is_refused_only_where_it_is_read():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((1, 1, 1, 4)).astype(np.float32)
    k, v = (rng.standard_normal((1, 1, 6, 4)).astype(np.float32) for _ in range(2))
    k[0, 0, 4, 1] = np.nan
    o, _ = run(q, k, v, cache_len=4)                                     # position 4 is never read
    assert np.all(np.isfinite(o))
    with pytest.raises(NonFiniteError, match=r"k_cache .* index \(0, 0, 4, 1\)"):
        run(q, k, v, cache_len=5)
    q[0, 0, 0, 2] = np.inf
    with pytest.raises(NonFiniteError):
        run(q, k, v, cache_len=2)


# ---- NUMBA_DISABLE_JIT ---------------------------------------------------------------------------------------

def test_runs_with_jit_disabled(tmp_path):
    """NUMBA_DISABLE_JIT=1 runs the plain, split and combine kernels and the append as plain Python."""
    script = """
import json, numpy as np, warnings
warnings.simplefilter("ignore")
from tinyml.kernels.attention.decode import decode_attention
from tinyml.kernels.attention.kv_cache import KVCache
from tinyml.sim import Profile
rng = np.random.default_rng(0)
q = rng.standard_normal((2, 2, 1, 3)).astype(np.float32)
k, v = (rng.standard_normal((2, 1, 7, 3)).astype(np.float32) for _ in range(2))
with Profile("toy") as p:
    outs = [decode_attention(q, k, v, cache_len=[7, 2], split_kv=s, block_k=2) for s in (1, 3)]
    cache = KVCache(2, 1, 7, 3)
    cache.append(k, v, n_new=[7, 2])
print(json.dumps([[o.tolist() for o in outs], cache.k.tolist(), [r.to_dict() for r in p.records]]))
"""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    outs, cache_k, records = json.loads(proc.stdout)
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 2, 1, 3)).astype(np.float32)
    k, v = (rng.standard_normal((2, 1, 7, 3)).astype(np.float32) for _ in range(2))
    with Profile("toy") as p:
        jits = [decode_attention(q, k, v, cache_len=[7, 2], split_kv=s, block_k=2) for s in (1, 3)]
        cache = KVCache(2, 1, 7, 3)
        cache.append(k, v, n_new=[7, 2])
    for o, jo in zip(outs, jits):
        np.testing.assert_allclose(o, jo, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(cache_k, cache.k)
    assert len(records) == len(p.records)
    for rec, jrec in zip(records, p.records):
        jd = jrec.to_dict()
        for field in COUNTER_FIELDS:
            assert rec[field] == (list(jd[field]) if field == "grid" else jd[field]), (rec["name"], field)
