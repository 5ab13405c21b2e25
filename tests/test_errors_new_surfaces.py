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
    return {"binary": binary, "broken": broken, "folder": tmp_path, "missing": tmp_path / "missing.json"}


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
    ["attention", "--variants", "flash3", "--seq", "0"],
    ["tune", "show", "{binary}"], ["tune", "show", "{broken}"], ["tune", "show", "{missing}"],
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
