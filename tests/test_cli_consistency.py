"""One spelling per concept, old spellings still working; files named in the JSON; tables that
say what their columns mean; lab run/check of your own copy."""

from __future__ import annotations

import json
import shlex

import pytest

from tinyml.cli import main
from tinyml.sim import list_presets, load_device
from tinyml.sim.units import fmt_rate


def run_json(capsys, *argv, status=0):
    assert main([*argv, "--json"]) == status
    return json.loads(capsys.readouterr().out)


def variants(out):
    return [r["variant"] for r in out["results"]]


def test_variant_is_one_spelling_for_matmul_and_attention_and_takes_a_list(capsys):
    mm = ["matmul", "--m", "64", "--n", "64", "--k", "64", "--count-only"]
    assert variants(run_json(capsys, *mm, "--variant", "naive,mma")) == ["naive", "mma"]
    assert variants(run_json(capsys, *mm, "--variant", "tiled")) == ["tiled"]
    assert variants(run_json(capsys, *mm, "--variant", "all")) == ["naive", "tiled", "mma"]
    att = ["attention", "--seq", "64", "--head-dim", "16", "--heads", "2", "--count-only"]
    assert variants(run_json(capsys, *att, "--variant", "flash2,standard")) == ["flash2", "standard"]
    # the old spelling still works, and --help shows only the new one
    assert variants(run_json(capsys, *att, "--variants", "flash1")) == ["flash1"]
    assert main(["attention", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--variant NAMES" in text and "--variants" not in text


def test_format_is_one_spelling_for_quant_and_decode(capsys):
    q = ["quant", "--model", "gpt2", "--device", "rtx-4090", "--no-sim"]
    new = run_json(capsys, *q, "--format", "fp16,q4_0")
    old = run_json(capsys, *q, "--formats", "fp16,q4_0")
    assert [r["format"] for r in new["results"]] == [r["format"] for r in old["results"]] == ["fp16", "q4_0"]
    assert main(["quant", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--format FORMATS" in text and "--formats" not in text


def test_json_names_the_trace_and_roofline_files_it_wrote(tmp_path, capsys):
    trace, roof = tmp_path / "t.json", tmp_path / "r.svg"
    out = run_json(capsys, "matmul", "--m", "128", "--n", "128", "--k", "128", "--count-only",
                   "--trace", str(trace), "--roofline", str(roof))
    assert out["files"] == {"trace": str(trace), "roofline": str(roof)}
    assert trace.is_file() and roof.read_text().lstrip().startswith("<?xml")
    out = run_json(capsys, "attention", "--seq", "64", "--head-dim", "16", "--heads", "2", "--count-only",
                   "--variant", "flash2", "--trace", str(trace))
    assert out["files"] == {"trace": str(trace)}
    assert "files" not in run_json(capsys, "matmul", "--m", "8", "--n", "8", "--k", "8", "--count-only")


def test_devices_label_peak_and_achievable_and_the_numbers_follow(capsys):
    assert main(["devices"]) == 0
    text = capsys.readouterr().out
    assert "peak" in text and "achievable" in text and "peak x the preset's efficiency" in text
    for name in list_presets():
        d = load_device(name)
        assert fmt_rate(d.hbm_bandwidth * d.eff_hbm) in text
        assert fmt_rate(d.matmul_rate("fp16") * d.eff_matmul, "FLOP/s") in text
    assert main(["devices", "a100-40gb"]) == 0
    text = capsys.readouterr().out
    a100 = load_device("a100-40gb")
    assert (f"HBM {fmt_rate(a100.hbm_bandwidth * a100.eff_hbm)} achievable of "
            f"{fmt_rate(a100.hbm_bandwidth)} peak") in text


def test_quant_and_decode_label_the_peak_they_divide_by(capsys):
    assert main(["quant", "--model", "gpt2", "--device", "a100-80gb", "--no-sim"]) == 0
    assert "GB/s peak x 0.85 efficiency" in capsys.readouterr().out


def test_compile_says_what_groups_kernels_and_load_mean(capsys):
    assert main(["compile", "mlp", "--seq", "16"]) == 0
    text = capsys.readouterr().out
    assert "groups = fused groups" in text and "kernels = launches" in text
    assert "LOAD = the most bytes live at one launch" in text


def _my_copy(tmp_path, number=2):
    from tinyml.labs import get_lab

    mine = tmp_path / "my lab.py"                       # a space: the footer must quote it
    mine.write_text(get_lab(number).path.read_text())
    return mine


def test_check_of_your_copy_suggests_checking_your_copy_again(tmp_path, capsys):
    mine = _my_copy(tmp_path)
    assert main(["lab", "check", "2", "--file", str(mine)]) == 1        # exercises not attempted
    text = capsys.readouterr().out
    assert f"run `tinyml lab check 2 --file {shlex.quote(str(mine))}` again" in text
    assert main(["lab", "check", "2"]) == 1                              # the shipped lab: not attempted
    assert "run `tinyml lab check 2` again" in capsys.readouterr().out


def test_lab_run_takes_your_copy(tmp_path, capfd):
    mine = tmp_path / "lab.py"
    mine.write_text("import os\nprint('my copy ran, smoke =', os.environ.get('TINYML_LAB_SMOKE'))\n"
                    "raise SystemExit(3)\n")
    assert main(["lab", "run", "2", "--file", str(mine), "--smoke"]) == 3
    assert "my copy ran, smoke = 1" in capfd.readouterr().out


@pytest.mark.parametrize("command", ["matmul", "attention"])
def test_json_help_says_it_prints_results(capsys, command):
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "print the results as JSON" in text and "JSON schema" not in text


def test_lab_list_shows_paths_from_where_you_stand(capsys, monkeypatch, tmp_path):
    """Below the working directory a lab file is shown relative to it (labs/lab01_...py); elsewhere, absolute."""
    from tinyml.labs import list_labs

    first = list_labs()[0].path
    monkeypatch.chdir(first.parent.parent)
    assert main(["lab", "list"]) == 0
    assert f"labs/{first.name}" in capsys.readouterr().out
    from tinyml.cli.lab import _shown

    monkeypatch.chdir(tmp_path)                                  # not above the labs: the full path
    assert _shown(first) == str(first)
