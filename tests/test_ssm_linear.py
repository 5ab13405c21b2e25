"""Linear attention (recurrent, quadratic, chunked) and the decoding steps: the three forms agree with the
float64 reference across odd lengths and chunk sizes that do not divide them, counting == executing,
HBM bytes and FLOPs == the docstring formulas, decoding token by token == the whole sequence, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import ELEM_BYTES, block_sizes, dims, examples, logical_dtypes, seeds
from tinyml.kernels.ssm import (linear_attention_chunked, linear_attention_chunked_backward, linear_attention_quadratic, linear_attention_recurrent,
                                linear_decode_step, ssm_decode_step)
from test_ssm_scan import scan_inputs
from tinyml.kernels.ssm import reference as R
from tinyml.sim import DTypeError, NonFiniteError, Profile, ShapeError, TileConfigError, meta

FORMS = {"chunked": (linear_attention_chunked, "chunk"), "recurrent": (linear_attention_recurrent, "chunk"),
         "quadratic": (linear_attention_quadratic, "block")}


def qkv(seed, b, h, n, d, dv):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((b, h, n, d)).astype(np.float32), rng.standard_normal((b, h, n, d)).astype(np.float32),
            rng.standard_normal((b, h, n, dv)).astype(np.float32), rng.uniform(0.5, 1.0, h))


def run(fn, *args, **kw):
    with Profile("a100-80gb") as prof:
        out = fn(*args, **kw)
    return out, prof.records[0].to_dict()


@settings(max_examples=examples(20))   # each example runs several kernels in both modes
@given(st.integers(1, 2), st.integers(1, 3), dims(45), st.sampled_from([1, 3, 8]), st.sampled_from([1, 5, 8]),
       seeds(), st.one_of(st.none(), block_sizes(20)), logical_dtypes(), st.booleans())
def test_forms_agree_with_reference_and_counting(b, h, n, d, dv, seed, size, dtype, decayed):
    q, k, v, dec = qkv(seed, b, h, n, d, dv)
    dec = dec if decayed else None
    ref = R.linear_attention(q, k, v, dec)
    ref_rec, _ = R.linear_attention_recurrent(q, k, v, dec)
    assert np.abs(ref - ref_rec).max() <= 1e-10 * (1 + np.abs(ref).max())
    tol = 16 * np.finfo(np.float32).eps * (n + d) * (1 + np.abs(q).max() * np.abs(k).max() * np.abs(v).max() * n)
    for name, (fn, arg) in FORMS.items():
        o, rec = run(fn, q, k, v, decay=dec, dtype=dtype, **{arg: size})
        assert np.abs(o - ref).max() <= tol, name
        _, counted = run(fn, meta(q.shape, dtype), meta(k.shape, dtype), meta(v.shape, dtype), decay=dec,
                         dtype=dtype, **{arg: size})
        assert counted == rec, name


@given(st.integers(1, 3), st.integers(1, 4), dims(60), st.sampled_from([1, 16, 64]), st.sampled_from([1, 16, 64]),
       block_sizes(40), logical_dtypes())
def test_bytes_and_flops_equal_formulas(b, h, n, d, dv, size, dtype):
    s = ELEM_BYTES[dtype]
    args = (meta((b, h, n, d), dtype), meta((b, h, n, d), dtype), meta((b, h, n, dv), dtype))
    c = min(size, n)
    _, rec = run(linear_attention_chunked, *args, chunk=size, dtype=dtype)
    assert (rec["hbm_read_bytes"], rec["hbm_write_bytes"]) == (b * h * n * (2 * d + dv) * s, b * h * n * dv * s)
    chunks = [c] * (n // c) + ([n % c] if n % c else [])
    assert rec["flops_matmul"] == b * h * sum(2 * m * m * (d + dv) + 4 * m * d * dv for m in chunks)
    assert rec["flops_vector"] == b * h * sum(m * m + 2 * m * d + d * dv for m in chunks)
    _, rec = run(linear_attention_recurrent, *args, chunk=size, dtype=dtype)
    assert (rec["hbm_read_bytes"], rec["hbm_write_bytes"]) == (b * h * n * (2 * d + dv) * s, b * h * n * dv * s)
    assert (rec["flops_matmul"], rec["flops_vector"]) == (0, 5 * b * h * n * d * dv)
    _, rec = run(linear_attention_quadratic, *args, block=size, dtype=dtype)
    nqb = -(-n // c)
    kv_rows = sum(min(n, (i + 1) * c) for i in range(nqb))
    assert rec["hbm_read_bytes"] == b * h * (n * d + (d + dv) * kv_rows) * s
    rows = [min(c, n - i * c) for i in range(nqb)]
    assert rec["flops_matmul"] == 2 * (d + dv) * b * h * sum(rows[i] * min(n, (i + 1) * c) for i in range(nqb))


@settings(max_examples=examples(20))   # each example runs several kernels in both modes
@given(st.integers(1, 2), st.integers(1, 3), dims(40), st.sampled_from([1, 3, 8]), st.sampled_from([1, 5]), seeds(),
       st.one_of(st.none(), block_sizes(16)), st.booleans())
def test_chunked_backward_matches_reference_gradients(b, h, n, d, dv, seed, chunk, decayed):
    q, k, v, dec = qkv(seed, b, h, n, d, dv)
    dec = dec if decayed else None
    do = np.random.default_rng(seed + 1).standard_normal(v.shape).astype(np.float32)
    with Profile("a100-80gb") as prof:
        grads = linear_attention_chunked_backward(q, k, v, do, decay=dec, chunk=chunk)
    ref = R.linear_attention_grads(q, k, v, dec, do)
    for g, r in zip(grads, ref):
        assert g.shape == r.shape
        assert np.abs(g - r).max() <= 64 * np.finfo(np.float32).eps * (n + d + dv) * (1 + np.abs(r).max())
    with Profile("a100-80gb") as p2:
        linear_attention_chunked_backward(meta(q.shape), meta(k.shape), meta(v.shape), meta(do.shape), decay=dec,
                                          chunk=chunk)
    rec = prof.records[0]
    assert p2.records[0].to_dict() == rec.to_dict()
    # by hand: sweep 1 reads k, v, do; sweep 2 reads q, k, v, do; dq, dk, dv written once (fp16: 2 bytes)
    assert rec.hbm_read_bytes == b * h * n * (3 * d + 4 * dv) * 2
    assert rec.hbm_write_bytes == b * h * n * (2 * d + dv) * 2
    c = min(chunk or 64, n)
    sizes = [c] * (n // c) + ([n % c] if n % c else [])
    assert rec.flops_matmul == b * h * sum(2 * (3 * m * m * (d + dv) + 5 * m * d * dv) for m in sizes)


def test_linear_reference_gradients_are_finite_differences():
    q, k, v, dec = [np.asarray(a, np.float64) for a in qkv(5, 1, 2, 6, 3, 2)]
    do = np.random.default_rng(2).standard_normal(v.shape)
    grads = R.linear_attention_grads(q, k, v, dec, do)
    args = [q, k, v]
    for i, g in enumerate(grads):
        idx = (0, 1, 3, 1)
        plus, minus = [a.copy() for a in args], [a.copy() for a in args]
        plus[i][idx] += 1e-6
        minus[i][idx] -= 1e-6
        fd = ((R.linear_attention(*plus, dec) - R.linear_attention(*minus, dec)) * do).sum() / 2e-6
        assert abs(fd - g[idx]) <= 1e-6 * (1 + abs(fd))


@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9), st.sampled_from([1, 4]), st.sampled_from([1, 3]),
       seeds())
def test_linear_decode_steps_equal_the_sequence(b, h, n, d, dv, seed):
    q, k, v, dec = qkv(seed, b, h, n, d, dv)
    S = np.zeros((b, h, d, dv), np.float32)
    with Profile("a100-80gb") as prof:
        out = np.stack([linear_decode_step(q[:, :, t], k[:, :, t], v[:, :, t], state=S, decay=dec)
                        for t in range(n)], axis=2)
    ref, S_ref = R.linear_attention_recurrent(q, k, v, dec)
    assert np.abs(out - ref).max() <= 1e-4 * (1 + np.abs(ref).max())
    assert np.abs(S - S_ref).max() <= 1e-4 * (1 + np.abs(S_ref).max())
    r = prof.records[0]
    assert (r.hbm_read_bytes, r.hbm_write_bytes) == (b * h * ((2 * d + dv) * 2 + 4 * d * dv), b * h * (dv * 2 + 4 * d * dv))
    with Profile("a100-80gb") as p2:
        linear_decode_step(meta((b, h, d)), meta((b, h, d)), meta((b, h, dv)), state=meta((b, h, d, dv), "fp32"),
                           decay=dec)
    assert p2.records[0].to_dict() == r.to_dict()


@given(st.integers(1, 3), st.integers(1, 7), dims(20), st.sampled_from([1, 4, 16]), seeds(), block_sizes(16),
       st.booleans())
def test_ssm_decode_steps_equal_the_scan(b, n, D, N, seed, bd, skip):
    u, dt, A, B, C, Dv = scan_inputs(seed, b, n, D, N, skip)
    st_ = np.zeros((b, D, N), np.float32)
    with Profile("a100-80gb") as prof:
        y = np.stack([ssm_decode_step(u[:, t], dt[:, t], A, B[:, t], C[:, t], Dv, state=st_, block_d=bd)
                      for t in range(n)], axis=1)
    ref = R.selective_scan(u, dt, A, B, C, Dv)
    assert np.abs(y - ref).max() <= 1e-4 * (1 + np.abs(ref).max())
    nd = -(-D // min(bd, D))
    r = prof.records[0]
    assert r.hbm_read_bytes == 8 * b * D * N + 2 * b * D * 2 + 2 * b * N * 2 * nd + (4 * b * D if skip else 0)
    assert r.hbm_write_bytes == 4 * b * D * N + b * D * 2
    with Profile("a100-80gb") as p2:
        ssm_decode_step(meta((b, D)), meta((b, D)), meta((D, N), "fp32"), meta((b, N)), meta((b, N)),
                        meta((D,), "fp32") if skip else None, state=meta((b, D, N), "fp32"), block_d=bd)
    assert p2.records[0].to_dict() == r.to_dict()


def test_errors():
    q, k, v, dec = qkv(0, 1, 2, 5, 3, 3)
    with pytest.raises(ShapeError, match="v must be"):
        linear_attention_chunked(q, k, v[:, :, :4])
    with pytest.raises(ShapeError, match="k is"):
        linear_attention_quadratic(q, k[..., :2], v)
    with pytest.raises(TileConfigError, match=r"decay\[1\] = 1.5"):
        linear_attention_recurrent(q, k, v, decay=[0.9, 1.5])
    with pytest.raises(ShapeError, match="one per head"):
        linear_attention_chunked(q, k, v, decay=[0.9, 0.9, 0.9])
    with pytest.raises(DTypeError):
        linear_attention_chunked(q, k, meta(v.shape))
    bad = q.copy()
    bad[0, 1, 2, 0] = np.inf
    with pytest.raises(NonFiniteError):
        linear_attention_chunked(bad, k, v)
    with pytest.raises(ShapeError, match="C-contiguous float32"):
        linear_decode_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], state=np.zeros((1, 2, 3, 3)))
    with pytest.raises(ShapeError, match="state is"):
        linear_decode_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], state=np.zeros((1, 2, 3, 4), np.float32))
    from tinyml.sim import SramOverflowError

    with Profile("toy"):
        with pytest.raises(SramOverflowError, match="state of one head"):
            linear_attention_chunked(meta((1, 1, 64, 512)), meta((1, 1, 64, 512)), meta((1, 1, 64, 512)))


def test_mixing_rows_max_batch_by_hand():
    from tinyml.inference import mixing_rows, state_bytes, weight_bytes
    from tinyml.sim import load_device, load_model

    m, dev = load_model("llama-2-7b"), load_device("a100-80gb")
    sb = state_bytes(m)
    assert sb["ssm"] == m.layers * 2 * m.hidden * 16 * 4
    assert sb["rwkv"] == m.layers * (m.hidden // 64) * 64 * 64 * 4
    free = dev.hbm_capacity - weight_bytes(m, "fp16")["total"]
    rows = mixing_rows(m, "fp16", dev, [2048, 131072])
    kv_per_token = 2 * m.layers * m.kv_heads * m.head_dim * 2
    assert rows[0]["max_batch"] == {"transformer": free // (2048 * kv_per_token), "ssm": free // sb["ssm"],
                                    "rwkv": free // sb["rwkv"]}
    assert rows[1]["max_batch"]["transformer"] == 0 and rows[1]["mixing_tokens_per_s"]["transformer"] == 0
    assert rows[0]["mixing_tokens_per_s"]["ssm"] > rows[0]["mixing_tokens_per_s"]["transformer"] > 0
