"""The presets where MLC LLM deploys beyond data-centre GPUs (issue 15, item 5): a phone (iphone-15-pro), an
Android phone (snapdragon-8-gen-3), a laptop (m3-max) and the same laptop through WebGPU (m3-max-webgpu).

Every number sourced (the parametrized preset tests in test_device.py cover them too); `tinyml quant` and
`tinyml decode` run on each and say what fits; the bandwidth bound in closed form, from bytes written out by
hand; what WebGPU changes against the same silicon (the per-dispatch cost, paid by every kernel of a step);
the fidelity rows with their sources.
"""

from __future__ import annotations

import json

import pytest

from tinyml.cli import main
from tinyml.sim import list_presets, load_device

NEW = ("iphone-15-pro", "snapdragon-8-gen-3", "m3-max", "m3-max-webgpu")
PHONES = ("iphone-15-pro", "snapdragon-8-gen-3")


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", NEW)
def test_new_presets_load_with_a_source_for_every_number_and_are_listed(name, capsys):
    dev = load_device(name)
    assert name in list_presets() and dev.name == name and dev.description
    for key, src in dev.sources.items():
        assert isinstance(src, str) and len(src) > 20, key
        # a number nobody published says so
        assert not any(w in src.lower() for w in ("tbd", "todo", "fixme")), key
    assert {"hbm.capacity_bytes", "hbm.bandwidth", "sm.count", "launch.overhead_s"} <= set(dev.sources)
    out = run_json(capsys, "devices")
    assert name in [d["name"] for d in out["devices"]]


def test_what_webgpu_changes_against_the_same_silicon():
    """m3-max-webgpu is m3-max with WebGPU's per-dispatch cost (32 us, sourced) and WebLLM's 32 KiB of
    workgroup storage; every other number is the same GPU's."""
    web, native = load_device("m3-max-webgpu"), load_device("m3-max")
    assert web.launch_overhead_s == 32e-6 and native.launch_overhead_s == 10e-6
    assert web.sram_per_sm == 32 * 1024 == 32768
    for attr in ("sm_count", "clock_hz", "hbm_bandwidth", "hbm_capacity", "sram_bandwidth", "l2_bytes",
                 "eff_hbm", "eff_matmul"):
        assert getattr(web, attr) == getattr(native, attr), attr
    assert web.matmul_rate("fp16") == native.vector_rate("fp32")      # no subgroup matrix ops: the FMA rate
    assert "2604.02344" in web.sources["launch.overhead_s"] and "16384" in web.sources["sm.sram_bytes"]


def test_a_step_through_webgpu_pays_the_dispatch_cost_per_kernel():
    """Same kernels on the same silicon: the eager step differs by kernels x (32 - 10) us exactly, the
    graph step by one launch."""
    from tinyml.inference.step import simulate_step

    web = simulate_step("phi-3.5-mini", "int4-g32", "m3-max-webgpu", context=256)
    nat = simulate_step("phi-3.5-mini", "int4-g32", "m3-max", context=256)
    assert web.kernels_per_step == nat.kernels_per_step > 300
    assert web.eager_s - nat.eager_s == pytest.approx(web.kernels_per_step * 22e-6, rel=1e-9)
    assert web.graph_s - nat.graph_s == pytest.approx(22e-6, rel=1e-6)


def int4_g32_bytes(rows: int, k: int) -> int:
    """A (rows, k) matrix in q4f16_1 / int4-g32: every 32 weights are 16 bytes of codes and a 2-byte fp16 scale."""
    assert k % 32 == 0
    return rows * (k // 32) * 18


def llama2_7b_int4_decode_bytes(context: int) -> int:
    """HBM bytes of one Llama-2-7B decode step at batch 1 in int4-g32, written out from the model card's shapes
    (32 layers, hidden 4096, MLP 11008, vocab 32000, no GQA, fp16 norms and KV cache)."""
    h, i, v, layers = 4096, 11008, 32000, 32
    layer = 4 * int4_g32_bytes(h, h) + 2 * int4_g32_bytes(i, h) + int4_g32_bytes(h, i) + 2 * h * 2
    kv_per_token = 2 * layers * h * 2                     # K and V, 32 heads x 128 = 4096 each, fp16
    return (layers * layer + h * 2 + int4_g32_bytes(v, h)  # layers, final norm, LM head
            + h * 2                                        # one embedding row
            + context * kv_per_token + kv_per_token)       # the cache read, the new token's K and V


@pytest.mark.parametrize("device", NEW)
def test_bandwidth_bound_in_closed_form(device):
    """tokens/s at batch 1 can be no more than bandwidth x efficiency / bytes per token (decode is a stream of
    the weights); the simulated step stays under it, eager under graph."""
    from tinyml.inference.report import serving_rows

    dev = load_device(device)
    (r,) = serving_rows("llama-2-7b", device, formats=("int4-g32",), context=256)
    by_hand = dev.hbm_bandwidth * dev.eff_hbm / llama2_7b_int4_decode_bytes(256)
    assert r["bound_tokens_per_s"] == pytest.approx(by_hand, rel=1e-12)
    assert r["fits"] and 0 < r["sim_eager_tokens_per_s"] < r["sim_tokens_per_s"] <= r["bound_tokens_per_s"]


@pytest.mark.parametrize("device", NEW)
def test_quant_runs_on_every_new_preset_and_says_what_fits(device, capsys):
    out = run_json(capsys, "quant", "--model", "llama-2-7b", "--device", device, "--context", "256",
                   "--format", "fp16,int4-g32")
    fp16, int4 = out["results"]
    dev = load_device(device)
    assert out["hbm_capacity_bytes"] == dev.hbm_capacity
    assert out["hbm_capacity_source"] == dev.sources["hbm.capacity_bytes"]
    assert int4["fits"] and int4["note"] is None and int4["sim_tokens_per_s"] > 0
    if device in PHONES:                  # 13.5 GB of fp16 weights: more than either phone gives one app
        assert not fp16["fits"] and fp16["sim_tokens_per_s"] is None
        assert fp16["note"].startswith("fp16 does not fit: its weights alone take 13.48 GB, more than the")
        assert f"{dev.hbm_capacity / 1e9:.2f} GB {device}" in fp16["note"]
        assert f"fits here: int4-g32 (3.79 GB, {int4['sim_tokens_per_s']:,.1f} tokens/s)" in fp16["note"]
    else:
        assert fp16["fits"] and fp16["note"] is None


def test_quant_table_on_a_phone_teaches_why(capsys):
    assert main(["quant", "--model", "llama-2-7b", "--device", "iphone-15-pro", "--context", "256"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "fp16 does not fit" in text and "int8 does not fit" in text and "fits here: q4_0" in text
    assert "increased-memory-limit" in text          # where the phone's 6 GB comes from


@pytest.mark.parametrize("device", NEW)
def test_decode_runs_on_every_new_preset(device, capsys):
    out = run_json(capsys, "decode", "--model", "llama-3-8b", "--format", "int4-g32", "--device", device,
                   "--context", "256")
    assert (out["device"], out["format"], out["layers"]) == (device, "int4-g32", 32)
    assert out["fit"]["fits"] and 0 < out["eager_tokens_per_s"] < out["tokens_per_s"]
    assert out["tokens_per_s"] <= out["bound"]["tokens_per_s"]


def test_decode_on_a_phone_that_cannot_hold_the_model_says_so(capsys):
    assert main(["decode", "--model", "llama-2-7b", "--device", "iphone-15-pro", "--context", "256"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "do not fit iphone-15-pro" in text and "tinyml quant --model llama-2-7b --device iphone-15-pro" in text


def test_fidelity_rows_for_the_mlc_deployments_carry_their_sources():
    from tinyml.fidelity import MLC_EAGER, MLC_ROWS, SPECS, WEBLLM

    devices = {d for _w, d, _p, _s, _m in MLC_ROWS}
    assert {"m3-max", "m3-max-webgpu", "snapdragon-8-gen-3", "m1-pro", "m2-ultra"} <= devices
    assert "cudagraph" in MLC_EAGER and "2412.15803" in WEBLLM
    specs = {(what, dev): (pub, src) for what, dev, _u, pub, src, _f in SPECS}
    for what, dev, pub, src, model in MLC_ROWS:
        assert specs[what, dev] == (pub, src) and len(src) > 40 and pub > 0
        assert dev in list_presets()
    # the WebLLM paper's pairs: the browser slower than native on the same laptop
    pub = {(w.split(" decode")[0], d): p for w, d, p, _s, _m in MLC_ROWS}
    for model in ("Llama-3.1-8B", "Phi-3.5-mini"):
        assert pub[model, "m3-max-webgpu"] < pub[model, "m3-max"]


def test_mlc_rows_are_timed_eager_and_webgpu_is_slower_than_native():
    """MLC LLM captures CUDA graphs only on CUDA, so its rows are timed a launch per kernel; on the same laptop
    the browser's per-dispatch cost makes WebLLM slower, as measured."""
    from tinyml.fidelity import _decode_tokens
    from tinyml.inference.report import serving_rows

    (r,) = serving_rows("phi-3.5-mini", "m3-max", formats=("int4-g32",), context=256)
    assert _decode_tokens("int4-g32", "phi-3.5-mini", "m3-max", launch="eager") == r["sim_eager_tokens_per_s"]
    assert _decode_tokens("int4-g32", "phi-3.5-mini", "m3-max") == r["sim_tokens_per_s"]
    web = _decode_tokens("int4-g32", "phi-3.5-mini", "m3-max-webgpu", launch="eager")
    assert web < r["sim_eager_tokens_per_s"]
