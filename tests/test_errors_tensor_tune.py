"""Bad input on tensor programs, auto-tuning and the state-space kernels (issue 11, second audit).

Each row is a finding: before the fix it was accepted silently (a float truncated, a string or
a bool taken as a number, a flag given as "no" taken as true) or it ended in a plain Python
exception (TypeError, KeyError, AttributeError, UnicodeDecodeError) or a traceback on the
command line. Now every one is a ``TinymlError`` subclass whose message names the argument, the
value (the numbers) and what to pass instead; the CLI exits with status 2 and one line.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tinyml.cli import main
from tinyml.compiler.tensor import (Schedule, ScheduleError, SplitError, TensorProgramError,
                                    TraceError, build, contraction, conv2d, matmul, replay, simulate, softmax,
                                    to_json)
from tinyml.compiler.tune import TuneError, TuneLogError, TuningLog, read_records, tune
from tinyml.kernels.ssm import (linear_attention_chunked, scan_stats, selective_scan_backward,
                                selective_scan_fused, selective_scan_parallel, ssm_decode_step)
from tinyml.sim import DTypeError, Profile, ShapeError, TileConfigError, TinymlError, meta
from tinyml.sim.args import ArgumentError, choice, number


def refused(fn, error, *fragments):
    with pytest.raises(error) as info:
        fn()
    assert isinstance(info.value, TinymlError)
    for f in fragments:
        assert f in str(info.value), str(info.value)
    return str(info.value)


# ---- the shared checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("value, fragment", [
    (True, "got True (bool)"), ("0.5", "got '0.5' (str)"), (math.nan, "got nan"), (math.inf, "got inf"),
    (1.5, ">= 0 and <= 1, got 1.5"), (-0.0 - 1e-9, ">= 0 and <= 1"), (0.5 + 0j, "(complex)")])
def test_number_refuses_what_float_would_convert(value, fragment):
    refused(lambda: number(value, "epsilon", lo=0, hi=1), ArgumentError, "epsilon", fragment)


def test_number_accepts_reals_of_any_kind_and_open_ends():
    assert number(np.float32(0.25), "x", lo=0, hi=1) == 0.25 and number(np.int64(1), "x", lo=0, hi=1) == 1.0
    refused(lambda: number(0.0, "decay", lo=0, lo_open=True), ArgumentError, "> 0, got 0.0")


def test_choice_names_the_options_and_the_closest():
    refused(lambda: choice("evolutionnary", "strategy", ["random", "evolutionary"]), ArgumentError,
            "did you mean 'evolutionary'", "choose one of random, evolutionary")
    refused(lambda: choice(["random"], "strategy", ["random"]), ArgumentError, "['random'] (list)")


# ---- tensor programs --------------------------------------------------------------------------------

def _sch():
    return Schedule(matmul(64, 64, 64))


TENSOR = [
    ("extent over int64", lambda: matmul(2 ** 70, 4, 4), TensorProgramError, "i must be an integer in [1, 9223372036854775807] (2**63 - 1, the int64 maximum), got 1180591620717411303424"),
    ("bias='no'", lambda: matmul(4, 4, 4, bias="no"), TensorProgramError, "bias= must be True or False, got 'no'"),
    ("relu=1.0", lambda: matmul(4, 4, 4, relu=1.0), TensorProgramError, "relu= must be True or False, got 1.0"),
    ("epilogue as a string", lambda: matmul(4, 4, 4, epilogue="relu"), TensorProgramError, "write ('relu',)"),
    ("conv pad over int64", lambda: conv2d(1, 2, 8, 8, 2, 3, 3, pad=2 ** 70), TensorProgramError, "pad must be an integer"),
    ("conv bias='yes'", lambda: conv2d(1, 2, 8, 8, 2, 3, 3, bias="yes"), TensorProgramError, "bias= must be True or False"),
    ("extent a float", lambda: softmax(4, 4.0), TensorProgramError, "got 4.0 (float); a float is not truncated"),
    ("contraction output a string", lambda: contraction("x", {"i": 4}, {"A": ("i",), "B": ("i",)}, "C"),
     TensorProgramError, "output is (buffer name, axes)"),
    ("Schedule of a string", lambda: Schedule("matmul"), ScheduleError, "got 'matmul' (str)"),
    ("Schedule seed 1.9", lambda: Schedule(matmul(4, 4, 4), seed=1.9), ScheduleError, "seed must be an integer, got 1.9"),
    ("Schedule seed 'abc'", lambda: Schedule(matmul(4, 4, 4), seed="abc"), ScheduleError, "got 'abc' (str)"),
    ("Schedule decisions a list", lambda: Schedule(matmul(4, 4, 4), decisions=[1]), ScheduleError, "got [1] (list)"),
    ("split factors an int", lambda: _sch().split("i", 16), SplitError, "factors are a list"),
    ("split outer factor far past the extent", lambda: _sch().split("i", [2 ** 40, 1]), SplitError,
     "the outer factor 1099511627776 makes iterations that all fall past the extent 64"),
    ("split factor over int64", lambda: _sch().split("i", [2 ** 70, 1]), SplitError,
     "factor 0 must be an integer in [1, 9223372036854775807]"),
    ("split outer factor one past ceil", lambda: _sch().split("i", [5, 16]), SplitError,
     "5 x 16 = 80; 4 x 16 covers it); use 4 or None"),
    ("sample_perfect_tile n=2.5", lambda: _sch().sample_perfect_tile("i", 2.5), SplitError, "n must be an integer, got 2.5"),
    ("sample_perfect_tile n='2'", lambda: _sch().sample_perfect_tile("i", "2"), SplitError, "got '2' (str)"),
    ("sample_perfect_tile n=True", lambda: _sch().sample_perfect_tile("i", True), SplitError, "got True (bool)"),
    ("sample_perfect_tile max=4.5", lambda: _sch().sample_perfect_tile("i", 2, 4.5), SplitError,
     "max_innermost_factor must be an integer, got 4.5"),
    ("sample_categorical float candidates", lambda: _sch().sample_categorical([2.7, 3.2]), ScheduleError,
     "candidate 0 must be an integer, got 2.7"),
    ("sample_categorical str candidates", lambda: _sch().sample_categorical(["a", "b"]), ScheduleError, "got 'a' (str)"),
    ("sample_categorical NaN prob", lambda: _sch().sample_categorical([1, 2], [math.nan, 1.0]), ScheduleError,
     "probs[0] must be a finite number >= 0, got nan"),
    ("sample_categorical inf prob", lambda: _sch().sample_categorical([1, 2], [1.0, math.inf]), ScheduleError,
     "probs[1] must be a finite number >= 0, got inf"),
    ("sample_categorical str prob", lambda: _sch().sample_categorical([1, 2], ["x", 1.0]), ScheduleError, "got 'x' (str)"),
    ("sample_categorical an int", lambda: _sch().sample_categorical(4), ScheduleError, "non-empty list"),
    ("perfect-tile decision with a bool", lambda: Schedule(matmul(64, 64, 64), decisions={0: [64, True]})
     .sample_perfect_tile("i", 2), TraceError, "decision [64, True]"),
    ("replay float candidates", lambda: replay(matmul(64, 64, 64), {
        "version": 1, "workload": matmul(64, 64, 64).to_dict(),
        "instructions": [{"kind": "sample_categorical", "args": [[1.5, 2.5], [0.5, 0.5]], "decision": 0}]}),
     ScheduleError, "replaying instruction 0 (sample_categorical)"),
    ("replay decisions a list", lambda: replay(matmul(64, 64, 64), to_json(_sch()), decisions=[1, 2]), TraceError,
     "decisions map instruction indices"),
    ("replay an unknown loop", lambda: replay(matmul(64, 64, 64), {
        "version": 1, "workload": matmul(64, 64, 64).to_dict(), "instructions": [{"kind": "split", "args": ["q", [None, 16]]}]}),
     TensorProgramError, "replaying instruction 0 (split): no loop named 'q'"),
    ("to_json of a string", lambda: to_json("x"), TraceError, "to_json takes a Schedule, got 'x'"),
    ("simulate a PrimFunc", lambda: simulate(matmul(64, 64, 64)), TensorProgramError, "pass Schedule(func)"),
    ("build a string", lambda: build("x"), TensorProgramError, "take a Schedule or a Nest, got str"),
    ("build parallel='no'", lambda: build(_sch(), parallel="no"), TensorProgramError,
     "parallel must be True or False, got 'no'"),
    ("build name=3", lambda: build(_sch(), name=3), TensorProgramError, "build(name=3): the kernel's name is a "
     "non-empty string"),
]


@pytest.mark.parametrize("fn, error, fragment", [t[1:] for t in TENSOR], ids=[t[0] for t in TENSOR])
def test_tensor_programs_refuse(fn, error, fragment):
    refused(fn, error, fragment)


def test_split_accepts_numpy_integers_and_a_guarded_overhang():
    sch = _sch()
    assert sch.split("i", [None, np.int64(16)]) == ["i_0", "i_1"]
    assert json.loads(to_json(sch))["instructions"][0]["args"] == ["i", [None, 16]]     # JSON, not np.int64
    assert Schedule(matmul(60, 8, 8)).split("i", [4, 16]) == ["i_0", "i_1"]            # 64 >= 60 > 48: a guard


def test_a_binary_trace_file_is_a_trace_error(tmp_path):
    from tinyml.compiler.tensor.trace import read

    path = tmp_path / "t.json"
    path.write_bytes(bytes(range(128, 256)))
    refused(lambda: read(path), TraceError, "not a text file (byte 0 is not UTF-8)")
    refused(lambda: read(tmp_path / "none.json"), TraceError, "cannot read the trace", "No such file")


@pytest.mark.parametrize("text, kind", [("[]", "an array"), ('"mma"', "a string"), ("3", "a number"),
                                        ("null", "null")])
def test_a_trace_file_that_is_not_an_object_is_a_trace_error(tmp_path, capsys, text, kind):
    """`[]` used to replay as an empty schedule: the CLI printed the naive nest twice, exit 0."""
    from tinyml.compiler.tensor.trace import read

    path = tmp_path / "t.json"
    path.write_text(text)
    refused(lambda: read(path), TraceError, f"holds {kind}, not a trace", "--write-trace")
    assert main(["schedule", "matmul", "--m", "64", "--n", "64", "--k", "64", "--trace", str(path)]) == 2
    assert "not a trace" in capsys.readouterr().err


def test_a_trace_without_a_version_says_where_traces_come_from():
    refused(lambda: replay(matmul(64, 64, 64), {"workload": {}, "instructions": []}), TraceError,
            'has no "version"', "--write-trace")


# ---- auto-tuning ------------------------------------------------------------------------------------

class _Measurer:
    """Stands for a measurer: tune() checks its arguments before measuring anything."""

    name, hash, kind, device = "fake", "0" * 16, "simulated", None

    def measure(self, sch):                 # pragma: no cover  (never reached)
        raise AssertionError("a refused call must not measure")


def _tune(**kw):
    kw.setdefault("model", "none")
    return tune(matmul(64, 64, 64), _Measurer(), **kw)


TUNE = [
    ("strategy a list", dict(strategy=["random"]), TuneError, "unknown strategy ['random'] (list)"),
    ("strategy misspelt", dict(strategy="evolutionnary"), TuneError, "did you mean 'evolutionary'"),
    ("features unknown", dict(features="graph"), TuneError, "unknown features 'graph'; choose one of nest, knobs"),
    ("trials 2.5", dict(trials=2.5), TuneError, "trials must be an integer, got 2.5 (float)"),
    ("trials True", dict(trials=True), TuneError, "trials must be an integer, got True (bool)"),
    ("trials '2'", dict(trials="2"), TuneError, "trials must be an integer, got '2' (str)"),
    ("batch 1.5", dict(batch=1.5), TuneError, "batch must be an integer, got 1.5"),
    ("seed 1.9", dict(seed=1.9), TuneError, "seed must be an integer, got 1.9"),
    ("seed 'abc'", dict(seed="abc"), TuneError, "seed must be an integer, got 'abc'"),
    ("seed -1", dict(seed=-1), TuneError, "seed must be an integer >= 0, got -1"),
    ("epsilon '0.1'", dict(epsilon="0.1"), TuneError, "epsilon must be a real number, got '0.1' (str)"),
    ("epsilon True", dict(epsilon=True), TuneError, "epsilon must be a real number, got True (bool)"),
    ("retrain_growth inf", dict(retrain_growth=math.inf), TuneError, "retrain_growth must be a finite number >= 1, got inf"),
    ("retrain_growth '2'", dict(retrain_growth="2"), TuneError, "got '2' (str)"),
    ("transfer a string", dict(transfer="a.jsonl"), TuneError, "write ['a.jsonl'] for one log"),
    ("transfer without a model", dict(transfer=["a.jsonl"], model="none"), TuneError, "model='none' has none"),
    ("progress not callable", dict(progress=3), TuneError, "progress is called as progress(record, result)"),
]


@pytest.mark.parametrize("kwargs, error, fragment", [t[1:] for t in TUNE], ids=[t[0] for t in TUNE])
def test_tune_refuses_before_measuring(kwargs, error, fragment, monkeypatch):
    from tinyml.compiler.tune import tuner

    monkeypatch.setattr(tuner, "Space", lambda *a: (_ for _ in ()).throw(AssertionError("checked too late")))
    refused(lambda: _tune(**kwargs), error, fragment)


def test_a_log_in_a_missing_folder_is_refused_before_the_first_trial():
    refused(lambda: _tune(log="/nonexistent-tinyml/t.jsonl"), TuneLogError,      # _Measurer.measure never runs
            "cannot append to the tuning log /nonexistent-tinyml/t.jsonl: its folder does not exist; "
            "create it first (mkdir -p /nonexistent-tinyml)")


def test_tune_refuses_what_is_not_a_workload_or_a_measurer():
    refused(lambda: tune("matmul", _Measurer()), TuneError, "got 'matmul' (str)")
    refused(lambda: tune(matmul(64, 64, 64), "a100-40gb"), TuneError, "pass SimulatedMeasurer('a100-40gb')")


def _record(**change) -> dict:
    """A trial record as the tuner writes it (log.py's docstring), one ok trial."""
    rec = {"version": 1, "workload": "3f1c", "workload_key": "matmul:fp16:A(64,64),B(64,64)->C(64,64)",
           "device": "a91e", "device_name": "a100-40gb", "measurer": "simulated", "space": "matmul_gpu",
           "run": {"strategy": "random", "model": "none", "features": "nest", "seed": 0, "batch": 4, "epsilon": 0.1},
           "batch": 0, "trial": 0, "decisions": [[2, 32], [2, 32], [2, 32], 0, 0, 1],
           "trace": {"version": 1, "workload": matmul(64, 64, 64).to_dict(), "instructions": []},
           "result": {"status": "ok", "time_s": 1.5e-5}}
    for key, value in change.items():
        if key.startswith("result_"):
            rec["result"][key[7:]] = value
        elif value is _DROP:
            del rec[key]
        else:
            rec[key] = value
    return rec


_DROP = object()
RECORDS = [
    ("no workload", dict(workload=_DROP), 'field "workload" must be a string, got missing'),
    ("no device", dict(device=_DROP), 'field "device" must be a string, got missing'),
    ("no trial", dict(trial=_DROP), 'field "trial" must be an integer >= 0, got missing'),
    ("no batch", dict(batch=_DROP), 'field "batch" must be an integer >= 0, got missing'),
    ("no decisions", dict(decisions=_DROP), 'field "decisions" must be a list, got missing'),
    ("no trace", dict(trace=_DROP), 'field "trace" must be a trace'),
    ("no workload_key", dict(workload_key=_DROP), 'field "workload_key" must be a string, got missing'),
    ("result a list", dict(result=[1]), 'field "result" must be an object, got [1] (list)'),
    ("trial 1.5", dict(trial=1.5), 'field "trial" must be an integer >= 0, got 1.5 (float)'),
    ("batch '0'", dict(batch="0"), "got '0' (str)"),
    ("workload an int", dict(workload=5), 'field "workload" must be a string, got 5 (int)'),
    ("trace a string", dict(trace="x"), "got 'x'"),
    ("time_s a string", dict(result_time_s="fast"), "\"time_s\" must be a finite number > 0 (seconds), got 'fast'"),
    ("time_s negative", dict(result_time_s=-1.0), "got -1.0"),
    ("time_s NaN", dict(result_time_s=math.nan), "got nan"),
    ("time_s True", dict(result_time_s=True), "got True"),
    ("status unknown", dict(result_status="great"), "result status 'great' is not one of ok, illegal, failed, wrong"),
    ("a failure with a time", dict(result_status="failed"), "a failed trial has no time"),
    ("ok without a trace", dict(trace=None), "an ok result needs the trace it timed"),
]


@pytest.mark.parametrize("change, fragment", [r[1:] for r in RECORDS], ids=[r[0] for r in RECORDS])
def test_a_log_record_with_a_wrong_or_missing_field_is_refused_at_its_line(change, fragment, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_record()) + "\n" + json.dumps(_record(**change)) + "\n")
    msg = refused(lambda: read_records(path), TuneLogError, f"{path}, line 2: ", fragment)
    assert "tinyml tune ... --log FILE writes" in msg                                   # what to do
    refused(lambda: TuningLog([_record(), _record(**change)]), TuneLogError, "record 1: ", fragment)


def test_every_reader_of_a_bad_log_refuses_it(tmp_path):
    from tinyml.compiler.tune.tuner import transfer_data

    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_record(device=_DROP)) + "\n")
    for read in (lambda: TuningLog(path, device="a100-40gb"), lambda: transfer_data([path], "nest"),
                 lambda: _tune(log=str(path))):
        refused(read, TuneLogError, 'line 1: field "device" must be a string')


def test_a_trace_whose_workload_cannot_be_rebuilt_is_a_log_error(tmp_path):
    from tinyml.compiler.tune.tuner import transfer_data

    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(_record(trace={"version": 1, "workload": {"name": "matmul"}, "instructions": []}))
                    + "\n")
    refused(lambda: transfer_data([path], "nest"), TuneLogError, "cannot rebuild workload 'matmul'")


def test_a_transfer_log_with_nothing_to_learn_from_is_refused(tmp_path):
    """An empty log (or one of failed trials only) used to warm-start nothing, silently."""
    from tinyml.compiler.tune.tuner import transfer_data

    path = tmp_path / "empty.jsonl"
    path.write_text("")
    refused(lambda: transfer_data([path], "nest"), TuneLogError, "holds 0 trial(s), none with a schedule")


def test_tuning_log_refuses_a_source_that_is_not_a_path_or_records():
    refused(lambda: TuningLog(5), TuneLogError, "got 5 (int)")
    refused(lambda: TuningLog([1, 2]), TuneLogError, "record 0: not a version-1 trial record (got a int")


# ---- state-space kernels ----------------------------------------------------------------------------

B, L, D, N = 1, 8, 4, 2


def _scan():
    return (meta((B, L, D)), meta((B, L, D)), meta((D, N), "fp32"), meta((B, L, N)), meta((B, L, N)))


def _qkv():
    return [meta((1, 2, L, 4)) for _ in range(3)]


def _decode_step(state):
    return ssm_decode_step(meta((B, D)), meta((B, D)), meta((D, N), "fp32"), meta((B, N)), meta((B, N)),
                           state=state)


SSM = [
    ("return_saved='no'", lambda: selective_scan_fused(*_scan(), return_saved="no"), TinymlError,
     "return_saved must be True or False, got 'no'"),
    ("method a list", lambda: selective_scan_parallel(*_scan(), method=["blelloch"]), TileConfigError,
     "unknown scan_parallel method ['blelloch'] (list)"),
    ("method misspelt", lambda: selective_scan_parallel(*_scan(), method="bleloch"), TileConfigError,
     "did you mean 'blelloch'"),
    ("scan_stats length 10.7", lambda: scan_stats(10.7, 4, "blelloch"), TileConfigError,
     "length must be an integer, got 10.7 (float)"),
    ("scan_stats chunk 0", lambda: scan_stats(10, 0, "blelloch"), TileConfigError, "chunk must be an integer >= 1, got 0"),
    ("scan_stats method", lambda: scan_stats(10, 4, "x"), TileConfigError, "unknown scan_stats method 'x'"),
    ("backward of a string", lambda: selective_scan_backward("saved", meta((B, L, D))), ShapeError,
     "saved must be the ScanSaved", "got str"),
    ("decay '0.5'", lambda: linear_attention_chunked(*_qkv(), decay="0.5"), DTypeError,
     "decay must be a real number or H real numbers in (0, 1], got '0.5'"),
    ("decay True", lambda: linear_attention_chunked(*_qkv(), decay=True), DTypeError, "got True (dtype bool)"),
    ("decode state fp16", lambda: _decode_step(meta((B, D, N), "fp16")), DTypeError,
     "the state is fp32", "got a fp16 MetaTensor; pass meta((1, 4, 2), 'fp32')"),
]


@pytest.mark.parametrize("fn, error, fragment", [(s[1], s[2], s[3:]) for s in SSM], ids=[s[0] for s in SSM])
def test_ssm_kernels_refuse(fn, error, fragment):
    with Profile("a100-40gb"):
        refused(fn, error, *fragment)


# ---- the command line -------------------------------------------------------------------------------

@pytest.fixture
def files(tmp_path):
    (tmp_path / "binary.json").write_bytes(bytes(range(128, 256)))
    (tmp_path / "norecord.jsonl").write_text('{"version": 1, "result": {"status": "ok", "time_s": 0.001}}\n')
    (tmp_path / "nodevice.jsonl").write_text(json.dumps(_record(device=_DROP)) + "\n")
    return {k.split(".")[0]: str(tmp_path / k) for k in ("binary.json", "norecord.jsonl", "nodevice.jsonl")}


CLI = [
    (["schedule", "matmul", "--m", "64", "--n", "64", "--k", "64", "--trace", "{binary}"], "not a text file"),
    (["compile", "tiny_gpt", "--schedule", "{binary}"], "not a text file"),
    (["schedule", "matmul", "--m", "9223372036854775808"], "i must be an integer in [1, 9223372036854775807]"),
    (["schedule", "matmul", "--m", "99999999999999"], "out of HBM on a100-40gb"),        # was two lines
    (["tune", "show", "{norecord}"], 'field "workload" must be a string, got missing'),
    (["tune", "show", "{nodevice}", "--device", "a100-40gb"], 'field "device" must be a string'),
    (["compile", "tiny_gpt", "--tune-log", "{norecord}"], "line 1: field"),
    (["compile", "tiny_gpt", "--tune-log", "{nodevice}"], 'field "device" must be a string'),
    (["tune", "matmul", "--m", "64", "--n", "64", "--k", "64", "--trials", "1", "--model", "none",
      "--log", "{norecord}"], "line 1: field"),                                   # was exit 0, bad log kept
    (["tune", "matmul", "--m", "64", "--n", "64", "--k", "64", "--trials", "1", "--model", "ridge",
      "--transfer", "{nodevice}"], 'field "device" must be a string'),              # was exit 0
]


@pytest.mark.parametrize("argv, fragment", CLI, ids=[" ".join(a[:2] + a[-2:]) for a, _ in CLI])
def test_cli_bad_input_exits_2_with_one_line(argv, fragment, files, capsys):
    try:
        code = main([a.format(**files) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    err = out.err.strip()
    assert code == 2, (code, out.out[-300:], err)
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert fragment in err, err
