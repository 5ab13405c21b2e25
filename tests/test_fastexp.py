"""The vectorised softmax row loops of the FlashAttention-2 forward, against float64 NumPy."""

import json
import os
import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyml.kernels._llvm import float32_from_bits, maxnum32
from tinyml.kernels.attention.fastexp import exp_row, row_max, row_sum

F32 = np.float32


def _exp(x, scale=1.0, shift=0.0):
    x = np.asarray(x, dtype=np.float32)
    out = np.full_like(x, np.nan)
    exp_row(x, F32(scale), F32(shift), len(x), out)
    return out


def _ulps(got, ref):
    """|got - ref| in units of the float32 spacing at ref (ref in float64)."""
    return np.abs(got - ref) / np.spacing(ref.astype(np.float32)).astype(np.float64)


def test_within_two_ulps_on_a_dense_grid():
    x = np.linspace(-87.0, 0.0, 1_000_001).astype(np.float32)
    x = x[x > -87.0]
    ref = np.exp(x.astype(np.float64))
    assert np.max(_ulps(_exp(x), ref)) <= 2.0


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.floats(1e-3, 10.0), st.floats(-50.0, 50.0), st.integers(0, 2**32 - 1))
def test_scale_and_shift(n, scale, spread, seed):
    """exp(x * scale - shift) with the argument rounded to float32 once (an FMA, as FlashAttention's
    ``exp2(x * scale_log2 - max)``) or twice (product, then difference, where no FMA is used)."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * spread).astype(np.float32)
    scale = F32(scale)
    shift = F32(np.max(x * scale))
    fused = (x.astype(np.float64) * np.float64(scale) - np.float64(shift)).astype(np.float32)
    unfused = (x * scale) - shift
    got = _exp(x, scale, shift)
    live = np.minimum(fused, unfused) > -87.0
    err = np.minimum(_ulps(got, np.exp(fused.astype(np.float64))), _ulps(got, np.exp(unfused.astype(np.float64))))
    assert np.max(err[live], initial=0.0) <= 2.0
    assert np.all(got[np.maximum(fused, unfused) <= -87.0] == 0.0)


def test_exact_values_and_flush_to_zero():
    got = _exp([0.0, -1e-30, -86.99, -87.0, -100.5, -1e4, -np.inf])
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] > 0.0 and np.isfinite(got[2])
    assert np.all(got[3:] == 0.0)                 # at or below -87 (under float32's smallest normal) and -inf


def test_partial_length_leaves_rest():
    x = np.full(8, -1.0, dtype=np.float32)
    out = np.full(8, 7.0, dtype=np.float32)
    exp_row(x, F32(1.0), F32(0.0), 5, out)
    assert np.allclose(out[:5], np.exp(-1.0), rtol=2e-7) and np.all(out[5:] == 7.0)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.floats(-10.0, 10.0).filter(lambda s: s != 0.0), st.integers(0, 2**32 - 1))
def test_row_max_and_sum(n, scale, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n + 3) * 20).astype(np.float32)
    scale = F32(scale)
    assert row_max(x, scale, n, F32(-np.inf)) == np.max(x[:n] * scale)       # max is exact
    assert row_max(x, scale, n, F32(1e30)) == F32(1e30)                       # the running max carries in
    ref = np.sum(x[:n].astype(np.float64))
    bound = n * np.finfo(np.float32).eps * np.sum(np.abs(x[:n].astype(np.float64)))
    assert abs(row_sum(x, n) - ref) <= bound


def test_llvm_helpers_in_python():
    """The plain-Python versions (NUMBA_DISABLE_JIT=1 and Python callers) mean the same as the instructions."""
    assert maxnum32(F32(np.nan), F32(2.0)) == 2.0 and maxnum32(F32(-1.0), F32(np.nan)) == -1.0
    assert maxnum32(F32(-np.inf), F32(-3.0)) == -3.0
    for n in (-126, -1, 0, 1, 127):
        assert float32_from_bits(np.int32((n + 127) << 23)) == 2.0 ** n


def test_same_results_with_jit_disabled():
    """Under NUMBA_DISABLE_JIT=1 the same loops run as Python (with the Python helpers): same numbers."""
    script = (
        "import json, numpy as np\n"
        "from tinyml.kernels.attention.fastexp import exp_row, row_max, row_sum\n"
        "x = np.array([0.0, -0.5, -3.25, -20.0, -86.5, -90.0, -np.inf], np.float32)\n"
        "o = np.empty_like(x)\n"
        "exp_row(x, np.float32(1.0), np.float32(0.0), len(x), o)\n"
        "print(json.dumps([o.tolist(), float(row_max(x, np.float32(2.0), 5, np.float32(-np.inf))),\n"
        "                  float(row_sum(o, len(o)))]))\n")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out, mx, total = json.loads(proc.stdout)
    x = np.array([0.0, -0.5, -3.25, -20.0, -86.5, -90.0, -np.inf], np.float32)
    jitted = _exp(x)
    np.testing.assert_allclose(out, jitted, rtol=3e-7)
    assert mx == np.max(x[:5] * F32(2.0))
    assert abs(total - row_sum(jitted, len(jitted))) <= 1e-6
