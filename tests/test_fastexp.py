"""The vectorised online-softmax loops of the FlashAttention-2 forward (CPU), against float64 NumPy."""

import json
import os
import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import examples
from tinyml.kernels._llvm import float32_from_bits, maxnum32
from tinyml.kernels.attention.fastexp import exp_le0, start_tile, tile_exp, tile_scale_max

F32 = np.float32


def _exp(x, shift=0.0):
    """exp(x - shift) of a vector through tile_exp, as a one-key tile over len(x) queries."""
    x = np.asarray(x, dtype=np.float32)
    out = np.full((1, len(x)), np.nan, dtype=np.float32)
    total = np.zeros(len(x))
    tile_exp(x[None, :], np.full(len(x), shift, dtype=np.float32), len(x), 1, out, total)
    np.testing.assert_array_equal(total, out[0])          # one key: the sum is the value
    return out[0]


def _ulps(got, ref):
    """|got - ref| in units of the float32 spacing at ref (ref in float64)."""
    return np.abs(got - ref) / np.spacing(ref.astype(np.float32)).astype(np.float64)


def test_within_two_ulps_on_a_dense_grid():
    x = np.linspace(-87.0, 0.0, 1_000_001).astype(np.float32)
    x = x[x > -87.0]
    ref = np.exp(x.astype(np.float64))
    assert np.max(_ulps(_exp(x), ref)) <= 2.0


@settings(max_examples=examples(50), deadline=None)
@given(st.integers(1, 300), st.floats(1e-3, 10.0), st.floats(-50.0, 50.0), st.integers(0, 2**32 - 1))
def test_scale_max_then_exp(n, scale, spread, seed):
    """The forward's two passes on one query over n keys: scaled scores stored in float32, their max,
    then exp(s - max) within 2 ulps of exp of the float32 difference; the max key gets exactly 1."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 1)) * spread).astype(np.float32)          # (keys, 1 query)
    scale = F32(scale)
    st_ = x.copy()
    m = np.full(1, -np.inf, dtype=np.float32)
    tile_scale_max(st_, scale, 1, n, m)
    np.testing.assert_array_equal(st_, x * scale)                          # fl32(x * scale), stored
    assert m[0] == np.max(x * scale)
    pt = np.full_like(st_, np.nan)
    total = np.zeros(1)
    tile_exp(st_, m, 1, n, pt, total)
    d = (st_[:, 0] - m[0]).astype(np.float64)                              # exact in float64
    live = d > -87.0
    assert np.max(_ulps(pt[live, 0], np.exp(d[live])), initial=0.0) <= 2.0
    assert np.all(pt[~live, 0] == 0.0) and pt[np.argmax(st_[:, 0]), 0] == 1.0
    assert abs(total[0] - np.exp(d).sum()) <= 1e-6 * np.exp(d).sum()


def test_exact_values_and_flush_to_zero():
    got = _exp([0.0, -1e-30, -86.99, -87.0, -100.5, -1e4, -np.inf])
    assert got[0] == 1.0 and got[1] == 1.0
    assert got[2] > 0.0 and np.isfinite(got[2])
    assert np.all(got[3:] == 0.0)                 # at or below -87 (under float32's smallest normal) and -inf


def test_tile_exp_rows_columns_and_sums():
    """A (keys, queries) tile with a shift per query: every entry, the sums added to what was there,
    and nothing written outside rows x cols."""
    rng = np.random.default_rng(3)
    st_ = (rng.standard_normal((7, 10)) * 4).astype(np.float32)
    scale = F32(0.37)
    shift = np.max(st_ * scale, axis=0).astype(np.float32)
    pt = np.full_like(st_, 9.0)
    total = np.full(10, 0.5, dtype=np.float32)
    st_ = (st_ * scale).astype(np.float32)
    tile_exp(st_, shift, 8, 5, pt, total)                       # queries 0..7, keys 0..4
    ref = np.exp((st_[:5, :8] - shift[:8]).astype(np.float64))
    np.testing.assert_allclose(pt[:5, :8], ref, rtol=3e-7)
    np.testing.assert_allclose(total[:8], 0.5 + ref.sum(axis=0), rtol=1e-6)
    assert np.all(pt[5:] == 9.0) and np.all(pt[:, 8:] == 9.0) and np.all(total[8:] == 0.5)


@settings(max_examples=examples(50), deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.floats(-10.0, 10.0).filter(lambda s: s != 0.0),
       st.integers(0, 2**32 - 1))
def test_tile_scale_max(keys, queries, scale, seed):
    rng = np.random.default_rng(seed)
    tile = (rng.standard_normal((keys + 2, queries + 3)) * 20).astype(np.float32)
    orig = tile.copy()
    scale = F32(scale)
    m = np.full(queries + 3, -np.inf, dtype=np.float32)
    m[0] = 1e30                                                 # a running max carries in
    tile_scale_max(tile, scale, queries, keys, m)
    np.testing.assert_array_equal(tile[:keys, :queries], orig[:keys, :queries] * scale)
    np.testing.assert_array_equal(tile[keys:], orig[keys:])     # nothing outside rows x cols
    np.testing.assert_array_equal(tile[:, queries:], orig[:, queries:])
    expect = np.max(orig[:keys, :queries] * scale, axis=0)      # the max is exact
    assert m[0] == F32(1e30)
    np.testing.assert_array_equal(m[1:queries], expect[1:])
    assert np.all(np.isneginf(m[queries:]))


def test_start_tile():
    m_old = np.array([-np.inf, -np.inf, 2.0, 2.0, 5.0], dtype=np.float32)
    m_new = np.array([-np.inf, 1.0, 2.0, 3.0, 5.0], dtype=np.float32)
    shift, alpha, total = (np.full(5, 7.0, dtype=np.float32) for _ in range(3))
    start_tile(m_old, m_new, 4, shift, alpha, total)
    np.testing.assert_array_equal(shift[:4], [0.0, 1.0, 2.0, 3.0])   # no key yet: 0, never -inf
    np.testing.assert_allclose(alpha[:4], [0.0, 0.0, 1.0, np.exp(-1.0)], rtol=3e-7)
    assert np.all(total[:4] == 0.0) and shift[4] == alpha[4] == total[4] == 7.0


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
        "from tinyml.kernels.attention.fastexp import tile_exp, tile_scale_max\n"
        "x = np.array([[0.0, -0.5, -3.25, -20.0, -86.5, -90.0, -np.inf]], np.float32)\n"
        "o = np.empty_like(x); t = np.zeros(7); m = np.full(7, -np.inf, np.float32)\n"
        "tile_exp(x, np.zeros(7, np.float32), 7, 1, o, t)\n"
        "tile_scale_max(x, np.float32(2.0), 5, 1, m)\n"
        "print(json.dumps([o[0].tolist(), m[:5].tolist()]))\n")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out, mx = json.loads(proc.stdout)
    x = np.array([0.0, -0.5, -3.25, -20.0, -86.5, -90.0, -np.inf], np.float32)
    np.testing.assert_allclose(out, _exp(x), rtol=3e-7)
    np.testing.assert_array_equal(mx, x[:5] * F32(2.0))


def test_scalar_exp_matches_the_tile_loop():
    x = np.array([0.0, -0.25, -1.5, -40.0, -86.9], dtype=np.float32)
    np.testing.assert_array_equal([exp_le0(v) for v in x], _exp(x))
