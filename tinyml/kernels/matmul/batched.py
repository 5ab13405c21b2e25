"""Batched matmul for attention-shaped operands: matmul v3's tiles, once per (batch, head).

This is the kernel PyTorch's standard attention calls for ``Q K^T``, ``P V`` and
the four backward products (cuBLAS ``bmm``/``baddbmm``): an SRAM-tiled,
tensor-core matmul run independently for every (batch, head), with

* transpose flags: ``opA(A)`` is ``A`` (M, K) or, with ``trans_a``, ``A^T`` where
  ``A`` is stored (K, M); likewise ``opB(B)`` with ``trans_b`` (a transposed
  tile is just a different SRAM layout on a GPU: same bytes, same MMA);
* a scalar ``alpha`` epilogue (``C = alpha * opA(A) opB(B)``, baddbmm's alpha:
  the softmax scale), charged ``ALPHA_FLOPS`` (1) vector FLOP per output element;
* GQA head mapping: ``A`` has Ha heads, ``B`` has Hb heads with Ha % Hb == 0;
  a-head ``ha`` pairs with b-head ``ha // (Ha // Hb)`` (K and V shared by a
  group of query heads, never copied);
* ``reduce_group = G`` (needs Ha == Hb): output head ``ho`` sums the products of
  a/b heads ``ho*G .. ho*G+G-1``, i.e. the K loop runs over the G heads too.
  The GQA backward uses it for dK and dV: the group sum costs no extra kernel
  and no per-query-head dK/dV in HBM.

The compiler lowers every batched matmul of a graph to this kernel.

Tile loop (M, N, K are the per-head matrix sizes; tiles from
:func:`tinyml.kernels.matmul.block_sizes.choose_tiles` with depth G*K)::

    for each block (b, ho, ti, tj) in parallel:       # grid B*Hc x ceil(M/BM) x ceil(N/BN)
        acc = zeros(BM, BN)                           # fp32, on chip
        for g in range(G):                            # G = 1 unless reduce_group
            ha = ho*G + g;  hb = ha // (Ha // Hb)     # GQA: query heads share a kv head
            for k0 in range(0, K, BK):
                As = load opA(A[b, ha])[ti*BM : +BM, k0 : +BK]   # HBM -> SRAM
                Bs = load opB(B[b, hb])[k0 : +BK, tj*BN : +BN]
                acc += mma(As, Bs)                    # tensor cores
        acc *= alpha                                  # epilogue, if alpha is given
        store acc -> C[b, ho, ti*BM : +BM, tj*BN : +BN]

HBM traffic: matmul v3's formula for every output head, with depth G*K
(``s`` = bytes per element of the logical dtype, Hc = Ha // G output heads)::

    reads  = B * Hc * (M * G*K * ceil(N / BN) + G*K * N * ceil(M / BM)) * s
           = B * Ha * (M * K * ceil(N / BN) + K * N * ceil(M / BM)) * s
    writes = B * Hc * M * N * s
    matmul FLOPs = 2 * B * Ha * M * N * K;  vector FLOPs = B * Hc * M * N (alpha) or 0

L2 panels: blocks of one wave in the same tile row of one output head share
A's rows; blocks in the same tile column of heads that read the same b-head
(a GQA group) share B's columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import prange

from ...sim.jit import PARALLEL, njit
from ...sim import FLOAT_DTYPES, DTypeError, ShapeError, TileConfigError, bits, current_profile
from ...sim.counters import new_counters
from ...sim.tiles import count_mma, count_vector, load_tile, load_tile_t, store_tile
from .._classes import edge_grid, launch_counters
from .._contract import Operand, blas_single_thread, ceil_div, operand, same_mode
from .._counting import extent, stand_in
from .._mma import mma_acc, sgemm
from ._launch import block_tile
from ._tiled import resolve_tiles

#: vector FLOPs per output element of the ``alpha`` epilogue (one multiply; attention's ``flops.SCALE``)
ALPHA_FLOPS = 1


@dataclass(frozen=True)
class BmmShape:
    """A validated bmm: C (batch, heads_out, m, n) = alpha * sum_g opA(A) @ opB(B)."""

    batch: int
    heads_a: int
    heads_b: int
    m: int
    n: int
    depth: int               # K per head
    group: int               # reduce_group G
    trans_a: bool
    trans_b: bool
    dtype: str

    @property
    def heads_out(self) -> int:
        return self.heads_a // self.group

    @property
    def k(self) -> int:
        """The K the tile search sees: the whole depth of one output tile (G * K)."""
        return self.group * self.depth


@njit(parallel=PARALLEL, cache=True)
def _body(a, b, c, B, HC, M, N, K, G, RATIO, TA, TB, BM, BN, BK, alpha, has_alpha, execute,
          ids, counters, elem_bits, gemm):
    gm = (M + BM - 1) // BM
    gn = (N + BN - 1) // BN
    for row in prange(len(ids)):         # every block, or one per class (counting)
        blk = ids[row]
        bh = blk // (gm * gn)
        bi = bh // HC
        ho = bh % HC
        r0, c0, rows, cols = block_tile(blk % (gm * gn), BM, BN, M, N)     # this block's tile of C[bi, ho]
        a_s = np.zeros((extent(BM, execute), extent(BK, execute)), dtype=np.float32)   # (BM, BK) SRAM
        b_s = np.zeros((extent(BK, execute), extent(BN, execute)), dtype=np.float32)   # (BK, BN) SRAM
        acc = np.zeros((extent(BM, execute), extent(BN, execute)), dtype=np.float32)   # (BM, BN) fp32
        for g in range(G):
            ha = ho * G + g
            hb = ha // RATIO
            a2 = a[bi * execute, ha * execute]          # (M, K) or (K, M); a stand-in in counting mode
            b2 = b[bi * execute, hb * execute]          # (K, N) or (N, K)
            for k0 in range(0, K, BK):
                depth = min(BK, K - k0)
                if execute and depth < BK:     # masked load: the padding must be zero
                    a_s[:] = 0.0
                    b_s[:] = 0.0
                if TA:                         # a stored (K, M): load its (depth, rows) tile transposed
                    load_tile_t(a2, k0, r0, depth, rows, a_s, execute, counters, row, 0, elem_bits)
                else:
                    load_tile(a2, r0, k0, rows, depth, a_s, execute, counters, row, 0, elem_bits)
                if TB:                         # b stored (N, K): load its (cols, depth) tile transposed
                    load_tile_t(b2, c0, k0, cols, depth, b_s, execute, counters, row, 1, elem_bits)
                else:
                    load_tile(b2, k0, c0, depth, cols, b_s, execute, counters, row, 1, elem_bits)
                count_mma(rows, cols, depth, counters, row, elem_bits)
                if execute:
                    mma_acc(a_s, b_s, acc, gemm)     # the MMA: acc += (BM, BK) @ (BK, BN)
        if has_alpha:
            count_vector(ALPHA_FLOPS * rows * cols, counters, row)
            if execute:
                for i in range(rows):
                    for j in range(cols):
                        acc[i, j] *= alpha
        store_tile(acc, rows, cols, c[bi * execute, ho * execute], r0, c0, execute, counters, row, elem_bits)


def bmm_shape(A: Operand, B: Operand, *, trans_a: bool, trans_b: bool, reduce_group: int,
              kernel: str) -> BmmShape:
    """Check that A and B multiply (see the module docstring) and return the sizes."""
    if A.dtype != B.dtype:
        raise DTypeError(f"{kernel}: a is {A.dtype} but b is {B.dtype}; both operands need one logical dtype")
    ba, ha, ra, ca = A.shape
    bb, hb, rb, cb = B.shape
    m, ka = (ca, ra) if trans_a else (ra, ca)
    kb, n = (cb, rb) if trans_b else (rb, cb)
    where = f"(a {A.shape}{' transposed' if trans_a else ''}, b {B.shape}{' transposed' if trans_b else ''})"
    if ba != bb:
        raise ShapeError(f"{kernel}: a has batch {ba} but b has batch {bb} {where}")
    if ka != kb:
        raise ShapeError(f"{kernel}: inner dimensions differ: opA(a) is {m} x {ka} but opB(b) is {kb} x {n} "
                         f"{where}; a's columns must equal b's rows")
    if hb > ha or ha % hb:
        raise ShapeError(f"{kernel}: a has {ha} heads, which b's {hb} heads do not divide {where}; "
                         f"GQA needs a's heads to be a multiple of b's")
    if isinstance(reduce_group, bool) or not isinstance(reduce_group, (int, np.integer)) or reduce_group < 1:
        raise TileConfigError(f"{kernel}: reduce_group must be a positive integer, got {reduce_group!r}")
    if reduce_group > 1 and (ha % reduce_group or hb != ha):
        raise ShapeError(f"{kernel}: reduce_group={reduce_group} sums groups of a's {ha} heads, so it must "
                         f"divide them and b must have as many heads {where}")
    return BmmShape(ba, ha, hb, m, n, ka, int(reduce_group), bool(trans_a), bool(trans_b), A.dtype)


def bmm_panels(shape: BmmShape, grid: tuple) -> dict:
    """L2 panels: A's is (b, ho, tile row); B's is (b, b-head read, tile column)."""
    n_heads_out, gm, gn = grid[0], grid[1], grid[2]
    blk = np.arange(n_heads_out * gm * gn)
    bh, t = np.divmod(blk, gm * gn)
    ti, tj = np.divmod(t, gn)
    bi, ho = np.divmod(bh, shape.heads_out)
    if shape.group > 1:                  # each output head reads b-heads of its own
        b_key = bi * shape.heads_out + ho
    else:                                # GQA: output heads of one group read one b-head
        b_key = bi * shape.heads_b + ho // (shape.heads_a // shape.heads_b)
    return {0: bh * gm + ti, 1: b_key * gn + tj}


def launch_bmm(A: Operand, B: Operand, *, trans_a: bool = False, trans_b: bool = False, alpha=None,
               reduce_group: int = 1, block_m=None, block_n=None, block_k=None, name: str = "bmm",
               out_name: str = "c"):
    """Launch the bmm on validated operands (executing or counting); returns C, allocated in HBM."""
    shape = bmm_shape(A, B, trans_a=trans_a, trans_b=trans_b, reduce_group=reduce_group, kernel=name)
    execute = same_mode(A, B)
    tiles, sram = resolve_tiles(shape, block_m, block_n, block_k, name)
    prof = current_profile()
    prof.hbm.track(A.obj, A.name, A.dtype)
    prof.hbm.track(B.obj, B.name, B.dtype)
    hc = shape.heads_out
    c = prof.hbm.new_tensor(out_name, (shape.batch, hc, shape.m, shape.n), shape.dtype, execute)
    grid = (shape.batch * hc, ceil_div(shape.m, tiles.block_m), ceil_div(shape.n, tiles.block_n))
    if execute:                      # every block
        ids, run_class, run_length = np.arange(grid[0] * grid[1] * grid[2], dtype=np.int64), None, None
    else:                            # every (batch, head) walks the same tile grid: one head's classes, once per head
        ids, run_class, run_length = edge_grid(grid[1], grid[2])
        run_class, run_length = np.tile(run_class, grid[0]), np.tile(run_length, grid[0])
    counters = new_counters(len(ids), n_operands=2)
    gemm = sgemm()                   # load SciPy's BLAS first, so blas_single_thread pins it too
    with blas_single_thread():
        _body(A.data if execute else stand_in(4), B.data if execute else stand_in(4), c if execute else stand_in(4),
              shape.batch, hc, shape.m, shape.n, shape.depth, shape.group, shape.heads_a // shape.heads_b,
              shape.trans_a, shape.trans_b, tiles.block_m, tiles.block_n, tiles.block_k,
              np.float32(1.0 if alpha is None else alpha), alpha is not None, execute, ids, counters,
              bits(shape.dtype), gemm)
    prof.record(name, grid, launch_counters(counters, execute, run_class, run_length), dtype=shape.dtype,
                sram_per_block=sram, panels=bmm_panels(shape, grid))
    return c


def bmm(a, b, *, trans_a: bool = False, trans_b: bool = False, alpha=None, reduce_group: int = 1,
        dtype: str = "fp16", block_m: int | None = None, block_n: int | None = None,
        block_k: int | None = None, check_finite: bool = True, name: str = "bmm"):
    """C = alpha * opA(a) @ opB(b) for every (batch, head); see the module docstring.

    ``a``: (B, Ha, M, K) (or (B, Ha, K, M) with ``trans_a``); ``b``: (B, Hb, K, N)
    (or (B, Hb, N, K) with ``trans_b``), Ha a multiple of Hb. Returns
    (B, Ha // reduce_group, M, N): a float32 array, or a MetaTensor when counting.
    Block sizes default to the highest-intensity tiles that fit SRAM.
    """
    if alpha is not None and not (isinstance(alpha, (int, float, np.floating)) and np.isfinite(alpha)):
        raise TileConfigError(f"{name}: alpha must be a finite number or None, got {alpha!r}")
    A = operand(a, "a", ndim=4, dtype=dtype, allowed=FLOAT_DTYPES, check_finite=check_finite)
    B = operand(b, "b", ndim=4, dtype=dtype, allowed=FLOAT_DTYPES, check_finite=check_finite)
    return launch_bmm(A, B, trans_a=trans_a, trans_b=trans_b, alpha=alpha, reduce_group=reduce_group,
                      block_m=block_m, block_n=block_n, block_k=block_k, name=name)


def expected_bytes(shape: BmmShape, block_m: int, block_n: int, elem_bytes: float) -> tuple[float, float]:
    """(HBM read bytes before L2 reuse, HBM write bytes), from the formula above."""
    m, n, k = shape.m, shape.n, shape.depth
    per_head = m * k * ceil_div(n, block_n) + k * n * ceil_div(m, block_m)
    return (shape.batch * shape.heads_a * per_head * elem_bytes,
            shape.batch * shape.heads_out * shape.m * shape.n * elem_bytes)
