"""The cost model's numbers at their edges, worked out by hand on the ``toy`` device
(pinned by mutation testing, tools/mutate.py).

Only public behaviour: ``kernel_cost``'s ``Cost`` fields, ``occupancy``, ``waves_for``,
``sm_time`` and ``schedule``. The toy device: 4 SMs, at most 2 blocks per SM, 2 KB SRAM
per SM; per SM, HBM 32 GB/s (32 000 B = 1 us), SRAM 128 GB/s (128 000 B = 1 us), fp16
matmul 1 TFLOP/s (1e6 FLOP = 1 us), vector 250 GFLOP/s (250 000 FLOP = 1 us); launch
1 us; clock 1 GHz; efficiencies 1.0.

Boundary cases: one wave vs several, the per-resource breakdown of a multi-wave launch,
a working set exactly at L2 capacity (and one byte over), a wave that reads nothing with
panels declared, a zero-block launch, the launch overhead exactly equal to the work, and
resource ties in the limiter.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from strategies import examples
from tinyml.sim import Issue, Reuse, kernel_cost, load_device, occupancy, waves_for
from tinyml.sim.classes import BlockClasses
from tinyml.sim.cost import _Segments, occupancy_limit, occupancy_limits, schedule, sm_time
from tinyml.sim.schedule import list_schedule
from tinyml.sim.counters import (FIRST_OPERAND, FLOPS_MATMUL, FLOPS_VECTOR, HBM_READ, HBM_WRITE, SRAM_READ,
                                 SRAM_WRITE, new_counters)

# Equivalent mutants (no test can tell them apart; tools/mutate.py counts them as such), measured
# 2026-12-05 on the cost.py of main 2476c12:
#
# equivalent mutant tinyml/sim/cost.py:254: starts // slots -> starts / slots
#   without panels or a Reuse declaration (by_wave False) no one reads a segment's wave: dram_read_scale
#   runs only with panels and capacity_reuse returns early without a declaration.
# equivalent mutant tinyml/sim/cost.py:256: -1 -> 1
#   cuts[1:] != cuts[:1] keeps a duplicated cut (a run starting on a wave boundary) as a zero-length
#   segment: it adds 0 to every sum, places no block in the scheduler and reads no panel.
# equivalent mutant tinyml/sim/cost.py:392: issue.int_per_mma_flop > 0 -> issue.int_per_mma_flop >= 0
#   with int_per_mma_flop = 0 no op moves to the INT32 pipe: max((v - 0) / share, 0) is v / share.
# equivalent mutant tinyml/sim/cost.py:346: issue.sfu_per_mma_flop > 0 -> issue.sfu_per_mma_flop >= 0
#   with sfu_per_mma_flop = 0 the SFU time is 0 and max(t_vector, 0) is t_vector.
# equivalent mutant tinyml/sim/cost.py:349: issue.exchange_per_mma_flop > 0 -> issue.exchange_per_mma_flop >= 0
#   with exchange_per_mma_flop = 0 the exchange adds 0 seconds.
# equivalent mutant tinyml/sim/cost.py:445: 4 -> 5
#   _limiter's bincount(minlength=4 -> 5) adds an always-zero fifth entry; argmax never picks it
#   (a tie at zero goes to the first index).
# equivalent mutant tinyml/sim/cost.py:265: np.ones(n_waves) -> None
#   dram_read_scale's no-panels return: kernel_cost calls it only ``if panels``.
# equivalent mutant tinyml/sim/cost.py:410: False -> True
# equivalent mutant tinyml/sim/cost.py:438: False -> True
#   the ``overlap`` defaults of compute_time and _limiter: every caller passes overlap explicitly.
#
# measured 2026-12-06 on the cost.py of main 74563d8:
#
# equivalent mutant tinyml/sim/cost.py:271: 1 -> 2
#   dram_read_scale's ``reshape(-1)`` -> ``reshape(-2)``: NumPy infers the size from any negative one
#   (``np.arange(3).reshape(-2)`` is ``[0, 1, 2]`` in NumPy 2.4), so the panel flattens the same way.

US = 1e-6
HBM_US, SRAM_US, MM_US, VEC_US = 32_000, 128_000, 1_000_000, 250_000     # per SM: one microsecond


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-18)


@pytest.fixture
def toy():
    return load_device("toy")


def blocks(n, **per_block):
    c = new_counters(n, n_operands=1)
    col = {"hbm": HBM_READ, "hbm_w": HBM_WRITE, "sram": SRAM_READ, "sram_w": SRAM_WRITE,
           "mm": FLOPS_MATMUL, "vec": FLOPS_VECTOR}
    for k, v in per_block.items():
        c[:, col[k]] = v
    return c


# ---- several waves of equal blocks: time and the breakdown of the slot that ends last ------------


def test_multi_wave_breakdown_one_block_per_sm(toy):
    # 2 KB per block: 1 block per SM, 4 slots, 64 blocks = 16 waves, every slot runs 16 blocks.
    # A block: 1 us of HBM, 0.5 us of SRAM; one resident block: t = 1 + 0.5 / 1 = 1.5 us.
    c = blocks(64, hbm=HBM_US, sram=SRAM_US // 2)
    cost = kernel_cost(toy, c, sram_per_block=2048)
    assert (cost.waves, cost.blocks_per_sm) == (16, 1)
    assert cost.time_s == approx(US + 16 * 1.5 * US)
    assert cost.cycles == approx((1 + 24) * 1000)
    assert cost.resource_s == {"hbm": approx(16 * US), "sram": approx(8 * US), "matmul": 0.0, "vector": 0.0}
    assert (cost.bound, cost.limiter) == ("memory", "hbm")
    assert cost.hbm_read_bytes == 64 * HBM_US and cost.hbm_write_bytes == 0 and cost.l2_hit_bytes == 0


def test_multi_wave_breakdown_two_blocks_per_sm(toy):
    # no SRAM: 2 blocks per SM, 8 slots; 40 blocks = 5 waves; slot 0 runs blocks 0, 8, ..., 32 (5 blocks).
    # A block of 1 us of vector work holds a half-SM slot for 2 * 1 us (r = 2; no memory to hide).
    c = blocks(40, vec=VEC_US)
    cost = kernel_cost(toy, c)
    assert (cost.waves, cost.blocks_per_sm) == (5, 2)
    assert cost.time_s == approx(US + 5 * 2 * US)
    # resource_s: blocks_per_sm x the work of the 5 blocks in the slot that finishes last
    assert cost.resource_s == {"hbm": 0.0, "sram": 0.0, "matmul": 0.0, "vector": approx(2 * 5 * US)}
    assert (cost.bound, cost.limiter) == ("compute", "vector")


def test_one_wave_breakdown_is_the_busiest_sm(toy):
    # 6 blocks, 8 slots: one wave; block b on SM b % 4: SM 0 holds blocks 0 and 4, SM 1 blocks 1 and 5.
    c = blocks(6)
    c[0, FLOPS_MATMUL] = c[4, FLOPS_MATMUL] = MM_US            # SM 0: 2 us of matmul
    c[1, HBM_READ] = c[5, HBM_READ] = HBM_US // 2               # SM 1: 1 us of HBM
    c[2, SRAM_READ] = SRAM_US                                   # SM 2: 1 us of SRAM
    cost = kernel_cost(toy, c)
    assert cost.waves == 1 and cost.time_s == approx(3 * US)
    assert cost.resource_s == {"hbm": 0.0, "sram": 0.0, "matmul": approx(2 * US), "vector": 0.0}
    assert cost.limiter == "matmul"


def test_exactly_one_full_wave_shares_sms(toy):
    # 8 blocks = 8 slots exactly: still one wave, so blocks 0 and 4 share SM 0: 2 us of HBM and
    # 2 us of matmul with two blocks resident: max(2, 2) + min(2, 2) / 2 = 3 us
    c = blocks(8)
    c[0, HBM_READ] = 2 * HBM_US
    c[4, FLOPS_MATMUL] = 2 * MM_US
    cost = kernel_cost(toy, c)
    assert cost.waves == 1 and cost.time_s == approx(US + 3 * US)
    assert cost.resource_s == {"hbm": approx(2 * US), "sram": 0.0, "matmul": approx(2 * US), "vector": 0.0}


def test_multi_wave_pipelined_and_not(toy):
    # 1 block per SM, 8 blocks = 2 waves; a block: 1 us HBM + 1 us matmul
    c = blocks(8, hbm=HBM_US, mm=MM_US)
    assert kernel_cost(toy, c, sram_per_block=2048).time_s == approx(US + 2 * 2 * US)         # they add up
    assert kernel_cost(toy, c, sram_per_block=2048, pipelined=True).time_s == approx(US + 2 * US)


# ---- L2: panels with a wave that reads nothing; capacity exactly at the working set -----------------------


def test_panels_with_a_wave_that_reads_nothing(toy):
    # 1 block per SM: blocks 0-3 are wave 0 and read the same 1000-byte panel; blocks 4-7 (wave 1) read nothing
    c = blocks(8, vec=VEC_US)
    c[:4, HBM_READ] = c[:4, FIRST_OPERAND] = 1000
    with np.errstate(all="raise"):
        cost = kernel_cost(toy, c, sram_per_block=2048, panels={0: np.zeros(8, np.int64)})
    assert cost.hbm_read_bytes == 1000 and cost.l2_hit_bytes == 3000
    nothing = blocks(4, vec=VEC_US)
    with np.errstate(all="raise"):
        cost = kernel_cost(toy, nothing, panels={0: np.zeros(4, np.int64)})
    assert cost.hbm_read_bytes == 0 and cost.l2_hit_bytes == 0 and math.isfinite(cost.time_s)


def test_panels_with_a_wave_that_reads_one_byte(toy):
    # the boundary of ``wave_reads > 0``: one wave of 2 blocks on panel 0. Block 0 declares the panel but
    # reads none of it; block 1 reads 1 byte of it, and the model counts that as a repeat of the panel
    # (panel_repeats keys on the declared panel): the wave reads (1 - 1) / 1 = 0 of its 1 byte from HBM.
    c = blocks(2, vec=VEC_US)
    c[1, HBM_READ] = c[1, FIRST_OPERAND] = 1
    with np.errstate(all="raise"):
        cost = kernel_cost(toy, c, panels={0: np.zeros(2, np.int64)})
    assert cost.waves == 1 and cost.hbm_read_bytes == 0 and cost.l2_hit_bytes == 1
    apart = kernel_cost(toy, c, panels={0: np.arange(2)})               # different panels: no repeat
    assert apart.hbm_read_bytes == 1 and apart.l2_hit_bytes == 0


def sweeping(n, passes, distinct):
    c = new_counters(n, n_operands=1)
    c[:, HBM_READ] = c[:, FIRST_OPERAND] = passes * distinct
    c[:, HBM_WRITE] = passes * distinct
    return c


@pytest.mark.parametrize("spare, fits", [(0, True), (-1, False), (1, True)])
def test_working_set_exactly_at_l2_capacity(toy, spare, fits):
    # 4 blocks per wave (1 per SM), each reads 1000 distinct bytes 3 times and writes 1000 distinct bytes
    # 3 times: the wave's working set is 4 * (1000 + 1000) = 8000 bytes
    dev = toy.replace(l2_bytes=8000 + spare)
    cost = kernel_cost(dev, sweeping(4, 3, 1000), sram_per_block=2048, reuse=Reuse(reads={0: 1000}, writes=1000))
    charged = 1000 if fits else 3000
    assert (cost.hbm_read_bytes, cost.hbm_write_bytes) == (4 * charged, 4 * charged)
    assert cost.l2_hit_bytes == 4 * (3000 - charged) and cost.l2_write_hit_bytes == 4 * (3000 - charged)
    assert cost.l2_working_set_bytes == 8000


def test_per_block_reuse_declarations_and_waves(toy):
    # 6 blocks, 4 per wave: wave 0 = blocks 0-3, wave 1 = blocks 4, 5. Per-block distinct reads.
    dev = toy.replace(l2_bytes=1000)
    c = sweeping(6, 2, 100)
    distinct = np.array([100, 100, 100, 100, 400, 400])
    cost = kernel_cost(dev, c, sram_per_block=2048, reuse=Reuse(reads={0: distinct}, writes=100))
    # wave 0: 4 * (100 + 100) = 800 <= 1000 fits; wave 1: 2 * (400 + 100) = 1000 fits exactly
    # reads saved per block: max(200 - distinct, 0) = 100 in wave 0, 0 in wave 1; writes: 200 - 100 = 100 each
    assert cost.hbm_read_bytes == 6 * 200 - 4 * 100
    assert cost.hbm_write_bytes == 6 * 200 - 6 * 100
    assert cost.l2_working_set_bytes == 1000


def test_no_l2_means_no_reuse_even_for_an_empty_working_set(toy):
    assert toy.l2_bytes == 0
    c = sweeping(2, 3, 1000)
    cost = kernel_cost(toy, c, reuse=Reuse(reads={0: 0}, writes=0))
    assert cost.hbm_read_bytes == 2 * 3000 and cost.hbm_write_bytes == 2 * 3000
    assert cost.l2_hit_bytes == 0 and cost.l2_write_hit_bytes == 0 and cost.l2_working_set_bytes == 0
    cost = kernel_cost(toy, c, reuse=Reuse(reads={0: 1000}, writes=1000))
    assert cost.l2_working_set_bytes == 2 * 2000 and cost.hbm_read_bytes == 2 * 3000


def test_reuse_without_writes_declares_no_written_bytes(toy):
    # 4 blocks (1 per SM), each reads 1000 distinct bytes 3 times and writes nothing:
    # the wave's working set is exactly 4 * 1000 = 4000 bytes, which fits an L2 of 4000
    c = sweeping(4, 3, 1000)
    c[:, HBM_WRITE] = 0
    cost = kernel_cost(toy.replace(l2_bytes=4000), c, sram_per_block=2048, reuse=Reuse(reads={0: 1000}))
    assert cost.l2_working_set_bytes == 4000
    assert cost.hbm_read_bytes == 4 * 1000 and cost.l2_hit_bytes == 4 * 2000 and cost.hbm_write_bytes == 0


def test_reuse_of_the_second_operand_and_a_one_byte_l2(toy):
    # the re-read operand is operand 1; operand 0 is read once (1000 bytes, not declared)
    dev = toy.replace(l2_bytes=10 ** 6)
    c = new_counters(2, n_operands=2)
    c[:, FIRST_OPERAND] = 1000
    c[:, FIRST_OPERAND + 1] = 3 * 500
    c[:, HBM_READ] = 1000 + 3 * 500
    cost = kernel_cost(dev, c, reuse=Reuse(reads={1: 500}))
    assert cost.hbm_read_bytes == 2 * (1000 + 500) and cost.l2_hit_bytes == 2 * 1000
    assert cost.l2_working_set_bytes == 2 * 500
    # a 1-byte L2 is an L2: a working set of 0 bytes (data the blocks wrote themselves) fits
    one = toy.replace(l2_bytes=1)
    c = sweeping(2, 3, 1000)
    cost = kernel_cost(one, c, reuse=Reuse(reads={0: 0}, writes=0))
    assert cost.hbm_read_bytes == 0 and cost.hbm_write_bytes == 0 and cost.l2_hit_bytes == 2 * 3000


def test_no_reuse_declared_defaults(toy):
    dev = toy.replace(l2_bytes=10 ** 9)
    cost = kernel_cost(dev, sweeping(3, 2, 500))
    assert cost.hbm_read_bytes == cost.hbm_write_bytes == 3 * 1000
    assert cost.l2_hit_bytes == cost.l2_write_hit_bytes == cost.l2_working_set_bytes == 0


# ---- edges of a launch ------------------------------------------------------------------------------------


def test_zero_block_launch_costs_the_overhead_only(toy):
    cost = kernel_cost(toy, new_counters(0, n_operands=2), sram_per_block=1024)
    assert cost.time_s == toy.launch_overhead_s == US and cost.cycles == approx(1000)
    assert (cost.waves, cost.blocks_per_sm, cost.bound, cost.limiter) == (0, 2, "launch", "launch")
    assert cost.resource_s == {"hbm": 0.0, "sram": 0.0, "matmul": 0.0, "vector": 0.0}
    assert (cost.hbm_read_bytes, cost.hbm_write_bytes, cost.l2_hit_bytes, cost.l2_write_hit_bytes,
            cost.l2_working_set_bytes) == (0, 0, 0, 0, 0)


def test_launch_overhead_equal_to_the_work_is_not_launch_bound(toy):
    c = blocks(1, hbm=HBM_US)                       # exactly 1 us of HBM, launch 1 us
    cost = kernel_cost(toy, c)
    assert cost.time_s == approx(2 * US) and (cost.bound, cost.limiter) == ("memory", "hbm")
    cost = kernel_cost(toy, blocks(1, hbm=HBM_US - 32))
    assert (cost.bound, cost.limiter) == ("launch", "launch")


def test_limiter_ties(toy):
    # HBM 1 us == SRAM 1 us: memory does not strictly exceed, so SRAM limits
    assert kernel_cost(toy, blocks(1, hbm=2 * HBM_US, sram=2 * SRAM_US)).limiter == "sram"
    # SRAM 1 us == matmul + vector 1 us: SRAM
    assert kernel_cost(toy, blocks(1, sram=2 * SRAM_US, mm=MM_US, vec=VEC_US)).limiter == "sram"
    # matmul 1 us == vector 1 us: matmul
    assert kernel_cost(toy, blocks(1, mm=2 * MM_US, vec=2 * VEC_US)).limiter == "matmul"
    # vector alone
    assert kernel_cost(toy, blocks(1, vec=3 * VEC_US)).bound == "compute"


def test_multi_wave_limiter_weighs_each_class_by_its_blocks(toy):
    # 2 blocks per SM, 8 slots, 11 blocks: several waves. Class A, 10 blocks of 1 us of HBM, holds a
    # half-SM slot for 2 * 1 us; class B, 1 block of 3 us of matmul, for 2 * 3 us. The limiter weighs a
    # class by the time all its blocks take: HBM 10 * 2 = 20 us against matmul 1 * 6 = 6 us.
    c = blocks(11, hbm=HBM_US)
    c[10, HBM_READ], c[10, FLOPS_MATMUL] = 0, 3 * MM_US
    cost = kernel_cost(toy, c)
    assert (cost.waves, cost.blocks_per_sm) == (2, 2)
    # slots 0-7 run blocks 0-7 until 2 us; blocks 8, 9 go to slots 0, 1 (until 4 us), block 10 to slot 2
    # (2 + 6 = 8 us): slot 2 ends last, with 1 us of HBM and 3 us of matmul, times 2 blocks per SM
    assert cost.time_s == approx(US + 8 * US)
    assert cost.resource_s == {"hbm": approx(2 * US), "sram": 0.0, "matmul": approx(6 * US), "vector": 0.0}
    assert (cost.bound, cost.limiter) == ("memory", "hbm")


def test_dtype_selects_the_matmul_rate_and_writes_count_as_hbm(toy):
    c = blocks(1, mm=MM_US, hbm_w=HBM_US)              # 1 us matmul fp16 (4 us fp32) + 1 us HBM writes
    assert kernel_cost(toy, c, dtype="fp16").time_s == approx(US + 2 * US)
    assert kernel_cost(toy, c, dtype="fp32").time_s == approx(US + 5 * US)
    assert kernel_cost(toy, blocks(1, sram_w=SRAM_US)).time_s == approx(2 * US)     # SRAM writes count


# ---- the helpers ------------------------------------------------------------------------------------------


def test_occupancy_edges(toy):
    assert occupancy(toy, 0) == 2                       # the hardware limit
    assert occupancy(toy, 1024) == 2 and occupancy(toy, 1025) == 1
    assert occupancy(toy, 2048) == 1 and occupancy(toy, 4096) == 1     # too big still gets 1 (the check is elsewhere)
    assert occupancy(toy, 0, regs_per_block=1024) == 2 and occupancy(toy, 0, regs_per_block=1025) == 1
    assert occupancy(toy, 0, regs_per_block=4096) == 1
    assert occupancy(toy.replace(register_bytes=0), 0, regs_per_block=10 ** 6) == 2
    one = toy.replace(register_bytes=1)               # a 1-byte register file
    assert occupancy(one, 0) == 2                     # no register need declared: no register limit
    assert occupancy(one, 0, regs_per_block=1) == 1   # 1 // 1
    assert occupancy(one, 0, regs_per_block=2) == 1   # 0 fit, still 1 (the check is elsewhere)
    assert kernel_cost(one, blocks(1)).blocks_per_sm == 2                    # kernel_cost's default too
    assert kernel_cost(one, blocks(1), regs_per_block=1).blocks_per_sm == 1
    tiny_sram = toy.replace(sram_per_sm=1)             # 1 byte of SRAM: a kernel that declares none is not limited
    assert occupancy(tiny_sram, 0) == 2 and kernel_cost(tiny_sram, blocks(1)).blocks_per_sm == 2
    assert kernel_cost(tiny_sram, blocks(1), sram_per_block=1).blocks_per_sm == 1


def test_waves_for_edges(toy):
    assert waves_for(toy, 0) == 0 and waves_for(toy, 1) == 1
    assert waves_for(toy, 8) == 1 and waves_for(toy, 9) == 2
    assert waves_for(toy, 8, sram_per_block=2048) == 2 and waves_for(toy, 4, regs_per_block=2048) == 1
    assert waves_for(toy, 5, regs_per_block=2048) == 2
    # no SRAM, registers or threads declared: no limit from them, even on a device with 1 byte of each
    # (1 thread per SM): 8 slots, 5 blocks in one wave; 1 declared thread per block leaves 4 slots, 2 waves
    assert waves_for(toy.replace(sram_per_sm=1), 5) == 1 and waves_for(toy.replace(register_bytes=1), 5) == 1
    assert waves_for(toy.replace(max_threads_per_sm=1), 5) == 1
    assert waves_for(toy.replace(max_threads_per_sm=1), 5, threads_per_block=1) == 2


def test_sm_time_closed_form():
    t = np.array([[4.0, 1.0, 2.0, 1.0]])               # mem 4, comp max(1, 2 + 1) = 3
    assert sm_time(t, 1)[0] == 4 + 3 and sm_time(t, 3)[0] == 4 + 1 and sm_time(t, np.inf)[0] == 4
    assert sm_time(t, 0)[0] == 7                         # no resident block counts as one
    t = np.array([[1.0, 5.0, 0.0, 0.0]])
    assert sm_time(t, 2)[0] == 5 + 0.5


def test_schedule_equal_and_uneven_blocks():
    """Blocks come as segments (a run of one class): ``times`` rows mark which segment a slot ran."""
    mark = np.eye(4)[:2]                                          # segment s adds 1 to resource s
    # five equal blocks of 2 on 2 slots: the closed form, slot 0 runs blocks 0, 2, 4 and finishes last
    seg = _Segments(np.array([0]), np.array([5]), np.array([0]), np.array([0]))
    makespan, used = schedule(seg, np.array([2.0]), mark[:1], 2, n_waves=3)
    assert makespan == 6.0 and used.tolist() == [3.0, 0.0, 0.0, 0.0]
    busy, per_slot = list_schedule(np.array([5]), np.array([2.0]), mark[:1], 2)
    assert busy.tolist() == [6.0, 4.0] and per_slot[:, 0].tolist() == [3.0, 2.0]
    # block 0 takes slot 0 until 3; blocks 1, 2, 3 run one after another on slot 1: ends at 3
    seg = _Segments(np.array([0, 1]), np.array([1, 3]), np.array([0, 1]), np.array([0, 0]))
    makespan, used = schedule(seg, np.array([3.0, 1.0]), mark, 2, n_waves=2)
    assert makespan == 3.0
    busy, per_slot = list_schedule(np.array([1, 3]), np.array([3.0, 1.0]), mark, 2)
    assert busy.tolist() == [3.0, 3.0] and per_slot[:, :2].tolist() == [[1.0, 0.0], [0.0, 3.0]]
    # one block: the closed form
    seg = _Segments(np.array([0]), np.array([1]), np.array([0]), np.array([0]))
    makespan, used = schedule(seg, np.array([2.5]), mark[:1], 3, n_waves=1)
    assert makespan == 2.5 and used.tolist() == [1.0, 0.0, 0.0, 0.0]


def heap_schedule(length, duration, times, n_slots):
    """List scheduling the plain way: a heap of (free time, arrival order, slot), one pop and push per block."""
    heap = [(0.0, i, i) for i in range(n_slots)]
    used = np.zeros((n_slots, times.shape[1]))
    arrivals = n_slots
    for s, n in enumerate(length):
        for _ in range(n):
            free, _, slot = heapq.heappop(heap)
            used[slot] += times[s]
            heapq.heappush(heap, (free + duration[s], arrivals, slot))
            arrivals += 1
    busy = np.zeros(n_slots)
    for free, _, slot in heap:
        busy[slot] = free
    return busy, used


@settings(max_examples=examples(60))
@given(data=st.data(), n_slots=st.integers(1, 24), ties=st.booleans())
def test_the_ring_schedules_each_block_as_a_heap_would(data, n_slots, ties):
    """Bit for bit, whichever side of the ring the insertions shift: a few duration values (ties) or
    any, short runs or long; earlier-freed slots first among equals."""
    n_seg = data.draw(st.integers(1, 12))
    length = np.array(data.draw(st.lists(st.integers(1, 40), min_size=n_seg, max_size=n_seg)))
    values = st.sampled_from([0.5, 1.0, 1.05, 2.0]) if ties else st.floats(0.01, 3.0)
    duration = np.array(data.draw(st.lists(values, min_size=n_seg, max_size=n_seg)))
    times = np.arange(n_seg * 4, dtype=np.float64).reshape(n_seg, 4) % 7 + 1
    busy, used = list_schedule(length, duration, times, n_slots)
    want_busy, want_used = heap_schedule(length, duration, times, n_slots)
    assert np.array_equal(busy, want_busy) and np.array_equal(used, want_used)


def test_schedule_of_equal_blocks_is_the_closed_form():
    # equal blocks take the closed form: makespan = waves * duration, computed as one product. List
    # scheduling reaches the same value by adding the duration once per wave, which in floating point
    # differs: ten waves of 0.1 s add up to 0.9999999999999999, not 10 * 0.1 = 1.0.
    mark = np.eye(4)[:1]
    seg = _Segments(np.array([0]), np.array([20]), np.array([0]), np.array([0]))
    makespan, used = schedule(seg, np.array([0.1]), mark, 2, n_waves=10)
    assert makespan == 10 * 0.1 == 1.0 and used.tolist() == [10.0, 0.0, 0.0, 0.0]
    busy, _ = list_schedule(np.array([20]), np.array([0.1]), mark, 2)
    assert busy[0] == sum([0.1] * 10) != 1.0


def test_a_launch_of_a_trillion_equal_blocks_costs_in_closed_form(toy):
    # 10^12 blocks of one class, 8 slots: 1.25e11 waves of 2 * 1 us each, costed without visiting a block
    launch = BlockClasses(blocks(1, vec=VEC_US), np.array([0]), np.array([10 ** 12]))
    cost = kernel_cost(toy, launch)
    assert (cost.waves, cost.blocks_per_sm) == (125_000_000_000, 2)
    assert cost.time_s == approx(US + 125_000_000_000 * 2 * US)
    assert cost.resource_s["vector"] == approx(2 * 125_000_000_000 * US)

# ---- block classes with a Reuse declaration; the default Issue on a device with an INT32 pipe -------------


def two_operand_class(write_passes):
    """One block's counters: operand 0 read 3 x 100 distinct bytes, operand 1 read 2 x 50, writes 80 x passes."""
    c = new_counters(1, n_operands=2)[0]
    c[FIRST_OPERAND], c[FIRST_OPERAND + 1] = 3 * 100, 2 * 50
    c[HBM_READ] = 3 * 100 + 2 * 50
    c[HBM_WRITE] = write_passes * 80
    return c


def test_block_classes_with_per_class_reuse_of_two_operands(toy):
    # class 0 (3 blocks): distinct reads 100 and 50, distinct writes 80; class 1 (1 block, written 3 times):
    # it wrote operand 0 itself (distinct 0). One wave of 4 blocks (8 slots); L2 holds everything.
    launch = BlockClasses(np.stack([two_operand_class(2), two_operand_class(3)]), np.array([0, 1]), np.array([3, 1]))
    reuse = Reuse(reads={0: np.array([100, 0]), 1: np.array([50, 50])}, writes=np.array([80, 80]))
    cost = kernel_cost(toy.replace(l2_bytes=10 ** 6), launch, reuse=reuse)
    # reads left: class 0: 400 - (300 - 100) - (100 - 50) = 150; class 1: 400 - 300 - 50 = 50
    assert cost.hbm_read_bytes == 3 * 150 + 50 and cost.l2_hit_bytes == 4 * 400 - (3 * 150 + 50)
    # writes: each block's distinct 80 once; absorbed: 160 - 80 (class 0), 240 - 80 (class 1)
    assert cost.hbm_write_bytes == 4 * 80 and cost.l2_write_hit_bytes == 3 * 80 + 160
    assert cost.l2_working_set_bytes == 3 * (80 + 100 + 50) + (80 + 0 + 50)
    # the same launch block by block, with per-block declarations: the same numbers
    per_block = Reuse(reads={0: np.array([100, 100, 100, 0]), 1: 50}, writes=80)
    again = kernel_cost(toy.replace(l2_bytes=10 ** 6), launch.expand(), reuse=per_block)
    assert (again.hbm_read_bytes, again.hbm_write_bytes, again.l2_write_hit_bytes, again.l2_working_set_bytes) == \
        (cost.hbm_read_bytes, cost.hbm_write_bytes, cost.l2_write_hit_bytes, cost.l2_working_set_bytes)


def test_block_classes_with_one_reuse_value_for_every_block(toy):
    # 2 classes, 8 counter columns: one int per declaration broadcasts over the classes
    launch = BlockClasses(np.stack([two_operand_class(2), two_operand_class(3)]), np.array([0, 1]), np.array([2, 1]))
    cost = kernel_cost(toy.replace(l2_bytes=10 ** 6), launch, reuse=Reuse(reads={0: 100, 1: 50}, writes=80))
    assert cost.hbm_read_bytes == 3 * 150 and cost.hbm_write_bytes == 3 * 80
    assert cost.l2_write_hit_bytes == 2 * 80 + 160 and cost.l2_working_set_bytes == 3 * 230


def test_the_default_issue_puts_nothing_on_the_int32_or_sfu_pipes(toy):
    # a device with both pipes, slow ones: a kernel that declares no Issue is costed on the FMA pipe alone
    dev = toy.replace(int_rate=toy.vector_rate() / 100, sfu_rate=toy.vector_rate() / 100)
    c = blocks(1, mm=MM_US, vec=VEC_US)                       # 1 us of matmul + 1 us of vector work
    assert kernel_cost(dev, c).time_s == approx(US + 2 * US)
    assert kernel_cost(dev, c, issue=Issue()).time_s == approx(US + 2 * US)


def test_the_sfu_pipe_and_the_int32_pipe_each_set_the_vector_phase(toy):
    # per SM: SFU 250e9 / 8 = 31.25e9 ops/s; matmul 1 us per 1e6 FLOP
    dev = toy.replace(sfu_rate=toy.vector_rate() / 8, int_rate=toy.vector_rate() / 2)
    c = blocks(1, mm=MM_US)                                   # 1 us of matmul, no vector FLOPs
    # 0.25 exp per matmul FLOP: 250 000 SFU ops = 8 us, after the 1 us of matmul
    assert kernel_cost(dev, c, issue=Issue(sfu_per_mma_flop=0.25)).time_s == approx(US + 1 * US + 8 * US)
    # eff_vector 0.5: FMA pipe 125e9 FLOP/s per SM, INT32 pipe 62.5e9 ops/s per SM; 250 000 vector FLOPs,
    # all of them integer ops (0.25 per matmul FLOP): 0 on the FMA pipe, 4 us on the INT32 pipe
    half = dev.replace(eff_vector=0.5)
    c = blocks(1, mm=MM_US, vec=VEC_US)
    assert kernel_cost(half, c, issue=Issue(int_per_mma_flop=0.25)).time_s == approx(US + 1 * US + 4 * US)
    assert kernel_cost(half, c).time_s == approx(US + 1 * US + 2 * US)          # no Issue: FMA pipe only


def test_equal_blocks_of_two_classes_use_the_closed_form_breakdown(toy):
    # 1 block per SM (4 slots); 6 blocks of 1 us of HBM, then 6 of 1 us of SRAM: all take 1 us, 3 waves.
    # Slot 0 runs blocks 0, 4 and 8: two HBM blocks and one SRAM block.
    c = np.concatenate([blocks(6, hbm=HBM_US), blocks(6, sram=SRAM_US)])
    cost = kernel_cost(toy, c, sram_per_block=2048)
    assert cost.waves == 3 and cost.time_s == approx(US + 3 * US)
    assert cost.resource_s == {"hbm": approx(2 * US), "sram": approx(1 * US), "matmul": 0.0, "vector": 0.0}


def test_panels_need_one_entry_per_block(toy):
    with pytest.raises(ValueError, match=r"panels\[0\] has 3 entries for 4 blocks"):
        kernel_cost(toy, blocks(4, hbm=100), panels={0: np.zeros(3, np.int64)})


def test_occupancy_limits_lists_only_declared_resources(toy):
    # toy: 2 blocks per SM, 2048 B of SRAM, 2048 B of registers, 2048 threads per SM
    assert occupancy_limits(toy, 1024) == {"blocks": 2, "sram": 2}           # registers, threads undeclared
    assert occupancy_limits(toy, 1024, 512, 256) == {"blocks": 2, "sram": 2, "registers": 4, "threads": 8}
    limits = occupancy_limits(toy, 700, 600, 300)       # whole blocks: 2048 // 700, 2048 // 600, 2048 // 300
    assert limits == {"blocks": 2, "sram": 2, "registers": 3, "threads": 6}
    assert all(type(v) is int for v in limits.values())
    assert occupancy_limits(toy, 0, regs_per_block=512) == {"blocks": 2, "registers": 4}


def test_pipes_of_exactly_one_op_per_second_are_used(toy):
    # the boundary of ``rate > 0``: a 1 op/s SFU or INT32 pipe is slow, not absent. Per SM: 1 / 4 op/s, so
    # one op on it takes 4 s, against picoseconds for the one matmul FLOP and one vector FLOP.
    c = blocks(1, mm=1, vec=1)
    sfu = toy.replace(sfu_rate=1.0)
    assert kernel_cost(sfu, c, issue=Issue(sfu_per_mma_flop=1.0)).time_s - kernel_cost(sfu, c).time_s == \
        pytest.approx(4.0, rel=1e-9)
    ints = toy.replace(int_rate=1.0)                         # eff_vector 1: the RNG's op at 1 / 4 op/s per SM
    assert kernel_cost(ints, c, issue=Issue(int_per_mma_flop=1.0)).time_s - kernel_cost(ints, c).time_s == \
        pytest.approx(4.0, rel=1e-9)
    cvt = toy.replace(cvt_rate=1.0)                          # one conversion per vector FLOP at 1 / 4 op/s per SM
    assert kernel_cost(cvt, c, issue=Issue(cvt_per_vector_flop=1.0)).time_s - kernel_cost(cvt, c).time_s == \
        pytest.approx(4.0, rel=1e-9)


def test_undeclared_registers_and_threads_never_limit(toy):
    # a 1-byte register file and 1 thread per SM: a kernel that declares neither is limited by neither
    one = toy.replace(register_bytes=1, max_threads_per_sm=1)
    assert occupancy_limit(one, 0) == (2, "blocks") and occupancy(one, 0) == 2
    assert occupancy_limit(one, 0, threads_per_block=1) == (1, "threads")
    assert occupancy_limit(one, 0, regs_per_block=1) == (1, "registers")
    assert occupancy(one, 0, threads_per_block=2) == 1                  # 0 fit, still 1 (the check is elsewhere)
    cost = kernel_cost(one, blocks(8, vec=VEC_US))                      # kernel_cost's default: no threads declared
    assert (cost.blocks_per_sm, cost.occupancy_limit, cost.waves) == (2, "blocks", 1)
    assert kernel_cost(one, blocks(8, vec=VEC_US), threads_per_block=1).blocks_per_sm == 1


def test_the_rng_ops_leave_the_fma_pipe(toy):
    # a fast INT32 pipe; 250 000 vector FLOPs (1 us on the FMA pipe), 0.125 RNG op per matmul FLOP:
    # 125 000 of them go to the INT32 pipe, so the FMA pipe takes 0.5 us after the 1 us of matmul
    dev = toy.replace(int_rate=toy.vector_rate() * 100)
    c = blocks(1, mm=MM_US, vec=VEC_US)
    assert kernel_cost(dev, c).time_s == approx(US + 1 * US + 1 * US)
    assert kernel_cost(dev, c, issue=Issue(int_per_mma_flop=0.125)).time_s == approx(US + 1 * US + 0.5 * US)
