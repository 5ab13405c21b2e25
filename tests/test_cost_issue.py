"""The cost model's instruction declarations (tinyml.sim.Issue), one block on one SM, by hand."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest

from tinyml.sim import Issue, kernel_cost, load_device
from tinyml.sim.counters import FLOPS_MATMUL, FLOPS_VECTOR, new_counters


def one_block(matmul: int, vector: int) -> np.ndarray:
    c = new_counters(1)
    c[0, FLOPS_MATMUL], c[0, FLOPS_VECTOR] = matmul, vector
    return c


@pytest.fixture
def dev():
    """toy with an SFU, an INT32 pipe and an mma.sync rate of half the peak (every number by hand below)."""
    base = load_device("toy")
    return base.replace(sfu_rate=base.vector_rate() / 8, int_rate=base.vector_rate() / 2,
                        mma_sync_flops=MappingProxyType({"fp16": base.matmul_rate("fp16") / 2}))


def rates(dev):
    n = dev.sm_count
    return (dev.matmul_rate("fp16") * dev.eff_matmul / n, dev.vector_rate() * dev.eff_vector / n,
            dev.sfu_rate / n, dev.int_rate * dev.eff_vector / n, dev.sram_bandwidth * dev.eff_sram / n)


def test_mma_sync_runs_at_its_own_rate_and_wgmma_at_the_peak(dev):
    mm, *_ = rates(dev)
    c = one_block(10 ** 9, 0)
    peak = kernel_cost(dev, c, issue=Issue(mma="wgmma")).time_s - dev.launch_overhead_s
    sync = kernel_cost(dev, c, issue=Issue(mma="mma_sync")).time_s - dev.launch_overhead_s
    assert peak == pytest.approx(1e9 / mm) and sync == pytest.approx(2 * peak)
    assert dev.has_wgmma and not load_device("a100-80gb").has_wgmma and load_device("h100-sxm").has_wgmma


def test_vector_phase_is_the_slowest_pipe_plus_the_barrier_exchanges(dev):
    mm, vec, sfu, intp, sram = rates(dev)
    m, v = 10 ** 9, 10 ** 8
    issue = Issue(sfu_per_mma_flop=1e-2, int_per_mma_flop=5e-2, exchange_per_mma_flop=1e-3)
    t = kernel_cost(dev, one_block(m, v), issue=issue).time_s - dev.launch_overhead_s
    ints = min(m * 5e-2, v)
    phase = max((v - ints) / vec, ints / intp, m * 1e-2 / sfu) + m * 1e-3 / sram
    assert t == pytest.approx(m / mm + phase)
    over = kernel_cost(dev, one_block(m, v), issue=Issue(sfu_per_mma_flop=1e-2, overlap=True)).time_s
    assert over - dev.launch_overhead_s == pytest.approx(max(m / mm, max(v / vec, m * 1e-2 / sfu)))


def test_a_device_without_the_pipes_costs_as_before():
    toy = load_device("toy")
    c = one_block(10 ** 9, 10 ** 8)
    plain = kernel_cost(toy, c)
    declared = kernel_cost(toy, c, issue=Issue(mma="mma_sync", sfu_per_mma_flop=1.0, int_per_mma_flop=1.0))
    assert declared.time_s == plain.time_s


def test_vector_instructions_conversions_and_unpacking_by_hand(dev):
    """Issue.vector_ops_per_flop prices FMA-pipe instructions (0.5 per FLOP: today's FMA convention);
    conversions go to [convert] (spec rate), unpacking ints to the INT32 pipe, the slowest pipe wins."""
    _, vec, _, ints, _ = rates(dev)
    c = one_block(0, 10 ** 9)
    t = lambda **kw: kernel_cost(dev, c, issue=Issue(**kw)).time_s - dev.launch_overhead_s   # noqa: E731
    assert t() == pytest.approx(1e9 / vec)                                  # 0.5 instr/FLOP at vec / 2
    assert t(vector_ops_per_flop=1.0) == pytest.approx(2e9 / vec)          # no FLOP fuses into an FMA
    cvt_dev = dev.replace(cvt_rate=dev.vector_rate() / 16)
    cvt = cvt_dev.cvt_rate / dev.sm_count
    got = kernel_cost(cvt_dev, c, issue=Issue(cvt_per_vector_flop=0.5)).time_s - dev.launch_overhead_s
    assert got == pytest.approx(max(1e9 / vec, 0.5e9 / cvt))
    # no conversion unit: each conversion is one more FMA-pipe instruction
    assert t(cvt_per_vector_flop=0.5) == pytest.approx((0.5e9 + 0.5e9) / (vec / 2))
    assert t(int_per_vector_flop=4.0) == pytest.approx(max(1e9 / vec, 4e9 / ints))
    no_int = dev.replace(int_rate=0.0)
    got = kernel_cost(no_int, c, issue=Issue(int_per_vector_flop=1.0)).time_s - dev.launch_overhead_s
    assert got == pytest.approx((0.5e9 + 1e9) / (vec / 2))
