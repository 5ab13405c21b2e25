"""`tinyml tune`: a run with its table and JSON, resuming through --log, show, and errors as one line."""

from __future__ import annotations

import json

from tinyml.cli import main

SHAPE = ["--m", "64", "--n", "64", "--k", "64"]


def run_json(capsys, *argv, status=0):
    assert main([*argv, "--json"]) == status
    return json.loads(capsys.readouterr().out)


def one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def test_tune_matmul_json_compares_with_the_hand_tiles(capsys, tmp_path):
    log = tmp_path / "t.jsonl"
    out = run_json(capsys, "tune", "matmul", *SHAPE, "--trials", "8", "--batch-trials", "4", "--log", str(log))
    assert out["trials"] == 8 and out["space_size"] == 216 and out["device"] == "a100-40gb"
    assert out["hand"]["schedule"] == "matmul v3 tiles" and out["hand"]["status"] == "ok"
    assert out["speedup_vs_hand"] == out["hand"]["time_s"] / out["best"]["time_s"]
    assert len(out["best_so_far_s"]) == 8 and out["best_so_far_s"][-1] == out["best"]["time_s"]
    assert len(log.read_text().splitlines()) == 8
    again = run_json(capsys, "tune", "matmul", *SHAPE, "--trials", "12", "--batch-trials", "4", "--log", str(log))
    assert again["trials"] == 12 and len(log.read_text().splitlines()) == 12        # resumed, 4 more


def test_tune_table_and_show(capsys, tmp_path):
    log = tmp_path / "t.jsonl"
    assert main(["tune", "conv2d", "--channels", "8", "--size", "8", "--filters", "16", "--device", "toy",
                 "--trials", "6", "--batch-trials", "3", "--model", "ridge", "--log", str(log)]) == 0
    out = capsys.readouterr().out
    assert "tuned vs hand-picked" in out and "blocked conv2d" in out and "6 trials" in out
    assert main(["tune", "show", str(log), "--show", "source"]) == 0
    out = capsys.readouterr().out
    assert "best: trial" in out and "def kernel" in out
    shown = run_json(capsys, "tune", "show", str(log))
    (w,) = shown["workloads"]
    assert w["trials"] == 6 and "for" in w["nest"]


def test_errors_are_one_line(capsys, tmp_path):
    one_line_error(capsys, ["tune", "matmul", "--trials", "0"], "--trials", "integer >= 1")
    one_line_error(capsys, ["tune", "matmul", "--strategy", "bogus"], "invalid choice")
    one_line_error(capsys, ["tune", "matmul", *SHAPE, "--device", "no-such-gpu", "--trials", "1"], "unknown device")
    one_line_error(capsys, ["tune", "matmul", *SHAPE, "--epsilon", "2", "--trials", "1"], "--epsilon")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    one_line_error(capsys, ["tune", "show", str(bad)], "line 1: not JSON")
    one_line_error(capsys, ["tune", "show", str(tmp_path / "missing.jsonl")], "missing.jsonl")


def test_compile_with_a_tune_log(capsys, tmp_path):
    log = tmp_path / "mlp.jsonl"
    assert main(["tune", "matmul", "--m", "128", "--n", "3072", "--k", "768", "--trials", "4", "--batch-trials",
                 "4", "--log", str(log), "--json"]) == 0
    capsys.readouterr()
    out = run_json(capsys, "compile", "mlp", "--seq", "128", "--tune-log", str(log))
    # mlp's first layer is matmul + bias + gelu: its fused group lowers to one generated kernel with the
    # epilogue inside (lowering.scheduled.fold_epilogue), named after the steps
    assert out["scheduled"] == ["matmul_bias_gelu_scheduled"]
    one_line_error(capsys, ["compile", "mlp", "--seq", "64", "--tune-log", str(log)], "--tune-log", "no schedule")
    one_line_error(capsys, ["compile", "mlp", "--seq", "128", "--tune-log", str(log), "--device", "m2-max"],
                   "no trial on device 'm2-max'")


def test_a_shape_the_hand_tiles_cannot_launch_is_still_tuned(capsys):
    """M = 2^25 rows: matmul v3's tiles bind M to blockIdx.y and need more than its 65,535 blocks. The
    tuner's first random schedule could be that illegal too and stopped everything with a BindError;
    now the space is probed until a legal draw, the tuned schedule binds M to blockIdx.x, and the hand
    baseline is a row marked illegal with the reason."""
    long_m = ["--m", str(2 ** 25), "--n", "64", "--k", "64", "--trials", "4", "--batch-trials", "4"]
    assert main(["tune", "matmul", *long_m]) == 0
    out = capsys.readouterr().out
    assert "matmul v3 tiles: illegal: bind:" in out and "blockIdx.y allows at most 65,535 blocks" in out
    assert "speed-up over the hand-picked schedule" not in out and "tuned decisions:" in out
