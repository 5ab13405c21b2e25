"""`tinyml schedule`: nests before and after a schedule, traces in and out, costs, messages not tracebacks."""

from __future__ import annotations

import json

import pytest

from tinyml.cli import main
from tinyml.cli.schedule import trace_text
from tinyml.compiler.tensor import Schedule, matmul, replay, simulate, to_json
from tinyml.compiler.tensor.examples import tiled_matmul

M, N, K = 256, 128, 128        # small: one tile on a100-40gb's rule in N and K, two in M


def run_json(capsys, *argv, status=0):
    assert main([*argv, "--json"]) == status
    return json.loads(capsys.readouterr().out)


def one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


def test_no_schedule_prints_the_naive_nest_and_its_cost(capsys):
    out = run_json(capsys, "schedule", "matmul", "--m", "16", "--n", "8", "--k", "4")
    assert out["schedule"] is None and out["after"] is None
    before = out["before"]
    assert "for k in range(4)" in before["nest"] and "def kernel" in before["source"]
    s = 2             # fp16: the naive nest reads A, B and C and writes C per update, and C once more at init
    assert before["hbm_read_bytes"] + before["l2_hit_bytes"] == 3 * 16 * 8 * 4 * s
    assert before["hbm_write_bytes"] == 16 * 8 * (4 + 1) * s


def test_example_mma_costs_what_the_schedule_costs_and_its_bytes_closed_form(capsys):
    out = run_json(capsys, "schedule", "matmul", "--m", str(M), "--n", str(N), "--k", str(K), "--example", "mma")
    after = out["after"]
    kinds = [i["kind"] for i in out["schedule"]["instructions"]]
    assert kinds[-1] == "tensorize" and kinds.count("cache_read") == 2
    bm, bn = (i["args"][1][1] for i in out["schedule"]["instructions"][:2])
    s = 2
    # matmul v2/v3's closed form: A re-read per column block, B per row block, C written once
    loaded = (M * K * -(-N // bn) + K * N * -(-M // bm)) * s
    assert after["hbm_read_bytes"] + after["l2_hit_bytes"] == loaded
    assert after["hbm_write_bytes"] == M * N * s
    assert after["flops_matmul"] == 2 * M * N * K and after["flops_vector"] == 0
    direct = simulate(replay(matmul(M, N, K), out["schedule"]["instructions"] and
                             json.dumps({"version": 1, "workload": out["workload"],
                                         "instructions": out["schedule"]["instructions"]})))
    assert after["time_s"] == direct.time_s
    assert out["speedup"] == out["before"]["time_s"] / after["time_s"] > 1


def test_write_trace_then_apply_it_to_another_size(tmp_path, capsys):
    path = tmp_path / "t.json"
    assert main(["schedule", "matmul", "--m", str(M), "--n", str(N), "--k", str(K), "--example", "tiled",
                 "--write-trace", str(path), "--show", "none"]) == 0
    capsys.readouterr()
    data = json.loads(path.read_text())
    assert data["instructions"][-1]["kind"] == "compute_at"          # tiled: no tensorize
    out = run_json(capsys, "schedule", "matmul", "--m", str(2 * M), "--n", str(N), "--k", str(K),
                   "--trace", str(path))
    again = replay(matmul(2 * M, N, K), {**data, "workload": matmul(2 * M, N, K).to_dict()})
    assert out["after"]["hbm_bytes"] == simulate(again).hbm_bytes
    assert out["after"]["flops_vector"] == 2 * 2 * M * N * K and out["after"]["flops_matmul"] == 0


def test_trace_text_round_trips_one_instruction_per_line():
    sch = tiled_matmul(matmul(M, N, K), 64, 64, 32)
    text = trace_text(to_json(sch))
    assert len(text.splitlines()) == 3 + len(sch.trace) + 1
    assert replay(matmul(M, N, K), text).nest == sch.nest


def test_text_output_shows_tree_schedule_and_table(capsys):
    assert main(["schedule", "matmul", "--m", "64", "--n", "64", "--k", "64", "--example", "mma", "--show", "all"]) == 0
    text = capsys.readouterr().out
    for needle in ("before: loop tree", "after: loop nest (NumPy-style)", "after: generated kernel",
                   "blockIdx.y", "mma C_local", "tensorize(", "less simulated time"):
        assert needle in text, needle


def test_conv2d_example_tiled(capsys):
    out = run_json(capsys, "schedule", "conv2d", "--batch", "1", "--channels", "4", "--size", "8",
                   "--filters", "8", "--example", "tiled")
    assert out["workload"]["name"] == "conv2d" and "fuse" in [i["kind"] for i in out["schedule"]["instructions"]]
    s = 2                   # blocked: X and W tiles per channel; one block covers all 8 filters and 8 rows
    assert out["after"]["hbm_write_bytes"] == 1 * 8 * 8 * 8 * s
    assert out["after"]["hbm_bytes"] < out["before"]["hbm_bytes"]


def test_conv2d_mma_example_is_the_implicit_gemm(capsys):
    """conv_tiles for 8 filters, 8x8 output, 4 channels: one block per image, one channel step."""
    out = run_json(capsys, "schedule", "conv2d", "--batch", "2", "--channels", "4", "--size", "8",
                   "--filters", "8", "--example", "mma")
    assert "tensorize" in [i["kind"] for i in out["schedule"]["instructions"]]
    assert "im2col" in out["after"]["source"] and "mma_acc" in out["after"]["source"]
    s, n, c, h, f = 2, 2, 4, 8, 8                     # 3x3, pad 1: 8x8 out; X, W read once, Y written once
    assert out["after"]["flops_matmul"] == 2 * n * f * h * h * c * 9 and out["after"]["flops_vector"] == 0
    assert out["after"]["hbm_read_bytes"] + out["after"]["l2_hit_bytes"] == (n * c * h * h + n * f * c * 9) * s
    assert out["after"]["hbm_write_bytes"] == n * f * h * h * s


def test_softmax_example_caches_the_rows(capsys):
    out = run_json(capsys, "schedule", "softmax", "--m", "64", "--n", "96", "--example", "tiled")
    s, m, n = 2, 64, 96
    assert out["before"]["hbm_read_bytes"] + out["before"]["l2_hit_bytes"] == 2 * m * n * s
    assert out["after"]["hbm_read_bytes"] + out["after"]["l2_hit_bytes"] == m * n * s
    one_line_error(capsys, ["schedule", "softmax", "--m", "8", "--n", "8", "--example", "mma"], "tensorize")


@pytest.mark.parametrize("argv, needle", [
    (["schedule", "matmul", "--m", "0"], "--m: must be an integer >= 1"),
    (["schedule", "matmul", "--trace", "/nonexistent/t.json"], "does not exist"),
    (["schedule", "matmul", "--example", "fast"], "invalid choice"),
    (["schedule", "matmul", "--example", "mma", "--trace", __file__], "not allowed with"),
    (["schedule", "matmul", "--write-trace", "/nonexistent/dir/t.json"], "does not exist"),
    (["schedule", "matmul", "--example", "tiled", "--write-trace", "t.txt"], "write a .json file"),
    (["schedule", "conv2d", "--pad", "-1"], "--pad: must be an integer >= 0"),
    (["schedule"], "required"),
])
def test_bad_arguments_exit_2_one_line(capsys, argv, needle):
    one_line_error(capsys, argv, needle)


def test_write_trace_needs_a_schedule(tmp_path, capsys):
    one_line_error(capsys, ["schedule", "matmul", "--write-trace", str(tmp_path / "t.json")], "--example")


@pytest.mark.parametrize("content, needles", [
    ("not json {", ("is not JSON",)),
    ("[1, 2]", ("a trace is a JSON object",)),
    ('{"version": 1, "workload": WL, "instructions": [{"kind": "split"}]}', ("instruction 0",)),
    ('{"version": 1, "workload": WL, "instructions": [{"kind": "explode", "args": []}]}', ("unknown primitive",)),
    ('{"version": 7, "workload": WL, "instructions": []}', ("version 7",)),
    # a reduction loop bound to the grid: refused by bind's legality check, with the loop named
    ('{"version": 1, "workload": WL, "instructions": [{"kind": "bind", "args": ["k", "blockIdx.x"]}]}',
     ("instruction 0 (bind)", "k")),
    # a split whose factors skip values
    ('{"version": 1, "workload": WL, "instructions": [{"kind": "split", "args": ["i", [3, 5]]}]}',
     ("instruction 0 (split)",)),
])
def test_bad_trace_files_exit_2_one_line(tmp_path, capsys, content, needles):
    path = tmp_path / "bad.json"
    path.write_text(content.replace("WL", json.dumps(matmul(16, 16, 16).to_dict())))
    one_line_error(capsys, ["schedule", "matmul", "--m", "16", "--n", "16", "--k", "16", "--trace", str(path)],
                   *needles)


def test_trace_of_another_workload_is_refused(tmp_path, capsys):
    path = tmp_path / "mm.json"
    path.write_text(to_json(Schedule(matmul(16, 16, 16))))
    one_line_error(capsys, ["schedule", "conv2d", "--channels", "4", "--size", "8", "--trace", str(path)],
                   "made on workload")


def test_tiles_that_overflow_sram_exit_2(tmp_path, capsys):
    path = tmp_path / "big.json"
    path.write_text(to_json(tiled_matmul(matmul(256, 256, 256), 256, 256, 128)))
    one_line_error(capsys, ["schedule", "matmul", "--m", "256", "--n", "256", "--k", "256", "--trace", str(path),
                            "--device", "toy"], "131,072 bytes of SRAM", "2,048 bytes")
