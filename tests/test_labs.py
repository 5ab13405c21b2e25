"""The course labs: the checker accepts the reference solutions, says "not attempted"
on the shipped labs, explains wrong answers, never runs a lab's cells, and every
lab script (and solution) runs in smoke mode."""

from __future__ import annotations

import ast
import json
import os
import runpy
import textwrap

import pytest

from tinyml.labs import NOT_ATTEMPTED, OK, WRONG, check_lab, get_lab, list_labs, run_lab
from tinyml.sim import LabError, TinymlError

LABS = list_labs()
NUMBERS = [lab.number for lab in LABS]


def test_labs_are_found_with_titles_solutions_and_exercises():
    assert NUMBERS[:2] == [1, 2]
    assert [lab.title for lab in LABS[:2]] == ["The memory hierarchy", "Tiled matmul"]
    for lab in LABS:
        assert lab.path.is_file() and lab.path.parent.name == "labs"
        assert lab.solution is not None, f"lab {lab.number} ships no labs/solutions/{lab.path.name}"
        assert 2 <= len(lab.exercises) <= 4
        assert all(e.id.startswith(f"{lab.number}.") for e in lab.exercises)
        json.dumps(lab.to_dict())


@pytest.mark.parametrize("number", [1, 2])
def test_checker_accepts_the_reference_solution(number):
    """The checker's report on a reference solution, as an object and as JSON. Every other lab's
    solution is checked by its own last cell (``check_lab(N, path=__file__)``) when
    test_solution_runs_in_smoke_mode runs it, so its exercises are not checked twice here."""
    report = check_lab(number, path=get_lab(number).solution)
    assert report.passed, report.render()
    assert [r.status for r in report.results] == [OK] * len(get_lab(number).exercises)
    out = json.loads(json.dumps(report.to_dict()))
    assert out["passed"] is True and out["counts"][OK] == len(report.results)


def numbers(slow: tuple = ()) -> list:
    """Every lab's number as a parameter, those in ``slow`` marked slow (`pytest -m slow`; CI runs them)."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in NUMBERS]


#: lab 12 tunes (XGBoost fits, hundreds of simulated trials): about 30 CPU s over these two tests, which CI's
#: labs step repeats (`tinyml lab run 12 --smoke`, `tinyml lab check 12 --file` on the solution)
LAB12 = (12,)


@pytest.mark.parametrize("number", numbers(slow=LAB12))
def test_shipped_lab_is_not_attempted(number):
    import threadpoolctl  # noqa: F401  (its import sets KMP_DUPLICATE_LIB_OK; lab 13's check is its first import)

    before = dict(os.environ)
    report = check_lab(number)
    assert dict(os.environ) == before                      # smoke mode is set only while checking
    assert not report.passed
    for r in report.results:
        assert r.status == NOT_ATTEMPTED
        assert f"Exercise {r.id}" in r.message and "NotImplementedError" in r.message
    assert "[not attempted]" in report.render()


def _strip_exercise_bodies(path, names):
    """The file's AST without its module docstring and with exercise bodies cut to their docstrings."""
    tree = ast.parse(path.read_text())
    tree.body = tree.body[1:]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in names:
            node.body = node.body[:1]
    return ast.dump(tree)


@pytest.mark.parametrize("number", NUMBERS)
def test_solution_differs_from_the_lab_only_in_exercise_bodies(number):
    lab = get_lab(number)
    names = {e.function for e in lab.exercises}
    assert _strip_exercise_bodies(lab.solution, names) == _strip_exercise_bodies(lab.path, names), (
        f"{lab.solution} and {lab.path} differ outside the exercise bodies: edit the lab, then the solution")


WRONG_LAB2 = """
from tinyml.sim import nbytes

def naive_hbm_read_bytes(m, n, k, dtype):
    return 2 * m * n * k                    # elements, not bytes

def tiled_hbm_read_bytes(m, n, k, dtype, block_m, block_n):
    return nbytes(m * k * (n // block_n) + k * n * (m // block_m), dtype)   # floor misses edge tiles

def toy_tiles():
    return (32, 32, 16)                     # forgets the fp32 accumulator

def waves(device, n_blocks, sram_per_block):
    raise NotImplementedError("Exercise 2.4: later")

raise SystemExit("the checker ran a top-level cell")
"""


def test_wrong_answers_say_what_is_wrong_and_hint(tmp_path):
    path = tmp_path / "my_lab2.py"
    path.write_text(WRONG_LAB2)
    report = check_lab(2, path=path)
    got = {r.id: r for r in report.results}
    assert [got[i].status for i in ("2.1", "2.2", "2.3", "2.4")] == [WRONG, WRONG, WRONG, NOT_ATTEMPTED]
    assert "naive_hbm_read_bytes(64, 64, 64, 'fp16') = 524,288" in got["2.1"].message
    assert "bytes" in got["2.1"].message and "nbytes(1, dtype)" in got["2.1"].message
    assert "ceil" in got["2.2"].message
    assert "toy_tiles() = (32, 32, 16) needs 6,144 bytes of SRAM but the toy SM has 2,048" in got["2.3"].message
    assert "C accumulator 32x32 fp32 = 4,096 B" in got["2.3"].message
    assert not report.passed and "3 wrong, 1 not attempted" in report.render()


def test_lab1_wrong_answers_and_crashes(tmp_path):
    path = tmp_path / "my_lab1.py"
    path.write_text(textwrap.dedent("""
        def ridge_point(device, dtype="fp16"):
            return device.matmul_rate(dtype) / device.hbm_bandwidth      # spec, not achievable

        def largest_square_matmul(device, dtype="fp16"):
            return int((device.hbm_capacity / 2) ** 0.5)                 # forgets B and C

        def launch_break_even_bytes(device):
            return 1 / 0
    """))
    got = {r.id: r for r in check_lab(1, path=path).results}
    assert got["1.1"].status == WRONG and "no function matmul_intensity()" in got["1.1"].message
    assert got["1.2"].status == WRONG and "eff_matmul" in got["1.2"].message
    assert got["1.3"].status == WRONG and "raised ZeroDivisionError" in got["1.3"].message
    assert got["1.4"].status == WRONG and "too big" in got["1.4"].message and "out of HBM" in got["1.4"].message


def test_checker_runs_only_functions_and_the_constants_they_need(tmp_path):
    marker = tmp_path / "cell-ran"
    path = tmp_path / "partial.py"
    path.write_text(textwrap.dedent(f"""
        import os
        import pathlib

        SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"
        TILE = 16 if SMOKE else 999
        DEPTH = TILE                                   # needed through TILE, transitively

        pathlib.Path({str(marker)!r}).write_text("a cell ran")
        print("cells print")

        def toy_tiles():
            return (TILE, TILE, DEPTH)
    """))
    got = {r.id: r for r in check_lab(2, path=path).results}
    assert got["2.3"].status == OK, got["2.3"].message
    assert got["2.1"].status == WRONG and "no function" in got["2.1"].message
    assert not marker.exists()


def test_errors_are_lab_errors_that_list_the_labs(tmp_path):
    assert issubclass(LabError, TinymlError)
    with pytest.raises(LabError, match=r"no lab 99.*available labs: 1 \(The memory hierarchy\), 2"):
        check_lab(99)
    with pytest.raises(LabError, match="available labs"):
        run_lab(99)
    with pytest.raises(LabError, match="does not exist"):
        check_lab(1, path=tmp_path / "missing.py")
    bad = tmp_path / "bad.py"
    bad.write_text("def ridge_point(device:\n    return 1\n")
    with pytest.raises(LabError, match=r"bad\.py, line 1"):
        check_lab(1, path=bad)
    other = tmp_path / "other.py"
    other.write_text("def something():\n    return 1\n")
    with pytest.raises(LabError, match="none of lab 1's exercise functions"):
        check_lab(1, path=other)


def test_the_lab_checking_itself_suggests_the_plain_command(tmp_path, monkeypatch):
    # A lab's last cell calls check_lab(N, path=__file__): the shipped file, however it is named,
    # gets the command its docstring gives; a copy gets --file and its path.
    shipped = get_lab(1).path
    monkeypatch.chdir(shipped.parent)
    for path in (shipped, shipped.name):
        report = check_lab(1, path=path)
        assert report.rerun == "tinyml lab check 1"
        assert report.render().rstrip().endswith("run `tinyml lab check 1` again.")
    copy = tmp_path / shipped.name
    copy.write_text(shipped.read_text())
    assert check_lab(1, path=copy).rerun == f"tinyml lab check 1 --file {copy}"


def test_labs_dir_can_be_moved(tmp_path, monkeypatch):
    (tmp_path / "lab07_custom_things.py").write_text('"""Lab 7: Custom things."""\nprint("hi")\n')
    (tmp_path / "notes.py").write_text("")
    monkeypatch.setenv("TINYML_LABS_DIR", str(tmp_path))
    labs = list_labs()
    assert [(lab.number, lab.title) for lab in labs] == [(7, "Custom things")]
    with pytest.raises(LabError, match=r"available labs: 7 \(Custom things\)"):
        check_lab(1)
    monkeypatch.setenv("TINYML_LABS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(LabError, match="not a folder"):
        list_labs()


@pytest.mark.parametrize("number", numbers(slow=tuple(n for n in NUMBERS if n != 1)))
def test_lab_runs_in_smoke_mode(number, capfd):
    """Each lab as its own script (`tinyml lab run N --smoke`). Lab 1 in the default run; the others are
    marked slow (each a fresh interpreter: CI runs them all, in its labs step and with `pytest -m slow`)."""
    assert run_lab(number, smoke=True) == 0
    out = capfd.readouterr().out
    assert f"Lab {number}:" in out and "not attempted" in out


@pytest.mark.parametrize("number", numbers(slow=LAB12))
def test_solution_runs_in_smoke_mode(number, monkeypatch, capsys):
    """Every cell of the reference solution runs (in this process: test_lab_runs_in_smoke_mode starts
    each lab as its own script, `tinyml lab run N --smoke`), and its last cell, the checker on the
    solution itself, says every exercise is right."""
    lab = get_lab(number)
    monkeypatch.setenv("TINYML_LAB_SMOKE", "1")
    runpy.run_path(str(lab.solution), run_name="__main__")
    out = capsys.readouterr().out
    assert f"All {len(lab.exercises)} exercises are right" in out, out[-3000:]
    assert f"checking {lab.solution}" in out, out[-3000:]
    lines = out.splitlines()
    for e in lab.exercises:
        assert any(ln.startswith(f"[{OK}]") and ln.endswith(f" {e.id}  {e.function}()") for ln in lines), \
            (e.id, out[-3000:])


def test_lab11_partial_schedules_are_diagnosed_not_crashed(tmp_path):
    """A schedule without B in SRAM and without tensorize computes the right C but is slow: the
    checker says which primitives are missing; v3's own tiles miss the toy target and say why."""
    path = tmp_path / "my_lab11.py"
    path.write_text(textwrap.dedent("""
        from tinyml.compiler.tensor import Schedule, matmul

        def schedule_matmul(m, n, k, bm, bn, bk):
            sch = Schedule(matmul(m, n, k))
            i0, i1 = sch.split("i", [None, bm])
            j0, j1 = sch.split("j", [None, bn])
            k0, k1 = sch.split("k", [None, bk])
            sch.reorder(i0, j0, k0, i1, j1, k1)
            sch.bind(i0, "blockIdx.y")
            sch.bind(j0, "blockIdx.x")
            sch.reverse_compute_at(sch.cache_write("local"), j0)
            sch.compute_at(sch.cache_read("A", "shared"), k0)
            return sch

        def toy_tiles():
            return 16, 16, 16
    """))
    got = {r.id: r for r in check_lab(11, path=path).results}
    assert got["11.1"].status == WRONG
    msg = got["11.1"].message
    assert "B is re-read from HBM for every multiply-add" in msg and "cache_read('B', 'shared')" in msg
    assert "the tile product is not tensorized" in msg and "A is re-read" not in msg
    assert "target is 1.10x" in msg
    assert got["11.2"].status == WRONG
    assert "toy_tiles() = (16, 16, 16)" in got["11.2"].message and "registers" in got["11.2"].message


def test_lab11_a_refused_primitive_or_a_wrong_return_is_wrong_not_a_crash(tmp_path):
    path = tmp_path / "my_lab11.py"
    path.write_text(textwrap.dedent("""
        from tinyml.compiler.tensor import Schedule, matmul

        def schedule_matmul(m, n, k, bm, bn, bk):
            sch = Schedule(matmul(m, n, k))
            sch.bind("k", "blockIdx.x")          # a reduction loop on the grid: refused
            return sch

        def toy_tiles():
            return [(64, 64, 64)]
    """))
    got = {r.id: r for r in check_lab(11, path=path).results}
    assert got["11.1"].status == WRONG and "raised BindError" in got["11.1"].message
    assert got["11.2"].status == WRONG and "three numbers" in got["11.2"].message


def test_lab11_conv_schedule_without_tensorize_is_diagnosed(tmp_path):
    """A blocked conv2d (X and W in SRAM, Y in registers) computes the right Y but runs its
    multiply-adds on the vector units: the checker names tensorize and the implicit GEMM."""
    path = tmp_path / "my_lab11.py"
    path.write_text(textwrap.dedent("""
        from tinyml.compiler.tensor import Schedule, conv2d

        def schedule_conv2d(n, c, h, f, bf, by, bc):
            sch = Schedule(conv2d(n, c, h, h, f, 3, 3, stride=1, pad=1))
            f0, f1 = sch.split("f", [None, bf])
            y0, y1 = sch.split("y", [None, by])
            sch.reorder("n", f0, y0, "c", f1, y1, "x", "r", "s")
            grid = sch.fuse("n", f0, y0)
            sch.bind(grid, "blockIdx.x")
            sch.reverse_compute_at(sch.cache_write("local"), grid)
            sch.compute_at(sch.cache_read("X", "shared"), "c")
            return sch
    """))
    got = {r.id: r for r in check_lab(11, path=path).results}
    assert got["11.3"].status == WRONG
    msg = got["11.3"].message
    assert "W is re-read from HBM for every multiply-add" in msg and "X is re-read" not in msg
    assert "the tile product is not tensorized" in msg and "implicit GEMM" in msg
    assert "target is 1.25x" in msg and "library call's idealised" in msg


def test_lab12_wrong_answers_say_what_is_wrong(tmp_path):
    path = tmp_path / "my_lab12.py"
    text = get_lab(12).path.read_text()
    text = text.replace('raise NotImplementedError("Exercise 12.2: look at result[\'profile\'][\'sram_per_block_bytes\']")',
                        'return {"resource": "registers", "toy_sram": 1, "a100_sram": 2, "a100_blocks_on_toy": 3}')
    text = text.replace('raise NotImplementedError("Exercise 12.3: which search learns where the failures are, '
                        'and how often?")', 'return {"strategy": "random", "model": "none", "trials": 500}')
    path.write_text(text)
    got = {r.id: r for r in check_lab(12, path=path).results}
    assert got["12.1"].status == NOT_ATTEMPTED
    assert got["12.2"].status == WRONG and "SRAM" in got["12.2"].message
    assert got["12.3"].status == WRONG and "budget" in got["12.3"].message


def test_lab12_random_search_misses_the_search_target():
    """12.3's premise: with 24 trials on toy, uniform random search does not reach within 1% of the
    small layer's exhaustive best on every seed (most candidates overflow toy's SRAM), so the exercise
    asks for something random search cannot do."""
    from tinyml.labs.lab12 import SEARCH_TARGET, check_better_search
    from tinyml.labs.checks import Wrong

    with pytest.raises(Wrong, match=rf"misses the {SEARCH_TARGET:.2f}x target"):
        check_better_search(lambda: {"strategy": "random", "model": "none", "batch": 8})


def test_lab12_space_best_is_measured_once_and_kept_on_disk(monkeypatch, tmp_path):
    """The exhaustive best of a space is measured once, then read back (a new process clears the memory
    copy: simulated here by clearing it); a corrupt file is measured again, never trusted."""
    from tinyml.compiler.tune.simulated import SimulatedMeasurer
    from tinyml.labs import lab12
    from tinyml.sim import jit

    monkeypatch.setattr(jit, "CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(lab12, "_BEST", {})
    calls = []
    measure = SimulatedMeasurer.measure
    monkeypatch.setattr(SimulatedMeasurer, "measure", lambda self, s: calls.append(1) or measure(self, s))
    best = lab12.space_best("toy", lab12.small_layer())
    n = len(calls)
    assert n == 600 and best > 0                            # every candidate of the small layer's space
    (path,) = tmp_path.glob("lab12-space-best-*.json")
    lab12._BEST.clear()
    assert lab12.space_best("toy", lab12.small_layer()) == best and len(calls) == n
    path.write_text("{not json")
    lab12._BEST.clear()
    assert lab12.space_best("toy", lab12.small_layer()) == best and len(calls) == 2 * n
