"""Bad input on the surfaces added since issue 11 was filed (tune logs, schedules, ssm, flash3):
a TinymlError naming the problem through the API, exit 2 with one line and no traceback on the CLI."""

from __future__ import annotations

import pytest

from tinyml.cli import main
from tinyml.compiler.tune.errors import TuneLogError
from tinyml.compiler.tune.log import read_records
from tinyml.sim import TinymlError


@pytest.fixture
def bad_files(tmp_path):
    binary = tmp_path / "binary.log"
    binary.write_bytes(bytes(range(128, 256)))
    broken = tmp_path / "broken.json"
    broken.write_text('{"not": json\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    return {"binary": binary, "broken": broken, "folder": tmp_path, "missing": tmp_path / "missing.json",
            "empty": empty}


@pytest.mark.parametrize("kind, match", [("binary", "not a text file"), ("broken", "not JSON"),
                                         ("folder", "cannot read"), ("missing", "no tuning log")])
def test_read_records_refuses_bad_logs(bad_files, kind, match):
    with pytest.raises(TuneLogError, match=match) as info:
        read_records(bad_files[kind])
    assert isinstance(info.value, TinymlError)


CLI = [
    ["schedule", "matmul", "--m", "0"], ["schedule", "matmul", "--m", "2.5"], ["schedule", "nosuch"],
    ["schedule", "matmul", "--device", "nosuch"], ["tune", "matmul", "--trials", "0"],
    ["tune", "matmul", "--trials", "nan"], ["ssm", "--seq", "-1"], ["ssm", "--seq", "1e99"],
    ["ssm", "--heads", "3"], ["ssm", "--heads", "10000"], ["ssm", "--channels", "3"],
    ["tune", "matmul", "--device", "cpu", "--m", "1000000", "--n", "1000000", "--k", "1000000", "--trials", "2",
     "--model", "none"],
    ["attention", "--variants", "flash3", "--seq", "0"],
    ["tune", "show", "{binary}"], ["tune", "show", "{broken}"], ["tune", "show", "{missing}"],
    ["tune", "show", "{empty}"], ["tune", "matmul", "--m", "64", "--n", "64", "--k", "64", "--trials", "2",
                                  "--transfer", "{empty}"],
    ["compile", "tiny_gpt", "--tune-log", "{binary}"], ["compile", "tiny_gpt", "--tune-log", "{broken}"],
    ["compile", "tiny_gpt", "--schedule", "{missing}"],
]


@pytest.mark.parametrize("argv", CLI, ids=" ".join)
def test_cli_bad_input_exits_2_with_one_line(argv, bad_files, capsys):
    args = [a.format(**bad_files) for a in argv]
    try:
        code = main(args)
    except SystemExit as exit_:          # argparse's own refusals
        code = exit_.code
    out = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out.out + out.err
    assert len(out.err.strip().splitlines()) == 1, out.err


def test_ssm_never_rounds_the_attention_head_dim():
    """channels / (2 heads) is FlashAttention-2's head dim: 4096 / 6 is refused, not floored to 682
    (nor 4096 / 20000 clamped to 1), so both forms are always layers of the same width."""
    from tinyml.cli.ssm import measure
    from tinyml.sim import ShapeError

    with pytest.raises(ShapeError, match=r"--channels 4096 is not a multiple of 2 x --heads = 6.*--heads 2 "):
        measure(64, 1, 4096, 16, 3, "a100-80gb")
    rows = measure(64, 1, 4096, 16, 4, "a100-80gb")
    assert rows[-1]["form"] == "FlashAttention-2 (4 x 512)"


def test_ssm_error_rows_keep_the_advice(capsys):
    """An error row holds the whole message (out of HBM: what to do is on its second line)."""
    import json

    assert main(["ssm", "--device", "toy", "--json"]) == 1
    forms = json.loads(capsys.readouterr().out)["forms"]
    hbm = [r["error"] for r in forms if "out of HBM" in r.get("error", "")]
    assert hbm and all("Use a smaller shape" in e for e in hbm)


def test_cpu_measurer_asks_the_host_before_drawing_inputs():
    """A shape too big for this machine's RAM is a HostMemoryError that points to a simulated device,
    not NumPy's MemoryError out of the middle of tune()."""
    from tinyml.compiler.tensor.workloads import matmul
    from tinyml.compiler.tune.cpu import CpuMeasurer
    from tinyml.sim import HostMemoryError

    with pytest.raises(HostMemoryError, match="on a simulated device"):
        CpuMeasurer().inputs(matmul(10 ** 6, 10 ** 6, 10 ** 6))
