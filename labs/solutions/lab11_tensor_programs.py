"""Lab 11: Tensor programs

Schedule a matmul by hand, the way TVM and the MLC course do: start from the
loops that define it, apply schedule primitives (split, reorder, bind,
cache_read / cache_write, compute_at, decompose_reduction, tensorize) one at a
time, and watch the simulated bytes and time fall until the generated kernel
runs as fast as the hand-written matmul v3. Then choose tiles for another device, and
schedule a convolution as an implicit GEMM.

The reference solution: the lab with every exercise answered. CI checks it with
`tinyml lab check 11 --file labs/solutions/lab11_tensor_programs.py`.

Run it:       python labs/solutions/lab11_tensor_programs.py    (or open it as a notebook in VS Code)
Check it:     tinyml lab check 11 --file labs/solutions/lab11_tensor_programs.py
Walkthrough:  docs/tensor-programs.md
"""

# %% [markdown]
# # Lab 11: Tensor programs
#
# A tensor program is a loop nest; a **schedule** changes how the loops run,
# never what they compute. Every schedule here is turned into a Numba kernel
# by `tinyml.compiler.tensor` and costed on the simulator in counting mode, so
# the bytes and the time you see are what the generated loops really move.
#
# Exercises are the functions marked *Exercise 11.x*: replace each
# `raise NotImplementedError(...)`, re-run, and check with `tinyml lab check 11`.
# The checker tells you what is still slow in your schedule.

# %%
import os

import numpy as np

from tinyml.compiler.tensor import Schedule, build, loop_tree, matmul, numpy_source, simulate
from tinyml.compiler.tensor.examples import tiled_matmul
from tinyml.kernels.matmul import choose_tiles, matmul_v3
from tinyml.labs.lab11 import diagnose
from tinyml.sim import Profile, TinymlError, load_device, meta
from tinyml.sim.units import fmt_bytes, fmt_time

SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"   # CI runs every lab this way: small shapes

DEVICE = "a100-40gb"
SIZE = 1024 if SMOKE else 4096          # M = N = K of the A100 problem (counted, not computed)
TILES = tuple(getattr(choose_tiles(load_device(DEVICE), SIZE, SIZE, SIZE, "fp16"), f)
              for f in ("block_m", "block_n", "block_k"))   # matmul v3's tiles for it


def cost_line(what: str, r) -> str:
    return (f"{what:<28} grid {'x'.join(map(str, r.grid)):>7}  HBM {fmt_bytes(r.hbm_bytes):>9}  "
            f"time {fmt_time(r.time_s):>9}  {r.bound}-bound")


# %% [markdown]
# ## 1. The loops that define a matmul
#
# `matmul(M, N, K)` is a primitive tensor function: buffers A, B, C in HBM
# (`global`), one block with spatial axes `i, j` and a reduction axis `k`, and
# one loop per axis. As low-level NumPy:

# %%
print(numpy_source(Schedule(matmul(8, 8, 8)).nest))
naive = simulate(Schedule(matmul(SIZE, SIZE, SIZE)), DEVICE)
with Profile(DEVICE) as prof:
    matmul_v3(meta((SIZE, SIZE)), meta((SIZE, SIZE)), block_m=TILES[0], block_n=TILES[1], block_k=TILES[2])
v3 = prof.records[0]
print(cost_line(f"naive nest, {SIZE}^3", naive))
print(cost_line(f"matmul v3, tiles {TILES}", v3))

# %% [markdown]
# ## 2. Schedule it by hand
#
# The checker reads your nest and tells you what is still slow. Here it is on
# a schedule that only tiles and binds the grid:

# %%
sch = Schedule(matmul(SIZE, SIZE, SIZE))
i0, i1 = sch.split("i", [None, TILES[0]])
j0, j1 = sch.split("j", [None, TILES[1]])
sch.reorder(i0, j0, i1, j1, "k")
sch.bind(i0, "blockIdx.y")
sch.bind(j0, "blockIdx.x")
print(loop_tree(sch.nest))
print(cost_line("tiled and bound", simulate(sch, DEVICE)))
for line in diagnose(sch, DEVICE):
    print(" -", line)

# %% [markdown]
# Your turn: the whole schedule. The walkthrough applies the primitives in
# this order: `split` i, j, k by the tiles; `reorder` the tile loops outside;
# `bind` the two outer ones to the grid; `cache_write("local")` and
# `reverse_compute_at` it under the block loop; `decompose_reduction` at the
# K-tile loop; `cache_read` A and B into `"shared"` and `compute_at` them at
# the K-tile loop; `tensorize` the tile product.

# %%
def schedule_matmul(m: int, n: int, k: int, bm: int, bn: int, bk: int) -> Schedule:
    """Exercise 11.1: a schedule of ``matmul(m, n, k)`` (fp16) with BM x BN output tiles
    per thread block and K steps of BK, that runs within 10% of matmul v3's simulated
    time with the same tiles on a100-40gb.

    Start from ``sch = Schedule(matmul(m, n, k))``, apply the primitives, return ``sch``.
    The loop names the primitives return (``i_0, i_1 = sch.split("i", [None, bm])``)
    are what the next primitives take.
    """
    sch = Schedule(matmul(m, n, k))
    i0, i1 = sch.split("i", [None, bm])           # i = i_0 * bm + i_1
    j0, j1 = sch.split("j", [None, bn])
    k0, k1 = sch.split("k", [None, bk])
    sch.reorder(i0, j0, k0, i1, j1, k1)           # tile loops outside, element loops inside
    sch.bind(i0, "blockIdx.y")                    # the grid: one block per output tile
    sch.bind(j0, "blockIdx.x")
    c_local = sch.cache_write("local")            # accumulate the C tile in registers ...
    sch.reverse_compute_at(c_local, j0)           # ... stored once, when the block is done
    sch.decompose_reduction(k0)                   # the init before the K loop (the MMA needs it)
    for buf in ("A", "B"):                        # one tile of A and of B in SRAM per K step
        sch.compute_at(sch.cache_read(buf, "shared"), k0)
    sch.tensorize(i1)                             # the tile product: one MMA on the tensor cores
    return sch


# %%
try:
    mine = schedule_matmul(SIZE, SIZE, SIZE, *TILES)
    print(loop_tree(mine.nest))
    r = simulate(mine, DEVICE)
    print(cost_line("your schedule", r))
    print(f"{r.time_s / v3.time_s:.2f}x matmul v3's time (target: at most 1.10x)")
    for line in diagnose(mine, DEVICE):
        print(" - still slow:", line)
    a = np.random.default_rng(0).standard_normal((48, 40)).astype(np.float32)   # (M, K)
    b = np.random.default_rng(1).standard_normal((40, 56)).astype(np.float32)   # (K, N)
    small = schedule_matmul(48, 56, 40, 16, 16, 8)
    with Profile(DEVICE):
        c = build(small, parallel=False)(a, b)                                  # (M, N)
    print(f"executed on 48x56x40: max |error| vs float64 = {np.abs(c - small.func.reference(a, b)).max():.2e}")
except NotImplementedError as exc:
    print(f"[Exercise 11.1 not attempted] {exc}")
    print("  Hint: the walkthrough's section 'One primitive at a time' does it step by step.")
except TinymlError as exc:
    print(f"Exercise 11.1: a primitive was refused: {exc}")

# %% [markdown]
# ## 3. Another device, other tiles
#
# The `toy` device has 4 SMs with 2 KB of SRAM each. `choose_tiles` picks the
# tiles with the highest arithmetic intensity that fit, but the fastest tiles
# are not always those: how many blocks fit on an SM at once, and how many
# blocks the grid has, matter too. This lab's schedule keeps the fp32
# accumulator in registers, so SRAM holds only the A and B tiles.

# %%
TOY_SIZE = 256
toy_v3_tiles = choose_tiles(load_device("toy"), TOY_SIZE, TOY_SIZE, TOY_SIZE, "fp16")
with Profile("toy") as prof:
    matmul_v3(meta((TOY_SIZE, TOY_SIZE)), meta((TOY_SIZE, TOY_SIZE)), block_m=toy_v3_tiles.block_m,
              block_n=toy_v3_tiles.block_n, block_k=toy_v3_tiles.block_k)
toy_v3 = prof.records[0]
print(cost_line(f"matmul v3 {toy_v3_tiles.block_m, toy_v3_tiles.block_n, toy_v3_tiles.block_k} on toy", toy_v3))
for t in ((8, 8, 8), (toy_v3_tiles.block_m, toy_v3_tiles.block_n, toy_v3_tiles.block_k)):
    r = simulate(tiled_matmul(matmul(TOY_SIZE, TOY_SIZE, TOY_SIZE), *t), "toy")
    print(cost_line(f"hand schedule {t}", r) + f", {r.blocks_per_sm} block(s)/SM")


# %%
def toy_tiles() -> tuple[int, int, int]:
    """Exercise 11.2: tiles ``(block_m, block_n, block_k)`` for which the hand schedule
    ``tiled_matmul(matmul(256, 256, 256), block_m, block_n, block_k)`` takes at most 70% of
    matmul v3's simulated time (with ``choose_tiles``' tiles) on the ``toy`` device.

    Try a few with ``simulate(tiled_matmul(...), "toy")`` and look at ``blocks_per_sm``,
    ``n_blocks``, ``hbm_bytes`` and ``bound`` of the record.
    """
    # v3 keeps its fp32 accumulator in SRAM, which limits it to 16 x 16 tiles on toy. Here the
    # accumulator is in registers and SRAM holds only A and B: 2 * (32*8 + 8*16) = 768 B, so a
    # 32 x 16 output tile fits, and A is re-read ceil(N/16) times, B only ceil(M/32) times.
    return 32, 16, 8


# %%
try:
    t = toy_tiles()
    r = simulate(tiled_matmul(matmul(TOY_SIZE, TOY_SIZE, TOY_SIZE), *t), "toy")
    print(cost_line(f"your tiles {tuple(t)}", r) + f": {r.time_s / toy_v3.time_s:.2f}x v3 (target: at most 0.70x)")
except NotImplementedError as exc:
    print(f"[Exercise 11.2 not attempted] {exc}")
except TinymlError as exc:
    print(f"Exercise 11.2: those tiles were refused: {exc}")

# %% [markdown]
# ## 4. A convolution, scheduled
#
# A conv2d is seven loops (`n, f, y, x` spatial; `c, r, s` reductions) whose
# input index `y * stride + r - pad` is affine. The graph compiler gives it a
# *library call* whose cost is an ideal: X and W read once, Y written once,
# the FLOPs on the tensor cores. Your schedule's cost is what its loops move.
# The primitives are the matmul's, with one new idea: the tile product
# `f_1 x (y_1, x) x (c_1, r, s)` is a matrix product once the input tile is
# unfolded (an **implicit GEMM**), so `tensorize` hands it to the tensor cores
# when the stages and the loops under it are one such tile (the whole 3x3
# kernel window inside, X and W tiles in `"shared"`, the output tile in a
# `cache_write` buffer, the init decomposed above).

# %%
from tinyml.compiler.tensor import conv2d  # noqa: E402
from tinyml.compiler.tensor.examples import blocked_conv2d  # noqa: E402
from tinyml.labs.lab11 import diagnose_conv, library_time  # noqa: E402

CONV = (1, 64, 28, 64) if SMOKE else (8, 64, 56, 64)      # (N, C, H = W, F): a ResNet-50 3x3 layer
CONV_TILES = (64, 1, 16)                                   # (BF filters, BY output rows, BC channels) per step
layer = conv2d(CONV[0], CONV[1], CONV[2], CONV[2], CONV[3], 3, 3, stride=1, pad=1)
lib_t = library_time(layer, DEVICE)
print(f"library call (idealised): {fmt_time(lib_t)}")
blocked = blocked_conv2d(layer, 64, 8)
print(cost_line("blocked, one channel a step", simulate(blocked, DEVICE)))
for line in diagnose_conv(blocked, DEVICE):
    print(" - still slow:", line)


# %%
def schedule_conv2d(n: int, c: int, h: int, f: int, bf: int, by: int, bc: int) -> Schedule:
    """Exercise 11.3: a schedule of ``conv2d(n, c, h, h, f, 3, 3, stride=1, pad=1)`` (fp16) with
    blocks of BF filters x BY output rows (every output column), BC input channels per
    reduction step, that runs within 1.25x of the library call's idealised time on a100-40gb
    for ResNet-50's layer (8, 64, 56, 64) with tiles (64, 1, 16).

    Start from ``sch = Schedule(conv2d(...))``: split f, y and c; reorder to
    ``n, f_0, y_0, c_0, f_1, y_1, x, c_1, r, s``; fuse ``n, f_0, y_0`` into the grid and bind
    it; the output tile in registers; the init before ``c_0``; X and W tiles in SRAM at
    ``c_0``; tensorize ``f_1``.
    """
    sch = Schedule(conv2d(n, c, h, h, f, 3, 3, stride=1, pad=1))
    f0, f1 = sch.split("f", [None, bf])
    y0, y1 = sch.split("y", [None, by])
    c0, c1 = sch.split("c", [None, bc])
    sch.reorder("n", f0, y0, c0, f1, y1, "x", c1, "r", "s")   # the GEMM tile (f_1, y_1 x, c_1 r s) inside
    grid = sch.fuse("n", f0, y0)                  # one block per (image, filter tile, row tile)
    sch.bind(grid, "blockIdx.x")
    sch.reverse_compute_at(sch.cache_write("local"), grid)   # the output tile in registers, stored once
    sch.decompose_reduction(c0)                   # zero it before the channel loop
    sch.compute_at(sch.cache_read("X", "shared"), c0)        # BC channels of the rows the tile needs
    sch.compute_at(sch.cache_read("W", "shared"), c0)        # BF x BC x 3 x 3 filters
    sch.tensorize(f1)                             # the implicit GEMM on the tensor cores
    return sch
# %%
try:
    mine = schedule_conv2d(*CONV, *CONV_TILES)
    print(loop_tree(mine.nest))
    r = simulate(mine, DEVICE)
    print(cost_line("your conv schedule", r) + f": {r.time_s / lib_t:.2f}x the library call (target: at most 1.25x)")
    for line in diagnose_conv(mine, DEVICE):
        print(" - still slow:", line)
except NotImplementedError as exc:
    print(f"[Exercise 11.3 not attempted] {exc}")
    print("  Hint: the walkthrough's section 'A convolution as an implicit GEMM'.")
except TinymlError as exc:
    print(f"Exercise 11.3: a primitive was refused: {exc}")

# %% [markdown]
# ## Check your answers
#
# The same check as `tinyml lab check 11`: it loads only your functions (not
# these cells; save the file first) and compares them with what tinyml computes.

# %%
from tinyml.labs import check_lab  # noqa: E402

print(check_lab(11, path=globals().get("__file__")).render())
