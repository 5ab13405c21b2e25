"""The parallel build of the kernels computes and counts exactly what the serial build does.

The tests, like everything tinyml does by default, run every kernel serially
(``TINYML_PARALLEL_KERNELS=0``: it compiles about 3x faster); the CPU benchmarks run the ``prange``
build (``TINYML_PARALLEL_KERNELS=1``). Each block writes its own output tile and its own counter row,
so the two builds must agree bit for bit: this runs a set of kernels in a process with the parallel
build, several blocks per launch, and compares outputs and profile records with this one's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tinyml.sim import jit

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from tinyml.kernels.attention import flash_attention, standard_attention
    from tinyml.kernels.matmul import matmul
    from tinyml.kernels.softmax import softmax
    from tinyml.sim import Profile, jit

    def run(group):
        rng = np.random.default_rng(7)
        a = rng.standard_normal((70, 45)).astype(np.float32)           # (M, K)
        b = rng.standard_normal((45, 66)).astype(np.float32)           # (K, N)
        x = rng.standard_normal((37, 300)).astype(np.float32)          # (rows, cols)
        q, k, v = (rng.standard_normal((2, 3, 80, 32)).astype(np.float32) for _ in range(3))  # (B, H, N, d)
        outs, records = {}, []
        with Profile("a100-40gb") as prof:
            if group == "matmul":
                outs["matmul_v1"] = matmul(a, b, version=1, block_m=16, block_n=32)
                for version in (2, 3):
                    outs[f"matmul_v{version}"] = matmul(a, b, version=version, block_m=16, block_n=32, block_k=16)
                outs["softmax_v3"] = softmax(x, block_rows=8)
            elif group == "flash":
                for version in (1, 2):
                    outs[f"flash{version}"] = flash_attention(q, k, v, version=version, causal=True, block_q=16,
                                                              block_k=16)
            else:
                outs["standard"] = standard_attention(q, k, v, causal=True)
        records = [r.to_dict() for r in prof.records]
        return outs, records

    if __name__ == "__main__":
        outs, records = run(sys.argv[3])
        np.savez(sys.argv[1], **outs)
        with open(sys.argv[2], "w") as f:
            json.dump({"parallel": jit.PARALLEL, "cache": jit.CACHE_DIR, "records": records}, f)
""")


#: each group's launches (one record each): matmul v1-v3 + softmax v3; FA1 + FA2; standard's QK, mask, softmax, PV
LAUNCHES = {"matmul": 4, "flash": 2, "standard": 4}


@pytest.mark.slow          # it compiles the parallel build of these kernels: `pytest -m slow` (CI runs it)
@pytest.mark.parametrize("group", sorted(LAUNCHES))                # a process each: every core compiles
def test_the_parallel_build_equals_the_serial_build(group, tmp_path):
    script = tmp_path / "kernels.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "TINYML_PARALLEL_KERNELS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "out.npz"), str(tmp_path / "rec.json"), group],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    par = json.loads((tmp_path / "rec.json").read_text())
    assert par["parallel"] is True and not jit.PARALLEL                  # the two builds really differ
    if par["cache"] and jit.CACHE_DIR:                                    # ... and are cached apart
        assert jit.CACHE_DIR.endswith("-serial") and par["cache"] == jit.CACHE_DIR[:-len("serial")] + "parallel"

    namespace: dict = {}
    exec(compile(SCRIPT, "kernels.py", "exec"), namespace)             # the same calls, serial build
    outs, records = namespace["run"](group)
    with np.load(tmp_path / "out.npz") as got:
        assert sorted(got.files) == sorted(outs)
        for name, want in outs.items():
            np.testing.assert_array_equal(got[name], want, err_msg=name)
    assert len(par["records"]) == len(records) == LAUNCHES[group]
    for p, s in zip(par["records"], records):
        assert p == json.loads(json.dumps(s)), p["name"]


def test_the_default_build_is_serial_and_a_bad_setting_is_refused():
    """Unset means serial; anything but 0 or 1 is a TinymlError naming the value (the CLI prints it)."""
    code = "import tinyml.sim.jit as j; print(j.PARALLEL, j.CACHE_DIR)"
    env = {k: v for k, v in os.environ.items() if k != "TINYML_PARALLEL_KERNELS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    parallel, cache = out.stdout.split()
    assert parallel == "False" and (cache == "None" or cache.endswith("-serial"))

    bad = {**env, "TINYML_PARALLEL_KERNELS": "yes"}
    cli = subprocess.run([sys.executable, "-m", "tinyml.cli", "matmul", "--m", "8", "--n", "8", "--k", "8"],
                         env=bad, capture_output=True, text=True, timeout=120)
    assert cli.returncode != 0
    assert "TINYML_PARALLEL_KERNELS='yes'" in cli.stderr and "0 or 1" in cli.stderr
    assert "Traceback" not in cli.stderr


def test_tune_on_the_cpu_asks_for_the_parallel_build(monkeypatch):
    """`tinyml tune --device cpu` times kernels on every core (tuned and matmul v3 alike); a simulated device,
    a user's own setting or a process that already loaded the kernels keeps what it has."""
    from tinyml.cli import tune as tune_cli

    monkeypatch.delenv("TINYML_PARALLEL_KERNELS", raising=False)
    tune_cli.parallel_build_for_cpu("a100-40gb")
    assert "TINYML_PARALLEL_KERNELS" not in os.environ
    monkeypatch.setitem(sys.modules, "tinyml.sim.jit", sys.modules.get("tinyml.sim.jit", jit))
    tune_cli.parallel_build_for_cpu("cpu")                       # kernels already loaded here: unchanged
    assert "TINYML_PARALLEL_KERNELS" not in os.environ
    monkeypatch.delitem(sys.modules, "tinyml.sim.jit")
    tune_cli.parallel_build_for_cpu("cpu")
    assert os.environ["TINYML_PARALLEL_KERNELS"] == "1"
    monkeypatch.setenv("TINYML_PARALLEL_KERNELS", "0")
    tune_cli.parallel_build_for_cpu("cpu")
    assert os.environ["TINYML_PARALLEL_KERNELS"] == "0"
