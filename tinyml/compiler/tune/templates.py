"""Schedule templates: the spaces the tuner searches, written with sampling instructions.

``matmul_gpu`` is matmul v3's structure (:func:`tinyml.compiler.tensor.examples.tiled_matmul`)
with every choice left open::

    BM, BN, BK = sample_perfect_tile(i), (j), (k)    # tile sizes: divisors of M, N, K
    acc        = sample_categorical([local, shared])  # the fp32 C tile in registers or in SRAM
    raster     = sample_categorical([rows, columns])  # which grid loop varies fastest (L2 panels)
    mma        = sample_categorical([yes, no])        # tensor cores, or FMA loops on the vector units
    for i_0, j_0 in blockIdx (ordered by raster):
        C_acc = 0
        for k_0:  A_shared = A tile; B_shared = B tile; C_acc += A_shared @ B_shared
        C tile = C_acc

``conv2d_gpu`` is the blocked convolution of :func:`~tinyml.compiler.tensor.examples.blocked_conv2d`
with tiles of F, Y (output rows), X (output columns) and C (input channels per SRAM step)::

    for (n, f_0, y_0, x_0) in blockIdx.x:             # one BF x BY x BX output tile per block
        Y_acc = 0
        for c_0:  X tile (BC channels, its input window); W tile (BF, BC, KH, KW)
                  Y_acc += the BC-channel convolution of the tiles
        Y tile = Y_acc

Every sampling instruction comes first, so a knob's trace index never moves with a decision.
"""

from __future__ import annotations

from .errors import TuneError

ACCUMULATORS = ("local", "shared")


def matmul_gpu(s) -> None:
    """matmul v3's structure with tiles, accumulator scope, grid order and tensorization open."""
    ti = s.sample_perfect_tile("i", 2, 256)
    tj = s.sample_perfect_tile("j", 2, 256)
    tk = s.sample_perfect_tile("k", 2, 128)
    acc = s.sample_categorical([0, 1])
    raster = s.sample_categorical([0, 1])
    mma = s.sample_categorical([1, 0])
    i0, i1 = s.split("i", ti)
    j0, j1 = s.split("j", tj)
    k0, k1 = s.split("k", tk)
    outer, inner = (i0, j0) if raster == 0 else (j0, i0)
    s.reorder(outer, inner, k0, i1, j1, k1)
    s.bind(outer, "blockIdx.y")
    s.bind(inner, "blockIdx.x")
    s.reverse_compute_at(s.cache_write(ACCUMULATORS[acc]), inner)
    s.decompose_reduction(k0)
    for buf in ("A", "B"):
        s.compute_at(s.cache_read(buf, "shared"), k0)
    if mma:
        s.tensorize(i1)


def matmul_cpu(s) -> None:
    """The CPU's space: tensorized tiles (BLAS sgemm per tile, as matmul v3 on the CPU), tiles and
    grid order open; the accumulator in registers (the CPU has no separate SRAM to save)."""
    ti = s.sample_perfect_tile("i", 2, 512)
    tj = s.sample_perfect_tile("j", 2, 512)
    tk = s.sample_perfect_tile("k", 2, 512)
    raster = s.sample_categorical([0, 1])
    i0, i1 = s.split("i", ti)
    j0, j1 = s.split("j", tj)
    k0, k1 = s.split("k", tk)
    outer, inner = (i0, j0) if raster == 0 else (j0, i0)
    s.reorder(outer, inner, k0, i1, j1, k1)
    s.bind(outer, "blockIdx.y")
    s.bind(inner, "blockIdx.x")
    s.reverse_compute_at(s.cache_write("local"), inner)
    s.decompose_reduction(k0)
    for buf in ("A", "B"):
        s.compute_at(s.cache_read(buf, "shared"), k0)
    s.tensorize(i1)


def conv2d_gpu(s) -> None:
    """The blocked convolution with F, Y, X and C tiles and the accumulator scope open."""
    tf = s.sample_perfect_tile("f", 2, 128)
    ty = s.sample_perfect_tile("y", 2, 16)
    tx = s.sample_perfect_tile("x", 2, 64)
    tc = s.sample_perfect_tile("c", 2, 64)
    acc = s.sample_categorical([0, 1])
    f0, f1 = s.split("f", tf)
    y0, y1 = s.split("y", ty)
    x0, x1 = s.split("x", tx)
    c0, c1 = s.split("c", tc)
    s.reorder("n", f0, y0, x0, c0, f1, y1, x1, c1, "r", "s")
    grid = s.fuse("n", f0, y0, x0)
    s.bind(grid, "blockIdx.x")
    s.reverse_compute_at(s.cache_write(ACCUMULATORS[acc]), grid)
    s.compute_at(s.cache_read("X", "shared"), c0)
    s.compute_at(s.cache_read("W", "shared"), c0)
    s.decompose_reduction(c0)


matmul_gpu.min_innermost = {"i": 16, "j": 16, "k": 16}      # the smallest MMA tile (m16n8k16)
matmul_cpu.min_innermost = {"i": 16, "j": 16, "k": 16}
conv2d_gpu.min_innermost = {"f": 4, "x": 4, "c": 1}        # the hand tiles' smallest (BF = 4, one channel a step)

TEMPLATES = {"matmul_gpu": matmul_gpu, "matmul_cpu": matmul_cpu, "conv2d_gpu": conv2d_gpu}


def template_for(func, device: str):
    """The template for a workload on a device (``"cpu"``: the real CPU)."""
    kind = func.block.name
    if kind == "matmul":
        return matmul_cpu if device == "cpu" else matmul_gpu
    if kind == "conv2d":
        return conv2d_gpu
    raise TuneError(f"no tuning template for workload {func.name!r}; templates exist for matmul and conv2d")
