"""The vectorisable exp used by the FlashAttention-2 forward matches np.exp on x <= 0."""

import numpy as np

from tinyml.kernels.attention.fastexp import exp_shifted


def _run(x, shift=0.0, out_dtype=np.float64):
    out = np.empty(len(x), dtype=out_dtype)
    t = np.empty(len(x))
    p = np.empty(len(x))
    exp_shifted(x, x.dtype.type(shift), len(x), out, t, p)
    return out


def test_relative_error_on_grid():
    x = np.linspace(-100.0, 0.0, 200_001)
    got = _run(x)
    ref = np.exp(x)
    assert np.max(np.abs(got - ref) / ref) <= 1e-6


def test_float32_inputs_with_shift():
    rng = np.random.default_rng(0)
    x = rng.uniform(-60.0, 3.0, 4096).astype(np.float32)
    shift = np.float32(3.0)
    got = _run(x, shift, np.float32)
    ref = np.exp((x - shift).astype(np.float64))
    assert np.max(np.abs(got - ref) / ref) <= 1e-6


def test_exact_values_and_flush_to_zero():
    x = np.array([0.0, -1e-30, -100.5, -1e4, -np.inf])
    got = _run(x)
    assert got[0] == 1.0 and got[1] == 1.0
    assert np.all(got[2:] == 0.0)


def test_partial_length_leaves_rest():
    x = np.full(8, -1.0)
    out = np.full(8, 7.0)
    exp_shifted(x, 0.0, 5, out, np.empty(8), np.empty(8))
    assert np.allclose(out[:5], np.exp(-1.0), rtol=1e-6) and np.all(out[5:] == 7.0)
