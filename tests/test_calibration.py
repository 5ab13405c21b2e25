"""tinyml.calibration and benchmarks/gpu_calibration.py's --compare: a GPU's measurements next to the
simulated time of the same work. No GPU and no PyTorch: the results are written by hand in the
script's schema, and every simulated number is checked against its definition (closed form for the
copy and the launch, bounds and orderings for the kernels)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tinyml.calibration import (CalibrationError, compare, graph_fit, load, measured_efficiencies, preset_name,
                                summary, table)
from tinyml.sim import Profile, load_device, meta

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_calibration.py"


def results(**parts) -> dict:
    return {"gpu": "NVIDIA H200", "preset": "h200", **parts}


def attention_row(backend, seq=2048, causal=False, **extra):
    return {"shape": "t", "batch": 4, "heads": 16, "seq": seq, "head_dim": 64, "causal": causal,
            "backend": backend, "dtype": "float16", "forward_s": 1e-3, "forward_backward_s": 3e-3, **extra}


@pytest.mark.parametrize("name,preset", [("NVIDIA H200", "h200"), ("NVIDIA GH200 480GB", None),
                                         ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", None), ("NVIDIA H100 80GB HBM3", "h100-sxm"),
                                         ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
                                         ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
                                         ("NVIDIA H100 PCIe", None), ("NVIDIA H200 NVL", None),
                                         ("NVIDIA A100-PCIE-40GB", None), ("NVIDIA GeForce RTX 4090", "rtx-4090"),
                                         ("Tesla T4", None)])
def test_preset_for_each_gpu_name(name, preset):
    assert preset_name(name) == preset


def test_copy_and_launch_rows_are_the_presets_assumptions():
    dev = load_device("h200")
    moved, t = 8 * 2**30, 2.5e-3
    rows = compare(results(hbm={"bytes_moved": moved, "time_s": t, "bandwidth_Bps": moved / t},
                           launch={"launches": 2000, "time_per_launch_s": 5e-6}))
    copy, launch = rows
    assert copy.simulated_s == pytest.approx(moved / (dev.hbm_bandwidth * dev.eff_hbm) + dev.launch_overhead_s)
    assert copy.error == pytest.approx(copy.simulated_s / t - 1)
    assert launch.simulated_s == dev.launch_overhead_s and launch.measured_s == 5e-6


def graph_results(fixed_s=3e-6, rate=1.9e12):
    """Copies and GEMVs timed in a CUDA graph as a line: ``fixed_s`` per kernel plus bytes at ``rate``."""
    return results(graph={"copy": [{"bytes_moved": 2 * 2**k, "time_s": fixed_s + 2 * 2**k / rate}
                                   for k in range(16, 31, 2)],
                          "gemv": [{"dtype": "bf16", "n": 4096, "k": 11008, "time_s": 40e-6}]})


def test_graph_rows_cost_the_work_without_a_launch():
    dev = load_device("h200")
    rows = compare(graph_results())
    copies = [r for r in rows if r.kind == "graph copy"]
    assert len(copies) == 8 and copies[0].what == "copy 0.125 MiB in a CUDA graph"
    for row, k in zip(copies, range(16, 31, 2)):
        assert row.simulated_s == pytest.approx(2 * 2**k / (dev.hbm_bandwidth * dev.eff_hbm))
    (gemv,) = [r for r in rows if r.kind == "graph gemv"]
    from tinyml.inference.formats import weight_format
    from tinyml.inference.step import linear

    with Profile("h200") as prof:
        linear(weight_format("bf16"), 1, 4096, 11008)
    assert gemv.simulated_s == pytest.approx(prof.time_s - dev.launch_overhead_s) and gemv.what == \
        "gemv bf16 11008->4096 in a CUDA graph"
    assert gemv.simulated_s >= 2 * 4096 * 11008 / dev.hbm_bandwidth                  # the weights, at no more than peak


@pytest.mark.parametrize("fixed_s,rate", [(3e-6, 1.9e12), (0.0, 4.0e12), (8e-6, 0.9e12)])
def test_graph_fit_recovers_the_cost_beyond_the_bytes(fixed_s, rate):
    intercept, bandwidth = graph_fit(graph_results(fixed_s, rate))
    assert intercept == pytest.approx(fixed_s, abs=1e-9) and bandwidth == pytest.approx(rate, rel=1e-6)
    assert graph_fit(results()) is None


def test_matmul_rows_keep_m_n_k_apart_and_respect_the_roofline():
    dev = load_device("h200")
    m, n, k = 512, 2048, 4096
    rows = compare(results(matmul=[{"dtype": "bf16", "m": m, "n": n, "k": k, "time_s": 1e-3},
                                   {"dtype": "int2", "m": m, "n": n, "k": k, "time_s": 1e-3}]))   # no int2 rate: skipped
    (row,) = rows
    from tinyml.kernels.matmul import matmul_v4

    with Profile("h200") as prof:
        matmul_v4(meta((m, k), "bf16"), meta((k, n), "bf16"), dtype="bf16")
    assert row.simulated_s == pytest.approx(prof.time_s) and "512x2048x4096" in row.what
    assert row.simulated_s >= 2 * m * n * k / dev.matmul_rate("bf16")                 # no faster than the peak
    assert row.simulated_s >= 2 * (m * k + k * n + m * n) / dev.hbm_bandwidth         # nor than one pass of HBM


def test_attention_rows_math_is_standard_and_flash_is_fa2():
    failed = {k: v for k, v in attention_row("math", seq=16384).items() if not k.endswith("_s")}
    measured = [attention_row("math"), attention_row("flash"), attention_row("flash", causal=True),
                {**failed, "error": "OutOfMemoryError: ..."}]                                # no time: skipped
    rows = {r.what: r for r in compare(results(attention=measured))}
    assert len(rows) == 6 and all("n16384" not in what for what in rows)
    fwd = {w: r.simulated_s for w, r in rows.items() if w.endswith(" fwd")}
    both = {w.removesuffix("+bwd"): r.simulated_s for w, r in rows.items() if w.endswith("fwd+bwd")}
    assert all(both[w] > fwd[w] for w in fwd)                                          # the backward costs time
    math_fwd, flash_fwd, causal_fwd = (fwd[f"attention {b} b4 h16 n2048 d64 fp16{c} fwd"]
                                       for b, c in (("math ", ""), ("flash", ""), ("flash", " causal")))
    assert math_fwd > flash_fwd > causal_fwd                                           # S, P through HBM; masked tiles skipped
    from tinyml.kernels.attention.flash import flash_attention

    with Profile("h200") as prof:
        flash_attention(*(meta((4, 16, 2048, 64), "fp16") for _ in range(3)), version=2)
    assert flash_fwd == pytest.approx(prof.time_s)
    assert rows["attention math  b4 h16 n2048 d64 fp16 fwd+bwd"].measured_s == 3e-3


def test_what_failed_on_the_gpu_is_skipped_and_what_ran_is_kept():
    fwd_only = {k: v for k, v in attention_row("flash").items() if k != "forward_backward_s"}
    rows = compare(results(hbm={"error": "RuntimeError: ..."}, matmul={"error": "RuntimeError: ..."},
                           graph={"error": "RuntimeError: capture failed"},
                           attention=[{**fwd_only, "forward_backward_error": "OutOfMemoryError: ..."}],
                           launch={"launches": 1, "time_per_launch_s": 5e-6}))
    assert [r.kind for r in rows] == ["launch", "attention"] and rows[1].what.endswith(" fwd")


def test_a_setting_the_simulator_refuses_is_a_row_not_a_crash(monkeypatch):
    import tinyml.calibration as cal
    from tinyml.sim import HbmOutOfMemoryError

    def refuse(*args):
        raise HbmOutOfMemoryError("out of HBM")

    monkeypatch.setattr(cal, "_simulated_matmul", refuse)
    rows = compare(results(matmul=[{"dtype": "bf16", "m": 64, "n": 64, "k": 64, "time_s": 1e-5}],
                           launch={"launches": 1, "time_per_launch_s": 5e-6}))
    refused = rows[1]
    assert refused.what == "matmul bf16 64x64x64 (not simulated: HbmOutOfMemoryError)"
    assert refused.simulated_s != refused.simulated_s and "matmul" not in summary(rows)
    assert "not simulated" in table(rows) and "nan" not in table(rows)


def test_measured_efficiencies_are_measurement_over_spec():
    dev = load_device("h200")
    n = 8192
    res = results(hbm={"bytes_moved": 8 * 2**30, "time_s": 8 * 2**30 / (0.9 * dev.hbm_bandwidth)},
                  matmul=[{"dtype": "bf16", "m": n, "n": n, "k": n, "time_s": 2 * n**3 / (0.6 * dev.matmul_rate("bf16"))},
                          {"dtype": "bf16", "m": 4096, "n": 4096, "k": 4096, "time_s": 1.0,
                           "under_load": {"clocks.sm_median": 1600.0, "clocks.max.sm_median": 1980.0}}])
    eff = measured_efficiencies(res)
    assert eff["hbm"] == pytest.approx(0.9) and eff["matmul_bf16"] == pytest.approx(0.6)     # the best GEMM
    assert eff["clock"] == pytest.approx(1600 / 1980)
    assert measured_efficiencies(results(hbm={"error": "..."})) == {}


def test_summary_and_table():
    rows = compare(results(launch={"launches": 1, "time_per_launch_s": 2 * load_device("h200").launch_overhead_s},
                           attention=[attention_row("flash")]))
    kinds = summary(rows)
    assert kinds["launch"] == (1, pytest.approx(0.5)) and kinds["attention"][0] == 2
    text = table(rows)
    assert "-50%" in text and "flash = FlashAttention-2" in text and "median |error| attention" in text


@pytest.mark.parametrize("bad,match", [
    (results(gpu="Tesla T4", preset=None), "no tinyml preset matches the GPU 'Tesla T4'"),
    (results(device_properties={"sm_count": 114}), "114 SMs, preset 'h200' 132"),
    (results(matmul=[{"dtype": "bf16", "m": 64, "n": 64, "time_s": 1.0}]), r"matmul\[0\] has no 'k'"),
    (results(attention=[attention_row("cudnn")]), "backend 'cudnn' is not one of"),
    (results(hbm={"time_s": 1.0}), "hbm has no 'bytes_moved'"),
])
def test_results_that_cannot_be_compared_say_why(bad, match):
    with pytest.raises(CalibrationError, match=match):
        compare(bad)


def test_an_explicit_preset_compares_another_gpu():
    (row,) = compare(results(gpu="Tesla T4", preset=None, launch={"launches": 1, "time_per_launch_s": 1e-5}),
                     device="a100-80gb")
    assert row.simulated_s == load_device("a100-80gb").launch_overhead_s


def _script():
    spec = importlib.util.spec_from_file_location("gpu_calibration", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_compare_reads_a_results_file(tmp_path, capsys):
    path = tmp_path / "gpu_calibration_h200.json"
    path.write_text(json.dumps(results(launch={"launches": 10, "time_per_launch_s": 4e-6},
                                       attention=[attention_row("math")])))
    assert load(path)["preset"] == "h200"
    assert _script().main(["--compare", str(path)]) == 0
    out = capsys.readouterr().out
    assert "measured on NVIDIA H200 vs simulated on preset h200" in out
    assert "attention math  b4 h16 n2048 d64 fp16 fwd+bwd" in out and "median |error| launch" in out


def test_script_compare_prints_the_graph_fit(tmp_path, capsys):
    path = tmp_path / "gpu_calibration_h200.json"
    path.write_text(json.dumps(graph_results(3e-6, 1.9e12)))
    assert _script().main(["--compare", str(path)]) == 0
    assert "a kernel in a CUDA graph: 3.00 us + bytes / 1.90 TB/s measured" in capsys.readouterr().out


@pytest.mark.parametrize("text,match", [(None, "no calibration results at"), ("{not json", "is not JSON")])
def test_script_compare_explains_a_missing_or_broken_file(tmp_path, capsys, text, match):
    path = tmp_path / "results.json"
    if text is not None:
        path.write_text(text)
    assert _script().main(["--compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and "Traceback" not in err
