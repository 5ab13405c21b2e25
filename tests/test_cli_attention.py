"""`tinyml attention`: the kernel-command JSON schema, executed checks, the paper's Figure 2."""

import json

import pytest

from tinyml.cli import main

KEYS = {"variant", "hbm_read_bytes", "hbm_write_bytes", "flops_matmul", "flops_vector", "peak_hbm_bytes",
        "time_s", "kernels"}


def run_json(capsys, *argv):
    status = main([*argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_small_shape_executes_every_variant_forward_and_backward(capsys):
    status, out = run_json(capsys, "attention", "--batch", "1", "--heads", "4", "--kv-heads", "2", "--seq", "19",
                           "--seq-k", "23", "--head-dim", "8", "--causal", "--dropout", "0.2", "--backward")
    assert status == 0
    assert [r["variant"] for r in out["results"]] == ["standard", "flash1", "flash2"]
    for r in out["results"]:
        assert KEYS <= set(r) and r["mode"] == "execute"
        assert r["max_abs_err"] < 1e-4 and r["max_abs_grad_err"] < 1e-4
        assert r["hbm_read_bytes"] == sum(k["hbm_read_bytes"] for k in r["kernels"])


def test_counting_mode_standard_moves_quadratic_bytes(capsys):
    n, d, bh = 2048, 64, 8
    status, out = run_json(capsys, "attention", "--batch", "1", "--heads", str(bh), "--seq", str(n),
                           "--head-dim", str(d), "--count-only", "--variants", "standard,flash2")
    assert status == 0
    std, fa2 = out["results"]
    assert std["mode"] == "count"
    s_bytes = bh * n * n * 2                       # one fp16 N x N matrix for every head
    assert std["hbm_write_bytes"] >= 2 * s_bytes   # S and P at least
    assert fa2["hbm_read_bytes"] + fa2["hbm_write_bytes"] < s_bytes


@pytest.mark.parametrize("argv, needle", [
    (["--heads", "6", "--kv-heads", "4"], "does not divide"),
    (["--variants", "standard,flash9"], "unknown variant"),
    (["--seq", "0"], "--seq: must be an integer >= 1"),
    (["--variant", "standard,flash9"], "unknown variant"),
    (["--variant", "standard,,flash2"], "variant 2 of 'standard,,flash2' is empty"),
])
def test_bad_input_exits_2_with_a_message(capsys, argv, needle):
    assert main(["attention", "--head-dim", "8", "--seq", "16", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


@pytest.mark.parametrize("argv, flags", [
    (["--seq", "4096"], "--seq"),
    (["--trace", "{tmp}/fig2.json", "--dtype", "bf16"], "--dtype, --trace"),
    (["--variants", "flash2", "--execute"], "--variant, --execute"),
])
def test_paper_refuses_the_options_it_would_ignore(capsys, tmp_path, argv, flags):
    """--paper fig2 runs its own configuration: --seq, --dtype, --trace ... used to be dropped without a
    word (the trace file was never written)."""
    assert main(["attention", "--paper", "fig2", *[a.format(tmp=tmp_path) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert f"would ignore {flags};" in err and "drop --paper" in err
    assert not (tmp_path / "fig2.json").exists()


def _fig2(capsys):
    _, out = run_json(capsys, "attention", "--paper", "fig2")
    assert {r["variant"] for r in out["results"]} == {"standard", "flash1", "flash2"}
    return out


def test_fig2_standard_attention_and_flop_ratio_match_the_paper(capsys):
    out = _fig2(capsys)
    assert len(out["targets"]) == 5
    for t in out["targets"]:
        if t["target"].startswith(("standard", "FLOPs")):
            assert t["pass"], t


def test_fig2_flashattention_matches_the_paper(capsys):
    """FA1 within 20% of 4.4 GB and 7.3 ms: the forward's re-reads of Q, O, l, m stay in the 40 MB L2
    (108 heads x 264 KB), the backward's accumulators sit in the register file (so B_c = 384 as in the
    paper), and the CUDA kernels prefetch the next tile while computing (pipelined)."""
    out = _fig2(capsys)
    for t in out["targets"]:
        if t["target"].startswith("flash1"):
            assert t["pass"], t


# ---- --execute on shapes that cannot be executed fails fast, before building anything -----------

def test_execute_10m_tokens_is_out_of_simulated_hbm_before_building_inputs(capsys, monkeypatch):
    """q, k, v (1, 16, 1e7, 64) fp16 are 61 GB: more than an A100's 40 GB, so every variant fails,
    reported as such, and no host array is ever drawn."""
    import numpy as np

    def no_draws(*args, **kwargs):
        raise AssertionError("inputs were built for a shape the simulated device cannot hold")

    monkeypatch.setattr(np.random, "default_rng", no_draws)
    status, out = run_json(capsys, "attention", "--seq", "10000000", "--variants", "standard", "--execute")
    assert status == 1
    [std] = out["results"]
    assert std["mode"] == "execute" and std["error"]["type"] == "HbmOutOfMemoryError"
    assert "(1, 16, 10000000, 64) fp16 needs 20.5 GB" in std["error"]["message"]


def test_execute_that_fits_the_device_but_not_the_host_exits_2(capsys, monkeypatch):
    """On an MI300X (192 GB) the inputs fit the simulated HBM; the float64 reference of 10M tokens
    (8 B x 16 x 1e14 x 4 = 51.2 PB) fits no host: one line, exit 2, nothing built."""
    import numpy as np

    monkeypatch.setattr(np.random, "default_rng", lambda *a, **k: pytest.fail("inputs were built"))
    assert main(["attention", "--seq", "10000000", "--variants", "standard", "--execute",
                 "--device", "mi300x"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "host memory" in err
    assert "float64 reference 51.2 PB" in err and "drop --execute" in err
