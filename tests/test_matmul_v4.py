"""matmul v4 (v3 as shipped: C in registers, pipelined loads, warp tiles): numerics, counting ==
executing, bytes and SRAM re-reads against the closed forms of its docstring, and the cost it models."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given

from strategies import ELEM_BYTES, logical_dtypes, matmul_shapes, seeds, tiled_blocks
from test_matmul import COUNTER_FIELDS, assert_close_to_reference, operands
from tinyml.kernels.matmul import matmul, matmul_v3, matmul_v4
from tinyml.kernels.matmul.v4_pipelined import STAGES, choose_pipelined_tiles, warp_grid
from tinyml.sim import Profile, load_device, meta

pytestmark = pytest.mark.usefixtures("warm_kernels")


def record(fn, a, b, device="a100-40gb", **kw):
    with Profile(device) as prof:
        c = fn(a, b, **kw)
    return c, prof.records[0]


@given(shape=matmul_shapes(), blocks=tiled_blocks(), dtype=logical_dtypes(), seed=seeds())
def test_matches_reference_and_counting_equals_executing(shape, blocks, dtype, seed):
    m, n, k = shape
    bm, bn, bk = blocks
    a, b = operands(seed, m, n, k)
    kw = dict(dtype=dtype, block_m=bm, block_n=bn, block_k=bk)
    c, ex = record(matmul_v4, a, b, **kw)
    assert_close_to_reference(c, a, b)
    _, co = record(matmul_v4, meta((m, k), dtype), meta((k, n), dtype), **kw)
    for f in COUNTER_FIELDS:
        assert getattr(ex, f) == getattr(co, f), f


@pytest.mark.parametrize("device", ["a100-40gb", "h100-sxm"])
@given(shape=matmul_shapes(), blocks=tiled_blocks(), dtype=logical_dtypes())
def test_bytes_and_warp_rereads_equal_the_closed_form(device, shape, blocks, dtype):
    """HBM: v3's formula. SRAM reads: the A and B tiles once per warp column / row, plus C once."""
    m, n, k = shape
    bm, bn, bk = blocks
    s = ELEM_BYTES[dtype]
    _, rec = record(matmul_v4, meta((m, k), dtype), meta((k, n), dtype), device=device, dtype=dtype,
                    block_m=bm, block_n=bn, block_k=bk)
    wm, wn = warp_grid(load_device(device), bm, bn)
    assert rec.hbm_read_bytes + rec.l2_hit_bytes == math.ceil((m * k * math.ceil(n / bn) + k * n * math.ceil(m / bm)) * s)
    assert rec.hbm_write_bytes == math.ceil(m * n * s)
    assert rec.flops_matmul == 2 * m * n * k
    # every (row block, col block, k step) tile product reads its valid A rows wn times and B cols wm times
    rows = [min(bm, m - i) for i in range(0, m, bm)]
    cols = [min(bn, n - j) for j in range(0, n, bn)]
    depths = [min(bk, k - z) for z in range(0, k, bk)]
    reads = sum((r * d * wn + d * c * wm) * s for r in rows for c in cols for d in depths)
    assert rec.sram_read_bytes == reads + m * n * s


def test_choice_keeps_c_in_registers_and_stages_in_sram():
    dev = load_device("a100-80gb")
    t = choose_pipelined_tiles(dev, 8192, 8192, 8192, "fp16")
    assert (t.block_m * t.block_n * 4) <= dev.register_bytes // 2
    assert STAGES * (t.block_m + t.block_n) * t.block_k * 2 <= dev.sram_per_sm
    _, rec = record(matmul_v4, meta((8192, 8192)), meta((8192, 8192)), device=dev)
    assert rec.sram_per_block_bytes == STAGES * (t.block_m + t.block_n) * t.block_k * 2


@pytest.mark.parametrize("device", ["a100-80gb", "h100-sxm"])
def test_pipelining_and_registers_make_v4_compute_bound_near_the_matmul_roof(device):
    """At 8192^3 the loads hide behind the MMAs: time = matmul FLOPs at the achievable rate, times
    the waves' quantisation (ceil(blocks / SMs) / (blocks / SMs)), plus the launch."""
    n = 8192
    dev = load_device(device)
    _, v3 = record(matmul_v3, meta((n, n)), meta((n, n)), device=dev)
    _, v4 = record(matmul_v4, meta((n, n)), meta((n, n)), device=dev)
    assert v4.bound == "compute" and v4.blocks_per_sm == 1
    per_block = (v4.flops_matmul / v4.n_blocks) / (dev.matmul_rate("fp16") * dev.eff_matmul / dev.sm_count)
    expect = dev.launch_overhead_s + math.ceil(v4.n_blocks / dev.sm_count) * per_block
    assert v4.time_s == pytest.approx(expect, rel=1e-9)
    assert v4.time_s < v3.time_s


def test_version_4_is_selectable_by_name():
    a, b = meta((256, 256)), meta((256, 256))
    with Profile("a100-40gb") as prof:
        matmul(a, b, version="pipelined")
        matmul(a, b, version=4)
    assert [r.name for r in prof.records] == ["matmul_v4_pipelined"] * 2
