"""Serving math (tinyml.inference): sizes per format, fit and KV budget, max batch, the bandwidth
bound, the simulated decode step through the kernels, and the RNN comparison.

Expected numbers are closed forms written out here (bytes per block of each format, the KV
formula), never numbers copied from tinyml's output."""

from __future__ import annotations


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import examples
from test_models import configs

from tinyml.inference.bound import bandwidth_bound, decode_bytes
from tinyml.inference.formats import FormatError, weight_format
from tinyml.inference.memory import fit, kv_bytes_per_token, max_batch, weight_bytes
from tinyml.inference.rnn import compare_batch, rnn_max_batch, rnn_state_bytes, throughput
from tinyml.sim import ShapeError, TinymlError, load_device
from tinyml.sim.models import ModelConfig, load_model

#: bytes of one block of g weights, per format: (g, bytes) -- fp16 scale + packed codes, written out
BLOCKS = {"q4_0": (32, 2 + 16), "q8_0": (32, 2 + 32), "int4-g32": (32, 2 + 16), "int4-g128": (128, 2 + 64)}
PLAIN_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


def matrix_bytes(fmt: str, rows: int, cols: int) -> int:
    if fmt in PLAIN_BYTES:
        return rows * cols * PLAIN_BYTES[fmt]
    if fmt == "int8":
        return rows * (cols + 2)                       # a byte per weight, one fp16 scale per row
    g, block = BLOCKS[fmt]
    return rows * -(-cols // g) * block


def expected_weight_bytes(m: ModelConfig, fmt: str) -> int:
    act = 4 if fmt == "fp32" else 2
    layer = sum(matrix_bytes(fmt, r, c) for r, c in m.layer_matrices().values())
    total = matrix_bytes(fmt, m.vocab, m.hidden) + m.layers * (layer + act * m.layer_vector_params())
    total += act * m.hidden * (1 if m.norm == "rmsnorm" else 2)
    total += matrix_bytes(fmt, m.max_context, m.hidden) if m.position == "learned" else 0
    total += 0 if m.tied_embeddings else matrix_bytes(fmt, m.vocab, m.hidden)
    return total


# ---- sizes -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, bits", [("fp32", 32), ("fp16", 16), ("q8_0", 8.5), ("int4-g128", 4.125),
                                       ("q4_0", 4.5)])
def test_llama_7b_size_is_params_times_bits_per_weight(fmt, bits):
    m = load_model("llama-2-7b")
    vectors = (2 * m.layers + 1) * m.hidden                     # the RMSNorm weights stay 16-bit (32 in fp32)
    act = 32 if fmt == "fp32" else 16
    expected = (m.n_params - vectors) * bits / 8 + vectors * act / 8
    assert weight_bytes(m, fmt)["total"] == expected
    bpw = fit(m, fmt, "a100-80gb").bits_per_weight
    assert bpw == pytest.approx(8 * expected / m.n_params) and abs(bpw - bits) < 1e-3    # norms: 16-bit


def test_int8_carries_one_scale_per_row():
    m = load_model("llama-2-7b")
    rows = m.layers * (5 * 4096 + 2 * 11008) + 2 * 32000          # q k v o down, gate up; embedding, LM head
    vectors = (2 * m.layers + 1) * m.hidden
    assert weight_bytes(m, "int8")["total"] == (m.n_params - vectors) + 2 * rows + 2 * vectors


@settings(max_examples=examples(30))
@given(configs(), st.sampled_from(["fp32", "fp16", "bf16", "int8", "int4-g32", "int4-g128"]))
def test_weight_bytes_closed_form_on_random_models(m, fmt):
    assert weight_bytes(m, fmt)["total"] == expected_weight_bytes(m, fmt)


@pytest.mark.parametrize("name", ["llama-2-7b", "llama-2-70b", "gpt2"])
def test_kv_bytes_per_token_agrees_with_the_kv_cache_kernel(name):
    from tinyml.kernels.attention.kv_cache import bytes_per_token

    m = load_model(name)
    assert kv_bytes_per_token(m) == 2 * m.layers * m.kv_heads * m.head_dim * 2
    assert kv_bytes_per_token(m) == bytes_per_token(m.layers, m.kv_heads, m.head_dim, "fp16")
    assert kv_bytes_per_token(m, "fp32") == 2 * kv_bytes_per_token(m)
    assert kv_bytes_per_token("llama-2-7b") == 512 * 1024            # the well-known 0.5 MiB per token


# ---- fit, KV budget, max batch ------------------------------------------------------------------------

def test_70b_in_q4_0_fits_a_64gb_m2_max_with_room_for_kv_but_not_an_a100_40gb():
    m2 = load_device("m2-max")
    assert m2.hbm_capacity == 64e9                                  # the 64 GB configuration MLC used
    f = fit("llama-2-70b", "q4_0", m2, context=4096)
    assert f.fits and f.kv_budget_tokens >= 16 * 4096
    assert 35e9 < f.weight_bytes < 50e9                           # MLC's ~50 GB includes its runtime
    assert not fit("llama-2-70b", "q4_0", "a100-40gb", context=4096).fits
    assert not fit("llama-2-70b", "fp16", "a100-80gb").weights_fit
    assert fit("llama-2-70b", "fp16", "a100-80gb").max_batch == 0
    assert fit("llama-2-7b", "fp16", "a100-40gb").fits


@settings(max_examples=examples(25))
@given(st.sampled_from(["llama-2-7b", "llama-2-13b", "llama-2-70b", "gpt2"]),
       st.sampled_from(["fp16", "int8", "q4_0", "int4-g128"]),
       st.sampled_from(["a100-40gb", "a100-80gb", "h100-sxm", "rtx-4090", "m2-max"]),
       st.integers(1, 200_000))
def test_max_batch_is_the_largest_batch_that_fits(model, fmt, device, context):
    b = max_batch(model, fmt, device, context)
    cap = load_device(device).hbm_capacity
    w, kv = weight_bytes(model, fmt)["total"], kv_bytes_per_token(model)
    assert b == max(0, (cap - w) // (context * kv))
    if b >= 1:
        assert fit(model, fmt, device, context=context, batch=b).fits
    assert not fit(model, fmt, device, context=context, batch=b + 1).fits
    assert fit(model, fmt, device, context=context).kv_budget_tokens == max(0, (cap - w) // kv)


# ---- the bandwidth bound ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["fp16", "q4_0"])
def test_bound_reads_the_weights_once_and_every_kv_cache(fmt):
    m, dev = load_model("llama-2-7b"), load_device("a100-80gb")
    ctx, batch = 1000, 3
    w = expected_weight_bytes(m, fmt) - matrix_bytes(fmt, m.vocab, m.hidden)      # no whole embedding table
    kv = 2 * 32 * 32 * 128 * 2
    expected = w + batch * 4096 * 2 + batch * ctx * kv + batch * kv
    assert decode_bytes(m, fmt, context=ctx, batch=batch)["total"] == expected
    b = bandwidth_bound(m, fmt, dev, context=ctx, batch=batch)
    assert b.tokens_per_s == pytest.approx(batch * 2.039e12 * 0.85 / expected)
    assert b.tokens_per_s_spec == pytest.approx(b.tokens_per_s / 0.85)


# ---- the simulated decode step ---------------------------------------------------------------------------

LINEARS = {"qkv_proj", "o_proj", "gate_up_proj", "up_proj", "down_proj", "lm_head"}


def _linear_shapes(m):
    q, kv = m.heads * m.head_dim, m.kv_heads * m.head_dim
    up = 2 * m.intermediate if m.mlp == "swiglu" else m.intermediate
    return {"qkv_proj": (q + 2 * kv, m.hidden), "o_proj": (m.hidden, q), "gate_up_proj": (up, m.hidden),
            "up_proj": (up, m.hidden), "down_proj": (m.hidden, m.intermediate), "lm_head": (m.vocab, m.hidden)}


@pytest.mark.parametrize("fmt", ["q8_0", "int4-g32"])
def test_simulated_gemvs_read_each_packed_weight_once(fmt):
    from tinyml.inference.step import simulate_step

    m = load_model("gpt2")
    step = simulate_step(m, fmt, "a100-80gb", context=100, split_kv=1)
    roles = step.roles
    assert roles[:3] == ["attn_norm", "qkv_proj", "kv_append"] and roles.count("attention") == 1
    assert roles[-3:] == ["embedding", "final_norm", "lm_head"]
    records = step.layer.records + step.head.records
    shapes = _linear_shapes(m)
    seen = set()
    for role, r in zip(roles, records):
        if role in LINEARS:
            n, k = shapes[role]
            assert r.name == "quantized_gemv"
            # gemv docstring: reads = qweight.nbytes + ceil(N / BN) * K * s (before L2), writes = N * s
            assert r.hbm_read_bytes + r.l2_hit_bytes == matrix_bytes(fmt, n, k) + r.grid[0] * k * 2
            assert r.hbm_write_bytes == n * 2
            seen.add(role)
    assert seen == {"qkv_proj", "o_proj", "up_proj", "down_proj", "lm_head"}


def test_simulated_step_never_beats_the_bound_and_graph_saves_launches():
    from tinyml.inference.step import simulate_step

    for fmt, split in (("fp16", None), ("q4_0", 4)):
        s = simulate_step("gpt2", fmt, "a100-80gb", context=512, batch=1, split_kv=split)
        assert s.graph_s >= s.bound.step_s
        assert s.eager_s - s.graph_s == pytest.approx((s.kernels_per_step - 1) * 5e-6)
        assert s.kernels_per_step == 12 * len(s.layer.records) + 3
        assert s.hbm_bytes >= 0.99 * s.bound.bytes_per_step
        d = s.to_dict()
        assert d["tokens_per_s"] == pytest.approx(1 / s.graph_s) and len(d["kernels"]) == len(s.roles)
        assert sum(r["total_hbm_bytes"] for r in d["kernels"]) == s.hbm_bytes
    split = simulate_step("gpt2", "q4_0", "a100-80gb", context=512, split_kv=4)
    assert [r.name for r in split.layer.records if "decode" in r.name] == ["decode_split", "decode_combine"]
    batched = simulate_step("gpt2", "q4_0", "a100-80gb", context=64, batch=4)
    names = {r.name for r in batched.layer.records}
    assert "quantized_matmul" in names and "quantized_gemv" not in names


def test_llama_7b_int4_decodes_faster_than_fp16_near_each_bound():
    """int4 decodes faster than fp16 but below its bandwidth bound: since issue 15 the gemv's
    dequantization (one I2F per weight at 16/clock/SM, the unpacking on the INT32 pipe) is costed, so
    int4 no longer reaches 2.5x fp16 (gpt-fast measures 1.88x on an A100); fp16 stays within 20% of its bound."""
    from tinyml.inference.step import simulate_step

    fp16 = simulate_step("llama-2-7b", "fp16", "a100-80gb", context=4096)
    int4 = simulate_step("llama-2-7b", "int4-g128", "a100-80gb", context=4096)
    assert int4.tokens_per_s >= 1.5 * fp16.tokens_per_s
    assert 0.8 * fp16.bound.tokens_per_s <= fp16.tokens_per_s <= fp16.bound.tokens_per_s
    assert int4.tokens_per_s <= int4.bound.tokens_per_s
    for s in (fp16, int4):
        assert s.eager_tokens_per_s < s.tokens_per_s                  # a launch per kernel costs


# ---- the RNN comparison ------------------------------------------------------------------------------------

def test_rnn_state_is_fixed_and_batches_far_more_at_long_context():
    m = load_model("llama-2-7b")
    assert rnn_state_bytes(m) == 32 * 4096 * 5 * 4
    free = 80e9 - weight_bytes(m, "fp16")["total"]
    assert rnn_max_batch(m, "fp16", "a100-80gb") == int(free // (32 * 4096 * 20))
    rows = compare_batch(m, "fp16", "a100-80gb", [512, 4096, 32768])
    assert [r["rnn_max_batch"] for r in rows] == [rnn_max_batch(m, "fp16", "a100-80gb")] * 3
    t = [r["transformer_max_batch"] for r in rows]
    assert t == sorted(t, reverse=True) and rows[-1]["rnn_max_batch"] > 1000 * max(1, t[-1])
    assert all(r["rnn_tokens_per_s"] > 3 * r["transformer_tokens_per_s"] for r in rows)
    assert rows[0]["transformer_tokens_per_s"] > rows[-1]["transformer_tokens_per_s"]


def test_throughput_is_a_roofline():
    dev = load_device("a100-80gb")
    small = throughput("llama-2-7b", "fp16", dev, context=1, batch=1, kind="rnn")
    assert small.bound == "memory"
    w = decode_bytes("llama-2-7b", "fp16", context=1)["weights"]
    assert small.bytes_per_step == w + 4096 * 2 + 2 * rnn_state_bytes("llama-2-7b")
    assert small.step_s == pytest.approx(small.bytes_per_step / (dev.hbm_bandwidth * dev.eff_hbm))
    big = throughput("llama-2-7b", "fp16", dev, context=1, batch=20000, kind="rnn")
    assert big.bound == "compute"
    assert big.step_s == pytest.approx(big.flops_per_step / (312e12 * 0.8))
    with pytest.raises(TinymlError, match="transformer"):
        throughput("llama-2-7b", "fp16", dev, context=1, batch=1, kind="lstm")


# ---- errors --------------------------------------------------------------------------------------------------

def test_bad_inputs_say_what_to_do():
    with pytest.raises(FormatError) as exc:
        weight_format("q5_k")
    for name in ("fp16", "int8", "q4_0", "q8_0", "int4-g128"):
        assert name in str(exc.value)
    with pytest.raises(ShapeError, match="context"):
        fit("llama-2-7b", "fp16", "a100-80gb", context=0)
    with pytest.raises(ShapeError, match="batch"):
        bandwidth_bound("llama-2-7b", "fp16", "a100-80gb", context=10, batch=0)
    with pytest.raises(TinymlError, match="unknown device"):
        fit("llama-2-7b", "fp16", "a1000")
    assert weight_format("Q4_0").name == "q4_0" and weight_format("int4-g64").bits_per_weight() == 4.25


def test_a_norm_row_that_overflows_sram_falls_back_to_the_op_by_op_kernels():
    from tinyml.inference.step import simulate_step

    # h = 8192 fp16 with gamma and beta is 48 KiB: more than an M2 core's 32 KiB, less than an A100 SM's 192 KiB
    m2 = simulate_step("llama-2-70b", "q4_0", "m2-max", context=64, split_kv=1)
    a100 = simulate_step("llama-2-70b", "q4_0", "a100-80gb", context=64, split_kv=1)
    assert a100.roles.count("attn_norm") == 1 and m2.roles.count("attn_norm") == 9      # layernorm_unfused: 9
    assert "layernorm_fused" not in {r.name for r in m2.layer.records}


def test_every_public_name_of_the_package_resolves():
    import tinyml.inference as inference

    for name in inference.__all__:
        assert getattr(inference, name) is not None
    with pytest.raises(AttributeError):
        inference.no_such_thing


def test_size_table_and_serving_rows_agree_with_fit():
    from tinyml.inference.report import serving_rows, size_table

    rows = size_table("llama-2-70b", ["a100-40gb", "a100-80gb"], ["fp16", "q4_0"])
    assert [r["format"] for r in rows] == ["fp16", "q4_0"]
    assert rows[1]["size_bytes"] == expected_weight_bytes(load_model("llama-2-70b"), "q4_0")
    assert (rows[0]["a100-80gb"], rows[1]["a100-40gb"], rows[1]["a100-80gb"]) == (False, False, True)
    served = serving_rows("llama-2-70b", "a100-80gb", ["fp16", "q4_0"], context=2048, simulate=False)
    assert served[0]["bound_tokens_per_s"] is None and served[0]["max_batch"] == 0
    assert served[1]["bound_tokens_per_s"] == bandwidth_bound("llama-2-70b", "q4_0", "a100-80gb",
                                                              context=2048).tokens_per_s
    assert served[1]["max_batch"] == max_batch("llama-2-70b", "q4_0", "a100-80gb", 2048)
    with pytest.raises(FormatError):
        serving_rows("gpt2", "a100-80gb", ["fp16", "fp8"])
