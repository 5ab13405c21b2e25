"""benchmarks/bench_tune.py's bookkeeping: pieces measured with --sections, joined with --merge, judged.

The measurements themselves are the benchmark's (and CI runs its --quick mode); here only what decides a
verdict from them: which workloads count as measured, wins and losses with one side failing, and that a
merge of parts equals the rows of the parts, whatever was left unmeasured printing SKIP, never crashing.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("bench_tune_under_test", ROOT / "benchmarks" / "bench_tune.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return mod


def row(dev, workload, hand, tuned, kind=None):
    sp = hand / tuned if (hand and tuned) else None
    outcome = "both" if sp else "hand failed" if tuned else "tuned failed" if hand else "neither"
    r = {"device": dev, "workload": workload, "outcome": outcome, "hand_s": hand, "tuned_s": tuned, "speedup": sp}
    if kind:
        r["kind"] = kind
    return r


def test_summary_counts_one_sided_failures(bench):
    hand = [row("toy", "matmul 1x768x3072", None, None),          # neither runs: not measured
            row("toy", "conv2d A", 2.0, 1.0),                       # 2x win
            row("toy", "conv2d B", 1.0, 2.0),                       # 0.5x loss
            row("toy", "conv2d C", None, 1.0),                      # hand tiles fail, tuned runs: a win
            row("toy", "conv2d D", 1.0, None),                      # tuned fails, hand runs: a loss
            row("a100-40gb", "conv2d A", 3.0, 1.0)]                 # another device: not counted on toy
    s = bench.hand_summary(hand, "toy")
    assert (s["rows"], s["measured"], s["wins"]) == (5, 4, 2)
    assert sorted(s["losses"]) == ["conv2d B", "conv2d D"]
    assert s["geomean"] == pytest.approx(1.0)                       # sqrt(2 * 0.5): ratios only where both ran
    assert s["range"] == (0.5, 2.0)
    g = bench.hand_summary(hand, "toy", "gemm")
    assert (g["rows"], g["measured"], g["geomean"]) == (1, 0, None)


def test_targets_over_a_part_skip_what_is_missing(bench):
    hand = [row("a100-40gb", f"matmul {i}", 2.0, 1.0) for i in range(9)] + [row("a100-40gb", "conv2d X", 1.0, 1.1)]
    rows = bench.targets_rows(None, hand, None, None, None, None, [], False)
    by = {name: (measured, ok, counts) for name, measured, ok, counts in rows}
    hand_row = next(v for k, v in by.items() if k.startswith("a100-40gb: tuned >= hand"))
    assert hand_row[1] is True and hand_row[2] is True              # 9/10 = 90%: met
    assert "9/10" in hand_row[0] and "gemm 9/9" in hand_row[0] and "conv 0/1" in hand_row[0]
    skipped = [k for k, (_, ok, counts) in by.items() if ok is None]
    assert len(skipped) >= 5                                         # cost, efficiency, quality, transfer, cross, cpu
    assert all(not by[k][2] for k in skipped)
    hand.append(row("a100-40gb", "conv2d Y", 1.0, None))            # a tuned failure is a loss: 9/11 < 90%
    rows = bench.targets_rows(None, hand, None, None, None, None, [], False)
    assert next(ok for name, _, ok, _ in rows if name.startswith("a100-40gb: tuned >= hand")) is False


def test_merge_joins_parts_and_a_later_part_wins(bench):
    w = [f"matmul {m}x{n}x{k}" for m, n, k in bench.GEMMS]
    p1 = {"quick": False, "seeds": 10, "trials": 128, "sections": {"hand-gemm": {"cpu_s": 1.0}},
          "hand": [row("m2-max", w[1], 2.0, 1.0), row("a100-40gb", w[3], 1.0, 1.0)], "cpu": [], "transfer": None}
    p2 = {"quick": False, "seeds": 10, "trials": 128, "sections": {"transfer": {"cpu_s": 2.0}},
          "hand": [row("a100-40gb", w[0], 3.0, 1.0), row("m2-max", w[1], 4.0, 1.0)],
          "transfer": {"scratch_trials": 1, "warm_trials": 1}, "efficiency": {"rare": {"space": 5}}}
    p3 = {"quick": False, "seeds": 10, "sections": {"efficiency": {}}, "efficiency": {"space": 7}}
    m = bench.merge([p1, p2, p3])
    assert [(h["device"], h["workload"]) for h in m["hand"]] == [("a100-40gb", w[0]), ("a100-40gb", w[3]),
                                                                 ("m2-max", w[1])]   # presets' order, then shapes'
    assert next(h for h in m["hand"] if h["device"] == "m2-max")["speedup"] == 4.0    # p2's row replaced p1's
    assert m["transfer"] == p2["transfer"]                          # p1's None did not erase it
    assert m["efficiency"] == {"rare": {"space": 5}, "space": 7}
    assert set(m["sections"]) == {"hand-gemm", "transfer", "efficiency"}        # p1 names no presets
    with pytest.raises(SystemExit, match="quick"):
        bench.merge([p1, {**p2, "quick": True}])


def test_main_merge_writes_one_json(bench, tmp_path, capsys):
    w = [f"matmul {m}x{n}x{k}" for m, n, k in bench.GEMMS]
    parts = []
    for q, dev in enumerate(("a100-40gb", "rtx-4090")):
        part = {"quick": False, "seeds": 10, "trials": 128, "sections": {"hand-gemm": {"presets": [dev]}},
                "hand": [row(dev, x, 1.5, 1.0) for x in w]}
        parts.append(tmp_path / f"p{q}.json")
        parts[-1].write_text(json.dumps(part))
    out = tmp_path / "tune.json"
    rc = bench.main(["--merge", *map(str, parts), "--json", str(out), "--note", "merged"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["note"] == "merged" and len(res["hand"]) == 2 * len(w) and res["cpu"] == [] and res["cost"] is None
    assert set(res["sections"]) == {"hand-gemm (a100-40gb)", "hand-gemm (rtx-4090)"}      # both pieces kept
    assert res["failed"] == 0
    assert "24/24" in next(t["measured"] for t in res["targets"] if t["name"].startswith("rtx-4090"))
    assert "SKIP" in capsys.readouterr().out
