"""Shared test setup: hypothesis profiles and fixtures.

Profiles:

* ``ci`` (the default, and always when the ``CI`` environment variable is set):
  few, derandomized examples, so the whole suite stays fast; ``pytest`` runs
  it on every core (pytest-xdist, ``addopts`` in pyproject.toml).
* ``dev``: more examples, random; ``HYPOTHESIS_PROFILE=dev python -m pytest``.
* ``deep``: at least 1,000 random examples for every property, no example
  database; ``HYPOTHESIS_PROFILE=deep python -m pytest tests/test_x.py -n 2``. A test with its own
  ``@settings(max_examples=examples(n))`` gets ``n`` under ``ci`` and at least the profile's
  number under ``dev`` and ``deep`` (``strategies.examples``). Slow: run it one module at a time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# The tour compiles ahead in a second process on a cold cache; test workers already use every core.
os.environ.setdefault("TINYML_COMPILE_AHEAD", "0")
# Every kernel compiles serially (range, not prange; the hand-written ones at import, tinyml.sim.jit.PARALLEL,
# the generated tensor programs unless a test asks for parallel=True): tinyml's default, said here so that the
# suite does not depend on it. The same loops, answers and counters as the parallel build, compiled about 3x
# faster on a cold cache, and the pytest workers already use every core; the tour, docs and labs use the same
# build, so the suite finds their kernels compiled. tests/test_parallel_kernels.py checks the parallel build.
os.environ.setdefault("TINYML_PARALLEL_KERNELS", "0")

# `from strategies import ...` works under any pytest import mode
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=20,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=500,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "deep",
    deadline=None,
    max_examples=1000,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _no_profile_leaks():
    """Every test starts and ends with no active Profile (kernels would record into a stale one)."""
    from tinyml.sim import active_profile

    assert active_profile() is None, "a previous test left a Profile active"
    yield
    leaked = active_profile()
    if leaked is not None:
        from tinyml.sim import profile as _profile

        _profile.clear_active_profiles()
        pytest.fail(f"test left Profile {leaked.name!r} active")


@pytest.fixture(scope="session")
def warm_kernels():
    """Compile (or load from Numba's cache) every matmul body once, in both modes.

    Tests of the kernels request it so the one-off JIT cost is paid in one
    place, not inside the first hypothesis example.
    """
    from tinyml.kernels.matmul import matmul
    from tinyml.sim import Profile, meta

    a = np.ones((3, 2), np.float32)
    b = np.ones((2, 5), np.float32)
    with Profile("a100-40gb"):
        for v in (1, 2, 3):
            matmul(a, b, version=v)
            matmul(meta((3, 2)), meta((2, 5)), version=v)
    return matmul


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)
