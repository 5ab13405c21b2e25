"""The HBM ledger: live bytes, peak bytes, capacity, and garbage collection."""

from __future__ import annotations

import gc
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import DTYPE_BITS, ledger_ops
from tinyml.kernels.matmul import matmul
from tinyml.sim import HbmLedger, HbmOutOfMemoryError, MetaTensor, Profile, ShapeError, TinymlError, load_device, meta
from tinyml.sim.units import fmt_bytes


def size_of(shape, dtype) -> int:
    """Bytes of a tensor, by hand: elements x bits, rounded up to whole bytes."""
    return math.ceil(math.prod(shape) * DTYPE_BITS[dtype] / 8)


@given(ops=ledger_ops(), capacity=st.integers(0, 40_000))
def test_used_and_peak_follow_a_reference(ops, capacity):
    ledger = HbmLedger(capacity, "test-device")
    live: dict[int, int] = {}          # handle -> bytes
    used = peak = 0
    for op in ops:
        if op[0] == "alloc":
            _, shape, dtype = op
            size = size_of(shape, dtype)
            if used + size > capacity:
                with pytest.raises(HbmOutOfMemoryError):
                    ledger.alloc("t", shape, dtype)
            else:
                live[ledger.alloc("t", shape, dtype)] = size
                used += size
                peak = max(peak, used)
        elif live:
            handle = sorted(live)[op[1] % len(live)]
            ledger.free(handle)
            used -= live.pop(handle)
        assert ledger.used == used == sum(a.nbytes for a in ledger.live.values())
        assert ledger.peak == peak
        assert set(ledger.live) == set(live)
        assert ledger.used <= ledger.capacity


def test_free_twice_and_unknown_handles_are_harmless():
    ledger = HbmLedger(1000)
    h = ledger.alloc("x", (10,), "fp32")
    ledger.free(h)
    ledger.free(h)
    ledger.free(12345)
    assert ledger.used == 0 and ledger.peak == 40


def test_sub_byte_and_scalar_sizes():
    ledger = HbmLedger(1000)
    ledger.alloc("q", (3, 3), "int4")       # 9 nibbles -> 5 bytes
    assert ledger.used == 5
    ledger.alloc("s", (), "fp16")           # a scalar is one element
    assert ledger.used == 7


def test_out_of_memory_lists_live_allocations():
    ledger = HbmLedger(1000, "tiny-gpu")
    ledger.alloc("weights", (10, 10), "fp32")   # 400 B
    ledger.alloc("acts", (5, 10), "fp32")       # 200 B
    with pytest.raises(HbmOutOfMemoryError) as err:
        ledger.alloc("scores", (101,), "fp32")  # 404 B > 400 B free
    msg = str(err.value)
    for word in ("tiny-gpu", "scores", "(101,)", "weights", "(10, 10)", "acts", "(5, 10)"):
        assert word in msg, word
    assert re.search(r"\b404\b", msg) and re.search(r"\b600\b", msg)
    # the failed allocation changed nothing
    assert ledger.used == 600 and len(ledger.live) == 2
    assert isinstance(err.value, TinymlError) and isinstance(err.value, MemoryError)
    # exactly filling the capacity is fine
    ledger.alloc("scores", (100,), "fp32")
    assert ledger.used == ledger.capacity == ledger.peak


def test_out_of_memory_message_with_many_allocations():
    ledger = HbmLedger(100)
    for i in range(25):
        ledger.alloc(f"t{i}", (1,), "fp32")
    with pytest.raises(HbmOutOfMemoryError) as err:
        ledger.alloc("big", (1000,), "fp32")
    assert "more" in str(err.value)  # the list is abridged, not 25 lines


def test_tracked_objects_are_freed_when_collected():
    ledger = HbmLedger(10 ** 6)
    x = np.zeros((8, 16), dtype=np.float32)
    m = MetaTensor((100, 100), "fp16")
    ledger.track(x, "x", "fp32")
    ledger.track(x, "x again", "fp32")       # the same object is counted once
    ledger.track(m, "m", "fp16")
    assert ledger.used == 8 * 16 * 4 + 100 * 100 * 2
    del x
    gc.collect()
    assert ledger.used == 100 * 100 * 2
    del m
    gc.collect()
    assert ledger.used == 0 and not ledger.live
    assert ledger.peak == 8 * 16 * 4 + 100 * 100 * 2


def test_new_tensor_in_both_modes():
    ledger = HbmLedger(10 ** 6)
    t = ledger.new_tensor("c", (3, 5), "bf16", execute=True)
    assert isinstance(t, np.ndarray) and t.shape == (3, 5) and t.dtype == np.float32
    mt = ledger.new_tensor("c", (7, 5), "fp16", execute=False)
    assert isinstance(mt, MetaTensor) and mt.shape == (7, 5) and mt.dtype == "fp16"
    assert ledger.used == 3 * 5 * 2 + 7 * 5 * 2
    del t, mt
    gc.collect()
    assert ledger.used == 0


def test_matmul_inputs_and_output_live_in_the_profile_ledger(warm_kernels):
    m, n, k = 6, 7, 5
    a = np.ones((m, k), np.float32)
    b = np.ones((k, n), np.float32)
    with Profile("toy") as prof:
        c = matmul(a, b, dtype="fp32")
        expected = (m * k + k * n + m * n) * 4
        assert prof.hbm.used == expected
        assert prof.records[0].peak_hbm_bytes == expected
        del a, b, c
        gc.collect()
        assert prof.hbm.used == 0
    assert prof.peak_hbm_bytes == expected


# ---- running out of HBM, the "standard attention at scale" lesson ----------------------

def test_counting_mode_matmul_too_big_for_toy_hbm(warm_kernels):
    toy = load_device("toy")
    assert toy.hbm_capacity == 2 ** 20
    # inputs fit (2 x 256 KiB) but the (1024 x 1024) fp16 output (2 MiB) does not
    a, b = meta((1024, 128), "fp16"), meta((128, 1024), "fp16")
    with Profile("toy") as prof:
        with pytest.raises(HbmOutOfMemoryError) as err:
            matmul(a, b)
    msg = str(err.value)
    assert "toy" in msg and "(1024, 1024)" in msg
    assert "(1024, 128)" in msg and "(128, 1024)" in msg     # the live inputs are listed
    assert prof.records == []
    # a shape that fits runs, in counting mode, without touching any data
    with Profile("toy") as prof:
        matmul(meta((256, 128), "fp16"), meta((128, 256), "fp16"))
    assert prof.peak_hbm_bytes == (256 * 128 * 2 + 256 * 256) * 2


def test_inputs_alone_can_exhaust_hbm():
    with Profile("toy"):
        with pytest.raises(HbmOutOfMemoryError):
            matmul(meta((1024, 1024), "fp16"), meta((1024, 8), "fp16"))


def test_attention_scores_at_128k_tokens_exhaust_an_a100():
    """S = Q K^T for 128K tokens and d = 64 in fp32 is 68.7 GB: more than 40 GB of HBM."""
    n, d = 128 * 1024, 64
    assert n * n * 4 > load_device("a100-40gb").hbm_capacity
    with Profile("a100-40gb"):
        with pytest.raises(HbmOutOfMemoryError, match="out of HBM"):
            matmul(meta((n, d), "fp32"), meta((d, n), "fp32"))


# ---- sizes are exact integers: no shape overflows into a small or negative size ------------

@pytest.mark.parametrize("shape, dtype", [
    ((2 ** 32, 2 ** 31 + 1), "fp16"),       # 2^63 + 2^32 elements: int64 wraps to a negative product
    ((1, 1, 2 ** 62, 2), "fp16"),           # exactly 2^63 elements: int64 wraps to -2^63
    ((2 ** 64 + 1,), "int4"),               # past any fixed-width integer
])
def test_huge_shapes_run_out_of_hbm_instead_of_overflowing(shape, dtype):
    ledger = HbmLedger(40 * 10 ** 9, "a100-40gb")
    keep = ledger.alloc("small", (10,), "fp32")
    with pytest.raises(HbmOutOfMemoryError) as err:
        ledger.alloc("huge", shape, dtype)
    assert ledger.used == 40 and ledger.peak == 40 and list(ledger.live) == [keep]
    assert f"needs {fmt_bytes(size_of(shape, dtype))}," in str(err.value)      # the true size, not a wrapped one
    if max(shape) <= 2 ** 63 - 1:
        with pytest.raises(HbmOutOfMemoryError):
            ledger.track(MetaTensor(shape, dtype), "huge", dtype)      # counting mode, the same check
    else:                       # a dimension no kernel can index (Numba passes int64) is refused sooner
        with pytest.raises(ShapeError, match="int64 maximum"):
            MetaTensor(shape, dtype)
    assert ledger.used == 40


def test_ledger_size_is_the_exact_integer_product():
    shape = (3, 2 ** 31, 5)
    assert HbmLedger.size_of("x", shape, "int4") == size_of(shape, "int4") == 3 * 2 ** 31 * 5 // 2
    with pytest.raises(TinymlError, match="negative"):
        HbmLedger(10 ** 6).alloc("x", (4, -2), "fp16")


def test_kv_cache_of_2_to_the_62_rows_is_refused():
    from tinyml.kernels.attention.kv_cache import KVCache

    for execute in (False, True):          # executing, NumPy is never asked for 2^64 bytes
        with Profile("a100-40gb") as prof:
            with pytest.raises(HbmOutOfMemoryError, match=r"k_cache \(1, 1, 4611686018427387904, 2\) fp16"):
                KVCache(1, 1, 2 ** 62, 2, execute=execute)
        assert prof.hbm.used == 0 and prof.peak_hbm_bytes == 0


# ---- simulated HBM first, then the host's memory, then NumPy ----------------------------------

def test_standard_attention_at_200k_tokens_is_out_of_hbm_not_numpy_memory(monkeypatch):
    """S (1, 1, 2e5, 2e5) is 80 GB in fp16 (149 GiB as float32 on the host): the simulated A100
    refuses it before NumPy is asked for it."""
    from tinyml.kernels.attention.standard import standard_attention
    from tinyml.sim import host

    asked = []
    monkeypatch.setattr(host, "check_host_memory", lambda n, what: asked.append(n))
    n = 200_000
    q = np.zeros((1, 1, n, 8), np.float32)
    with Profile("a100-40gb"):
        with pytest.raises(HbmOutOfMemoryError, match=r"S \(1, 1, 200000, 200000\)"):
            standard_attention(q, q, q)
    assert all(size < n * n for size in asked)         # the host was never asked for S


def test_host_memory_is_checked_after_hbm_and_before_numpy(monkeypatch):
    from tinyml.sim import HostMemoryError, host

    monkeypatch.setattr(host, "available_bytes", lambda: 100 * 2 ** 20)          # a 100 MiB host
    ledger = HbmLedger(10 ** 9, "big")
    shape = (1024, 32 * 1024)                                                  # 128 MiB as float32
    with pytest.raises(HostMemoryError) as err:
        ledger.new_tensor("S", shape, "fp16", execute=True)
    msg = str(err.value)
    assert "134 MB" in msg and "105 MB" in msg                  # what it needs, what the host has
    assert "meta" in msg and "--execute" in msg and "S (1024, 32768)" in msg
    assert ledger.used == 0 and not ledger.live
    assert isinstance(err.value, MemoryError) and isinstance(err.value, TinymlError)
    # counting mode needs no host memory
    assert ledger.new_tensor("S", shape, "fp16", execute=False).shape == shape
    # simulated HBM is checked first: a tensor neither holds is out of HBM
    with pytest.raises(HbmOutOfMemoryError):
        HbmLedger(10 ** 6, "small").new_tensor("S", shape, "fp16", execute=True)
    # small requests are not checked at all (the threshold is 64 MiB)
    assert ledger.new_tensor("s", (1024, 1024), "fp16", execute=True).shape == (1024, 1024)


def test_available_host_memory_is_read_from_the_system():
    from tinyml.sim import host

    avail = host.available_bytes()
    assert avail is None or 0 < avail < 2 ** 60


def test_reference_attention_checks_host_memory_first(monkeypatch):
    from tinyml.kernels import reference
    from tinyml.sim import HostMemoryError, host

    monkeypatch.setattr(host, "available_bytes", lambda: 100 * 2 ** 20)
    b, h, n, d = 1, 2, 4096, 4                          # 2 x 4096^2 scores x 8 B x 4 arrays = 1.07 GB
    assert reference.attention_host_bytes(b, h, n, n, d) == 8 * (b * h * n * n * 4 + b * h * d * 4 * n)
    q = np.zeros((b, h, n, d), np.float32)
    with pytest.raises(HostMemoryError, match="float64 reference attention"):
        reference.attention(q, q, q)
    with pytest.raises(HostMemoryError, match="float64 reference attention"):
        reference.attention_backward(q, q, q, q)
