"""OpenMP worker threads sleep between kernels instead of spinning (``OMP_WAIT_POLICY``).

Counting mode runs thousands of tiny ``prange`` launches (one block per class). With the
OpenMP runtime's default wait policy each worker spins after every launch, waiting for the
next one: on 2 cores that burned about 9x the CPU seconds of the counting itself (compiling
the 12-layer tiny GPT with ``passes="all"`` at n = 1024: 16.5 CPU s spinning, 4.7 s passive)
and, on a loaded machine, the wall time too. ``import tinyml`` therefore sets
``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy, before any kernel starts the
runtime.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROGRAM = """
import os
import tinyml.kernels                    # every kernel defined; none has run, so the runtime reads it later
print(os.environ.get("OMP_WAIT_POLICY"))
"""


def _policy(env_value: "str | None") -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_import_sets_a_passive_wait_policy():
    assert _policy(None) == "PASSIVE"


@pytest.mark.parametrize("chosen", ["ACTIVE", "passive"])
def test_a_users_wait_policy_wins(chosen):
    assert _policy(chosen) == chosen
