"""The cost model (tinyml.sim.cost) on hand-built counters.

Expected values come from the formula in cost.py's docstring, re-implemented
here with plain Python loops, or from numbers worked out by hand on the
``toy`` device (whose efficiencies are all 1.0).
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import (PRESETS, any_devices, counters_arrays, devices, panel_launches, sram_per_block,
                        small_devices)
from tinyml.sim import kernel_cost, load_device, occupancy, waves_for
from tinyml.sim.counters import (FIRST_OPERAND, FLOPS_MATMUL, FLOPS_VECTOR, HBM_READ, HBM_WRITE, SRAM_READ,
                                 SRAM_WRITE, new_counters, totals)


# ---- an independent, loop-by-loop reading of the docstring ---------------------------

def blocks_per_sm(dev, spb: int) -> int:
    if spb <= 0:
        return dev.max_blocks_per_sm
    return max(1, min(dev.max_blocks_per_sm, dev.sram_per_sm // spb))


def reference_time(dev, counters, dtype="fp16", spb=0) -> tuple[float, int]:
    """(time_s, waves) from the docstring's formula, without L2 reuse: one wave -> per-SM
    sums; several -> each block, in order, on the first slot that frees up (heapq)."""
    n = counters.shape[0]
    bps = blocks_per_sm(dev, spb)
    slots = dev.sm_count * bps
    n_waves = math.ceil(n / slots)
    share = {
        "hbm": dev.hbm_bandwidth * dev.eff_hbm / dev.sm_count,
        "sram": dev.sram_bandwidth * dev.eff_sram / dev.sm_count,
        "matmul": dev.matmul_rate(dtype) * dev.eff_matmul / dev.sm_count,
        "vector": dev.vector_rate("fp32") * dev.eff_vector / dev.sm_count,
    }

    def work(rows):
        acc = {"hbm": 0, "sram": 0, "matmul": 0, "vector": 0}
        for row in rows:
            row = [int(x) for x in row]
            acc["hbm"] += row[HBM_READ] + row[HBM_WRITE]
            acc["sram"] += row[SRAM_READ] + row[SRAM_WRITE]
            acc["matmul"] += row[FLOPS_MATMUL]
            acc["vector"] += row[FLOPS_VECTOR]
        return {r: acc[r] / share[r] for r in share}

    if n <= slots:
        groups = {}
        for b in range(n):
            groups.setdefault(b % dev.sm_count, []).append(counters[b])
        return dev.launch_overhead_s + max(_sm_time(work(rows), len(rows)) for rows in groups.values()), n_waves
    free = [0.0] * slots
    for b in range(n):
        start = heapq.heappop(free)
        heapq.heappush(free, start + bps * _sm_time(work([counters[b]]), bps))
    return dev.launch_overhead_s + max(free), n_waves


def _sm_time(t: dict, resident: int) -> float:
    """The docstring's overlap rules: matmul + vector add up; memory hides behind
    compute only by the share the other resident blocks can cover."""
    mem, comp = t["hbm"], max(t["sram"], t["matmul"] + t["vector"])
    return max(mem, comp) + min(mem, comp) / resident


def reference_l2(counters, panels, slots) -> int:
    """Bytes served from L2: every (wave, operand, panel) is fetched from HBM once."""
    seen, hits = set(), 0
    for b in range(counters.shape[0]):
        for op, panel in panels.items():
            key = (b // slots, op, int(panel[b]))
            if key in seen:
                hits += int(counters[b, FIRST_OPERAND + op])
            else:
                seen.add(key)
    return hits


_COLUMN = {"hbm_read": HBM_READ, "hbm_write": HBM_WRITE, "sram_read": SRAM_READ,
           "sram_write": SRAM_WRITE, "matmul": FLOPS_MATMUL, "vector": FLOPS_VECTOR}


def uniform(n, **per_block) -> np.ndarray:
    """``n`` identical blocks, e.g. ``uniform(4, hbm_read=1000, matmul=10**6)``."""
    c = new_counters(n)
    for name, value in per_block.items():
        c[:, _COLUMN[name]] = value
    return c


# ---- properties ----------------------------------------------------------------------

@given(dev=any_devices(), counters=counters_arrays(), dtype=st.sampled_from(["fp16", "bf16", "fp32"]),
       data=st.data())
def test_matches_docstring_formula(dev, counters, dtype, data):
    spb = data.draw(sram_per_block(dev))
    cost = kernel_cost(dev, counters, dtype=dtype, sram_per_block=spb)
    t, n_waves = reference_time(dev, counters, dtype, spb)
    assert cost.waves == n_waves
    assert cost.time_s == pytest.approx(t, rel=1e-9)
    assert cost.blocks_per_sm == blocks_per_sm(dev, spb)
    # no panels: every byte read comes from HBM
    assert cost.hbm_read_bytes == int(counters[:, HBM_READ].sum())
    assert cost.hbm_write_bytes == int(counters[:, HBM_WRITE].sum())
    assert cost.l2_hit_bytes == 0


@given(dev=any_devices(), counters=counters_arrays(), factor=st.floats(1.0, 100.0), data=st.data())
def test_more_hbm_bandwidth_is_never_slower(dev, counters, factor, data):
    spb = data.draw(sram_per_block(dev))
    slow = kernel_cost(dev, counters, sram_per_block=spb)
    fast = kernel_cost(dev.replace(hbm_bandwidth=dev.hbm_bandwidth * factor), counters, sram_per_block=spb)
    assert fast.time_s <= slow.time_s


@given(dev=any_devices(), counters=counters_arrays(big=10 ** 4), data=st.data())
def test_time_at_least_launch_overhead_and_cycles(dev, counters, data):
    spb = data.draw(sram_per_block(dev))
    cost = kernel_cost(dev, counters, sram_per_block=spb)
    assert cost.time_s >= dev.launch_overhead_s
    assert cost.cycles == pytest.approx(cost.time_s * dev.clock_hz, rel=1e-12)
    assert cost.bound in {"memory", "compute", "sram", "launch"}
    assert sum(cost.resource_s.values()) >= 0


@given(dev=any_devices(), n=st.integers(0, 100_000), data=st.data())
def test_waves_closed_form(dev, n, data):
    spb = data.draw(sram_per_block(dev))
    expected = math.ceil(n / (dev.sm_count * blocks_per_sm(dev, spb)))
    assert waves_for(dev, n, spb) == expected
    if 0 < n <= 5000:
        assert kernel_cost(dev, new_counters(n), sram_per_block=spb).waves == expected


@given(dev=any_devices(), data=st.data())
def test_occupancy_limited_by_sram(dev, data):
    spb = data.draw(st.integers(dev.sram_per_sm // 2 + 1, dev.sram_per_sm))
    assert occupancy(dev, spb) == 1
    small = data.draw(sram_per_block(dev).filter(lambda x: x > 0))
    assert occupancy(dev, small) == min(dev.max_blocks_per_sm, dev.sram_per_sm // small)
    assert occupancy(dev, 0) == dev.max_blocks_per_sm
    # a grid of one block per SM-slot: sm_count blocks take one wave at occupancy 1
    cost = kernel_cost(dev, new_counters(dev.sm_count + 1), sram_per_block=spb)
    assert cost.blocks_per_sm == 1 and cost.waves == 2


@pytest.mark.parametrize("name, spb, expected", [
    ("toy", 1, 2), ("toy", 1024, 2), ("toy", 1025, 1), ("toy", 2048, 1), ("toy", 4096, 1),
    ("a100-40gb", 6144, 32), ("a100-40gb", 6145, 31), ("a100-40gb", 65536, 3), ("a100-40gb", 65537, 2),
])
def test_occupancy_by_hand(name, spb, expected):
    """toy: 2 KB SRAM, at most 2 blocks; A100: 192 KB, at most 32 blocks per SM."""
    assert occupancy(load_device(name), spb) == expected


@pytest.mark.parametrize("name", PRESETS)
def test_tail_wave_doubles_time(name):
    """sm_count + 1 identical blocks at one block per SM: 2 waves, twice the time."""
    dev = load_device(name)
    spb = dev.sram_per_sm  # a block fills its SM: blocks_per_sm == 1
    block = dict(hbm_read=10 ** 7, hbm_write=10 ** 6, sram_read=10 ** 7, matmul=10 ** 9, vector=10 ** 7)
    full = kernel_cost(dev, uniform(dev.sm_count, **block), sram_per_block=spb)
    tail = kernel_cost(dev, uniform(dev.sm_count + 1, **block), sram_per_block=spb)
    assert full.blocks_per_sm == tail.blocks_per_sm == 1
    assert full.waves == 1 and tail.waves == 2
    ovh = dev.launch_overhead_s
    assert tail.time_s - ovh == pytest.approx(2 * (full.time_s - ovh), rel=1e-9)


@pytest.mark.parametrize("name", PRESETS)
def test_low_occupancy_grid_is_no_faster_per_block(name):
    """Fewer blocks than SMs: each SM still gets only its 1/sm_count share of HBM."""
    dev = load_device(name)
    one = kernel_cost(dev, uniform(1, hbm_read=10 ** 8))
    full = kernel_cost(dev, uniform(dev.sm_count, hbm_read=10 ** 8))
    assert one.time_s == pytest.approx(full.time_s, rel=1e-12)
    # the full grid moves sm_count times the bytes in the same time
    achieved = dev.sm_count * 10 ** 8 / (full.time_s - dev.launch_overhead_s)
    assert achieved == pytest.approx(dev.hbm_bandwidth * dev.eff_hbm, rel=1e-9)


@pytest.mark.parametrize("name", PRESETS)
def test_bound_memory_compute_launch(name):
    dev = load_device(name)
    n = dev.sm_count
    long = 100 * dev.launch_overhead_s            # much longer than a launch
    per_sm_bw = dev.hbm_bandwidth * dev.eff_hbm / n
    per_sm_mm = dev.matmul_rate("fp16") * dev.eff_matmul / n
    per_sm_vec = dev.vector_rate("fp32") * dev.eff_vector / n

    mem = kernel_cost(dev, uniform(n, hbm_read=math.ceil(long * per_sm_bw)))
    assert (mem.bound, mem.limiter) == ("memory", "hbm")

    mm = kernel_cost(dev, uniform(n, matmul=math.ceil(long * per_sm_mm)), dtype="fp16")
    assert (mm.bound, mm.limiter) == ("compute", "matmul")

    vec = kernel_cost(dev, uniform(n, vector=math.ceil(long * per_sm_vec)))
    assert (vec.bound, vec.limiter) == ("compute", "vector")

    tiny = kernel_cost(dev, uniform(1, hbm_read=64, vector=64))
    assert (tiny.bound, tiny.limiter) == ("launch", "launch")
    assert tiny.time_s < 2 * dev.launch_overhead_s

    empty = kernel_cost(dev, new_counters(0))
    assert empty.time_s == dev.launch_overhead_s and empty.waves == 0 and empty.bound == "launch"


@given(dev=devices(), ratio=st.sampled_from([0.05, 0.2, 0.5, 2.0, 5.0, 20.0]))
def test_bound_follows_ridge_point(dev, ratio):
    """A kernel below the ridge point (FLOPs per HBM byte) is memory-bound, above it compute-bound."""
    ridge = dev.ridge_point("fp16")
    n = dev.sm_count
    nbytes = math.ceil(100 * dev.launch_overhead_s * dev.hbm_bandwidth * dev.eff_hbm / n)
    flops = math.ceil(nbytes * ridge * ratio)
    cost = kernel_cost(dev, uniform(n, hbm_read=nbytes, matmul=flops), dtype="fp16")
    assert cost.bound == ("memory" if ratio < 1 else "compute")


def test_sram_bound():
    dev = load_device("toy")
    per_sm = dev.sram_bandwidth * dev.eff_sram / dev.sm_count
    c = uniform(4, sram_read=math.ceil(per_sm * 1e-3), hbm_read=10)
    assert kernel_cost(dev, c).bound == "sram"


# ---- hand-computed examples on the toy device --------------------------------------
#
# toy: 4 SMs, 2 KB SRAM each, at most 2 blocks per SM, efficiencies 1.0,
#      HBM 128 GB/s -> 32e9 B/s per SM, SRAM 512 GB/s -> 128e9 B/s per SM,
#      fp16 matmul 4 TFLOP/s -> 1e12 per SM, fp32 vector 1 TFLOP/s -> 2.5e11 per SM,
#      launch 1 us, clock 1 GHz.

def _five_blocks():
    c = new_counters(5)
    c[0, HBM_READ] = 32_000            # 32e3 / 32e9   = 1 us
    c[1, FLOPS_MATMUL] = 3_000_000     # 3e6  / 1e12   = 3 us
    c[2, SRAM_READ] = 64_000           # 128e3 / 128e9 = 1 us
    c[2, SRAM_WRITE] = 64_000
    c[3, FLOPS_VECTOR] = 500_000       # 5e5  / 2.5e11 = 2 us
    c[4, HBM_WRITE] = 32_000           # 1 us, on whichever SM block 4 lands
    return c


def test_toy_hand_computed_one_wave():
    dev = load_device("toy")
    # 1 KB per block -> 2 blocks per SM -> 8 slots -> 1 wave; block 4 shares SM 0 with block 0.
    # SM0: 2 us of HBM, SM1: 3 us matmul, SM2: 1 us SRAM, SM3: 2 us vector -> wave = 3 us.
    cost = kernel_cost(dev, _five_blocks(), dtype="fp16", sram_per_block=1024)
    assert cost.blocks_per_sm == 2 and cost.waves == 1
    assert cost.time_s == pytest.approx(1e-6 + 3e-6, rel=1e-12)
    assert cost.cycles == pytest.approx(4000, rel=1e-12)
    assert (cost.bound, cost.limiter) == ("compute", "matmul")
    assert cost.resource_s["matmul"] == pytest.approx(3e-6, rel=1e-12)
    assert cost.resource_s["hbm"] == 0
    assert cost.hbm_read_bytes == 32_000 and cost.hbm_write_bytes == 32_000


def test_toy_hand_computed_two_waves():
    dev = load_device("toy")
    # 2 KB per block -> 1 block per SM -> 4 slots -> 2 waves. Blocks 0-3 start at once (1, 3, 1, 2 us);
    # block 4 (1 us) takes the first slot to free up, at 1 us, and ends at 2 us: block 1 ends last, at 3 us.
    cost = kernel_cost(dev, _five_blocks(), dtype="fp16", sram_per_block=2048)
    assert cost.blocks_per_sm == 1 and cost.waves == 2
    assert cost.time_s == pytest.approx(1e-6 + 3e-6, rel=1e-12)


def test_toy_hand_computed_fp32_matmul_rate():
    dev = load_device("toy")
    # fp32 matmul is 1 TFLOP/s -> 2.5e11 per SM: block 1's 3e6 FLOPs take 12 us.
    cost = kernel_cost(dev, _five_blocks(), dtype="fp32", sram_per_block=1024)
    assert cost.time_s == pytest.approx(1e-6 + 12e-6, rel=1e-12)


def test_toy_hand_computed_launch_bound():
    dev = load_device("toy")
    c = new_counters(1)
    c[0, HBM_READ] = 3_200               # 0.1 us < 1 us launch
    cost = kernel_cost(dev, c)
    assert cost.time_s == pytest.approx(1.1e-6, rel=1e-12)
    assert cost.bound == "launch"


# ---- L2 reuse of panels ----------------------------------------------------------------

@given(dev=any_devices(), launch=panel_launches(), data=st.data())
def test_l2_panels_paid_once_per_wave(dev, launch, data):
    counters, panels, _ = launch
    spb = data.draw(sram_per_block(dev))
    slots = dev.sm_count * blocks_per_sm(dev, spb)
    cost = kernel_cost(dev, counters, sram_per_block=spb, panels=panels)
    raw = int(counters[:, HBM_READ].sum())
    hits = reference_l2(counters, panels, slots)
    assert cost.l2_hit_bytes == hits
    assert cost.hbm_read_bytes == raw - hits
    assert cost.hbm_read_bytes + cost.l2_hit_bytes == raw == totals(counters)["hbm_read_bytes"]
    # reuse never makes a kernel slower
    assert cost.time_s <= kernel_cost(dev, counters, sram_per_block=spb).time_s * (1 + 1e-12)


def test_l2_panels_hand_example():
    dev = load_device("toy")  # 1 block per SM at 2 KB -> 4 slots per wave
    c = new_counters(6, n_operands=1)
    c[:, FIRST_OPERAND] = 1000
    c[:, HBM_READ] = 1000
    panels = {0: np.array([0, 0, 1, 0, 0, 0])}
    # wave 0 = blocks 0-3: panels {0, 0, 1, 0} -> panel 0 fetched once, 2 repeats hit
    # wave 1 = blocks 4-5: panels {0, 0}       -> fetched again once, 1 repeat hits
    cost = kernel_cost(dev, c, sram_per_block=2048, panels=panels)
    assert cost.l2_hit_bytes == 3000
    assert cost.hbm_read_bytes == 3000


def test_empty_panels_mean_no_reuse():
    dev = load_device("toy")
    c = new_counters(3, n_operands=1)
    c[:, [HBM_READ, FIRST_OPERAND]] = 500
    for panels in (None, {}):
        cost = kernel_cost(dev, c, panels=panels)
        assert cost.l2_hit_bytes == 0 and cost.hbm_read_bytes == 1500


@given(dev=small_devices(), counters=counters_arrays(max_blocks=60))
def test_cost_is_independent_of_panel_free_operand_columns(dev, counters):
    """Operand columns only matter through declared panels."""
    with_ops = np.concatenate([counters, counters[:, :2]], axis=1)
    a = kernel_cost(dev, counters)
    b = kernel_cost(dev, with_ops)
    assert a.time_s == b.time_s and a.hbm_read_bytes == b.hbm_read_bytes


# ---- the overlap rules, by hand on the toy device ----------------------------------------

def _mixed_block(n):
    c = new_counters(n)
    c[:, HBM_READ] = 32_000             # 1 us of HBM per block
    c[:, FLOPS_MATMUL] = 3_000_000      # 3 us of tensor cores
    c[:, FLOPS_VECTOR] = 500_000        # 2 us of vector units: adds to the matmul time
    return c


def test_one_resident_block_waits_for_its_memory():
    dev = load_device("toy")
    # 4 blocks, 1 per SM: compute 3 + 2 = 5 us, memory 1 us, nothing hides it: 6 us.
    cost = kernel_cost(dev, _mixed_block(4), dtype="fp16", sram_per_block=2048)
    assert cost.time_s == pytest.approx(1e-6 + 6e-6, rel=1e-12)
    assert (cost.bound, cost.limiter) == ("compute", "matmul")


def test_two_resident_blocks_hide_half_the_memory():
    dev = load_device("toy")
    # 8 blocks, 2 per SM: per SM compute 10 us, memory 2 us, half hidden: 10 + 2 / 2 = 11 us.
    cost = kernel_cost(dev, _mixed_block(8), dtype="fp16", sram_per_block=1024)
    assert cost.waves == 1
    assert cost.time_s == pytest.approx(1e-6 + 11e-6, rel=1e-12)


def test_uneven_blocks_balance_across_slots():
    dev = load_device("toy")
    # 1 block per SM -> 4 slots. Block 0 does 4 us of tensor-core work, the others 1 us each.
    # Blocks 1-3 finish at 1 us; blocks 4-6 take their slots (end at 2 us), block 7 the next (3 us);
    # block 0 ends last at 4 us. Waiting at a wave boundary would have cost 4 + 1 = 5 us.
    c = new_counters(8)
    c[:, FLOPS_MATMUL] = 1_000_000
    c[0, FLOPS_MATMUL] = 4_000_000
    cost = kernel_cost(dev, c, dtype="fp16", sram_per_block=2048)
    assert cost.waves == 2
    assert cost.time_s == pytest.approx(1e-6 + 4e-6, rel=1e-12)


# ---- L2 capacity (Reuse), pipelining, register-file occupancy ---------------------------

def sweeping_blocks(n_blocks: int, passes: int, distinct: int) -> np.ndarray:
    """Blocks that read ``distinct`` bytes of operand 0 ``passes`` times and write them ``passes`` times."""
    c = new_counters(n_blocks, n_operands=1)
    c[:, HBM_READ] = c[:, FIRST_OPERAND] = passes * distinct
    c[:, HBM_WRITE] = passes * distinct
    return c


@given(passes=st.integers(1, 6), distinct=st.integers(1, 10_000), n_blocks=st.integers(1, 20),
       l2=st.integers(0, 200_000))
def test_l2_capacity_reuse_is_all_or_nothing_per_wave(passes, distinct, n_blocks, l2):
    from tinyml.sim import Reuse

    dev = load_device("toy").replace(l2_bytes=l2)        # 4 SMs, 1 block per SM at 2 KB: 4 blocks per wave
    c = sweeping_blocks(n_blocks, passes, distinct)
    cost = kernel_cost(dev, c, sram_per_block=2048, reuse=Reuse(reads={0: distinct}, writes=distinct))
    expect_r = expect_w = 0
    for w0 in range(0, n_blocks, 4):
        blocks = min(4, n_blocks - w0)
        fits = l2 > 0 and blocks * 2 * distinct <= l2      # working set: distinct reads + distinct writes
        expect_r += blocks * (distinct if fits else passes * distinct)
        expect_w += blocks * (distinct if fits else passes * distinct)
    assert (cost.hbm_read_bytes, cost.hbm_write_bytes) == (expect_r, expect_w)
    assert cost.hbm_read_bytes + cost.l2_hit_bytes == passes * distinct * n_blocks
    assert cost.hbm_write_bytes + cost.l2_write_hit_bytes == passes * distinct * n_blocks
    assert cost.l2_working_set_bytes == min(4, n_blocks) * 2 * distinct
    assert cost.time_s <= kernel_cost(dev, c, sram_per_block=2048).time_s * (1 + 1e-12)


def test_data_a_block_wrote_itself_is_reread_from_l2():
    from tinyml.sim import Reuse

    dev = load_device("toy").replace(l2_bytes=10_000)
    c = sweeping_blocks(2, 3, 1000)
    cost = kernel_cost(dev, c, reuse=Reuse(reads={0: 0}, writes=1000))     # it wrote the data before reading it
    assert cost.hbm_read_bytes == 0 and cost.hbm_write_bytes == 2 * 1000


@given(mem=st.integers(1, 10**6), flops=st.integers(1, 10**9))
def test_pipelined_kernels_overlap_their_own_loads_with_compute(mem, flops):
    dev = load_device("toy")
    c = new_counters(1)
    c[0, HBM_READ] = mem
    c[0, FLOPS_MATMUL] = flops
    t_mem = mem / (dev.hbm_bandwidth / dev.sm_count)
    t_mm = flops / (dev.matmul_rate("fp16") / dev.sm_count)
    plain_t = kernel_cost(dev, c, sram_per_block=2048).time_s - dev.launch_overhead_s
    piped_t = kernel_cost(dev, c, sram_per_block=2048, pipelined=True).time_s - dev.launch_overhead_s
    assert math.isclose(plain_t, t_mem + t_mm, rel_tol=1e-9, abs_tol=1e-18)   # one block per SM: they add up
    assert math.isclose(piped_t, max(t_mem, t_mm), rel_tol=1e-9, abs_tol=1e-18)


def test_register_file_limits_occupancy():
    dev = load_device("a100-40gb")
    assert occupancy(dev, 16 * 1024) == 12                                   # 192 KB / 16 KB
    assert occupancy(dev, 16 * 1024, regs_per_block=96 * 1024) == 2          # 256 KB / 96 KB
    m2 = load_device("m2-max")
    assert occupancy(m2, 512, regs_per_block=10**6) == m2.max_blocks_per_sm  # no register file: not a limit
