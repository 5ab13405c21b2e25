"""Lab 3: Online softmax

FlashAttention's foundation: why safe softmax needs the row max, what each
extra pass over HBM costs, the online recurrence that finds the max and the
sum in one pass, merging partial (max, sum) states in any order, and the SRAM
limit of a fully fused softmax.

The reference solution: the lab with every exercise answered. CI checks it with
`tinyml lab check 3 --file labs/solutions/lab03_online_softmax.py`.

Run it:       python labs/solutions/lab03_online_softmax.py    (or open it as a notebook in VS Code)
Check it:     tinyml lab check 3 --file labs/solutions/lab03_online_softmax.py
Walkthrough:  docs/softmax.md
"""

# %% [markdown]
# # Lab 3: Online softmax
#
# Softmax turns a row of scores `x` into probabilities
# `y_j = exp(x_j - m) / d`, with `m` the row max and `d = sum_k exp(x_k - m)`.
# It does a handful of operations per element, so on a GPU its time is the
# time to move the row across HBM, and what matters is **how many passes**
# over HBM a kernel makes. tinyml's softmax comes in numbered versions
# (`tinyml/kernels/softmax/`):
#
# * **v1, three-pass**: one pass for the max, one for the sum, one for the output.
# * **v2, online**: the max and the sum together in one pass, the output in a second.
# * **v3, fused**: whole rows in SRAM; one read, one write. Only if a row fits.
#
# Exercises are the functions marked *Exercise 3.x*: replace each
# `raise NotImplementedError(...)`, re-run, and check with `tinyml lab check 3`.

# %%
import math
import os

import numpy as np

from tinyml.kernels import reference
from tinyml.kernels.softmax import softmax
from tinyml.sim import Profile, SramOverflowError, load_device, meta, nbytes
from tinyml.sim.units import fmt_bytes, fmt_time

SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"   # CI runs every lab this way: small shapes

A100 = load_device("a100-40gb")
TOY = load_device("toy")          # 4 SMs, 2 KB of SRAM each
ROWS, COLS = (256, 1024) if SMOKE else (4096, 4096)   # counted, not computed: any size is quick

# %% [markdown]
# ## 1. Why the max: exp overflows
#
# `exp(x)` overflows fp16 for `x > 11.09` and fp32 for `x > 88.7`. Attention
# scores of that size are ordinary. Subtracting the row max first makes every
# exponent `<= 0` and changes nothing mathematically:

# %%
x = np.array([1000.0, 1000.0, 999.0], dtype=np.float32)      # (3,) one row of logits
with np.errstate(over="ignore", invalid="ignore"):
    print("textbook:", np.exp(x) / np.exp(x).sum())
print("safe:    ", np.exp(x - x.max()) / np.exp(x - x.max()).sum())
print("tinyml:  ", softmax(x[None, :])[0])

# %% [markdown]
# The price of the max: it must be known *before* the first exponential.
# v1 reads the row once to find it, once to sum the exponentials, and once
# to write the output. Count its bytes on the A100 (counting mode: `meta`
# shapes, the same tile loops, no data):

# %%
with Profile(A100) as v1_prof:
    softmax(meta((ROWS, COLS)), version=1)
r1 = v1_prof.records[0]
print(f"v1 on {ROWS} x {COLS} fp16: reads {fmt_bytes(r1.hbm_read_bytes)}, writes {fmt_bytes(r1.hbm_write_bytes)}, "
      f"{fmt_time(r1.time_s)}, {r1.bound}-bound (the matrix is {fmt_bytes(nbytes(ROWS * COLS, 'fp16'))})")

# %% [markdown]
# ## 2. The online update
#
# Read a row one element at a time and keep two numbers: `m`, the max so
# far, and `d`, the sum so far of `exp(x_i - m)`, every term taken relative
# to the *current* max. When the next element `x` arrives the max may grow to
# `m_new = max(m, x)`; every old term was computed relative to the old `m`,
# and `exp(x_i - m_new) = exp(x_i - m) * exp(m - m_new)`, so
#
#     m_new = max(m, x)
#     d_new = d * exp(m - m_new) + exp(x - m_new)
#
# starting from `m = -inf, d = 0` (nothing read yet). After the last element,
# `m` is the row max and `d` is exactly the softmax denominator
# (docs/softmax.md proves it). Mind the edges:
#
# * At the start `m = -inf`: `exp(-inf - m_new) = 0`, nothing to rescale.
# * A masked score `x = -inf` adds `exp(-inf) = 0` and leaves `m` alone.
# * If `m` and `x` are both `-inf`, then `m_new = -inf` and `-inf - (-inf)`
#   is NaN: shift the exponents by 0 instead of by `m_new`, so `d` stays 0.
# * `x` far above `m` (say by 1000): `exp(x - m)` would overflow; with the new
#   max both exponents are `<= 0`, so nothing can.

# %%
def online_update(m: float, d: float, x: float) -> tuple[float, float]:
    """Exercise 3.1: the online-softmax update of the state ``(m, d)`` by one element ``x``.

    ``m`` is the max of the elements so far (``-inf`` if none), ``d`` the sum of
    ``exp(x_i - m)`` over them (``0`` if none). Return ``(m_new, d_new)`` for the
    elements so far plus ``x``. ``x`` may be ``-inf`` (a masked score). Never
    return NaN, and never overflow: take exponentials relative to ``m_new``.
    ``math.exp(-math.inf)`` is 0.0.
    """
    m_new = max(m, x)
    shift = m_new if m_new > -math.inf else 0.0     # all -inf so far: shift by 0, not by -inf
    # both exponents are <= 0: no overflow; exp(-inf) = 0 handles the start and masked x
    return m_new, d * math.exp(m - shift) + math.exp(x - shift)


# %%
row = [0.5, 2.0, 1.0, 7.0, 3.0, 7.5, -math.inf, 1.0]
try:
    m, d = -math.inf, 0.0
    steps = []
    for xj in row:
        m, d = online_update(m, d, xj)
        steps.append((xj, m, d))
    print(f"{'x':>6} {'m':>6} {'d':>8}")
    for xj, mj, dj in steps:
        print(f"{xj:>6} {mj:>6} {dj:>8.4f}")
    m_direct = max(row)
    print(f"direct: max {m_direct}, sum exp(x - max) = {sum(math.exp(v - m_direct) for v in row):.4f}")
except NotImplementedError as exc:
    print(f"[Exercise 3.1 not attempted] {exc}")
    print("  Hint: after the last element, (m, d) must be the row's max and sum(exp(x - max)).")

# %% [markdown]
# v2 does exactly this, except that it takes a whole tile of the row at a
# time: the tile's max first, then one rescale of `d` per tile. One pass finds
# both statistics; a second writes the output. Its bytes:

# %%
with Profile(A100) as v2_prof:
    softmax(meta((ROWS, COLS)), version=2)
r2 = v2_prof.records[0]
print(f"v2: reads {fmt_bytes(r2.hbm_read_bytes)} ({r2.hbm_read_bytes / r1.hbm_read_bytes:.0%} of v1's), "
      f"{fmt_time(r2.time_s)} (v1: {fmt_time(r1.time_s)})")

# %% [markdown]
# ## 3. Merging partial states
#
# A state `(m, d)` summarizes a set of elements. Two states of disjoint sets
# merge into the state of their union by re-expressing both sums relative to
# the common max (Rabe & Staats 2021):
#
#     m = max(m1, m2)
#     d = d1 * exp(m1 - m) + d2 * exp(m2 - m)
#
# The online update is the merge with the one-element state `(x, 1)`; the
# empty state `(-inf, 0)` changes nothing. The merge is associative and
# commutative, so a row can be cut into tiles, each tile summarized by a
# different thread, and the states combined in any order. FlashAttention does
# this with every tile of keys, and rescales its running output by the same
# factor.

# %%
def merge(m1: float, d1: float, m2: float, d2: float) -> tuple[float, float]:
    """Exercise 3.2: merge two partial softmax states into the state of the union.

    ``(m1, d1)`` and ``(m2, d2)`` summarize disjoint sets of elements (``m`` the
    max, ``d`` the sum of ``exp(x - m)``); either may be the empty state
    ``(-inf, 0)``. Return ``(m, d)`` for both sets together: never NaN, never
    an overflow.
    """
    m = max(m1, m2)
    shift = m if m > -math.inf else 0.0             # two empty states: shift by 0
    return m, d1 * math.exp(m1 - shift) + d2 * math.exp(m2 - shift)


# %%
rng = np.random.default_rng(0)
xs = rng.normal(0, 3, (6, 37 if SMOKE else 301)).astype(np.float32)     # (R, C) logits
xs[1, ::3] = -np.inf                                                   # masked scores
xs[2] = -np.inf                                                        # a fully masked row
try:
    ys = np.empty_like(xs)                                             # (R, C)
    for i, xrow in enumerate(xs):
        state = (-math.inf, 0.0)
        for tile in np.array_split(xrow.astype(np.float64), 5):        # 5 tiles of the row
            tm = float(tile.max())
            td = float(np.exp(tile - tm).sum()) if tm > -math.inf else 0.0
            state = merge(*state, tm, td)                              # one tile's state at a time
        m, d = state
        ys[i] = np.exp(xrow - (m if m > -math.inf else 0.0)) / d if d > 0 else 0.0
    with Profile(TOY):
        y_kernel = softmax(xs, version=2)                              # (R, C), the v2 kernel
    print(f"your tile-by-tile softmax vs the float64 reference: max error "
          f"{np.abs(ys - reference.softmax(xs)).max():.1e}; vs softmax v2: {np.abs(ys - y_kernel).max():.1e}")
    print(f"the fully masked row sums to {ys[2].sum()} (zeros, not NaN)")
except NotImplementedError as exc:
    print(f"[Exercise 3.2 not attempted] {exc}")

# %% [markdown]
# ## 4. Bytes: one pass at a time
#
# Each pass over HBM reads every element of `x` once; every version writes
# `y` once. v1 makes three passes, v2 two, v3 one.

# %%
def hbm_read_bytes(version: int, rows: int, cols: int, dtype: str) -> int:
    """Exercise 3.3: the HBM bytes softmax ``version`` (1, 2 or 3) *reads* for an
    input ``x`` of shape (rows, cols) in the logical dtype ``dtype``.

    Reads only, not the write of ``y``. ``nbytes(count, dtype)`` gives the
    bytes of ``count`` elements.
    """
    passes = {1: 3, 2: 2, 3: 1}[version]            # max, sum, output / max+sum, output / all at once
    return passes * nbytes(rows * cols, dtype)


# %%
with Profile(A100) as all_prof:
    for v in (1, 2, 3):
        softmax(meta((ROWS, COLS)), version=v)
print(f"{ROWS} x {COLS} fp16 on {A100.name}")
print(f"{'kernel':<22} {'reads':>10} {'writes':>10} {'blocks/SM':>10} {'waves':>10} {'time':>9}  {'your formula':>12}")
for v, r in zip((1, 2, 3), all_prof.records):
    try:
        yours = "ok" if hbm_read_bytes(v, ROWS, COLS, "fp16") == r.hbm_read_bytes else "WRONG"
    except NotImplementedError:
        yours = "(Ex. 3.3)"
    paid = r.n_blocks / (r.blocks_per_sm * A100.sm_count)          # waves of work, before rounding up
    print(f"{r.name:<22} {fmt_bytes(r.hbm_read_bytes):>10} {fmt_bytes(r.hbm_write_bytes):>10} "
          f"{r.blocks_per_sm:>10} {f'{paid:.2f} -> {r.waves}':>10} {fmt_time(r.time_s):>9}  {yours:>12}")

# %% [markdown]
# All three are memory-bound (about one FLOP per byte), so time follows
# bytes, in whole waves (lab 2, section 4): one block per row, and a last,
# partial wave costs a full one. At 4096 x 4096, v2 moves a quarter fewer
# bytes than v1 and takes about a quarter less time. v3 moves half of v1's
# bytes but is 2.6x faster: its blocks hold whole rows in SRAM, so only 23 fit
# an SM (v1's: 32), and its 1.65 waves waste less of the second wave than v1's
# 1.19 (both are paid as 2).
#
# ## 5. The SRAM limit of fusion
#
# v3 keeps whole rows in SRAM: per row, the row itself in the logical dtype
# plus an fp32 max and an fp32 sum (8 bytes). A row longer than that raises
# `SramOverflowError`, which suggests v2: its tiles fit any row.

# %%
try:
    with Profile(TOY):
        softmax(meta((4, 4096)), version=3)
except SramOverflowError as exc:
    print(f"SramOverflowError: {exc}")
with Profile(TOY) as p:
    softmax(meta((4, 4096)), version=2)
print(f"v2 on the same rows: fine, {p.records[0].sram_per_block_bytes:,} bytes of SRAM per block")

# %%
def longest_fused_row(device, dtype: str) -> int:
    """Exercise 3.4: the longest row (in elements) softmax v3 can keep in one SM's
    SRAM (``device.sram_per_sm`` bytes) with one row per block, for rows in the
    logical dtype ``dtype``. The block also keeps the row's max and sum in fp32.
    Work it out: don't call ``tinyml.kernels.softmax.longest_row``.
    """
    budget = device.sram_per_sm - 2 * nbytes(1, "fp32")   # the row's fp32 max and sum
    return budget // nbytes(1, dtype)                      # whole elements of the row


# %%
try:
    for dev in (TOY, A100):
        n = longest_fused_row(dev, "fp16")
        print(f"{dev.name}: rows up to {n:,} fp16 elements fuse ({fmt_bytes(nbytes(n, 'fp16'), binary=True)} "
              f"of {fmt_bytes(dev.sram_per_sm, binary=True)} of SRAM per SM)")
except NotImplementedError as exc:
    print(f"[Exercise 3.4 not attempted] {exc}")

# %% [markdown]
# A 128K-token attention row is 256 KB in fp16: too long to fuse on any
# preset. That is why FlashAttention never holds a whole row: it streams
# tiles, merges their `(m, d)` states as in section 3, and carries the output
# along, so a single pass suffices at any length.
#
# ## Check your answers
#
# The same check as `tinyml lab check 3`: it loads only your functions (not
# these cells; save the file first) and compares them with what tinyml computes.

# %%
from tinyml.labs import check_lab  # noqa: E402

print(check_lab(3, path=globals().get("__file__")).render())
