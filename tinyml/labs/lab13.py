"""Checks for Lab 13, state-space models and linear attention (``labs/lab13_ssm.py``).

``chunk_update`` runs on random chunks (odd sizes, a non-zero state, decay 1
and < 1) against the float64 reference; a wrong answer is compared with the
answers of the usual mistakes (no causal mask, no inter-chunk term, decay
exponents off by one, an undecayed state) to name the mistake.
``best_chunk`` is compared with the chunk size tinyml's own search gives on
``toy`` and ``a100-40gb``, timing every candidate that fits in counting mode.
"""

from __future__ import annotations

import numpy as np

from .checks import Exercise, Wrong, as_int, call

CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


# ---- 13.1 chunk_update ------------------------------------------------------------------------------

def _variants(S, Q, K, V, g):
    """The right (O, S_new) and the answers of the usual mistakes, by name."""
    nc = Q.shape[0]
    i = np.arange(nc)
    diff = i[:, None] - i[None, :]
    M = np.where(diff >= 0, g ** np.maximum(diff, 0), 0.0)
    up, down = g ** (i + 1), g ** (nc - 1 - i)
    intra, inter = ((Q @ K.T) * M) @ V, up[:, None] * Q @ S
    S_new = g ** nc * S + (down[:, None] * K).T @ V
    o_wrong = {
        "the causal mask is missing (token i also sees the chunk's later tokens)":
            ((Q @ K.T) * np.where(True, g ** np.abs(diff), 0)) @ V + inter,
        "the inter-chunk term diag(g^(i+1)) Q S is missing (the chunk ignores every earlier chunk)": intra,
        "the inter-chunk term uses g^i instead of g^(i+1) (the state is one step older than token 0)":
            intra + (g ** i)[:, None] * Q @ S,
        "the inter-chunk term has no decay (Q S instead of diag(g^(i+1)) Q S)": intra + Q @ S,
        "the intra-chunk mask has no decay (M is 1 on and below the diagonal, not g^(i-j))":
            ((Q @ K.T) * (diff >= 0)) @ V + inter,
    }
    s_wrong = {
        "the old state is not decayed (S_new needs g^nc S)": S + (down[:, None] * K).T @ V,
        "the new keys are not decayed (K^T V instead of (diag(g^(nc-1-j)) K)^T V)": g ** nc * S + K.T @ V,
        "the new state is decayed by g^(nc-1) instead of g^nc": g ** (nc - 1) * S + (down[:, None] * K).T @ V,
    }
    return intra + inter, S_new, o_wrong, s_wrong


def check_chunk_update(fn) -> str:
    rng = np.random.default_rng(13)
    cases = 0
    for nc, d, dv, g in ((5, 4, 3, 0.9), (1, 3, 2, 0.8), (7, 8, 8, 1.0), (3, 2, 5, 0.5)):
        S = rng.standard_normal((d, dv))
        Q, K, V = rng.standard_normal((nc, d)), rng.standard_normal((nc, d)), rng.standard_normal((nc, dv))
        O, S_new, o_wrong, s_wrong = _variants(S, Q, K, V, g)
        got = call(fn, S.copy(), Q.copy(), K.copy(), V.copy(), g)
        if not (isinstance(got, tuple) and len(got) == 2):
            raise Wrong(f"chunk_update(...) returned {type(got).__name__}; return a pair (O, S_new)")
        o, s = (np.asarray(x, dtype=np.float64) for x in got)
        where = f"(nc={nc}, d={d}, dv={dv}, g={g})"
        if o.shape != O.shape or s.shape != S_new.shape:
            raise Wrong(f"chunk_update{where} returned O {o.shape} and S_new {s.shape}; expected {O.shape} and "
                        f"{S_new.shape}")
        if not np.allclose(o, O, rtol=1e-6, atol=1e-9):
            for why, cand in o_wrong.items():
                if np.allclose(o, cand, rtol=1e-6, atol=1e-9) and not np.allclose(cand, O):
                    raise Wrong(f"O is wrong for {where}: {why}.")
            raise Wrong(f"O is wrong for {where}: max error {np.abs(o - O).max():.3g}. Hint: O = ((Q K^T) * M) V "
                        f"+ diag(g^(i+1)) Q S with M[i, j] = g^(i-j) for j <= i, else 0.")
        if not np.allclose(s, S_new, rtol=1e-6, atol=1e-9):
            for why, cand in s_wrong.items():
                if np.allclose(s, cand, rtol=1e-6, atol=1e-9) and not np.allclose(cand, S_new):
                    raise Wrong(f"S_new is wrong for {where}: {why}.")
            raise Wrong(f"S_new is wrong for {where}: max error {np.abs(s - S_new).max():.3g}. Hint: "
                        f"S_new = g^nc S + (diag(g^(nc-1-j)) K)^T V.")
        cases += 1
    return f"O and S_new match the reference in {cases} chunks (odd sizes, decays 0.5 to 1, a non-zero state)"


# ---- 13.2 best_chunk ----------------------------------------------------------------------------------

WORKLOADS = {"toy": (2, 4, 1024, 8), "a100-40gb": (4, 16, 8192, 64)}


def chunk_times(device: str, shape: tuple) -> dict:
    """{chunk: simulated seconds} for every candidate whose tiles fit ``device``."""
    from ..kernels.ssm import linear_attention_chunked
    from ..sim import Profile, SramOverflowError, meta

    out = {}
    for c in CANDIDATES:
        try:
            with Profile(device) as prof:
                linear_attention_chunked(*[meta(shape) for _ in range(3)], chunk=c)
        except SramOverflowError:
            continue
        out[c] = prof.time_s
    return out


def check_best_chunk(fn) -> str:
    found = []
    for dev, shape in WORKLOADS.items():
        times = chunk_times(dev, shape)
        best = min(times, key=times.get)
        got = as_int(call(fn, dev, *shape), f"best_chunk({dev!r}, {', '.join(map(str, shape))})")
        if got not in CANDIDATES:
            raise Wrong(f"best_chunk({dev!r}, ...) = {got}, which is not one of the candidates {CANDIDATES}")
        if got not in times:
            raise Wrong(f"best_chunk({dev!r}, ...) = {got}, but chunk={got} does not fit {dev}'s SRAM (the largest "
                        f"that fits is {max(times)}). Hint: catch SramOverflowError and skip that candidate.")
        if times[got] > times[best] * (1 + 1e-9):
            raise Wrong(f"best_chunk({dev!r}, ...) = {got} takes {times[got] * 1e6:.2f} us, but chunk={best} takes "
                        f"{times[best] * 1e6:.2f} us. Hint: time every candidate that fits (in counting mode, with "
                        f"meta tensors of shape {shape}) and return the fastest, not the largest or smallest.")
        found.append(f"{dev}: {got}")
    return "the fastest chunk on each device (" + ", ".join(found) + ")"


EXERCISES = (
    Exercise("13.1", "chunk_update", "one chunk of causal linear attention: the output and the new state",
             check_chunk_update),
    Exercise("13.2", "best_chunk", "the chunk size that minimises simulated time on a device", check_best_chunk),
)
