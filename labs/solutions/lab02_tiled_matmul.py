"""Lab 2: Tiled matmul

Why every fast matmul kernel is tiled: the HBM bytes of the naive kernel and of
the SRAM-tiled one, by formula and by the kernels' own counters; choosing tile
sizes that fit a tiny SRAM (the fp32 accumulator counts too); thread blocks,
waves and tail effects; and the L2 cache sharing tiles between blocks.

The reference solution: the lab with every exercise answered. CI checks it with
`tinyml lab check 2 --file labs/solutions/lab02_tiled_matmul.py`.

Run it:       python labs/solutions/lab02_tiled_matmul.py    (or open it as a notebook in VS Code)
Check it:     tinyml lab check 2 --file labs/solutions/lab02_tiled_matmul.py
Walkthrough:  docs/tiling-matmul.md
"""

# %% [markdown]
# # Lab 2: Tiled matmul
#
# Lab 1 showed that a matmul *can* do hundreds of FLOPs per HBM byte, if it
# moves each matrix across HBM about once. This lab looks at how a kernel gets
# there: by keeping tiles of A and B in SRAM and reusing every element it
# loads many times.
#
# tinyml's matmul comes in numbered versions (`tinyml/kernels/matmul/`):
#
# * **v1, naive**: one thread per output element, streaming its row of A and
#   column of B from HBM; no reuse.
# * **v2, tiled**: a thread block owns a `block_m x block_n` tile of C, walks K
#   in steps of `block_k`, and keeps one tile of A, one of B and the fp32
#   accumulator in SRAM.
# * **v3, tiled + MMA**: the same tiles, with each tile product on the
#   tensor cores.
#
# Exercises are the functions marked *Exercise 2.x*: replace each
# `raise NotImplementedError(...)`, re-run, and check with `tinyml lab check 2`.

# %%
import os

import numpy as np

from tinyml.kernels import reference
from tinyml.kernels.matmul import MatmulTiles, choose_tiles, matmul
from tinyml.sim import Profile, SramOverflowError, load_device, meta, nbytes
from tinyml.sim.units import fmt_bytes, fmt_time

SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"   # CI runs every lab this way: small shapes

A100 = load_device("a100-40gb")
TOY = load_device("toy")          # 4 SMs, 2 KB of SRAM each: tiles you can count by hand
SIZE = 1024 if SMOKE else 4096    # the A100 problem, M = N = K (counted, not computed: any size is quick)

# %% [markdown]
# ## 1. The naive kernel: no reuse
#
# v1's tile loop (from its docstring):
#
#     for each block (bi, bj) in parallel:          # grid ceil(M/BM) x ceil(N/BN)
#         for i in rows of the block, j in columns of the block:
#             acc = 0
#             for k in 0..K-1:
#                 acc += A[i, k] * B[k, j]          # both read from HBM
#             C[i, j] = acc                         # written to HBM
#
# Every output element reads K elements of A and K elements of B from HBM.
# Nothing is shared, so the same elements of A are fetched N times over.

# %%
def naive_hbm_read_bytes(m: int, n: int, k: int, dtype: str) -> int:
    """Exercise 2.1: the HBM bytes the naive kernel (v1) *reads* for C = A @ B,
    with A (m, k), B (k, n) and C (m, n) in the logical dtype ``dtype``.

    Each of the m * n output elements streams a row of A (k elements) and a
    column of B (k elements) from HBM. Count reads only (not the write of C).
    ``nbytes(count, dtype)`` gives the bytes of ``count`` elements.
    """
    return nbytes(2 * m * n * k, dtype)       # m*n outputs, each reading k elements of A and k of B


# %%
with Profile(A100, name="naive") as naive:
    matmul(meta((SIZE, SIZE)), meta((SIZE, SIZE)), version=1)
r1 = naive.records[0]
print(f"v1 on {SIZE}^3 fp16: reads {fmt_bytes(r1.hbm_read_bytes)} ({r1.hbm_read_bytes:,} bytes), "
      f"writes {fmt_bytes(r1.hbm_write_bytes)}, takes {fmt_time(r1.time_s)}, {r1.bound}-bound")
print(f"(A, B and C are only {fmt_bytes(3 * nbytes(SIZE * SIZE, 'fp16'))} together)")
try:
    mine = naive_hbm_read_bytes(SIZE, SIZE, SIZE, "fp16")
    verdict = "matches" if mine == r1.hbm_read_bytes else "DOES NOT match"
    print(f"your formula: {mine:,} bytes -> {verdict} the counters")
except NotImplementedError as exc:
    print(f"[Exercise 2.1 not attempted] {exc}")
    print("  Hint: check your formula against the counters printed just above.")

# %% [markdown]
# ## 2. Tiles in SRAM: reuse
#
# v2 gives each thread block a `block_m x block_n` tile of C:
#
#     for each block (bi, bj) in parallel:          # grid ceil(M/BM) x ceil(N/BN)
#         acc = zeros(BM, BN)                       # on chip, fp32
#         for k0 in range(0, K, BK):
#             As = load A[bi*BM : +BM, k0 : +BK]    # HBM -> SRAM
#             Bs = load B[k0 : +BK, bj*BN : +BN]    # HBM -> SRAM
#             acc += As @ Bs                        # every loaded element used BN (or BM) times
#         store acc -> C[bi*BM : +BM, bj*BN : +BN]  # SRAM -> HBM
#
# Over its K loop a block loads a whole *row panel* of A (`block_m x K`) and a
# whole *column panel* of B (`K x block_n`). A tile row of A is loaded once
# per tile column of C, and vice versa. Edge blocks load only the valid part
# of their tiles.

# %%
def tiled_hbm_read_bytes(m: int, n: int, k: int, dtype: str, block_m: int, block_n: int) -> int:
    """Exercise 2.2: the bytes the tiled kernel (v2) loads from HBM for C = A @ B
    with ``block_m x block_n`` tiles of C, before any cache helps.

    A is (m, k), B is (k, n), C is (m, n), all in ``dtype``. The grid is
    ceil(m / block_m) x ceil(n / block_n) blocks; each loads its row panel of A
    and its column panel of B (edge tiles load only their valid rows/columns).
    ``block_k`` does not change the answer. Count loads only, not the store of C.
    """
    tile_rows = -(-m // block_m)              # ceil(m / block_m): blocks down C
    tile_cols = -(-n // block_n)              # ceil(n / block_n): blocks across C
    # all of A is loaded once per tile column of C, all of B once per tile row
    return nbytes(m * k * tile_cols + k * n * tile_rows, dtype)


# %% [markdown]
# The counters of a v2 launch split its loads in two: `hbm_read_bytes` (what
# HBM really served) and `l2_hit_bytes` (loads the L2 cache served, section 5).
# Their sum is what the blocks *loaded*. Bigger tiles, fewer bytes:

# %%
print(f"{'tiles (BM, BN, BK)':<20} {'SRAM/block':>10} {'loaded':>10} {'x less than naive':>18} {'your formula':>14}")
with Profile(A100, name="tile sweep") as tile_sweep:
    for b in (16, 32, 64, 128):
        matmul(meta((SIZE, SIZE)), meta((SIZE, SIZE)), version=2, block_m=b, block_n=b, block_k=32)
for b, r in zip((16, 32, 64, 128), tile_sweep.records):
    loaded = r.hbm_read_bytes + r.l2_hit_bytes
    try:
        formula = f"{'ok' if tiled_hbm_read_bytes(SIZE, SIZE, SIZE, 'fp16', b, b) == loaded else 'WRONG'}"
    except NotImplementedError:
        formula = "(Ex. 2.2)"
    print(f"{str((b, b, 32)):<20} {fmt_bytes(r.sram_per_block_bytes):>10} {fmt_bytes(loaded):>10} "
          f"{r1.hbm_read_bytes / loaded:>18,.0f} {formula:>14}")
try:
    tiled_hbm_read_bytes(100, 70, 50, "fp32", 32, 16)
except NotImplementedError as exc:
    print(f"[Exercise 2.2 not attempted] {exc}")
    print("  Hint: with 16 x 16 tiles every element of A is loaded ceil(N / 16) times.")

# %% [markdown]
# Tiling changes *where* the bytes come from, not the answer. Executing mode
# (real NumPy arrays instead of `meta` shapes) runs the same tile loops with
# the arithmetic; all three versions agree with a float64 reference, on an
# awkward shape whose edges are partial tiles:

# %%
rng = np.random.default_rng(0)
m, n, k = (37, 29, 23) if SMOKE else (300, 200, 250)
a = rng.standard_normal((m, k)).astype(np.float32)
b = rng.standard_normal((k, n)).astype(np.float32)
expected = reference.matmul(a, b)
with Profile(TOY, name="execute"):
    for version in (1, 2, 3):
        c = matmul(a, b, version=version, block_m=16, block_n=16, **({} if version == 1 else {"block_k": 16}))
        print(f"v{version}: C {c.shape}, max |error| vs float64 = {np.abs(c - expected).max():.2e}")

# %% [markdown]
# ## 3. SRAM capacity decides the tile size
#
# Bigger tiles mean fewer bytes, until they do not fit. A block keeps three
# tiles on chip: A (`block_m x block_k`) and B (`block_k x block_n`) in the
# logical dtype, and the accumulator C (`block_m x block_n`) in **fp32**, which
# is easy to forget. `MatmulTiles(...).sram_bytes(dtype)` adds them up. The toy
# device has 2 KB of SRAM per SM:

# %%
print(f"toy SRAM per SM: {TOY.sram_per_sm:,} bytes")
for bm, bn, bk in ((8, 8, 8), (16, 16, 8), (16, 16, 16), (16, 16, 32), (32, 32, 8), (32, 8, 8)):
    t = MatmulTiles(bm, bn, bk)
    parts = ", ".join(f"{name} {fmt_bytes(nbytes(int(np.prod(shape)), dt))}"
                      for name, (shape, dt) in t.sram_tiles("fp16").items())
    need = t.sram_bytes("fp16")
    print(f"  {str((bm, bn, bk)):<14} {need:>6,} B  {'fits' if need <= TOY.sram_per_sm else 'too big':<8} ({parts})")

# %% [markdown]
# A kernel asked for tiles that do not fit refuses, and says what would:

# %%
try:
    with Profile(TOY):
        matmul(meta((256, 256)), meta((256, 256)), version=2, block_m=32, block_n=32, block_k=16)
except SramOverflowError as exc:
    print(f"SramOverflowError: {exc}")

# %%
def toy_tiles() -> tuple[int, int, int]:
    """Exercise 2.3: tile sizes ``(block_m, block_n, block_k)`` for a 256 x 256 x 256
    fp16 matmul (v2) on the ``toy`` device.

    Rules: each size is a power of two (1, 2, 4, ..., 256); the block's tiles
    (A and B in fp16, the C accumulator in fp32) must fit in one toy SM's
    SRAM (``TOY.sram_per_sm`` bytes). Among the tiles that fit, choose those
    that load the fewest bytes from HBM (Exercise 2.2's count); if several
    tie, the one with the deepest ``block_k`` (fewer, larger tile products).
    Work it out: don't call ``choose_tiles``.
    """
    # By hand: loads ~ 1/block_m + 1/block_n, so make the C tile as big and square as fits.
    # The fp32 accumulator takes 4*BM*BN bytes: 32x32 (4 KB) is too big, 16x16 takes 1 KB,
    # leaving 1 KB for A and B: 2*16*BK + 2*BK*16 = 64*BK <= 1024, so BK = 16.
    # The same answer by search, with Exercise 2.2's count:
    sizes = [2 ** i for i in range(9)]
    fits = [(bm, bn, bk) for bm in sizes for bn in sizes for bk in sizes
            if MatmulTiles(bm, bn, bk).sram_bytes("fp16") <= TOY.sram_per_sm]
    return min(fits, key=lambda t: (tiled_hbm_read_bytes(256, 256, 256, "fp16", t[0], t[1]), -t[2]))


# %%
try:
    bm, bn, bk = toy_tiles()
    t = MatmulTiles(bm, bn, bk)
    print(f"your tiles {(bm, bn, bk)}: {t.sram_bytes('fp16'):,} of {TOY.sram_per_sm:,} bytes of SRAM")
    with Profile(TOY) as prof:
        matmul(meta((256, 256)), meta((256, 256)), version=2, block_m=bm, block_n=bn, block_k=bk)
    r = prof.records[0]
    print(f"  they load {r.hbm_read_bytes + r.l2_hit_bytes:,} bytes and take {fmt_time(r.time_s)} ({r.bound}-bound)")
    print(f"  tinyml's own choice: {choose_tiles(TOY, 256, 256, 256, 'fp16')}")
except NotImplementedError as exc:
    print(f"[Exercise 2.3 not attempted] {exc}")
    print("  Hint: the loads depend only on block_m and block_n;")
    print("  the fp32 accumulator takes 4 * block_m * block_n bytes.")
except SramOverflowError as exc:
    print(f"Exercise 2.3: those tiles do not fit: {exc}")

# %% [markdown]
# ## 4. Blocks, waves and tails
#
# A launch is a grid of thread blocks. Each SM holds as many blocks at once
# as its SRAM allows (`sram_per_sm // sram_per_block`), up to a hardware limit
# (`max_blocks_per_sm`). That many times the SM count is the number of
# *slots*; blocks run in **waves** of that many. A last, partial wave costs as
# much as a full one (its busiest SM sets the pace): the **tail effect**. And
# a grid with fewer blocks than SMs leaves SMs (and their share of HBM
# bandwidth) idle: **low occupancy**.
#
# On the toy device, 16 x 16 x 16 fp16 tiles take all 2 KB, so one block per
# SM: 4 slots. Watch the time as the grid grows one tile at a time:

# %%
print(f"{'M=N=K':>6} {'grid':>6} {'blocks':>7} {'waves':>6} {'slots used':>11} {'time':>9} {'time/block':>11}")
with Profile(TOY, name="waves") as wave_prof:
    for tiles_per_side in range(1, 9):
        s = 16 * tiles_per_side
        matmul(meta((s, s)), meta((s, s)), version=3, block_m=16, block_n=16, block_k=16)
for r in wave_prof.records:
    slots = TOY.sm_count * r.blocks_per_sm
    s = r.grid[0] * 16
    print(f"{s:>6} {'x'.join(map(str, r.grid)):>6} {r.n_blocks:>7} {r.waves:>6} "
          f"{r.n_blocks / (r.waves * slots):>11.0%} {fmt_time(r.time_s):>9} {fmt_time(r.time_s / r.n_blocks):>11}")

# %% [markdown]
# The 1-block launch uses one SM of four; 25 blocks need 7 waves, the last
# one with a single block. The same happens on a real GPU, only with bigger
# numbers: an A100 with 128 x 256 tiles holds one block per SM, 108 slots.
# A grid of 108 blocks is one wave; add one tile row and it needs two. (Here
# the tail wave costs even more than the first: its few blocks share little
# through the L2 cache, section 5, so they wait on HBM.)

# %%
with Profile(A100, name="a100 tail") as tail:
    for rows in (12, 13):   # tile rows; 9 tile columns of 256
        matmul(meta((128 * rows, 1024)), meta((1024, 256 * 9)), version=3, block_m=128, block_n=256, block_k=64)
for r in tail.records:
    print(f"grid {r.grid[0]:>2} x {r.grid[1]} = {r.n_blocks:>3} blocks, {r.waves} wave(s), {fmt_time(r.time_s)}")
print(f"{tail.records[1].n_blocks / tail.records[0].n_blocks - 1:.0%} more work, "
      f"{tail.records[1].time_s / tail.records[0].time_s - 1:.0%} more time")

# %%
def waves(device, n_blocks: int, sram_per_block: int) -> int:
    """Exercise 2.4: how many waves ``device`` needs for a grid of ``n_blocks``
    thread blocks that each use ``sram_per_block`` bytes of SRAM.

    Resident blocks per SM: as many as fit in ``device.sram_per_sm``, capped at
    ``device.max_blocks_per_sm``, and at least 1. ``sram_per_block == 0``
    means the blocks use no SRAM, so only the cap limits them. There are
    ``device.sm_count`` SMs. A partial last wave counts as a wave.
    """
    per_sm = device.max_blocks_per_sm                        # the hardware limit
    if sram_per_block > 0:
        per_sm = max(1, min(per_sm, device.sram_per_sm // sram_per_block))   # the SRAM limit
    slots = device.sm_count * per_sm
    return -(-n_blocks // slots)                             # ceil: a partial wave is a wave


# %%
try:
    for r in wave_prof.records:
        mine = waves(TOY, r.n_blocks, r.sram_per_block_bytes)
        print(f"{r.n_blocks:>3} blocks of {r.sram_per_block_bytes:,} B on toy: you say {mine} waves, "
              f"the simulator ran {r.waves}")
except NotImplementedError as exc:
    print(f"[Exercise 2.4 not attempted] {exc}")
    print("  Hint: compare with the `waves` column of the table above.")

# %% [markdown]
# ## 5. The L2 cache shares panels between blocks
#
# Blocks in one tile row of C all load the same row panel of A. When they run
# in the same wave, the first fetches it from HBM and the others find it in the
# L2 cache. tinyml's cost model does exactly that (`l2_hit_bytes`). Blocks are
# numbered row by row, so the blocks of one wave share their A panel; how
# much that saves depends on the tile *shape*. Compare 16 x 16 tiles (the
# fewest loads) with tall 32 x 8 tiles and wide 8 x 32 ones on the toy device:

# %%
shape = 256                       # counting mode: quick even in smoke mode
with Profile(TOY, name="l2") as l2:
    for bm, bn, bk in ((16, 16, 16), (32, 8, 8), (8, 32, 8)):
        matmul(meta((shape, shape)), meta((shape, shape)), version=3, block_m=bm, block_n=bn, block_k=bk)
print(f"{shape}^3 fp16 on toy")
print(f"{'tiles':<14} {'loaded':>9} {'L2 hits':>9} {'from HBM':>9} {'time':>9}  bound")
for (bm, bn, bk), r in zip(((16, 16, 16), (32, 8, 8), (8, 32, 8)), l2.records):
    print(f"{str((bm, bn, bk)):<14} {fmt_bytes(r.hbm_read_bytes + r.l2_hit_bytes):>9} {fmt_bytes(r.l2_hit_bytes):>9} "
          f"{fmt_bytes(r.hbm_read_bytes):>9} {fmt_time(r.time_s):>9}  {r.bound}")

# %% [markdown]
# Tall tiles load more in total, but a wave's blocks share one big A panel,
# so HBM serves a fifth less. The time does not drop with it: the limit moves
# from HBM to SRAM bandwidth (the `bound` column), which here lands on the
# same time. Wide tiles share only a small panel and are the slowest. The
# cache and the order in which blocks run are part of the tile choice. (Real kernels go further and
# reorder blocks, "swizzling", so a wave covers a square patch of C.)
#
# On the A100 problem, the tiles tinyml chooses and how much L2 saves:

# %%
with Profile(A100, name="a100") as big:
    matmul(meta((SIZE, SIZE)), meta((SIZE, SIZE)), version=3)
r = big.records[0]
loaded = r.hbm_read_bytes + r.l2_hit_bytes
print(f"{SIZE}^3 fp16 with {choose_tiles(A100, SIZE, SIZE, SIZE, 'fp16')}: grid {r.grid}, {r.waves} wave(s)")
print(f"loaded {fmt_bytes(loaded)}, {r.l2_hit_bytes / loaded:.0%} of it from L2")
print(f"HBM reads {fmt_bytes(r.hbm_read_bytes)}: {r1.hbm_read_bytes / r.hbm_read_bytes:,.0f}x less than naive")
print(f"time {fmt_time(r.time_s)}, {r.bound}-bound (naive: {fmt_time(r1.time_s)}, {r1.bound}-bound)")

# %% [markdown]
# ## Check your answers
#
# The same check as `tinyml lab check 2`: it loads only your functions (not
# these cells; save the file first) and compares them with what tinyml computes.

# %%
from tinyml.labs import check_lab  # noqa: E402

print(check_lab(2, path=globals().get("__file__")).render())
