"""`tinyml quant` and `tinyml decode`: tables, the same fields in --json, and bad names as messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tinyml.cli import main
from tinyml.inference.memory import fit
from tinyml.sim.models import load_model

QUANT_KEYS = {"model", "device", "format", "context", "bits_per_weight", "size_bytes", "fits", "kv_budget_tokens",
              "max_batch", "bound_tokens_per_s", "hbm_efficiency", "sim_tokens_per_s", "sim_eager_tokens_per_s",
              "fraction_of_bound", "note"}


def run_json(capsys, *argv, status=0):
    assert main([*argv, "--json"]) == status
    return json.loads(capsys.readouterr().out)


def test_quant_json_carries_every_field_by_name(capsys):
    out = run_json(capsys, "quant", "--model", "gpt2", "--device", "a100-80gb", "--formats", "fp16,q4_0",
                   "--context", "512")
    assert (out["command"], out["model"], out["device"], out["context"]) == ("quant", "gpt2", "a100-80gb", 512)
    assert out["params"] == load_model("gpt2").n_params
    assert [r["format"] for r in out["results"]] == ["fp16", "q4_0"]
    for r in out["results"]:
        assert set(r) == QUANT_KEYS
        f = fit("gpt2", r["format"], "a100-80gb", context=512)
        assert (r["size_bytes"], r["fits"], r["max_batch"]) == (f.weight_bytes, f.fits, f.max_batch)
        assert 0 < r["sim_tokens_per_s"] <= r["bound_tokens_per_s"]
        assert r["fraction_of_bound"] == pytest.approx(r["sim_tokens_per_s"] / r["bound_tokens_per_s"])
    fp16, q4 = out["results"]
    assert q4["size_bytes"] < 0.3 * fp16["size_bytes"]


def test_quant_table_and_a_model_that_does_not_fit(capsys):
    assert main(["quant", "--model", "llama-2-70b", "--device", "a100-40gb", "--formats", "fp16,q4_0",
                 "--no-sim"]) == 0
    text = capsys.readouterr().out
    assert "llama-2-70b" in text and "a100-40gb" in text and "q4_0" in text and "no" in text
    out = run_json(capsys, "quant", "--model", "llama-2-70b", "--device", "a100-40gb", "--formats", "fp16",
                   "--no-sim")
    r = out["results"][0]
    assert r["fits"] is False and r["bound_tokens_per_s"] is None and r["max_batch"] == 0
    assert r["note"].startswith("fp16 does not fit: its weights alone take")
    assert "none of the formats asked for fits" in r["note"]


def test_decode_json_is_the_kernel_profile(capsys):
    out = run_json(capsys, "decode", "--model", "gpt2", "--format", "q8_0", "--context", "256", "--batch", "2",
                   "--split-kv", "2", "--device", "h100-sxm")
    assert (out["command"], out["model"], out["format"], out["device"]) == ("decode", "gpt2", "q8_0", "h100-sxm")
    assert (out["context"], out["batch"], out["split_kv"], out["layers"]) == (256, 2, 2, 12)
    roles = [k["role"] for k in out["kernels"]]
    assert "attention" in roles and roles[-1] == "lm_head"
    assert {k["kernel"] for k in out["kernels"] if k["role"] == "attention"} == {"decode_split", "decode_combine"}
    assert out["kernels_per_step"] == sum(k["times"] for k in out["kernels"])
    assert out["fit"]["fits"] is True and out["bound"]["tokens_per_s"] >= out["tokens_per_s"]
    assert main(["decode", "--model", "gpt2", "--context", "128"]) == 0
    text = capsys.readouterr().out
    assert "CUDA graph" in text and "qkv_proj" in text and "bound" in text
    assert "/s peak x 0.85 efficiency = " in text                       # peak and achievable, labelled


@pytest.mark.parametrize("argv, words", [
    (["quant", "--model", "llama-3"], ["unknown model", "llama-2-7b", "gpt2"]),
    (["quant", "--formats", "fp16,q5_k", "--no-sim"], ["unknown weight format", "q4_0", "int4-g128"]),
    (["quant", "--device", "h300", "--no-sim"], ["unknown device", "a100-80gb"]),
    (["quant", "--format", "fp16,int8,fp16", "--no-sim"], ["names fp16 twice"]),
    (["quant", "--format", "fp16,,int8", "--no-sim"], ["format 2 is empty"]),
    (["quant", "--context", "0", "--no-sim"], ["--context", ">= 1"]),
    (["decode", "--format", "nf4"], ["unknown weight format", "q8_0"]),
    (["decode", "--batch", "0"], ["--batch"]),
    (["decode", "--split-kv", "0"], ["--split-kv"]),
])
def test_bad_names_are_messages_not_tracebacks(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    for w in words:
        assert w in err


def test_the_installed_entry_point_prints_no_traceback():
    proc = subprocess.run([sys.executable, "-c", "import sys; from tinyml.cli import main; "
                           "sys.exit(main(['quant', '--model', 'nope']))"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "unknown model" in proc.stderr
