"""Selective scan kernels: fused == naive == the float64 sequential reference, the backward against the
reference's gradients (themselves checked against finite differences), counting == executing, HBM bytes
== the docstring formulas, and the input errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import ELEM_BYTES, block_sizes, dims, examples, logical_dtypes, seeds
from tinyml.kernels.ssm import reference as R
from tinyml.kernels.ssm import scan_bwd, scan_fused, scan_naive, scan_naive_bwd
from tinyml.kernels.ssm import (scan_stats, selective_scan_backward, selective_scan_fused, selective_scan_naive,
                                selective_scan_naive_backward, selective_scan_parallel)
from tinyml.sim import (DTypeError, NonFiniteError, Profile, ShapeError, SramOverflowError, TinymlError, meta)


def scan_inputs(seed, b, L, D, N, skip=True):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((b, L, D)).astype(np.float32)
    dt = rng.uniform(0.0, 0.5, (b, L, D)).astype(np.float32)
    A = -rng.uniform(0.05, 2.0, (D, N)).astype(np.float32)
    B = rng.standard_normal((b, L, N)).astype(np.float32)
    C = rng.standard_normal((b, L, N)).astype(np.float32)
    Dv = rng.standard_normal(D).astype(np.float32) if skip else None
    return u, dt, A, B, C, Dv


def metas(args, dtype="fp16"):
    u, dt, A, B, C, Dv = args
    return (meta(u.shape, dtype), meta(dt.shape, dtype), meta(A.shape, "fp32"), meta(B.shape, dtype),
            meta(C.shape, dtype), None if Dv is None else meta(Dv.shape, "fp32"))


def records(fn, args, device="a100-80gb", **kw):
    with Profile(device) as prof:
        out = fn(*args, **kw)
    return out, [r.to_dict() for r in prof.records]


def tolerance(y_ref, L, N):
    """float32 accumulates L steps of N-term sums: a few ulps per step of the largest magnitude."""
    return 8 * np.finfo(np.float32).eps * (L + N) * (np.abs(y_ref).max() + 1.0)


shapes = st.tuples(st.integers(1, 3), dims(40), dims(20), st.sampled_from([1, 2, 3, 5, 16]))


@settings(max_examples=examples(20))   # each example runs several kernels in both modes
@given(shapes, seeds(), st.one_of(st.none(), block_sizes(16)), st.one_of(st.none(), block_sizes(16)),
       st.booleans(), logical_dtypes())
def test_fused_equals_naive_equals_reference_and_counting(shape, seed, bd, chunk, skip, dtype):
    b, L, D, N = shape
    args = scan_inputs(seed, b, L, D, N, skip)
    ref = R.selective_scan(*args)
    tol = tolerance(ref, L, N)
    par = lambda *a, **kw: selective_scan_parallel(*a, method="hillis_steele", **kw)        # noqa: E731
    for fn in (selective_scan_fused, selective_scan_naive, selective_scan_parallel, par):
        y, recs = records(fn, args, block_d=bd, chunk=chunk, dtype=dtype)
        assert y.shape == ref.shape and np.abs(y - ref).max() <= tol
        _, counted = records(fn, metas(args, dtype), block_d=bd, chunk=chunk, dtype=dtype)
        assert counted == recs


@given(shapes, seeds(), block_sizes(16), block_sizes(16), st.booleans(), logical_dtypes())
def test_bytes_equal_formulas(shape, seed, bd, chunk, skip, dtype):
    b, L, D, N = shape
    s = ELEM_BYTES[dtype]
    args = metas(scan_inputs(seed, 1, 1, D, N, skip), dtype)
    args = (meta((b, L, D), dtype), meta((b, L, D), dtype), args[2], meta((b, L, N), dtype),
            meta((b, L, N), dtype), args[5])
    bd_, t_ = min(bd, D), min(chunk, L)
    nd, nt = -(-D // bd_), -(-L // t_)
    (_, saved), recs = records(selective_scan_fused, args, block_d=bd, chunk=chunk, dtype=dtype, return_saved=True)
    # by hand: u, delta once; B, C once per channel block; A (and D) once per sequence; y once; a checkpoint per chunk
    reads = 2 * b * L * D * s + 2 * b * L * N * s * nd + 4 * b * D * N + (4 * b * D if skip else 0)
    writes = b * L * D * s + 4 * b * nt * D * N
    assert (recs[0]["hbm_read_bytes"], recs[0]["hbm_write_bytes"]) == (reads, writes)
    assert scan_fused.expected_bytes(b, L, D, N, s, bd_, t_, skip) == (reads, writes)
    assert recs[0]["flops_vector"] == b * L * D * (7 * N + 1 + (2 if skip else 0))
    E = b * L * D * N
    _, recs = records(selective_scan_naive, args, block_d=bd, chunk=chunk, dtype=dtype)
    got = {r["name"]: (r["hbm_read_bytes"], r["hbm_write_bytes"]) for r in recs}
    assert got == scan_naive.expected_bytes(b, L, D, N, s, bd_, skip)
    assert sum(r["hbm_write_bytes"] for r in recs) == 12 * E + b * L * D * s
    assert sum(r["flops_vector"] for r in recs) == 7 * E + b * L * D * (1 + (2 if skip else 0))
    with Profile("a100-80gb") as prof:
        selective_scan_backward(saved, meta((b, L, D), dtype), block_d=bd)
    got = {r.name: (r.hbm_read_bytes, r.hbm_write_bytes) for r in prof.records}
    assert got == scan_bwd.expected_bytes(b, L, D, N, s, bd_, t_, skip)
    nd_by_hand = -(-D // bd_)
    assert got["scan_bwd_reduce_dB"] == (4 * nd_by_hand * b * L * N, b * L * N * s)


@settings(max_examples=examples(20))   # each example runs several kernels in both modes
@given(st.integers(1, 2), dims(19), dims(9), st.sampled_from([1, 3, 4]), seeds(), st.one_of(st.none(), block_sizes(8)),
       st.one_of(st.none(), block_sizes(8)), st.booleans())
def test_backward_matches_reference_gradients(b, L, D, N, seed, bd, chunk, skip):
    args = scan_inputs(seed, b, L, D, N, skip)
    dy = np.random.default_rng(seed + 1).standard_normal((b, L, D)).astype(np.float32)
    with Profile("a100-80gb") as prof:
        _, saved = selective_scan_fused(*args, block_d=bd, chunk=chunk, return_saved=True)
        grads = selective_scan_backward(saved, dy, block_d=bd)
        recs = [r.to_dict() for r in prof.records]
    ref = R.selective_scan_loss_grads(*args, dy)
    for name, g, r in zip(("du", "ddelta", "dA", "dB", "dC", "dD"), grads, ref):
        if r is None:
            assert g is None
            continue
        assert g.shape == r.shape
        assert np.abs(g - r).max() <= 64 * np.finfo(np.float32).eps * (L + N + D) * (np.abs(r).max() + 1), name
    with Profile("a100-80gb") as prof:
        _, saved = selective_scan_fused(*metas(args), block_d=bd, chunk=chunk, return_saved=True)
        selective_scan_backward(saved, meta(dy.shape), block_d=bd)
    assert [r.to_dict() for r in prof.records] == recs


def loss64(args, dy):
    """sum(y dy) of the float64 reference: the loss whose gradients the backward kernels compute."""
    return float((R.selective_scan(*args) * dy).sum())


odd_lengths = st.integers(0, 9).map(lambda k: 2 * k + 1)


@settings(max_examples=examples(20))   # each example runs six kernels in both modes and 24 reference scans
@given(st.integers(1, 2), odd_lengths, dims(9), st.sampled_from([1, 3, 4]), seeds(),
       st.one_of(st.none(), block_sizes(8)), st.one_of(st.none(), block_sizes(8)), st.booleans(), st.data())
def test_naive_backward_matches_finite_differences(b, L, D, N, seed, bd, chunk, skip, data):
    args = scan_inputs(seed, b, L, D, N, skip)
    dy = np.random.default_rng(seed + 1).standard_normal((b, L, D)).astype(np.float32)
    with Profile("a100-80gb") as prof:
        _, saved = selective_scan_naive(*args, block_d=bd, chunk=chunk, return_saved=True)
        first = len(prof.records)
        grads = selective_scan_naive_backward(saved, dy, block_d=bd, chunk=chunk)
        recs = [r.to_dict() for r in prof.records[first:]]
    ref = R.selective_scan_loss_grads(*args, dy)
    args64, dy64 = [None if a is None else a.astype(np.float64) for a in args], dy.astype(np.float64)
    h = 1e-6
    for i, (name, g, r) in enumerate(zip(("du", "ddelta", "dA", "dB", "dC", "dD"), grads, ref)):
        if r is None:
            assert g is None
            continue
        assert g.shape == r.shape
        tol = 64 * np.finfo(np.float32).eps * (L + N + D) * (np.abs(r).max() + 1)
        assert np.abs(g - r).max() <= tol, name
        for _ in range(2):     # central differences of the float64 reference at random entries
            idx = tuple(data.draw(st.integers(0, n - 1)) for n in g.shape)
            plus, minus = list(args64), list(args64)
            plus[i], minus[i] = args64[i].copy(), args64[i].copy()
            plus[i][idx] += h
            minus[i][idx] -= h
            fd = (loss64(plus, dy64) - loss64(minus, dy64)) / (2 * h)
            assert abs(g[idx] - fd) <= tol + 1e-6 * (1 + abs(fd)), (name, idx)
    with Profile("a100-80gb") as prof:
        _, saved = selective_scan_naive(*metas(args), block_d=bd, chunk=chunk, return_saved=True)
        first = len(prof.records)
        selective_scan_naive_backward(saved, meta(dy.shape), block_d=bd, chunk=chunk)
    assert [r.to_dict() for r in prof.records[first:]] == recs


@given(shapes, block_sizes(16), block_sizes(16), st.booleans(), logical_dtypes())
def test_naive_backward_bytes_and_flops_equal_formulas(shape, bd, chunk, skip, dtype):
    b, L, D, N = shape
    s = ELEM_BYTES[dtype]
    args = (meta((b, L, D), dtype), meta((b, L, D), dtype), meta((D, N), "fp32"), meta((b, L, N), dtype),
            meta((b, L, N), dtype), meta((D,), "fp32") if skip else None)
    with Profile("a100-80gb"):
        _, saved = selective_scan_naive(*args, block_d=bd, chunk=chunk, dtype=dtype, return_saved=True)
    with Profile("a100-80gb") as prof:
        selective_scan_naive_backward(saved, meta((b, L, D), dtype), block_d=bd, chunk=chunk)
    got = {r.name: (r.hbm_read_bytes, r.hbm_write_bytes) for r in prof.records}
    nd = -(-D // min(bd, D))
    assert got == scan_naive_bwd.expected_bytes(b, L, D, N, s, min(bd, D), skip)
    # by hand: seven passes over fp32 (b, L, D, N) tensors read (the states, dH, abar, the states again less
    # one row per sequence, d(abar), d(dBu), abar again), three written (dH, d(dBu), d(abar)); dy, delta, u,
    # B and C per channel block; A; du, ddelta; the dB, dC, dA partials
    E, bld, bln = b * L * D * N, b * L * D * s, b * L * N * s
    main = ("scan_naive_bwd_readout", "scan_naive_bwd_states", "scan_naive_bwd_discretize")
    reads = sum(got[k][0] for k in main)
    writes = sum(got[k][1] for k in main)
    assert reads == (24 * E + 4 * b * (L - 1) * D * N + 3 * bld + 2 * bln * nd + 4 * b * D * N
                     + ((2 * bld + 4 * b * D) if skip else 0))
    assert writes == 12 * E + 2 * bld + 8 * b * L * N * nd + 4 * b * D * N + (4 * b * D if skip else 0)
    assert got["scan_naive_bwd_reduce_dC"] == (4 * nd * b * L * N, bln)
    flops = {r.name: r.flops_vector for r in prof.records}
    assert sum(flops[k] for k in main) == 15 * E + 4 * b * L * D + (4 * b * L * D if skip else 0)
    assert {k: flops[k] for k in main} == scan_naive_bwd.expected_flops(b, L, D, N, skip)


def combines_by_hand(n, method):
    """Combines of an inclusive scan of n elements, by simulating the index patterns."""
    total, s = 0, 1
    if method == "hillis_steele":
        while s < n:
            total += len(range(s, n))
            s *= 2
        return total
    while s < n:
        total += len(range(2 * s - 1, n, 2 * s))
        s *= 2
    s //= 2
    while s >= 1:
        total += len(range(3 * s - 1, n, 2 * s))
        s //= 2
    return total


@given(st.integers(1, 2), dims(70), dims(9), st.sampled_from([1, 4, 16]), block_sizes(40), st.booleans())
def test_parallel_scan_work_and_depth(b, L, D, N, chunk, skip):
    t = min(chunk, L)
    sizes = [t] * (L // t) + ([L % t] if L % t else [])
    args = (meta((b, L, D)), meta((b, L, D)), meta((D, N), "fp32"), meta((b, L, N)), meta((b, L, N)),
            meta((D,), "fp32") if skip else None)
    per_token = D * (7 * N + 1 + (2 if skip else 0))
    out = {}
    for method in ("blelloch", "hillis_steele"):
        work = sum(combines_by_hand(n, method) for n in sizes)
        _, recs = records(selective_scan_parallel, args, method=method, block_d=4, chunk=chunk)
        assert recs[0]["flops_vector"] == b * (L * per_token + 3 * D * N * work)
        _, fused = records(selective_scan_fused, args, block_d=4, chunk=chunk)
        assert (recs[0]["hbm_read_bytes"], recs[0]["hbm_write_bytes"]) == (fused[0]["hbm_read_bytes"],
                                                                           fused[0]["hbm_write_bytes"])
        stats = scan_stats(L, t, method)
        assert stats["combines"] == work
        out[method] = stats
    levels = [max(0, (n - 1).bit_length()) for n in sizes]
    assert out["hillis_steele"]["depth"] == sum(levels) + len(sizes) - 1
    assert out["blelloch"]["depth"] == 2 * sum(levels) + len(sizes) - 1
    for n in sizes:     # work-efficient: Blelloch <= 2n, Hillis-Steele >= it
        assert combines_by_hand(n, "blelloch") <= 2 * n
        assert combines_by_hand(n, "blelloch") <= combines_by_hand(n, "hillis_steele")


def test_reference_gradients_are_finite_differences():
    args = scan_inputs(3, 2, 6, 3, 2)
    dy = np.random.default_rng(9).standard_normal((2, 6, 3))
    grads = R.selective_scan_loss_grads(*args, dy)
    args64 = [a.astype(np.float64) for a in args]
    rng = np.random.default_rng(1)
    for i, g in enumerate(grads):
        for _ in range(3):
            idx = tuple(int(rng.integers(0, n)) for n in args64[i].shape)
            plus, minus = [a.copy() for a in args64], [a.copy() for a in args64]
            plus[i][idx] += 1e-6
            minus[i][idx] -= 1e-6
            if i == 1:     # delta stays >= 0
                minus[i][idx] = max(minus[i][idx], 0.0)
            h = plus[i][idx] - minus[i][idx]
            fd = ((R.selective_scan(*plus) - R.selective_scan(*minus)) * dy).sum() / h
            assert abs(fd - g[idx]) <= 1e-6 * (1 + abs(fd))


def test_counting_costs_a_huge_scan_in_seconds():
    import time

    big = (meta((8, 65536, 4096)), meta((8, 65536, 4096)), meta((4096, 16), "fp32"), meta((8, 65536, 16)),
           meta((8, 65536, 16)), None)
    t0 = time.perf_counter()
    with Profile("a100-80gb") as prof:
        _, saved = selective_scan_fused(*big, return_saved=True)
        selective_scan_backward(saved, meta((8, 65536, 4096)))
    assert time.perf_counter() - t0 < 20
    assert prof.records[0].hbm_write_bytes >= 8 * 65536 * 4096 * 2


def test_io_aware_moves_about_4N_times_fewer_bytes():
    # fp16 inputs, D >> N: naive ~ 24 E bytes, fused ~ (3 D s + 2 N s nD) b L
    args = (meta((1, 4096, 2048)), meta((1, 4096, 2048)), meta((2048, 16), "fp32"), meta((1, 4096, 16)),
            meta((1, 4096, 16)), None)
    with Profile("a100-80gb") as p1:
        selective_scan_naive(*args)
    with Profile("a100-80gb") as p2:
        selective_scan_fused(*args)
    ratio = p1.hbm_bytes / p2.hbm_bytes
    assert 16 < ratio < 4 * 16 * 1.1
    assert p1.time_s / p2.time_s > 10


# ---- errors ----------------------------------------------------------------------------------------

def test_errors_name_the_problem():
    u, dt, A, B, C, Dv = scan_inputs(0, 1, 5, 3, 2)
    with pytest.raises(ShapeError, match=r"A must be \(D, N\)"):
        selective_scan_fused(u, dt, A[:2], B, C)
    with pytest.raises(ShapeError, match="B is"):
        selective_scan_fused(u, dt, A, B[:, :3], C)
    with pytest.raises(ShapeError, match="delta is"):
        selective_scan_fused(u, dt[:, :4], A, B, C)
    with pytest.raises(ShapeError, match=r"D is \(4,\)"):
        selective_scan_fused(u, dt, A, B, C, np.ones(4))
    with pytest.raises(NonFiniteError, match="A must be <= 0"):
        selective_scan_fused(u, dt, -A, B, C)
    with pytest.raises(NonFiniteError, match="delta is a step size"):
        selective_scan_fused(u, -dt, A, B, C)
    bad = u.copy()
    bad[0, 2, 1] = np.nan
    with pytest.raises(NonFiniteError):
        selective_scan_naive(bad, dt, A, B, C)
    with pytest.raises(DTypeError):
        selective_scan_fused(u, dt, A, B, meta(C.shape))
    with pytest.raises(DTypeError):
        selective_scan_fused(u.astype(bool), dt, A, B, C)
    _, saved = selective_scan_naive(u, dt, A, B, C, return_saved=True)
    with pytest.raises(ShapeError, match=r"dy is \(1, 4, 3\) but y is \(1, 5, 3\)"):
        selective_scan_naive_backward(saved, u[:, :4])
    with pytest.raises(ShapeError, match="same mode"):
        selective_scan_naive_backward(saved, meta(u.shape, "fp16"))


def test_a_state_that_does_not_fit_names_the_numbers():
    big_n = 40000      # one channel's fp32 state: 160 KB in registers, twice (A and h)
    args = (meta((1, 64, 4)), meta((1, 64, 4)), meta((4, big_n), "fp32"), meta((1, 64, big_n)),
            meta((1, 64, big_n)), None)
    with Profile("a100-80gb"):
        with pytest.raises(SramOverflowError, match=r"bytes.*state size N") as err:
            selective_scan_fused(*args)
    assert isinstance(err.value, TinymlError)
    assert f"{big_n}" in str(err.value) or f"{big_n:,}" in str(err.value)
    with Profile("toy"):
        with pytest.raises(SramOverflowError, match="block_d="):
            selective_scan_fused(*metas(scan_inputs(0, 1, 64, 64, 16, False)), block_d=64, chunk=64)


def test_cli_ssm_prints_every_form_and_refuses_bad_input(capsys):
    import json

    from tinyml.cli import main

    assert main(["ssm", "--seq", "512", "--channels", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    forms = {r["form"].split(" (")[0]: r for r in out["forms"]}
    assert set(forms) == {"naive scan", "IO-aware scan", "parallel scan", "FlashAttention-2"}
    assert forms["naive scan"]["kernels"] == 3 and forms["IO-aware scan"]["kernels"] == 1
    assert forms["naive scan"]["hbm_bytes"] > 10 * forms["IO-aware scan"]["hbm_bytes"]
    assert main(["ssm", "--seq", "0"]) == 2
    assert main(["ssm", "--device", "no-such-gpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unknown device" in err
