"""A first run is never silent: what Numba compiles is shown, and compiling ahead only happens when it helps."""

from __future__ import annotations

import io

import numba
import pytest

from tinyml.cli import _progress


def test_compile_progress_names_each_top_level_kernel_once_and_is_silent_when_cached(monkeypatch):
    monkeypatch.setitem(_progress._said, "header", False)

    @numba.njit
    def helper(x):
        return x * 2

    @numba.njit
    def body(x):
        return helper(x) + 1

    out = io.StringIO()
    with _progress.compile_progress("stop 9 of 9 (test)", stream=out, prefix=__name__) as listener:
        assert body(3) == 7
    lines = out.getvalue().splitlines()
    assert lines[0] == _progress.HEADER and "first run only" in lines[0]
    assert lines[1:] == ["  stop 9 of 9 (test): test_cli_progress.test_compile_progress_names_each_top_level_"
                         "kernel_once_and_is_silent_when_cached.<locals>.body"]          # not the nested helper
    assert listener.count == 1

    again = io.StringIO()
    with _progress.compile_progress("stop 9 of 9 (test)", stream=again, prefix=__name__) as listener:
        assert body(4) == 9                                     # compiled already: nothing to say
    assert again.getvalue() == "" and listener.count == 0


def test_compiling_ahead_only_on_a_cold_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TINYML_COMPILE_AHEAD", "1")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert _progress.cache_is_warm() is False and _progress.ahead_wanted()
    _progress.mark_cache_warm()                                   # a tour completed with this cache
    assert _progress.cache_is_warm() is True and not _progress.ahead_wanted()
    assert _progress.AheadOfTime("tinyml.cli.tour:later_stops", None).proc is None
    (tmp_path / _progress.MARKER).unlink()
    monkeypatch.setattr("os.cpu_count", lambda: 1)                # no spare core
    assert not _progress.ahead_wanted()
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setenv("TINYML_COMPILE_AHEAD", "0")
    assert not _progress.ahead_wanted()
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")            # no cache folder to tell by
    assert _progress.cache_is_warm() is None


@pytest.mark.parametrize("device, alone", [("a100-40gb", True), ("h200", False)])
def test_the_tour_states_standard_attentions_out_of_memory_as_the_lesson(device, alone):
    from tinyml.cli.tour import _oom_lesson
    from tinyml.sim import load_device

    dev = load_device(device)
    text = _oom_lesson(dev, 16, 65536)
    s_bytes = 16 * 65536 * 65536 * 2
    assert (s_bytes > dev.hbm_capacity) == alone
    assert ("S alone" in text) == alone and "HbmOutOfMemoryError" in text and "Traceback" not in text
    if alone:
        assert f"{s_bytes / dev.hbm_capacity:.1f}x" in text


def test_the_text_tour_prints_every_stop_and_the_memory_lesson(capsys):
    from tinyml.cli import main

    assert main(["tour", "--size", "512"]) == 0
    out = capsys.readouterr().out
    for stop in range(1, 7):
        assert f"{stop}. " in out
    assert "standard: does not fit" in out and "flash2: fits" in out and "grows as N^2" in out


def test_the_tour_explains_a_matmul_too_big_for_the_device(capsys):
    """--size past the device's HBM: every variant fails; the stop says why once, not three bare error names."""
    from tinyml.cli import main

    assert main(["tour", "--size", "1000000"]) == 0              # the other stops still run
    out = capsys.readouterr().out
    assert out.count("naive, tiled, mma: out of HBM on a100-40gb") == 1
    assert "(1000000, 1000000) fp16 needs 2 TB" in out and "Use a smaller shape" in out and "5. " in out


def test_the_readme_transcript_is_what_the_tour_prints(capsys):
    """Every line of README's tour transcript appears in `tinyml tour`'s output (whitespace aside: the terminal
    wraps where it likes); only the abbreviated stop 4 line is the README's own. It drifted before."""
    from pathlib import Path

    from tinyml.cli import main

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("Part of what `tinyml tour` prints:")[1].split("```text")[1].split("```")[0]
    assert main(["tour"]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("(4.")]
    assert len(lines) > 30
    assert [ln for ln in lines if " ".join(ln.split()) not in printed] == []
