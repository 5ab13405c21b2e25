"""A block size longer than its dimension is clamped, and the record says so (as FlashAttention's do).

Asked for ``block_d`` above D or ``chunk`` above L, the scans run the D- or L-wide tile: every
record equals the one asked for exactly D / L, and its ``notes`` name the clamp; the same for the
linear-attention forms' ``chunk`` / ``block`` above N. Nothing clamped, no note.
"""
from __future__ import annotations

import pytest

from tinyml.kernels.ssm import (linear_attention_chunked, linear_attention_chunked_backward,
                                linear_attention_quadratic, linear_attention_recurrent, selective_scan_backward,
                                selective_scan_fused, selective_scan_naive, selective_scan_naive_backward,
                                selective_scan_parallel)
from tinyml.sim import Profile, meta

b, L, D, N = 1, 12, 6, 4                     # a tiny scan: every size below is past L or D


def scan_args():
    return (meta((b, L, D), "fp16"), meta((b, L, D), "fp16"), meta((D, N), "fp32"), meta((b, L, N), "fp16"),
            meta((b, L, N), "fp16"), meta((D,), "fp32"))


def run(fn, *args, **kw):
    with Profile("a100-80gb") as prof:
        out = fn(*args, **kw)
    return out, prof


def same_but_notes(asked, exact):
    assert len(asked.records) == len(exact.records) > 0
    for a, e in zip(asked.records, exact.records):
        assert {**a.to_dict(), "notes": []} == e.to_dict()
    assert all(not r.notes for r in exact.records) and "note:" not in exact.table()


D_NOTE = f"block_d=64 clamped to D = {D}: no tile is longer than its sequence"
L_NOTE = f"chunk=100 clamped to L = {L}: no tile is longer than its sequence"


@pytest.mark.parametrize("fn", [selective_scan_fused, selective_scan_naive, selective_scan_parallel])
def test_scan_forward_notes_a_clamped_block_and_chunk(fn):
    _, asked = run(fn, *scan_args(), block_d=64, chunk=100)
    _, exact = run(fn, *scan_args(), block_d=D, chunk=L)
    same_but_notes(asked, exact)
    assert all(r.notes == (D_NOTE, L_NOTE) for r in asked.records)
    assert f"note: {asked.records[0].name}: {D_NOTE}" in asked.table()


def test_scan_backwards_note_a_clamped_block():
    (_, saved), _ = run(selective_scan_fused, *scan_args(), chunk=4, return_saved=True)
    _, asked = run(selective_scan_backward, saved, meta((b, L, D), "fp16"), block_d=64)
    _, exact = run(selective_scan_backward, saved, meta((b, L, D), "fp16"), block_d=D)
    same_but_notes(asked, exact)
    assert asked.records[0].name == "scan_bwd" and asked.records[0].notes == (D_NOTE,)
    assert all(not r.notes for r in asked.records[1:])          # the reductions take no block_d
    (_, nsaved), _ = run(selective_scan_naive, *scan_args(), return_saved=True)
    _, asked = run(selective_scan_naive_backward, nsaved, meta((b, L, D), "fp16"), block_d=64, chunk=100)
    _, exact = run(selective_scan_naive_backward, nsaved, meta((b, L, D), "fp16"), block_d=D, chunk=L)
    same_but_notes(asked, exact)
    assert any(r.notes == (D_NOTE, L_NOTE) for r in asked.records)


H, n, d = 1, 10, 8


def lin():
    return meta((b, H, n, d), "fp16"), meta((b, H, n, d), "fp16"), meta((b, H, n, d), "fp16")


@pytest.mark.parametrize("fn, name", [(linear_attention_chunked, "chunk"), (linear_attention_recurrent, "chunk"),
                                      (linear_attention_quadratic, "block")])
def test_linear_forms_note_a_clamped_chunk(fn, name):
    _, asked = run(fn, *lin(), **{name: 64})
    _, exact = run(fn, *lin(), **{name: n})
    same_but_notes(asked, exact)
    assert asked.records[0].notes == (f"{name}=64 clamped to N = {n}: no tile is longer than its sequence",)


def test_linear_backward_notes_a_clamped_chunk():
    q, k, v = lin()
    dout = meta((b, H, n, d), "fp16")
    _, asked = run(linear_attention_chunked_backward, q, k, v, dout, chunk=64)
    _, exact = run(linear_attention_chunked_backward, q, k, v, dout, chunk=n)
    same_but_notes(asked, exact)
    assert asked.records[0].notes == (f"chunk=64 clamped to N = {n}: no tile is longer than its sequence",)
