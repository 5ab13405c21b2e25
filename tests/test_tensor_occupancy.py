"""Occupancy limited by threads per SM: a scheduled kernel that binds threads declares them, and the
resident blocks per SM are the smallest of the SRAM, register, threads-per-SM and max-blocks limits.

The closed form (CUDA's occupancy rule, tinyml.sim.cost)::

    blocks_per_sm = min(max_blocks, sram_per_sm // sram_per_block, register_bytes // regs_per_block,
                        threads_per_sm // threads_per_block)

Hand-written kernels declare no threads, so their numbers must not move (checked against a device
that allows one resident thread per SM).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings, strategies as st

from strategies import examples
from tinyml.compiler.tensor import build, matmul, simulate
from tinyml.compiler.tensor.examples import per_thread_accumulator as threads_per_column_block, tiled_matmul
from tinyml.kernels.attention.flash2 import flash_attention_v2
from tinyml.kernels.matmul import matmul_v3
from tinyml.kernels.softmax import softmax_v3
from tinyml.sim import Profile, check_registers, load_device, meta
from tinyml.sim.cost import occupancy, occupancy_limit

THREADS_PER_SM = {"a100-40gb": 2048, "h100-sxm": 2048, "rtx-4090": 1536, "m2-max": 2048, "toy": 2048}


def per_thread_accumulator(m, n, k, bn, tn):
    return threads_per_column_block(matmul(m, n, k, "fp32"), bn, tn)


def test_presets_source_their_threads_per_sm():
    for name, threads in THREADS_PER_SM.items():
        dev = load_device(name)
        assert dev.threads_per_sm == threads, name
        if dev.max_threads_per_sm:
            assert "threads" in dev.sources["sm.max_threads_per_sm"], name


def test_1024_threads_per_block_fit_two_blocks_per_sm_on_an_a100():
    """432 one-row blocks of 1024 threads: 2048 // 1024 = 2 per SM (registers alone would allow 64),
    so 216 slots and 2 waves; the profile names threads as the limit."""
    dev = load_device("a100-40gb")
    s = per_thread_accumulator(432, 1024, 8, 1024, 1024)
    kern = build(s, parallel=False)
    regs = check_registers(dev, kern.tiles())
    assert kern.declared_threads == 1024 and regs == 1024 * 4
    rec = simulate(s, dev)
    assert rec.threads_per_block == 1024
    assert rec.blocks_per_sm == 2048 // 1024 == 2 < dev.register_bytes // regs
    assert rec.occupancy_limit == "threads"
    assert rec.waves == math.ceil(432 / (dev.sm_count * 2)) == 2


@settings(max_examples=examples(8), deadline=None)
@given(device=st.sampled_from(sorted(THREADS_PER_SM)), log_tn=st.integers(0, 8), m=st.integers(1, 300))
def test_blocks_per_sm_is_the_smallest_limit(device, log_tn, m):
    """Every launch of the per-thread schedule: blocks_per_sm and its limit from the closed form."""
    dev = load_device(device)
    tn = 2 ** log_tn
    s = per_thread_accumulator(m, 256, 4, 256, tn)
    regs = tn * (256 // tn) * 4                         # fp32 accumulators, one slice per thread
    limits = {"blocks": dev.max_blocks_per_sm, "threads": THREADS_PER_SM[device] // tn}
    if dev.register_bytes:
        limits["registers"] = dev.register_bytes // regs
    else:                                               # no register file: the accumulators are SRAM
        limits["sram"] = dev.sram_per_sm // regs
    rec = simulate(s, dev)
    want = min(limits.values())
    assert rec.blocks_per_sm == max(1, want)
    assert limits[rec.occupancy_limit] == want
    assert rec.waves == math.ceil(m / (dev.sm_count * max(1, want)))


@settings(max_examples=examples(40), deadline=None)
@given(device=st.sampled_from(sorted(THREADS_PER_SM)), sram=st.integers(0, 1 << 18),
       regs=st.integers(0, 1 << 18), threads=st.integers(0, 1024))
def test_occupancy_closed_form(device, sram, regs, threads):
    dev = load_device(device)
    limits = [dev.max_blocks_per_sm]
    limits += [dev.sram_per_sm // sram] if sram else []
    limits += [dev.register_bytes // regs] if regs and dev.register_bytes else []
    limits += [THREADS_PER_SM[device] // threads] if threads else []
    assert occupancy(dev, sram, regs, threads) == max(1, min(limits))
    assert occupancy(dev, sram, regs) == max(1, min(limits[:len(limits) - bool(threads)]))


def _hand_written(device):
    """Records of hand-written kernels (they declare no threads) on ``device``."""
    with Profile(device) as prof:
        matmul_v3(meta((2048, 1024)), meta((1024, 4096)))
        softmax_v3(meta((4096, 1024)))
        q = meta((2, 8, 1024, 64))
        flash_attention_v2(q, q, q)
    return prof.records


def test_hand_written_kernels_do_not_move():
    """The same records on a device that allows a single resident thread per SM: no declared threads,
    no thread limit; and a tensor program without threadIdx loops declares none either."""
    a100 = load_device("a100-40gb")
    one_thread = dataclasses.replace(a100, max_threads_per_sm=1)
    skip = ("start_s", "peak_hbm_bytes")
    for a, b in zip(_hand_written(a100), _hand_written(one_thread), strict=True):
        assert a.threads_per_block == 0 and a.occupancy_limit != "threads", a.name
        assert {k: v for k, v in a.to_dict().items() if k not in skip} == \
               {k: v for k, v in b.to_dict().items() if k not in skip}, a.name
        assert a.blocks_per_sm == occupancy(a100, a.sram_per_block_bytes, 0) or a.occupancy_limit == "registers"
    sch = tiled_matmul(matmul(512, 512, 512), 128, 128, 32)
    assert build(sch, parallel=False).declared_threads == 0
    assert simulate(sch, a100).to_dict() | {"start_s": 0} == simulate(sch, one_thread).to_dict() | {"start_s": 0}


@pytest.mark.parametrize("threads, limit", [(1, "registers"), (1024, "threads")])
def test_occupancy_limit_names_the_binding_resource(threads, limit):
    dev = load_device("a100-40gb")
    assert occupancy_limit(dev, 1024, 65536, threads) == ((4, "registers") if threads == 1 else (2, "threads"))
    assert occupancy_limit(dev, 1024, 65536, threads)[1] == limit
