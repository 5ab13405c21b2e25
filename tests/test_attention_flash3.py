"""FlashAttention-3 forward: FA2's tile loop and bytes, wgmma and overlapped softmax on Hopper only."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml.kernels.attention import flash_attention
from tinyml.sim import Profile, TileConfigError, load_device, meta


def records(q, k, v, device="h100-sxm", **kw):
    with Profile(device) as prof:
        o2 = flash_attention(q, k, v, version=2, **kw)
        o3 = flash_attention(q, k, v, version=3, **kw)
    return o2, o3, prof.records


def test_same_output_and_bytes_as_fa2_counting_equals_executing():
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 2, 70, 32)).astype(np.float32) for _ in range(3))
    o2, o3, (r2, r3) = records(q, k, v, causal=True)
    np.testing.assert_array_equal(o2, o3)
    _, _, (c2, c3) = records(*(meta(x.shape) for x in (q, k, v)), causal=True)
    assert r3.to_dict() == c3.to_dict() and r3.name == "flash3_fwd"
    for f in ("grid", "hbm_read_bytes", "hbm_write_bytes", "sram_read_bytes", "flops_matmul", "flops_vector"):
        assert getattr(r3, f) == getattr(r2, f), f


@pytest.mark.parametrize("d", [64, 128])
def test_wgmma_and_overlap_set_the_compute_time(d):
    """Compute-bound: FA2's SM time is the mma.sync matmul time plus the softmax phase (the slower of the
    FMA and SFU pipes); FA3's is the larger of the wgmma matmul time and that phase."""
    dev = load_device("h100-sxm")
    _, _, (r2, r3) = records(*(meta((4, 16, 4096, d)) for _ in range(3)))
    m2, v2 = r2.resource_s["matmul"], r2.resource_s["vector"]
    m3, v3 = r3.resource_s["matmul"], r3.resource_s["vector"]
    assert m2 / m3 == pytest.approx(dev.matmul_rate("fp16") / dev.matmul_rate("fp16", "mma_sync"))
    assert v2 == pytest.approx(v3)
    assert r2.time_s == pytest.approx(dev.launch_overhead_s + m2 + v2, rel=1e-6)
    assert r3.time_s == pytest.approx(dev.launch_overhead_s + max(m3, v3), rel=1e-6)


def test_refuses_devices_without_wgmma_and_dropout():
    q = meta((1, 1, 64, 64))
    with Profile("a100-80gb"), pytest.raises(TileConfigError, match="Hopper"):
        flash_attention(q, q, q, version=3)
    with Profile("h100-sxm"), pytest.raises(TileConfigError, match="dropout"):
        flash_attention(q, q, q, version=3, dropout_p=0.1)
