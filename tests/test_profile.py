"""Profile: records, totals, nesting, JSON, Chrome traces and roofline plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyml.kernels.matmul import matmul
from tinyml.sim import KernelRecord, Profile, active_profile, current_profile, load_device, meta
from tinyml.sim.counters import HBM_READ, new_counters

pytestmark = pytest.mark.usefixtures("warm_kernels")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def prof():
    """Four kernels of different kinds on the toy device, in counting mode."""
    with Profile("toy", name="mixed") as p:
        matmul(meta((40, 24)), meta((24, 30)), version=1)
        matmul(meta((40, 24)), meta((24, 30)), version=2)
        matmul(meta((64, 64), "fp32"), meta((64, 64), "fp32"), version=3)
        p.record("tiny", (1,), new_counters(1), dtype="fp16", sram_per_block=0, stream=1)
    return p


def test_totals_are_sums_of_records(prof):
    recs = prof.records
    assert len(recs) == 4
    assert prof.time_s == pytest.approx(sum(r.time_s for r in recs), rel=1e-12)
    for field in ("hbm_read_bytes", "hbm_write_bytes", "flops_matmul", "flops_vector"):
        assert getattr(prof, field) == sum(getattr(r, field) for r in recs), field
    assert prof.hbm_bytes == sum(r.hbm_read_bytes + r.hbm_write_bytes for r in recs)
    totals = prof.totals()
    assert totals["kernels"] == 4
    assert totals["time_s"] == pytest.approx(sum(r.time_s for r in recs), rel=1e-12)
    assert totals["peak_hbm_bytes"] == prof.peak_hbm_bytes == max(r.peak_hbm_bytes for r in recs)
    # the bound that takes most time wins
    by_bound = {}
    for r in recs:
        by_bound[r.bound] = by_bound.get(r.bound, 0.0) + r.time_s
    assert totals["bound"] == max(by_bound, key=by_bound.get)


def test_records_start_where_the_previous_one_ended(prof):
    start = 0.0
    for r in prof.records:
        assert r.start_s == pytest.approx(start, rel=1e-12, abs=1e-18)
        start += r.time_s


def test_record_properties(prof):
    for r in prof.records:
        assert isinstance(r, KernelRecord)
        assert r.hbm_bytes == r.hbm_read_bytes + r.hbm_write_bytes
        assert r.flops == r.flops_matmul + r.flops_vector
        if r.hbm_bytes:
            assert r.intensity == pytest.approx(r.flops / r.hbm_bytes)
    assert prof.records[-1].intensity == float("inf")   # no bytes at all


def test_to_dict_round_trips_through_json(prof):
    d = prof.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert json.loads(prof.to_json()) == d
    assert d["device"] == "toy"
    assert [k["name"] for k in d["kernels"]] == [r.name for r in prof.records]
    assert d["kernels"][0]["grid"] == list(prof.records[0].grid)
    assert d["totals"]["kernels"] == 4


def test_chrome_trace(prof, tmp_path):
    path = prof.to_chrome_trace(tmp_path / "trace.json")
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    kernels = [e for e in events if e["ph"] == "X"]
    assert len(kernels) == len(prof.records)
    for e, r in zip(kernels, prof.records):
        assert e["name"] == r.name
        assert e["ts"] == pytest.approx(r.start_s * 1e6, rel=1e-12, abs=1e-12)
        assert e["dur"] == pytest.approx(r.time_s * 1e6, rel=1e-12)
        assert e["tid"] == r.stream and "pid" in e
        assert e["args"]["hbm_read_bytes"] == r.hbm_read_bytes
    # events follow each other on the time line
    for e1, e2 in zip(kernels, kernels[1:]):
        assert e2["ts"] == pytest.approx(e1["ts"] + e1["dur"], rel=1e-9)
    # one named track per stream
    names = [e for e in events if e["ph"] == "M" and e["name"] == "thread_name"]
    assert sorted(e["tid"] for e in names) == [0, 1]


def test_roofline_writes_a_png(prof, tmp_path):
    out = prof.roofline(tmp_path / "roofline.png")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_table_names_every_kernel(prof):
    text = prof.table()
    for r in prof.records:
        assert r.name in text
    assert "peak HBM" in text


def test_empty_profile():
    with Profile("toy") as p:
        pass
    assert p.records == [] and p.time_s == 0 and p.bound == "none"
    assert json.loads(p.to_json())["totals"]["kernels"] == 0


def test_records_go_to_the_innermost_profile():
    a, b = meta((8, 8)), meta((8, 8))
    assert active_profile() is None
    with Profile("toy", name="outer") as outer:
        matmul(a, b)
        with Profile("a100-40gb", name="inner") as inner:
            assert active_profile() is inner and current_profile() is inner
            matmul(a, b)
            matmul(a, b, version=1)
        assert active_profile() is outer
        matmul(a, b, version=2)
    assert active_profile() is None
    assert [r.name for r in outer.records] == ["matmul_v3_mma", "matmul_v2_tiled"]
    assert [r.name for r in inner.records] == ["matmul_v3_mma", "matmul_v1_naive"]
    assert outer.device.name == "toy" and inner.device.name == "a100-40gb"


def test_profile_exits_cleanly_on_error():
    with pytest.raises(RuntimeError):
        with Profile("toy"):
            raise RuntimeError("boom")
    assert active_profile() is None


def test_kernel_outside_any_profile_still_works():
    assert active_profile() is None
    rng = np.random.default_rng(11)
    a = rng.standard_normal((9, 4)).astype(np.float32)
    b = rng.standard_normal((4, 6)).astype(np.float32)
    for version in (1, 2, 3):
        c = matmul(a, b, version=version)
        np.testing.assert_allclose(c, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-5)
    # with none active, a throwaway profile on the default device is used
    assert current_profile().device is load_device()
    assert active_profile() is None


def test_record_by_hand_costs_counters():
    dev = load_device("toy")
    c = new_counters(2)
    c[:, HBM_READ] = 64_000          # 2 us per block at 32 GB/s per SM; 2 blocks on 2 SMs
    with Profile(dev) as p:
        rec = p.record("copy", (2,), c, dtype="fp16", sram_per_block=0)
    assert rec.time_s == pytest.approx(1e-6 + 2e-6, rel=1e-12)
    assert rec.hbm_read_bytes == 128_000 and rec.bound == "memory"
    assert rec.grid == (2,) and rec.n_blocks == 2


# ---- the active profile is per thread and per asyncio task --------------------------------------

_SHAPES = {"a100-40gb": ((64, 32), (32, 48)), "h100-sxm": ((40, 24), (24, 56))}


def _launches(device: str, launch) -> list[dict]:
    """The records of three matmuls of this device's shapes, each started through ``launch``."""
    (m, k), (k2, n) = _SHAPES[device]
    with Profile(device, name=device) as p:
        for version in (1, 2, 3):
            launch(lambda: matmul(meta((m, k)), meta((k2, n)), version=version))
    assert active_profile() is None
    return [r.to_dict() for r in p.records]


def test_two_threads_each_record_only_their_own_kernels():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    alone = {dev: _launches(dev, lambda run: run()) for dev in _SHAPES}   # one at a time: the truth
    assert alone["a100-40gb"] != alone["h100-sxm"]
    turns = threading.Barrier(2)

    def in_lockstep(run):          # both threads are inside their profile, launching in turns
        turns.wait()
        run()
        turns.wait()

    with ThreadPoolExecutor(2) as pool:
        futures = {dev: pool.submit(_launches, dev, in_lockstep) for dev in _SHAPES}
        together = {dev: f.result(timeout=120) for dev, f in futures.items()}
    assert together == alone
    assert active_profile() is None


def test_two_asyncio_tasks_each_record_only_their_own_kernels():
    import asyncio

    alone = {dev: _launches(dev, lambda run: run()) for dev in _SHAPES}

    async def task(dev: str) -> list[dict]:
        (m, k), (k2, n) = _SHAPES[dev]
        with Profile(dev, name=dev) as p:
            for version in (1, 2, 3):
                await asyncio.sleep(0)          # let the other task enter its profile and launch
                matmul(meta((m, k)), meta((k2, n)), version=version)
                await asyncio.sleep(0)
        return [r.to_dict() for r in p.records]

    async def both():
        return await asyncio.gather(*(task(dev) for dev in _SHAPES))

    together = dict(zip(_SHAPES, asyncio.run(both())))
    assert together == alone
    assert active_profile() is None


def test_a_task_inherits_the_profile_active_where_it_was_created():
    import asyncio

    async def child():
        return active_profile()

    async def parent():
        with Profile("toy") as p:
            return p, await asyncio.create_task(child())

    outer, seen = asyncio.run(parent())
    assert seen is outer
