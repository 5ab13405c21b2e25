"""Lab 13: State-space models and linear attention, in bytes

Linear attention keeps a (d, dv) state per head instead of a KV cache. Trained
one token at a time it runs on the vector units; chunked, it runs on the
tensor cores. Write the chunked update, check it against the token-by-token
recurrence, then find the chunk size that minimises simulated time on two devices.

The reference solution: the lab with every exercise answered. CI checks it with
`tinyml lab check 13 --file labs/solutions/lab13_ssm.py`.

Run it:       python labs/solutions/lab13_ssm.py    (or open it as a notebook in VS Code)
Check it:     tinyml lab check 13 --file labs/solutions/lab13_ssm.py
Walkthrough:  docs/ssm.md
"""

# %% [markdown]
# # Lab 13: State-space models and linear attention
#
# The recurrence, per head, with a decay `g` in (0, 1]:
#
#     S_t = g S_{t-1} + k_t^T v_t          o_t = q_t S_t
#
# Exercises are the functions marked *Exercise 13.x*: replace each
# `raise NotImplementedError(...)`, re-run, and check with `tinyml lab check 13`.

# %%
import os

import numpy as np

from tinyml.kernels.ssm import linear_attention_chunked, linear_attention_recurrent, reference
from tinyml.sim import Profile, SramOverflowError, meta
from tinyml.sim.units import fmt_time

SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"   # CI runs every lab this way: small sizes
CANDIDATES = (1, 2, 4, 8, 16, 32, 64, 128, 256)

# %% [markdown]
# ## 1. One chunk at a time
#
# Split the sequence into chunks of nc tokens. Inside a chunk, with positions
# i, j in [0, nc) and `M[i, j] = g^(i-j)` for j <= i (0 above the diagonal):
#
#     O     = ((Q K^T) * M) V  +  diag(g^(i+1)) Q S          (the chunk's own tokens + the past, through S)
#     S_new = g^nc S  +  (diag(g^(nc-1-j)) K)^T V
#
# Both are matmuls: on a GPU they run on the tensor cores.

# %%
def chunk_update(S, Q, K, V, g):
    """Exercise 13.1: one chunk of causal linear attention with decay ``g``.

    S: (d, dv) the state before the chunk; Q, K: (nc, d); V: (nc, dv). Returns (O (nc, dv), S_new (d, dv)).
    """
    nc = Q.shape[0]
    i = np.arange(nc)
    diff = i[:, None] - i[None, :]
    M = np.where(diff >= 0, float(g) ** np.maximum(diff, 0), 0.0)             # (nc, nc) causal decay mask
    O = ((Q @ K.T) * M) @ V + (float(g) ** (i + 1))[:, None] * Q @ S           # intra + inter
    S_new = float(g) ** nc * S + ((float(g) ** (nc - 1 - i))[:, None] * K).T @ V
    return O, S_new


# %%
rng = np.random.default_rng(0)
n, d, dv, g = 23, 8, 8, 0.9
q, k, v = (rng.standard_normal((n, d)), rng.standard_normal((n, d)), rng.standard_normal((n, dv)))
want = reference.linear_attention(q[None, None], k[None, None], v[None, None], [g])[0, 0]
try:
    S, outs = np.zeros((d, dv)), []
    for c0 in range(0, n, 5):                       # chunks of 5 tokens: the last one has 3
        o, S = chunk_update(S, q[c0:c0 + 5], k[c0:c0 + 5], v[c0:c0 + 5], g)
        outs.append(o)
    print(f"max |chunked - recurrence| = {np.abs(np.concatenate(outs) - want).max():.2e}")
except NotImplementedError as exc:
    print(f"[Exercise 13.1 not attempted] {exc}")

# %% [markdown]
# ## 2. Which chunk size?
#
# Chunk size 1 is the recurrence (no matmul worth the name); a chunk of the whole
# sequence is the quadratic form. The simulator says where in between the time is
# lowest. `linear_attention_chunked(q, k, v, chunk=C)` raises `SramOverflowError`
# for a chunk whose tiles do not fit the device: skip those.

# %%
def best_chunk(device: str, batch: int, heads: int, n: int, d: int) -> int:
    """Exercise 13.2: the chunk size in CANDIDATES that minimises the simulated time of
    ``linear_attention_chunked`` on fp16 meta tensors (batch, heads, n, d) on ``device``."""
    times = {}
    for c in CANDIDATES:
        try:
            with Profile(device) as prof:
                linear_attention_chunked(*[meta((batch, heads, n, d)) for _ in range(3)], chunk=c)
        except SramOverflowError:
            continue
        times[c] = prof.time_s
    return min(times, key=times.get)


# %%
WORKLOADS = {"toy": (2, 4, 256 if SMOKE else 1024, 8), "a100-40gb": (4, 16, 1024 if SMOKE else 8192, 64)}
for dev, shape in WORKLOADS.items():
    qkv = [meta(shape) for _ in range(3)]
    with Profile(dev) as p:
        linear_attention_recurrent(*qkv)
    print(f"{dev}: recurrent form {fmt_time(p.time_s)}")
    try:
        c = best_chunk(dev, *shape)
        with Profile(dev) as p:
            linear_attention_chunked(*qkv, chunk=c)
        print(f"{dev}: best chunk {c}, {fmt_time(p.time_s)}")
    except NotImplementedError as exc:
        print(f"[Exercise 13.2 not attempted] {exc}")
    except SramOverflowError as exc:
        print(f"{dev}: your chunk does not fit: {exc}")

# %% [markdown]
# Small chunks: many tiny, inefficient matmuls and a state update per chunk.
# Large chunks: the nc^2 intra-chunk work grows, and the tiles stop fitting SRAM.
# The toy device's SRAM ends the search early; the A100 finds an interior minimum.

# %%
from tinyml.labs import check_lab  # noqa: E402

print(check_lab(13, path=globals().get("__file__")).render())
