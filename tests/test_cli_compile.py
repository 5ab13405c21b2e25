"""`tinyml compile` and `tinyml fuse`: tables, JSON, the --explain files, messages not tracebacks."""

from __future__ import annotations

import argparse
import json

import pytest

from tinyml.cli import build_parser, main
from tinyml.cli import compile as compile_cmd
from tinyml.cli import fuse as fuse_cmd
from tinyml.sim.dtypes import nbytes


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    """Until the dispatcher registers them, add `compile` and `fuse` to the parser main() builds."""
    import tinyml.cli as cli

    def parser():
        p = build_parser()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        for module, name in ((compile_cmd, "compile"), (fuse_cmd, "fuse")):
            if name not in sub.choices:
                module.register(sub)
        return p

    monkeypatch.setattr(cli, "build_parser", parser)


def run_json(capsys, *argv, status=0):
    assert main([*argv, "--json"]) == status
    return json.loads(capsys.readouterr().out)


def test_compile_json_has_every_step_and_the_final_profile(capsys):
    out = run_json(capsys, "compile", "mlp", "--seq", "64")
    assert [s["pass"] for s in out["steps"]] == ["input", "cse", "dead_code", "rewrite_attention", "fuse"]
    for s in out["steps"]:
        assert {"pass", "kernels", "hbm_bytes", "time_s"} <= set(s)
    first, last = out["steps"][0], out["steps"][-1]
    assert (first["kernels"], last["kernels"]) == (5, 2)         # matmul, add, gelu, matmul, add -> 2 epilogues
    assert out["profile"]["totals"]["kernels"] == last["kernels"]
    assert out["profile"]["totals"]["hbm_read_bytes"] + out["profile"]["totals"]["hbm_write_bytes"] == \
        last["hbm_bytes"]


def test_compile_passes_option_runs_only_those(capsys):
    out = run_json(capsys, "compile", "gpt2_block", "--seq", "32", "--passes", "fuse")
    assert [s["pass"] for s in out["steps"]] == ["input", "fuse"]


def test_compile_explain_writes_text_drawings_and_index(tmp_path, capsys):
    assert main(["compile", "mlp", "--seq", "16", "--explain", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "after fuse:" in text and "kernels" in text
    index = (tmp_path / "index.md").read_text()
    for i, name in enumerate(["input", "cse", "dead_code", "rewrite_attention", "fuse"]):
        stem = f"{i:02d}-{name}"
        assert (tmp_path / f"{stem}.txt").read_text().startswith(f"after {name}:")
        drawings = [p for p in (tmp_path / f"{stem}.svg", tmp_path / f"{stem}.dot") if p.exists()]
        assert len(drawings) == 1 and f"({drawings[0].name})" in index     # .dot without Graphviz


def test_compile_explain_without_dot_writes_dot_and_says_so(tmp_path, capsys, monkeypatch):
    import tinyml.viz

    monkeypatch.setattr(tinyml.viz, "has_dot", lambda: False)
    assert main(["compile", "mlp", "--seq", "16", "--explain", "--out", str(tmp_path)]) == 0
    assert "dot" in capsys.readouterr().out
    assert (tmp_path / "04-fuse.dot").read_text().startswith("digraph")
    assert "Graphviz" in (tmp_path / "index.md").read_text()


def test_fuse_json_unfused_vs_fused_bytes(capsys):
    m, n = 64, 256
    out = run_json(capsys, "fuse", "--ops", "mul,add,gelu", "--shape", f"{m},{n}")
    s = nbytes(1, "fp16")
    u, f = out["unfused"], out["fused"]
    assert (u["kernels"], f["kernels"]) == (3, 1)
    # 3 inputs, 3 ops: eager reads (3 + 3 - 1) M N and writes 3 M N; fused reads 3 M N, writes M N
    assert (u["hbm_read_bytes"], u["hbm_write_bytes"]) == (5 * m * n * s, 3 * m * n * s)
    assert (f["hbm_read_bytes"], f["hbm_write_bytes"]) == (3 * m * n * s, m * n * s)
    assert out["bytes_ratio"] == pytest.approx(2.0)


def test_fuse_table_with_a_matmul_epilogue(capsys):
    assert main(["fuse", "--ops", "matmul,add,gelu", "--shape", "128,128"]) == 0
    text = capsys.readouterr().out
    assert "matmul_epilogue" in text and "fewer HBM bytes" in text


def test_fuse_costs_a_matmul_chain_too_big_for_host_ram(capsys):
    """100000 x 100000: 60 GB of fp16 tensors fit the MI300X's HBM; counting mode costs them by shape
    (the weight used to be drawn in host RAM first: 120 GB, a HostMemoryError)."""
    out = run_json(capsys, "fuse", "--ops", "matmul,gelu", "--shape", "100000,100000", "--device", "mi300x")
    assert out["fused"]["kernels"] == 1 and out["fused"]["hbm_bytes"] >= 3 * 2 * 10 ** 10


@pytest.mark.parametrize("argv, words", [
    (["fuse", "--ops", "mul,frobnicate"], "unknown op"),
    (["fuse", "--ops", "add,matmul"], "matmul must come first"),
    (["fuse", "--ops", "gelu", "--shape", "12"], "--shape"),
    (["fuse", "--ops", "scale:abc"], "scale:0.5"),
    (["fuse", "--ops", "scale:nan"], "finite factor"),
    (["fuse", "--ops", "mul,,add"], "op 2 is empty"),
    (["fuse", "--ops", "gelu:2"], "gelu takes no argument"),
    (["fuse", "--ops", "matmul:3,add"], "matmul takes no argument"),
    (["compile", "mlp", "--passes", "nope"], "unknown pass"),
    (["compile", "mlp", "--scheme", "int3"], "unknown weight format 'int3'"),
    (["compile", "mlp", "--scheme", "int8"], "would be ignored"),
    (["compile", "mlp", "--skip", "h0.*"], "would be ignored"),
    (["compile", "mlp", "--seq", "0"], "--seq"),
    (["compile", "mlp", "--seq", "n"], "--bound n="),
    (["compile", "mlp", "--seq", "m"], "the symbol n"),
    (["compile", "mlp", "--device", "no-such-gpu"], "no-such-gpu"),
])
def test_errors_are_messages_not_tracebacks(capsys, argv, words):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err and "Traceback" not in err


def test_compile_long_sequence_reports_out_of_hbm_per_step(capsys):
    out = run_json(capsys, "compile", "gpt2_block", "--seq", "65536")
    first, last = out["steps"][0], out["steps"][-1]
    assert first["kernels"] is None and "out of HBM" in first["error"]      # the (12, n, n) scores
    assert last["kernels"] == 7 and last["time_s"] > 0                      # FlashAttention never makes them


def test_symbolic_seq_plans_for_every_n_up_to_the_bound_and_counts_at_the_bound(capsys):
    """`--seq n --bound n=N`: the same numbers as `--seq N --bound n=N` (the plan is made at the bound,
    valid for every smaller n because sizes grow with n)."""
    sym = run_json(capsys, "compile", "gpt2_block", "--seq", "n", "--bound", "n=256", "--passes", "all")
    num = run_json(capsys, "compile", "gpt2_block", "--seq", "256", "--bound", "n=256", "--passes", "all")
    assert sym["bindings"] == {"n": 256} and sym["bounds"]["n"] == 256
    assert sym["arena_bytes"] == num["arena_bytes"] and sym["arena_bytes"] >= sym["load_bytes"] > 0
    assert [s["hbm_bytes"] for s in sym["steps"]] == [s["hbm_bytes"] for s in num["steps"]]
