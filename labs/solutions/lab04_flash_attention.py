"""Lab 4: FlashAttention

Where standard attention's bytes go, FlashAttention-1's HBM traffic predicted
by hand, the block sizes that make FlashAttention-2 fastest on two devices,
and one row of attention computed with the online softmax, one block of keys
at a time.

The reference solution: the lab with every exercise answered. CI checks it with
`tinyml lab check 4 --file labs/solutions/lab04_flash_attention.py`.

Run it:       python labs/solutions/lab04_flash_attention.py    (or open it as a notebook in VS Code)
Check it:     tinyml lab check 4 --file labs/solutions/lab04_flash_attention.py
Walkthrough:  docs/attention.md (and docs/flash2.md, docs/backward.md)
"""

# %% [markdown]
# # Lab 4: FlashAttention
#
# Attention computes `O = softmax(Q K^T / sqrt(d)) V` for every (batch,
# head). Standard attention writes the N x N scores `S` and probabilities `P`
# to HBM between separate kernels; FlashAttention tiles Q, K and V, keeps `S`
# and `P` in SRAM, and stitches the softmax together with the online max and
# sum of Lab 3. tinyml has all three (`tinyml/kernels/attention/`):
#
# * `standard_attention(q, k, v)`: the 2022 PyTorch baseline, one kernel per step;
# * `flash_attention(q, k, v, version=1)`: FlashAttention-1 (Dao et al. 2022) as its CUDA kernel shipped
#   (more blocks per (batch, head) when that fills the SMs better); `flash_attention_v1(q, k, v,
#   **PAPER_FLASH1)` runs the paper's Algorithm 1 grid, one block per (batch, head);
# * `flash_attention(q, k, v, version=2)`: FlashAttention-2 (Dao 2023).
#
# Exercises are the functions marked *Exercise 4.x*: replace each
# `raise NotImplementedError(...)`, re-run, and check with `tinyml lab check 4`.

# %%
import math  # noqa: F401  (math and SramOverflowError are for your answers)
import os

import numpy as np

from tinyml.kernels import reference
from tinyml.kernels.attention import flash_attention, flash_blocks, standard_attention
from tinyml.kernels.attention.flash1 import flash_attention_v1
from tinyml.kernels.attention.paper import PAPER_FLASH1     # Algorithm 1's grid: num_splits=1, skip_masked=False
from tinyml.sim import Profile, SramOverflowError, load_device, meta, nbytes   # noqa: F401
from tinyml.sim.units import fmt_bytes, fmt_time

SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"   # CI runs every lab this way: small shapes

A100 = load_device("a100-40gb")
TOY = load_device("toy")          # 4 SMs, 2 KB of SRAM each
BATCH, HEADS, SEQ, HEAD_DIM = (2, 4, 512, 64) if SMOKE else (8, 16, 2048, 64)   # counted, not computed

# %% [markdown]
# ## 1. Where standard attention's bytes go
#
# Count one forward pass on the A100 (counting mode: `meta` tensors, the same
# tile loops, no data). Every kernel reads its input from HBM and writes its
# output back; `S` and `P` are `B H N^2` elements each.

# %%
with Profile(A100, name="standard") as std:
    q, k, v = (meta((BATCH, HEADS, SEQ, HEAD_DIM)) for _ in range(3))      # (B, H, N, d)
    standard_attention(q, k, v)
print(std.table(width=118))
x_bytes = nbytes(BATCH * HEADS * SEQ * SEQ, "fp16")
print(f"one N x N matrix, all heads: {fmt_bytes(x_bytes)}; moved in all: {fmt_bytes(std.hbm_bytes)} "
      f"({std.hbm_bytes / x_bytes:.1f} of them)")

# %% [markdown]
# ## 2. FlashAttention-1's bytes, predicted
#
# FlashAttention-1 runs one thread block per (batch, head). With `B_c =
# block_k` rows of K/V and `B_r = block_q` rows of Q per tile, and `T_c =
# ceil(N / B_c)`, each block does (Algorithm 1):
#
#     write O = 0, l = 0, m = -inf to HBM                     (line 2)
#     for j in 0 .. T_c - 1:                                  (K/V blocks, outer)
#         load K_j, V_j                                       (B_c x d each)
#         for i in 0 .. ceil(N / B_r) - 1:                    (Q blocks, inner)
#             load Q_i, O_i (B_r x d), l_i, m_i (B_r, fp32)
#             ... S, P on chip; rescale O_i with the new max and sum ...
#             write O_i, l_i, m_i back to HBM
#
# Q, K, V, O are in the logical dtype (`nbytes(1, dtype)` bytes per element);
# `l` and `m` are always fp32 (4 bytes). Note what the inner loop covers: over
# one K/V block, the `B_r`-row tiles add up to all of Q and O exactly once.
# The cell below counts Algorithm 1 itself (`PAPER_FLASH1`); the shipped
# kernel's default grid also splits the Q blocks of a (batch, head) over
# several thread blocks, each of which reads all of K and V, so it moves more.

# %%
def fa1_hbm_bytes(batch: int, heads: int, seq: int, head_dim: int, dtype: str,
                  block_q: int, block_k: int) -> int:
    """Exercise 4.1: the HBM bytes (reads + writes) of FlashAttention-1's forward pass.

    q, k, v are (batch, heads, seq, head_dim) in ``dtype``; no mask, no dropout;
    ``block_q`` = B_r, ``block_k`` = B_c (either may exceed ``seq``: then it is
    one block). Predict it from the tile loop above; don't run the kernel.
    """
    s = nbytes(1, dtype)                              # bytes per element of Q, K, V, O
    t_c = math.ceil(seq / block_k)                    # K/V blocks: passes over Q and O (block_q does not matter)
    rows = seq * head_dim * s                         # one of Q, K, V or O, for one (batch, head)
    stats = 2 * seq * 4                               # l and m, fp32
    reads = 2 * rows + t_c * (2 * rows + stats)       # K, V once; Q, O, l, m once per K/V block
    writes = (1 + t_c) * (rows + stats)               # line 2, then O, l, m after every K/V block
    return int(batch * heads * (reads + writes))


# %%
with Profile(A100) as fa1:
    q, k, v = (meta((BATCH, HEADS, SEQ, HEAD_DIM)) for _ in range(3))
    flash_attention_v1(q, k, v, **PAPER_FLASH1)
r1 = fa1.records[0]
bq, bk = flash_blocks(A100, SEQ, SEQ, HEAD_DIM, "fp16", version=1)   # Algorithm 1, line 1: B_r, B_c
counted = r1.hbm_read_bytes + r1.l2_hit_bytes + r1.hbm_write_bytes + r1.l2_write_hit_bytes
print(f"FlashAttention-1: {fmt_bytes(counted)} in {fmt_time(r1.time_s)} "
      f"(standard: {fmt_bytes(std.hbm_bytes)} in {fmt_time(std.time_s)})")
try:
    mine = fa1_hbm_bytes(BATCH, HEADS, SEQ, HEAD_DIM, "fp16", bq, bk)
    print(f"your formula with B_r = {bq}, B_c = {bk}: {mine:,} bytes; counted: {counted:,} "
          f"-> {'ok' if mine == counted else 'WRONG'}")
except NotImplementedError as exc:
    print(f"[Exercise 4.1 not attempted] {exc}")

# %% [markdown]
# Your formula also says how the traffic depends on the block size: only
# `B_c` matters, and the big term, `3 T_c N d s` (Q and O read, O written,
# once per K/V block), falls as `1 / B_c`. Since
# `B_c` is about `M / 4d` for an SRAM of `M` elements, that is Theorem 2 of
# the paper: `Theta(N^2 d^2 / M)` HBM accesses. Try it: double the device's
# SRAM with `A100.replace(sram_per_sm=2 * A100.sram_per_sm)`.

# %%
for sram in (A100.sram_per_sm // 2, A100.sram_per_sm, 2 * A100.sram_per_sm):
    dev = A100.replace(name=f"a100-{sram // 1024}k", sram_per_sm=sram)
    with Profile(dev) as p:
        q, k, v = (meta((BATCH, HEADS, SEQ, HEAD_DIM)) for _ in range(3))
        flash_attention_v1(q, k, v, **PAPER_FLASH1)
    r = p.records[0]
    print(f"SRAM {sram // 1024:>4} KiB per SM: {fmt_bytes(r.hbm_read_bytes + r.l2_hit_bytes + r.hbm_write_bytes + r.l2_write_hit_bytes)}")

# %% [markdown]
# ## 3. The fastest block sizes
#
# FlashAttention-2 puts Q in the outer loop: one thread block per (batch, head,
# Q block). By default it takes the largest blocks that fit SRAM. That is not
# always fastest: smaller blocks leave room for more resident blocks per SM
# (memory then hides behind compute), change how evenly the grid spreads over
# the SMs, and under a causal mask change how many tiles on the diagonal are
# computed whole. The simulator can tell you. The problems (forward pass,
# fp16), the same ones the checker uses:

# %%
SHAPES = {
    "toy": dict(batch=1, heads=8, seq=256, head_dim=4, causal=True),
    "a100-40gb": dict(batch=4, heads=16, seq=4096, head_dim=64, causal=True),
}
CANDIDATES = (8, 16, 32, 64, 128, 256)          # for block_q and block_k alike


def fa2_time(device_name: str, shape: dict, block_q=None, block_k=None) -> float:
    """Simulated seconds of the FlashAttention-2 forward at ``shape`` (SramOverflowError if the tiles don't fit)."""
    with Profile(device_name) as prof:
        q, k, v = (meta((shape["batch"], shape["heads"], shape["seq"], shape["head_dim"])) for _ in range(3))
        flash_attention(q, k, v, version=2, causal=shape["causal"], block_q=block_q, block_k=block_k)
    return prof.time_s


# %%
def best_blocks(device_name: str, shape: "dict | None" = None) -> tuple[int, int]:
    """Exercise 4.2: the (block_q, block_k) that make FlashAttention-2's forward fastest.

    ``shape`` is one of ``SHAPES`` (default: ``SHAPES[device_name]``). Choose
    both sizes from ``CANDIDATES``; pairs whose tiles do not fit the device's
    SRAM raise ``SramOverflowError``. The answer must be within 2% of the
    fastest pair's simulated time. ``fa2_time`` above does one measurement.
    """
    shape = SHAPES[device_name] if shape is None else shape
    best = None
    for block_q in CANDIDATES:
        for block_k in CANDIDATES:
            try:
                t = fa2_time(device_name, shape, block_q, block_k)
            except SramOverflowError:                 # the tiles do not fit this device's SRAM
                continue
            if best is None or t < best[0]:
                best = (t, block_q, block_k)
    return best[1], best[2]


# %%
for name in (["toy"] if SMOKE else list(SHAPES)):
    default = fa2_time(name, SHAPES[name])
    try:
        bq, bk = best_blocks(name)
        t = fa2_time(name, SHAPES[name], bq, bk)
        print(f"{name}: default blocks {fmt_time(default)}; yours ({bq}, {bk}) {fmt_time(t)} "
              f"({default / t:.2f}x faster)")
    except NotImplementedError as exc:
        print(f"{name}: default blocks {fmt_time(default)}. [Exercise 4.2 not attempted] {exc}")

# %% [markdown]
# ## 4. One row of attention, one block of keys at a time
#
# For a single query `q` (a row of Q), attention is
# `o = softmax(K q / sqrt(d)) @ V`. FlashAttention never has the whole row of
# scores: it sees them `block` keys at a time. Keep three things, the running
# max `m`, the running sum `l` and the running (unnormalised) output `o`, and
# for each block of keys `K_b`, `V_b` with scores `s_b = K_b q / sqrt(d)`:
#
#     m_new = max(m, max(s_b))
#     p     = exp(s_b - m_new)                       # (block,)
#     l     = l * exp(m - m_new) + sum(p)
#     o     = o * exp(m - m_new) + p @ V_b           # (d,)
#     m     = m_new
#
# starting from `m = -inf, l = 0, o = 0`, and return `o / l`. It is Lab 3's
# merge, with `o` carried along and rescaled by the same factor. Masked keys
# (`valid[j] == False`) have score `-inf`; if a whole block is masked while `m`
# is still `-inf`, `-inf - (-inf)` is NaN: shift by 0 instead (or skip the
# block). A row that sees no key at all returns zeros.

# %%
def online_softmax_attention_row(q_row: np.ndarray, K: np.ndarray, V: np.ndarray, block: int,
                                 valid: "np.ndarray | None" = None) -> np.ndarray:
    """Exercise 4.3: ``softmax(K @ q_row / sqrt(d)) @ V`` with the online softmax over key blocks.

    q_row: (d,); K, V: (N, d); ``block``: keys per block (the last block may be
    shorter); ``valid``: optional (N,) bool, False for a masked key. Returns the
    output row, (d,). Walk the keys ``block`` at a time (never build all N
    probabilities at once), use no exponent above 0, return zeros if every key
    is masked, and never return NaN.
    """
    d = q_row.shape[0]
    scale = 1.0 / math.sqrt(d)
    m, l = -math.inf, 0.0
    o = np.zeros(d)                                                   # (d,) unnormalised output
    for j0 in range(0, K.shape[0], block):
        s = (K[j0:j0 + block].astype(np.float64) @ q_row) * scale    # (block,) scores
        if valid is not None:
            s = np.where(valid[j0:j0 + block], s, -np.inf)
        m_new = max(m, float(s.max()))
        if m_new == -math.inf:                                        # nothing visible yet: nothing to add
            continue
        alpha = math.exp(m - m_new)                                   # <= 1; 0 on the first visible block
        p = np.exp(s - m_new)                                         # (block,) <= 1; 0 for masked keys
        l = l * alpha + float(p.sum())
        o = o * alpha + p @ V[j0:j0 + block]
        m = m_new
    return o / l if l > 0 else o                                      # a fully masked row: zeros


# %%
rng = np.random.default_rng(0)
n, d = (40, 8) if SMOKE else (300, 32)
Q = rng.standard_normal((n, d)).astype(np.float32)                 # (N, d) queries
Kx, Vx = (rng.standard_normal((n, d)).astype(np.float32) for _ in range(2))
with Profile(TOY if SMOKE else A100):
    O_fa2 = flash_attention(Q[None, None], Kx[None, None], Vx[None, None], version=2)[0, 0]   # (N, d)
O_ref, _ = reference.attention(Q[None, None], Kx[None, None], Vx[None, None])
try:
    O_mine = np.stack([online_softmax_attention_row(Q[i], Kx, Vx, block=16) for i in range(n)])   # (N, d)
    print(f"your rows vs the float64 reference: max error {np.abs(O_mine - O_ref[0, 0]).max():.1e}; "
          f"vs FlashAttention-2: {np.abs(O_mine - O_fa2).max():.1e}")
    big = online_softmax_attention_row(1e3 * Q[0], Kx, Vx, block=16)   # logits ~1e4: exp alone overflows
    print(f"logits ~1e4: finite = {bool(np.isfinite(big).all())}")
except NotImplementedError as exc:
    print(f"[Exercise 4.3 not attempted] {exc}")
    print(f"  FlashAttention-2 vs the float64 reference: max error {np.abs(O_fa2 - O_ref[0, 0]).max():.1e}")

# %% [markdown]
# That is the whole of FlashAttention's forward for one query. The kernel does
# it for `B_r` queries at once (so `s_b` is a `B_r x B_c` tile, `p @ V_b` a
# tensor-core product) and keeps `m`, `l` and `o` on chip. What to try next:
# `docs/backward.md` shows why its backward pass recomputes `P` instead of
# storing it, and `tinyml attention --paper fig2` reproduces the paper's Figure 2.
#
# ## Check your answers
#
# The same check as `tinyml lab check 4`: it loads only your functions (not
# these cells; save the file first) and compares them with what tinyml computes.

# %%
from tinyml.labs import check_lab  # noqa: E402

print(check_lab(4, path=globals().get("__file__")).render())
