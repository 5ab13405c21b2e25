"""Every bad argument of every command: exit status 2, one line on stderr, no traceback.

The walk reads the parser itself: for every option (and positional) of every subcommand
that uses one of the shared argument types (tinyml.cli._args), it feeds values that type
must refuse. A new option with a bare ``type=int`` fails the audit below, so the walk
keeps covering every command as the CLI grows.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from tinyml.cli import _args, build_parser, main

#: the least each subcommand needs so that only the bad value is wrong
REQUIRED = {
    ("matmul",): ["--m", "8", "--n", "8", "--k", "8"],
    ("compile",): ["mlp"],
    ("lab", "run"): ["1"],
    ("lab", "check"): ["1"],
}


def subcommands(parser=None, path=()):
    """(path, parser) for every leaf subcommand: ("matmul",), ("lab", "check"), ..."""
    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs and path:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from subcommands(sub, path + (name,))


def bad_values(kind, tmp):
    """Values the shared type ``kind`` must refuse (``tmp``: a folder for file cases)."""
    afile = tmp / "a_file"
    afile.write_text("x")
    if kind is _args.positive_int:
        return ["0", "-1", "1.5", "abc", ""]
    if kind is _args.non_negative_int:
        return ["-1", "1.5", "abc", ""]
    if kind is _args.json_file:
        return [str(tmp / "missing" / "t.json"), str(tmp), str(tmp / "t.txt")]
    if kind is _args.seed:
        return ["-1", "1.9", str(2 ** 63), "abc"]
    if kind is _args.probability:
        return ["1.5", "1", "-0.1", "nan", "inf", "abc"]
    if kind is _args.writable_file:
        return [str(tmp / "missing" / "t.json"), str(tmp), str(afile / "t.json")]
    if kind is _args.image_file:
        return [str(tmp / "missing" / "r.png"), str(tmp / "r.txt"), str(tmp)]
    if kind is _args.output_folder:
        return [str(afile), str(afile / "sub")]
    if kind is _args.readable_file:
        return [str(tmp / "missing.py"), str(tmp)]
    if getattr(kind, "__qualname__", "").startswith("choices."):
        return ["nope", ",", "all,nope"]
    return []


class _Null:
    """A stand-in folder for shared_type (bad_values only builds paths from it)."""

    def __truediv__(self, other):
        return self

    def write_text(self, text):
        pass

    def __str__(self):
        return "/nonexistent"


def cases():
    for path, parser in subcommands():
        for action in parser._actions:
            if action.type is None or action.help == argparse.SUPPRESS:
                continue
            if bad_values(action.type, _Null()):
                yield pytest.param(path, action, id=f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")


def argv_with(path, action, value):
    base = list(REQUIRED.get(path, []))
    if action.option_strings:
        return [*path, *base, f"{action.option_strings[0]}={value}"]
    return [*path, value, *base[1:]]        # the positional (a lab number) replaces the required one


def assert_one_line_refusal(capsys, argv):
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, (argv, status, err)
    assert "Traceback" not in err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    return err


@pytest.mark.parametrize("path, action", list(cases()))
def test_every_bad_value_of_every_option_exits_2_with_one_line(tmp_path, capsys, path, action):
    for value in bad_values(action.type, tmp_path):
        err = assert_one_line_refusal(capsys, argv_with(path, action, value))
        name = action.option_strings[0] if action.option_strings else action.dest
        assert name in err


def test_the_walk_covers_every_command_and_no_option_parses_bare_numbers():
    """Every subcommand is walked; an int or float option must use a shared type (which refuses
    0, negatives, NaN ... with one line), not type=int / type=float."""
    seen = {path for path, _ in subcommands()}
    assert {("matmul",), ("attention",), ("compile",), ("decode",), ("quant",), ("fuse",), ("devices",),
            ("lab", "list"), ("lab", "run"), ("lab", "check"), ("tour",)} <= seen
    bare = []
    for path, parser in subcommands():
        for action in parser._actions:
            if action.type in (int, float):
                bare.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")
    assert bare == [], bare       # nothing may parse a bare int or float
    covered = {path for path, _ in (c.values[:2] for c in cases())}
    assert {("matmul",), ("attention",), ("compile",), ("decode",), ("quant",), ("lab", "run"),
            ("lab", "check")} <= covered


@pytest.mark.parametrize("argv", [
    ["compile", "tiny_gpt", "--layers", "0"],
    ["compile", "tiny_gpt", "--layers", "-1"],
    ["matmul", "--m", "8", "--n", "8", "--k", "8", "--block-m", "0"],
    ["attention", "--seq", "16", "--head-dim", "8", "--dropout", "1.5"],
    ["attention", "--seq", "16", "--head-dim", "8", "--dropout", "nan"],
    ["attention", "--seq", "16", "--head-dim", "8", "--seed", "-1"],
    ["matmul", "--m", "8", "--n", "8", "--k", "8", "--seed", "-1"],
    ["matmul", "--m", "8", "--n", "8"],                                  # a required option missing
    ["matmul", "--m", "8", "--n", "8", "--k", "8", "--frobnicate"],      # an unknown option
    ["attention", "--variant", "flash9"],
    ["decode", "--format", "fp16,q4_0"],
    ["nosuchcommand"],
])
def test_the_issue_examples_exit_2_before_any_work(capsys, argv):
    assert_one_line_refusal(capsys, argv)


def test_files_into_a_missing_or_unwritable_place_are_refused(tmp_path, capsys):
    missing = tmp_path / "no" / "such"
    for argv in (["matmul", "--m", "8", "--n", "8", "--k", "8", "--trace", str(missing / "t.json")],
                 ["attention", "--seq", "16", "--head-dim", "8", "--roofline", str(missing / "r.png")]):
        err = assert_one_line_refusal(capsys, argv)
        assert "does not exist" in err and f"mkdir -p {missing}" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = assert_one_line_refusal(capsys, ["compile", "mlp", "--explain", "--out", str(blocker / "sub")])
    assert "is a file" in err
    assert not missing.exists()                                            # nothing was created


def test_a_write_that_fails_after_parsing_is_one_line_too(tmp_path, capsys, monkeypatch):
    """What the parser cannot foresee (permissions root ignores, a full disk) ends as one line."""
    from tinyml.sim import Profile

    def refuse(self, path):
        raise PermissionError(13, "Permission denied", str(path))
    monkeypatch.setattr(Profile, "to_chrome_trace", refuse)
    err = assert_one_line_refusal(capsys, ["matmul", "--m", "8", "--n", "8", "--k", "8", "--count-only",
                                           "--trace", str(tmp_path / "t.json")])
    assert "Permission denied" in err and "t.json" in err


@pytest.mark.parametrize("content", [b"\x00\xff\xfe\x01 binary", b"x = 1\x00\n"])
def test_lab_check_of_a_binary_file_is_one_line(tmp_path, capsys, content):
    f = tmp_path / "lab.py"
    f.write_bytes(content)
    err = assert_one_line_refusal(capsys, ["lab", "check", "2", "--file", str(f)])
    assert "not a Python source file" in err


def test_the_real_entry_point_prints_no_traceback(tmp_path):
    f = tmp_path / "lab.py"
    f.write_bytes(b"\xff\xfe")
    for argv in (["attention", "--dropout", "nan"], ["lab", "check", "2", "--file", str(f)],
                 ["matmul", "--m", "8", "--n", "8", "--k", "8", "--trace", str(tmp_path / "x" / "t.json")]):
        proc = subprocess.run([sys.executable, "-m", "tinyml.cli", *argv], capture_output=True, text=True)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("error: ") and proc.stderr.strip().count("\n") == 0


def test_tiny_gpt_refuses_zero_layers_in_the_api_too():
    from tinyml.compiler import GraphError, zoo

    for layers in (0, -1, 1.5, True):
        with pytest.raises(GraphError, match="layers >= 1"):
            zoo.get("tiny_gpt", layers=layers)


def test_help_still_exits_0(capsys):
    assert main(["matmul", "--help"]) == 0
    assert "--variant" in capsys.readouterr().out


def test_every_option_of_every_command_has_help_and_says_its_default():
    """--help documents every option; every one that takes a value says its default (a flag is
    off unless given; a required option has none)."""
    missing = []
    for path, parser in subcommands():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            name = f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
            text = formatter._get_help_string(action) or ""
            if not text.strip():
                missing.append(f"{name}: no help")
            elif (action.option_strings and not action.required and action.nargs != 0
                  and "default" not in text):
                missing.append(f"{name}: no default in {text!r}")
    assert missing == []


@pytest.mark.parametrize("argv", [
    ["devices", "{bin}"],
    ["matmul", "--m", "8", "--n", "8", "--k", "8", "--device", "{bin}"],
    ["attention", "--seq", "16", "--device", "{bin}"],
    ["quant", "--model", "{bin}", "--no-sim"],
    ["decode", "--model", "{bin}"],
    ["compile", "{bin_onnx}"],
    ["devices", "{dir}"],
])
def test_a_binary_or_folder_given_as_a_device_or_model_file_is_one_line(tmp_path, capsys, argv):
    binary = b"\x7fELF\x02\x01\x01\x00\xd0\xff\xfe" * 10
    (tmp_path / "gpu.toml").write_bytes(binary)
    (tmp_path / "m.onnx").write_bytes(binary)
    names = {"bin": str(tmp_path / "gpu.toml"), "bin_onnx": str(tmp_path / "m.onnx"), "dir": str(tmp_path)}
    err = assert_one_line_refusal(capsys, [a.format(**names) for a in argv])
    assert str(tmp_path) in err


@pytest.mark.parametrize("argv", [
    ["devices", "nope"], ["quant", "--model", "nope", "--no-sim"], ["fuse", "--ops", "mul,frob"],
    ["fuse", "--ops", "gelu", "--shape", "12"], ["compile", "mlp", "--bound", "n=abc"], ["compile", "mlp", "--seq", "x"],
    ["compile", "nosuch"], ["lab", "check", "99"], ["lab", "run", "99"], ["compile", "mlp", "--out", "explain"],
    ["matmul", "--m", "3", "--n", "4", "--k", "5", "--dtype", "fp64"],
    ["attention", "--heads", "6", "--kv-heads", "4", "--seq", "8"],
    ["devices", ""], ["tour", "--device", ""], ["matmul", "--m", "3", "--n", "4", "--k", "5", "--device", " "],
])
def test_names_and_values_checked_after_parsing_are_one_line_too(capsys, argv):
    assert_one_line_refusal(capsys, argv)


def test_an_empty_device_name_is_named_as_such():
    """'' used to read as the path '.' ("is a directory"), and `tinyml devices ''` printed every preset."""
    from tinyml.sim import DeviceConfigError, load_device

    with pytest.raises(DeviceConfigError, match="the device name is empty; give a preset"):
        load_device("")


def test_the_largest_seed_runs_end_to_end(capsys):
    """2^63 - 1 is accepted and reaches the dropout hash (a 64-bit integer) without overflow."""
    argv = ["attention", "--seq", "8", "--head-dim", "8", "--heads", "1", "--dropout", "0.1",
            "--seed", str(_args.MAX_SEED), "--json"]
    assert main(argv) == 0
    import json

    results = json.loads(capsys.readouterr().out)["results"]
    assert all(r["max_abs_err"] < 1e-5 for r in results)


@pytest.mark.parametrize("argv,says", [
    (["tour", "--sizee", "3"], "tinyml tour: unrecognized arguments: --sizee 3; did you mean --size?"),
    (["matmul", "--m", "3", "--n", "3", "--k", "3", "--devce", "h200"], "tinyml matmul: unrecognized arguments: "
                                                                          "--devce h200; did you mean --device?"),
    (["matmul", "--m", "3", "--n", "3", "--k", "3", "--zzz"], "tinyml matmul: unrecognized arguments: --zzz (see"),
    (["--sizee", "3"], "tinyml tour: unrecognized arguments: --sizee 3; did you mean --size?"),    # tour is the default
])
def test_an_unknown_option_is_refused_by_its_command_with_a_guess(capsys, argv, says):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
