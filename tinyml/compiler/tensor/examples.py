"""Hand schedules a student can start from: the schedules of the walkthrough, as functions.

``tiled_matmul(func, BM, BN, BK)`` is matmul v3's structure as a schedule::

    for i_0 in blockIdx.y:                  # one BM x BN output tile per block
      for j_0 in blockIdx.x:
        C_local = zeros(BM, BN)             # cache_write("local") + decompose_reduction
        for k_0 in range(ceil(K / BK)):
          A_shared = A[i_0 tile, k_0 tile]  # cache_read("A", "shared") + compute_at(k_0)
          B_shared = B[k_0 tile, j_0 tile]  # cache_read("B", "shared") + compute_at(k_0)
          C_local += A_shared @ B_shared    # tensorize(i_1): one MMA (or the loops i_1, j_1, k_1)
        C[i_0 tile, j_0 tile] = C_local

HBM bytes: ``(M K ceil(N/BN) + K N ceil(M/BM) + M N) s`` before L2, as matmul v2/v3.
``blocked_conv2d(func, BF, BY)`` is the walkthrough's blocked convolution (X and W tiles per
input channel in SRAM, the output tile in registers). :func:`example` picks tiles for a
device (matmul v3's rule, :func:`tinyml.kernels.matmul.choose_tiles`). ``row_softmax(func, rows)``
caches each block's rows of a softmax in SRAM, so X is read from HBM once.
``per_thread_accumulator(func, BN, TN)`` binds threads: TN threads per block, each owning BN / TN
columns of the block's accumulator in registers.
"""

from __future__ import annotations

from .errors import ScheduleError
from .ir import PrimFunc
from .schedule import Schedule

#: the built-in schedules: name -> what it does
EXAMPLES = {
    "tiled": "tiles in SRAM (A and B per K step), the output tile in registers, multiply-adds on the vector units",
    "mma": "'tiled', with the tile product tensorized (one MMA on the tensor cores): matmul v3's structure; "
           "for conv2d the implicit GEMM",
}


def tiled_matmul(func: PrimFunc, bm: int, bn: int, bk: int, *, tensorize: bool = True,
                 accumulator: str = "local") -> Schedule:
    """matmul v3's structure (module docstring) with BM x BN x BK tiles; ``tensorize=False``
    leaves the tile product as loops on the vector units. ``accumulator="shared"`` keeps the
    fp32 C tile in SRAM, as matmul v3 does (the same launch: bytes, SRAM per block, time);
    ``"local"`` keeps it in registers, which leaves SRAM for more resident blocks."""
    s = Schedule(func)
    i0, i1 = s.split("i", [None, bm])
    j0, j1 = s.split("j", [None, bn])
    k0, k1 = s.split("k", [None, bk])
    s.reorder(i0, j0, k0, i1, j1, k1)
    s.bind(i0, "blockIdx.y")
    s.bind(j0, "blockIdx.x")
    c = s.cache_write(accumulator)
    s.reverse_compute_at(c, j0)
    s.decompose_reduction(k0)
    for buf in ("A", "B"):
        s.compute_at(s.cache_read(buf, "shared"), k0)
    if tensorize:
        s.tensorize(i1)
    return s


def per_thread_accumulator(func: PrimFunc, bn: int, tn: int) -> Schedule:
    """Blocks of one row x ``bn`` columns of a matmul; ``tn`` threads each own ``bn / tn`` columns
    of the accumulator (registers)::

        for (i, j_0) in blockIdx.x:          # one row, bn columns per block
          for j_1 in threadIdx.x:            # tn threads
            C_local = zeros(bn / tn)         # cache_write("local"), per thread
            for k, j_2: C_local[j_2] += A[i, k] * B[k, j_0 j_1 j_2]
            C[i, j_0 j_1 :] = C_local
    """
    s = Schedule(func)
    j0, j1, j2 = s.split("j", [None, tn, bn // tn])
    s.reorder("i", j0, j1, "k", j2)
    grid = s.fuse("i", j0)
    s.bind(grid, "blockIdx.x")
    s.bind(j1, "threadIdx.x")
    s.reverse_compute_at(s.cache_write("local"), j1)
    return s


def blocked_conv2d(func: PrimFunc, bf: int, by: int) -> Schedule:
    """BF filters x BY output rows per block (n, f_0, y_0 fused into the grid); per input
    channel an X tile and a W tile in SRAM; the output tile accumulated in registers."""
    s = Schedule(func)
    f0, f1 = s.split("f", [None, bf])
    y0, y1 = s.split("y", [None, by])
    s.reorder("n", f0, y0, "c", f1, y1, "x", "r", "s")
    grid = s.fuse("n", f0, y0)
    s.bind(grid, "blockIdx.x")
    s.reverse_compute_at(s.cache_write("local"), grid)
    s.compute_at(s.cache_read("X", "shared"), "c")
    s.compute_at(s.cache_read("W", "shared"), "c")
    s.decompose_reduction("c")
    return s


def implicit_gemm_conv2d(func: PrimFunc, bf: int, by: int, bc: int, *, tensorize: bool = True) -> Schedule:
    """:func:`blocked_conv2d` with BC input channels per step and the tile product tensorized::

        for (n, f_0, y_0) in blockIdx.x:            # BF filters x BY output rows x all OW columns
          Y_local = zeros(1, BF, BY, OW)            # registers
          for c_0 in range(ceil(C / BC)):
            X_shared = X[n, c_0 tile, rows, cols]   # BC x ((BY-1) st + KH) x ((OW-1) st + KW), padding zero
            W_shared = W[f_0 tile, c_0 tile, :, :]  # BF x BC x KH x KW
            Y_local += W_shared (BF x BC KH KW) @ im2col(X_shared) (BC KH KW x BY OW)   # one MMA
          Y[n, f_0 tile, y_0 tile, :] = Y_local

    HBM bytes (s per element; blocks' X windows overlap by KH - st rows)::

        reads  = N ceil(F/BF) ceil(OH/BY) * sum over c_0 of BC' * rows' * W * s   (X tiles, inside the image)
               + N ceil(OH/BY) * F C KH KW * s                                    (W, once per row block)
        writes = N F OH OW * s

    ``tensorize=False`` leaves the tile product as loops on the vector units (the same bytes).
    """
    s = Schedule(func)
    f0, f1 = s.split("f", [None, bf])
    y0, y1 = s.split("y", [None, by])
    c0, c1 = s.split("c", [None, bc])
    s.reorder("n", f0, y0, c0, f1, y1, "x", c1, "r", "s")
    grid = s.fuse("n", f0, y0)
    s.bind(grid, "blockIdx.x")
    s.reverse_compute_at(s.cache_write("local"), grid)
    s.decompose_reduction(c0)
    s.compute_at(s.cache_read("X", "shared"), c0)
    s.compute_at(s.cache_read("W", "shared"), c0)
    if tensorize:
        s.tensorize(f1)
    return s


def row_softmax(func: PrimFunc, rows: int, scope: str = "shared") -> Schedule:
    """``rows`` rows of a softmax per block, each row cached in ``scope`` (read from HBM once)::

        for i_0 in blockIdx.x:                  # ceil(M / rows) blocks
          X_shared = X[i_0 tile, :]             # cache_read("X", scope) + compute_at(i_0)
          for i_1 in range(rows):               # per row: online max and sum, then the row written
            ...two passes over X_shared[i_1, :]

    HBM bytes: ``M N s`` read + ``M N s`` written (the naive nest reads X twice: ``3 M N s``);
    SRAM per block: ``rows * N * s``."""
    s = Schedule(func)
    i0, _ = s.split("i", [None, rows])
    s.bind(i0, "blockIdx.x")
    s.compute_at(s.cache_read("X", scope), i0)
    return s


def conv_tiles(func: PrimFunc) -> tuple:
    """(BF, BY, BC) for :func:`implicit_gemm_conv2d`: 64 filters (or all), BC = 16 channels (or all),
    and as many output rows as keep a block's output tile near 4096 pixels (at least one)."""
    ext = {a.name: a.extent for a in func.block.axes}
    by = max(1, min(ext["y"], 4096 // (ext["x"] * 64)))
    return min(64, ext["f"]), by, min(16, ext["c"])


def example(name: str, func: PrimFunc, device: str = "a100-40gb") -> Schedule:
    """The built-in schedule ``name`` (:data:`EXAMPLES`) of ``func`` with tiles for ``device``."""
    from ...sim import load_device

    if name not in EXAMPLES:
        raise ScheduleError(f"unknown example schedule {name!r}; choose from {', '.join(EXAMPLES)}")
    kind = func.block.name
    if kind == "matmul" or kind.startswith("matmul_"):
        from ...kernels.matmul import choose_tiles

        m, n, k = (a.extent for a in func.block.axes)
        t = choose_tiles(load_device(device), m, n, k, func.dtype)
        bm, bn, bk = min(t.block_m, m), min(t.block_n, n), min(t.block_k, k)
        return tiled_matmul(func, bm, bn, bk, tensorize=name == "mma")
    if kind == "conv2d":
        ext = {a.name: a.extent for a in func.block.axes}
        if name == "mma":
            return implicit_gemm_conv2d(func, *conv_tiles(func))
        return blocked_conv2d(func, min(64, ext["f"]), min(8, ext["y"]))
    if kind == "softmax":
        if name == "mma":
            raise ScheduleError("softmax has no tile product to tensorize; use --example tiled")
        return row_softmax(func, min(4, func.block.axes[0].extent))
    raise ScheduleError(f"no example schedule for workload {func.name!r}; examples exist for matmul, conv2d "
                        f"and softmax")
