"""Lab 13 (state-space models and linear attention): the reference solution passes, and the usual
mistakes in chunk_update and best_chunk are named, not just flagged."""

from __future__ import annotations

import textwrap

import pytest

from tinyml.labs import OK, WRONG, check_lab

SOLUTION_13_1 = """
    import numpy as np

    def chunk_update(S, Q, K, V, g):
        nc = Q.shape[0]
        i = np.arange(nc)
        diff = i[:, None] - i[None, :]
        M = {mask}
        O = ((Q @ K.T) * M) @ V + {inter}
        S_new = {state}
        return O, S_new

    def best_chunk(device, batch, heads, n, d):
        return {best}
"""
RIGHT = dict(mask="np.where(diff >= 0, float(g) ** np.maximum(diff, 0), 0.0)",
             inter="(float(g) ** (i + 1))[:, None] * Q @ S",
             state="float(g) ** nc * S + ((float(g) ** (nc - 1 - i))[:, None] * K).T @ V",
             best="{'toy': 8, 'a100-40gb': 32}[device]")


def check(tmp_path, **changes):
    path = tmp_path / "my_lab13.py"
    path.write_text(textwrap.dedent(SOLUTION_13_1.format(**{**RIGHT, **changes})))
    return {r.id: r for r in check_lab(13, path=path).results}


def test_the_reference_solution_passes():
    from tinyml.labs import get_lab

    results = check_lab(13, path=get_lab(13).solution).results
    assert [r.status for r in results] == [OK, OK]


def test_right_answers_pass(tmp_path):
    got = check(tmp_path)
    assert got["13.1"].status == OK and got["13.2"].status == OK


@pytest.mark.parametrize("change, words", [
    (dict(mask="np.where(True, float(g) ** np.abs(diff), 0.0)"), "causal mask is missing"),
    (dict(inter="0.0"), "inter-chunk term diag(g^(i+1)) Q S is missing"),
    (dict(inter="(float(g) ** i)[:, None] * Q @ S"), "g^i instead of g^(i+1)"),
    (dict(mask="(diff >= 0) * 1.0"), "mask has no decay"),
    (dict(state="S + ((float(g) ** (nc - 1 - i))[:, None] * K).T @ V"), "old state is not decayed"),
    (dict(state="float(g) ** nc * S + K.T @ V"), "new keys are not decayed"),
])
def test_chunk_update_mistakes_are_named(tmp_path, change, words):
    got = check(tmp_path, **change)
    assert got["13.1"].status == WRONG and words in got["13.1"].message, got["13.1"].message


@pytest.mark.parametrize("best, words", [
    ("256", "does not fit toy's SRAM"),
    ("{'toy': 8, 'a100-40gb': 128}[device]", "chunk=32 takes"),
    ("3", "not one of the candidates"),
])
def test_best_chunk_mistakes_are_named(tmp_path, best, words):
    got = check(tmp_path, best=best)
    assert got["13.2"].status == WRONG and words in got["13.2"].message, got["13.2"].message
