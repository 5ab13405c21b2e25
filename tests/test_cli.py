"""The `tinyml` CLI: tables for people, one JSON schema for machines, messages not tracebacks."""

import json
import subprocess
import sys

import pytest

from tinyml.cli import main
from tinyml.cli.results import FIELDS
from tinyml.sim import list_presets, load_device

RESULT_KEYS = {"variant", "mode", *FIELDS, "peak_hbm_bytes", "time_s", "bound", "kernels"}
KERNEL_KEYS = {"name", "grid", "hbm_read_bytes", "hbm_write_bytes", "flops_matmul", "flops_vector",
               "peak_hbm_bytes", "time_s", "bound"}


def run_json(capsys, *argv, status=0):
    assert main([*argv, "--json"]) == status
    return json.loads(capsys.readouterr().out)


def test_devices_json_lists_every_preset_with_sources(capsys):
    out = run_json(capsys, "devices")
    assert [d["name"] for d in out["devices"]] == list_presets()
    for d in out["devices"]:
        assert d["sources"] and all(d["sources"].values())


def test_one_device_table_shows_sources(capsys):
    assert main(["devices", "a100-40gb"]) == 0
    text = capsys.readouterr().out
    assert "FlashAttention paper" in text and "sm.sram_bytes" in text


def test_matmul_json_schema_and_targets(capsys):
    out = run_json(capsys, "matmul", "--m", "4096", "--n", "4096", "--k", "4096")
    assert out["device"] == "a100-40gb"
    naive, tiled, mma = out["results"]
    for r in out["results"]:
        assert RESULT_KEYS <= set(r)
        assert r["mode"] == "count"
        for k in r["kernels"]:
            assert KERNEL_KEYS <= set(k)
        assert r["hbm_read_bytes"] == sum(k["hbm_read_bytes"] for k in r["kernels"])
    s = 2  # fp16 bytes
    assert naive["hbm_read_bytes"] == 2 * 4096 ** 3 * s
    assert naive["bound"] == "memory" and mma["bound"] == "compute"
    tiled_bytes = mma["hbm_read_bytes"] + mma["hbm_write_bytes"]
    assert (naive["hbm_read_bytes"] + naive["hbm_write_bytes"]) >= 50 * tiled_bytes


def test_small_matmul_executes_and_reports_error(capsys):
    out = run_json(capsys, "matmul", "--m", "17", "--n", "5", "--k", "9", "--dtype", "fp32")
    for r in out["results"]:
        assert r["mode"] == "execute"
        assert r["max_abs_err"] < 1e-4


def test_failed_variant_is_a_result_with_error(capsys):
    out = run_json(capsys, "matmul", "--m", "64", "--n", "64", "--k", "64", "--device", "toy",
                   "--block-m", "32", "--block-n", "32", "--block-k", "16", status=1)
    by = {r["variant"]: r for r in out["results"]}
    assert "error" not in by["naive"]
    for v in ("tiled", "mma"):
        assert by[v]["error"]["type"] == "SramOverflowError"
        assert "2,048 bytes" in by[v]["error"]["message"]


def test_out_of_hbm_is_reported_per_variant(capsys):
    toy = load_device("toy")
    n = 1024  # three 1024x1024 fp16 matrices = 6 MiB > 1 MiB of toy HBM
    assert 3 * n * n * 2 > toy.hbm_capacity
    out = run_json(capsys, "matmul", "--m", str(n), "--n", str(n), "--k", str(n), "--device", "toy", status=1)
    assert {r["error"]["type"] for r in out["results"]} == {"HbmOutOfMemoryError"}


def test_trace_and_roofline_files(tmp_path, capsys):
    trace, roof = tmp_path / "t.json", tmp_path / "r.png"
    assert main(["matmul", "--m", "512", "--n", "512", "--k", "512", "--count-only",
                 "--trace", str(trace), "--roofline", str(roof)]) == 0
    events = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X"]
    assert [e["name"] for e in events] == ["matmul_v1_naive", "matmul_v2_tiled", "matmul_v3_mma"]
    assert all(b["ts"] >= a["ts"] + a["dur"] - 1e-6 for a, b in zip(events, events[1:]))  # back to back
    assert roof.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tour_json(capsys):
    out = run_json(capsys, "tour", "--size", "1024")
    assert [lv["level"].split()[0] for lv in out["hierarchy"]] == ["SRAM", "HBM", "host"]
    assert len(out["matmul"]["results"]) == 3
    std, fa1, fa2 = out["attention"]["results"]
    assert std["variant"] == "standard" and std["hbm_write_bytes"] > fa1["hbm_write_bytes"] > 0
    assert fa2["time_s"] < fa1["time_s"] < std["time_s"]


@pytest.mark.parametrize("argv, needle", [
    (["matmul", "--m", "3", "--n", "4", "--k", "5", "--device", "no-such-gpu"], "unknown device"),
    (["matmul", "--m", "0", "--n", "4", "--k", "5"], "--m: must be an integer >= 1"),
    (["matmul", "--m", "3", "--n", "4", "--k", "5", "--dtype", "fp64"], "unsupported logical dtype"),
    (["devices", "missing.toml"], "does not exist"),
])
def test_bad_input_prints_message_and_exits_2(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_console_script_error_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "tinyml.cli", "devices", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown device" in proc.stderr and "Traceback" not in proc.stderr


def test_import_is_light():
    code = "import sys, tinyml, tinyml.sim; print('numba' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_json_into_a_closed_pipe_is_quiet():
    code = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-m', 'tinyml.cli', 'devices', '--json'], "
            "stdout=subprocess.PIPE, stderr=subprocess.PIPE); p.stdout.close(); "
            "err = p.stderr.read().decode(); print(p.wait(), 'Traceback' in err)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    status, traceback = out.split()
    assert traceback == "False" and status == "0"


def test_matmul_execute_that_cannot_run_fails_before_drawing_inputs(capsys, monkeypatch):
    """Simulated HBM first (A is 200 GB in fp16: every variant is out of HBM, exit 1), then the host
    (C of 200,000^2 float64 is 320 GB for the reference: exit 2); no input is drawn in either case."""
    import numpy as np

    monkeypatch.setattr(np.random, "default_rng", lambda *a, **k: pytest.fail("inputs were built"))
    out = run_json(capsys, "matmul", "--m", "1000000", "--k", "100000", "--n", "8", "--execute", status=1)
    assert {r["error"]["type"] for r in out["results"]} == {"HbmOutOfMemoryError"}
    assert "(1000000, 100000) fp16 needs 200 GB" in out["results"][0]["error"]["message"]
    assert main(["matmul", "--m", "200000", "--n", "200000", "--k", "8", "--execute"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "float64 reference 320 GB" in err and "drop --execute" in err
