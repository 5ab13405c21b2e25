"""matmul v1-v3: numerics against the float64 reference, counting mode == executing
mode, and HBM bytes / FLOPs equal to the closed forms in the kernels' docstrings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given

from strategies import (ELEM_BYTES, any_devices, block_sizes, logical_dtypes, matmul_shapes, seeds,
                        tile_sram_bytes, tiled_blocks)
from tinyml.kernels import reference
from tinyml.kernels.matmul import matmul, matmul_v1, matmul_v2, matmul_v3
from tinyml.sim import MetaTensor, Profile, load_device, meta
from tinyml.sim.errors import ArgumentError

pytestmark = pytest.mark.usefixtures("warm_kernels")

EPS32 = np.finfo(np.float32).eps

# Every field of a kernel record that depends on the counters.
COUNTER_FIELDS = ("grid", "n_blocks", "dtype", "time_s", "cycles", "bound", "limiter", "waves",
                  "blocks_per_sm", "sram_per_block_bytes", "hbm_read_bytes", "hbm_write_bytes",
                  "l2_hit_bytes", "sram_read_bytes", "sram_write_bytes", "flops_matmul", "flops_vector",
                  "peak_hbm_bytes", "resource_s")


def operands(seed, m, n, k):
    rng = np.random.default_rng(seed)
    scale = 10.0 ** rng.integers(-3, 4)
    a = (rng.standard_normal((m, k)) * scale).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    return a, b


def assert_close_to_reference(c, a, b):
    """float32 accumulation error bound: |c - ab| <= 2 K eps |a| |b| (elementwise)."""
    ref = reference.matmul(a, b)
    k = a.shape[1]
    bound = 2 * k * EPS32 * (np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-30
    assert c.shape == ref.shape and c.dtype == np.float32
    err = np.abs(c.astype(np.float64) - ref)
    assert np.all(err <= bound), f"max error {err.max()} > bound at {np.unravel_index((err - bound).argmax(), err.shape)}"


def blocks_kwargs(version, blocks):
    bm, bn, bk = blocks
    return {"block_m": bm, "block_n": bn} if version == 1 else {"block_m": bm, "block_n": bn, "block_k": bk}


def run(version, a, b, device="a100-40gb", **kw):
    with Profile(device) as prof:
        c = matmul(a, b, version=version, **kw)
    assert len(prof.records) == 1
    return c, prof.records[0]


# ---- numerics ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2, 3])
@given(shape=matmul_shapes(), blocks=tiled_blocks(), dtype=logical_dtypes(), seed=seeds())
def test_matches_reference(version, shape, blocks, dtype, seed):
    m, n, k = shape
    a, b = operands(seed, m, n, k)
    c, rec = run(version, a, b, dtype=dtype, **blocks_kwargs(version, blocks))
    assert_close_to_reference(c, a, b)
    bm, bn = blocks[:2]
    assert rec.grid == (math.ceil(m / bm), math.ceil(n / bn))
    assert rec.n_blocks == rec.grid[0] * rec.grid[1]


@pytest.mark.parametrize("version", [1, 2, 3])
@given(shape=matmul_shapes(), seed=seeds())
def test_default_blocks_match_reference_on_toy(version, shape, seed):
    m, n, k = shape
    a, b = operands(seed, m, n, k)
    c, _ = run(version, a, b, device="toy")
    assert_close_to_reference(c, a, b)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_awkward_operands(version):
    # integer arrays, Fortran order, non-contiguous views and a 1 x 1 matmul all work
    rng = np.random.default_rng(7)
    ai = rng.integers(-5, 6, size=(13, 7))
    bi = rng.integers(-5, 6, size=(7, 11))
    c, _ = run(version, ai, bi)
    np.testing.assert_array_equal(c, ai @ bi)                   # small integers: exact
    a = np.asfortranarray(rng.standard_normal((9, 31)))
    b = rng.standard_normal((62, 5))[::2]
    c, _ = run(version, a, b, block_m=4, block_n=3)
    assert_close_to_reference(c, a.astype(np.float32), b.astype(np.float32))
    c, _ = run(version, np.array([[3.0]]), np.array([[-2.0]]))
    assert c.shape == (1, 1) and c[0, 0] == -6.0


def test_versions_by_name_and_direct_functions():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = a.astype(np.float64) @ b
    for version, fn in (("naive", matmul_v1), ("tiled", matmul_v2), ("mma", matmul_v3)):
        with Profile("toy") as prof:
            np.testing.assert_array_equal(matmul(a, b, version=version), expected)
            np.testing.assert_array_equal(fn(a, b), expected)
        assert prof.records[0].name == prof.records[1].name



@pytest.mark.parametrize("version, takes", [(3, "block_m, block_n, block_k"), (4, "block_m, block_n, block_k, schedule")])
def test_a_keyword_the_version_does_not_take_is_refused_with_the_ones_it_does(version, takes):
    with pytest.raises(ArgumentError, match=rf"matmul version {version} takes no 'variant'.*dtype, {takes}"):
        matmul(meta((8, 8)), meta((8, 8)), version=version, variant="tiled")

# ---- counting mode == executing mode ---------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2, 3])
@given(dev=any_devices(), shape=matmul_shapes(), blocks=tiled_blocks(16), dtype=logical_dtypes(),
       seed=seeds())
def test_counting_mode_equals_executing_mode(version, dev, shape, blocks, dtype, seed):
    m, n, k = shape
    kw = blocks_kwargs(version, blocks)
    if version > 1 and tile_sram_bytes(*blocks, dtype) > dev.sram_per_sm:
        kw = {}   # let the kernel choose tiles that fit this device
    a, b = operands(seed, m, n, k)
    c, executed = run(version, a, b, device=dev, dtype=dtype, **kw)
    out, counted = run(version, meta((m, k), dtype), meta((k, n), dtype), device=dev, **kw)
    assert isinstance(out, MetaTensor) and out.shape == (m, n) and out.dtype == dtype
    for field in COUNTER_FIELDS:
        assert getattr(counted, field) == getattr(executed, field), field
    assert counted.name == executed.name


# ---- bytes and FLOPs == the closed forms --------------------------------------------------------

@pytest.mark.parametrize("version", [1, 2, 3])
@given(shape=matmul_shapes(300), blocks=tiled_blocks(64), dtype=logical_dtypes())
def test_bytes_and_flops_closed_form(version, shape, blocks, dtype):
    m, n, k = shape
    s = ELEM_BYTES[dtype]
    bm, bn, bk = blocks
    _, rec = run(version, meta((m, k), dtype), meta((k, n), dtype), **blocks_kwargs(version, blocks))
    assert rec.hbm_write_bytes == m * n * s
    raw_reads = rec.hbm_read_bytes + rec.l2_hit_bytes
    if version == 1:
        assert rec.hbm_read_bytes == 2 * m * n * k * s
        assert rec.l2_hit_bytes == 0
        assert (rec.flops_vector, rec.flops_matmul) == (2 * m * n * k, 0)
        assert rec.sram_per_block_bytes == 0
    else:
        assert raw_reads == (m * k * math.ceil(n / bn) + k * n * math.ceil(m / bm)) * s
        assert rec.sram_write_bytes == raw_reads                 # every HBM load lands in SRAM
        assert rec.sram_per_block_bytes == tile_sram_bytes(bm, bn, bk, dtype)
        flops = (rec.flops_vector, rec.flops_matmul)
        assert flops == ((2 * m * n * k, 0) if version == 2 else (0, 2 * m * n * k))
        assert 0 <= rec.l2_hit_bytes <= raw_reads


@pytest.mark.parametrize("version", [2, 3])
@given(dev=any_devices(), shape=matmul_shapes(), blocks=tiled_blocks(16), dtype=logical_dtypes())
def test_l2_hits_match_a_wave_by_wave_reference(version, dev, shape, blocks, dtype):
    """Blocks of one tile row share A's panel, of one tile column B's; within a wave
    each panel comes from HBM once."""
    m, n, k = shape
    bm, bn, bk = blocks
    spb = tile_sram_bytes(bm, bn, bk, dtype)
    if spb > dev.sram_per_sm:
        dev = dev.replace(sram_per_sm=spb)
    s = ELEM_BYTES[dtype]
    _, rec = run(version, meta((m, k), dtype), meta((k, n), dtype), device=dev,
                 block_m=bm, block_n=bn, block_k=bk)
    slots = dev.sm_count * min(dev.max_blocks_per_sm, dev.sram_per_sm // spb)
    gm, gn = math.ceil(m / bm), math.ceil(n / bn)
    seen, hits, raw = set(), 0, 0
    for blk in range(gm * gn):
        i, j = divmod(blk, gn)
        rows, cols = min(bm, m - i * bm), min(bn, n - j * bn)
        for key, nbytes in ((("A", i), rows * k * s), (("B", j), k * cols * s)):
            raw += nbytes
            wave_key = (blk // slots,) + key
            if wave_key in seen:
                hits += nbytes
            else:
                seen.add(wave_key)
    assert rec.waves == math.ceil(gm * gn / slots)
    assert rec.l2_hit_bytes == hits
    assert rec.hbm_read_bytes == raw - hits


def test_big_matmul_in_counting_mode_is_fast_and_exact():
    """A 4096^3 fp16 matmul is costed without data; v3 is compute-bound, v1 memory-bound."""
    n = 4096
    recs = {}
    for version in (1, 2, 3):
        out, recs[version] = run(version, meta((n, n)), meta((n, n)))
        assert isinstance(out, MetaTensor)
    assert recs[1].hbm_read_bytes == 2 * n ** 3 * 2
    assert recs[3].flops_matmul == 2 * n ** 3
    assert recs[3].bound == "compute" and recs[1].bound == "memory"
    # tiling moves far fewer bytes and is faster; tensor cores are faster still
    assert recs[2].hbm_read_bytes < recs[1].hbm_read_bytes / 50
    assert recs[3].time_s < recs[2].time_s < recs[1].time_s


def test_dtype_sets_bytes_not_numerics():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((20, 30)).astype(np.float32)
    b = rng.standard_normal((30, 10)).astype(np.float32)
    c16, r16 = run(3, a, b, dtype="fp16", block_m=8, block_n=8, block_k=8)
    c32, r32 = run(3, a, b, dtype="fp32", block_m=8, block_n=8, block_k=8)
    np.testing.assert_array_equal(c16, c32)
    assert r32.hbm_write_bytes == 2 * r16.hbm_write_bytes
    assert r32.hbm_read_bytes + r32.l2_hit_bytes == 2 * (r16.hbm_read_bytes + r16.l2_hit_bytes)
    assert r16.dtype == "fp16" and r32.dtype == "fp32"


@given(bm=block_sizes(), bn=block_sizes())
def test_v1_ignores_sram(bm, bn):
    _, rec = run(1, meta((33, 17)), meta((17, 45)), device="toy", block_m=bm, block_n=bn)
    assert rec.sram_read_bytes == rec.sram_write_bytes == 0
    assert rec.blocks_per_sm == load_device("toy").max_blocks_per_sm


def test_runs_with_jit_disabled(tmp_path):
    """NUMBA_DISABLE_JIT=1 runs every version as plain Python, with the same counters."""
    import json
    import os
    import subprocess
    import sys

    script = """
import json, numpy as np
from tinyml.kernels.matmul import matmul
from tinyml.sim import Profile, meta
rng = np.random.default_rng(0)
a = rng.standard_normal((7, 5)).astype(np.float32)
b = rng.standard_normal((5, 3)).astype(np.float32)
out = {}
for v in (1, 2, 3):
    with Profile("toy") as p:
        c = matmul(a, b, version=v, block_m=4, block_n=2)
    with Profile("toy") as q:
        matmul(meta((7, 5)), meta((5, 3)), version=v, block_m=4, block_n=2)
    out[v] = [c.tolist(), p.records[0].to_dict(), q.records[0].to_dict()]
print(json.dumps(out))
"""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 5)).astype(np.float32)
    b = rng.standard_normal((5, 3)).astype(np.float32)
    for v in ("1", "2", "3"):
        c, executed, counted = out[v]
        assert_close_to_reference(np.array(c, dtype=np.float32), a, b)
        assert executed == counted
        _, jitted = run(int(v), a, b, device="toy", block_m=4, block_n=2)
        assert executed == jitted.to_dict()
