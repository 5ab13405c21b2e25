"""Numba helpers every kernel body uses to move bytes and do math.

Each helper does the work *only in executing mode* (``execute=True``) but
always adds to the block's counters, so counting mode walks the same loops and
produces identical numbers. Bytes come from ``elem_bits`` (the logical dtype):
a tile of ``n`` elements moves ``ceil(n * elem_bits / 8)`` bytes.

    load_tile    HBM -> SRAM   hbm_read += b, sram_write += b, operand read += b
    load_tile_t  the same, stored transposed (the CPU's stand-in for an MMA reading an operand transposed)
    count_tile_load  what load_tile counts, for a CPU body that reads the tile in place
    store_tile   SRAM -> HBM   sram_read += b, hbm_write += b
    load_direct  HBM -> registers (no SRAM staging, no reuse)
    store_direct registers -> HBM
    count_mma    a tile matmul on tensor cores: 2mnk matmul FLOPs, operands read from SRAM
    count_warp_reads  the operand re-reads of a warp-level partition of that tile matmul
    count_fma    a tile matmul done with scalar FMAs (CUDA cores): 2mnk vector FLOPs, operands from SRAM
    count_vector n elementwise/reduction FLOPs on the vector units
"""

from __future__ import annotations

from numba import config

from .jit import njit  # versioned Numba cache, one compile per argument type

from .counters import FIRST_OPERAND, FLOPS_MATMUL, FLOPS_VECTOR, HBM_READ, HBM_WRITE, SRAM_READ, SRAM_WRITE


@njit(cache=True)
def tile_bytes(n_elements, elem_bits):
    """Whole bytes occupied by ``n_elements`` of ``elem_bits`` bits."""
    return (n_elements * elem_bits + 7) // 8


if config.DISABLE_JIT:
    def copy_rect(src, sr, sc, rows, cols, dst, dr, dc):
        """``dst[dr:dr+rows, dc:dc+cols] = src[sr:sr+rows, sc:sc+cols]`` (plain Python: NumPy slices)."""
        dst[dr:dr + rows, dc:dc + cols] = src[sr:sr + rows, sc:sc + cols]

    def copy_rect_t(src, sr, sc, rows, cols, dst):
        """``dst[:cols, :rows] = src[sr:sr+rows, sc:sc+cols].T`` (plain Python)."""
        dst[:cols, :rows] = src[sr:sr + rows, sc:sc + cols].T
else:
    @njit(cache=True)
    def copy_rect_t(src, sr, sc, rows, cols, dst):
        """``dst[:cols, :rows] = src[sr:sr+rows, sc:sc+cols].T``, one destination row at a time.

        Reading a column of src (a strided gather) and writing a contiguous row of dst was 2x faster
        than the other way round for 128 x 64 fp32 tiles.
        """
        for j in range(cols):
            d = dst[j]
            for i in range(rows):
                d[i] = src[sr + i, sc + j]


    @njit(cache=True)
    def copy_rect(src, sr, sc, rows, cols, dst, dr, dc):
        """``dst[dr:dr+rows, dc:dc+cols] = src[sr:sr+rows, sc:sc+cols]``, one row at a time.

        The element loop is written out because LLVM vectorizes it: about 2.5x
        faster than Numba's slice assignment, and faster than a ``memcpy`` call
        per row for rows this short.
        """
        for i in range(rows):
            s = src[sr + i, sc:sc + cols]
            d = dst[dr + i, dc:dc + cols]
            for j in range(cols):
                d[j] = s[j]


@njit(cache=True)
def load_tile(src, r0, c0, rows, cols, dst, execute, counters, blk, operand, elem_bits):
    """Copy ``src[r0:r0+rows, c0:c0+cols]`` (HBM) into ``dst[:rows, :cols]`` (SRAM)."""
    if execute:
        copy_rect(src, r0, c0, rows, cols, dst, 0, 0)
    count_tile_load(rows, cols, counters, blk, operand, elem_bits)


@njit(cache=True)
def count_tile_load(rows, cols, counters, blk, operand, elem_bits):
    """What :func:`load_tile` counts, without the copy.

    For a CPU body that reads a tile where it lies (a view of the source: the CPU's caches
    bring it on chip) while the kernel it models copies it into SRAM; the bytes are the same.
    """
    b = tile_bytes(rows * cols, elem_bits)
    counters[blk, HBM_READ] += b
    counters[blk, SRAM_WRITE] += b
    counters[blk, FIRST_OPERAND + operand] += b


@njit(cache=True)
def load_tile_t(src, r0, c0, rows, cols, dst, execute, counters, blk, operand, elem_bits):
    """Copy ``src[r0:r0+rows, c0:c0+cols]`` (HBM) transposed into ``dst[:cols, :rows]`` (SRAM).

    Same bytes as :func:`load_tile`. A GPU loads the tile as it is and its tensor cores read it
    transposed (``ldmatrix.trans``); on the CPU, BLAS multiplies a plain operand faster than a
    transposed one at tile sizes, so the CPU stand-in transposes while it copies.
    """
    if execute:
        copy_rect_t(src, r0, c0, rows, cols, dst)
    b = tile_bytes(rows * cols, elem_bits)
    counters[blk, HBM_READ] += b
    counters[blk, SRAM_WRITE] += b
    counters[blk, FIRST_OPERAND + operand] += b


@njit(cache=True)
def store_tile(src, rows, cols, dst, r0, c0, execute, counters, blk, elem_bits):
    """Copy ``src[:rows, :cols]`` (SRAM or registers) to ``dst[r0:r0+rows, c0:c0+cols]`` (HBM)."""
    if execute:
        copy_rect(src, 0, 0, rows, cols, dst, r0, c0)
    b = tile_bytes(rows * cols, elem_bits)
    counters[blk, SRAM_READ] += b
    counters[blk, HBM_WRITE] += b


@njit(cache=True)
def count_load_direct(n_elements, counters, blk, operand, elem_bits):
    """Count ``n_elements`` read from HBM straight into registers (no SRAM)."""
    b = tile_bytes(n_elements, elem_bits)
    counters[blk, HBM_READ] += b
    counters[blk, FIRST_OPERAND + operand] += b


@njit(cache=True)
def count_store_direct(n_elements, counters, blk, elem_bits):
    """Count ``n_elements`` written from registers straight to HBM."""
    counters[blk, HBM_WRITE] += tile_bytes(n_elements, elem_bits)


@njit(cache=True)
def count_mma(m, n, k, counters, blk, elem_bits):
    """Count a (m x k) @ (k x n) tile product on tensor cores, operands read from SRAM."""
    counters[blk, FLOPS_MATMUL] += 2 * m * n * k
    counters[blk, SRAM_READ] += tile_bytes(m * k + k * n, elem_bits)


@njit(cache=True)
def count_warp_reads(m, n, k, warps_m, warps_n, counters, blk, elem_bits):
    """The SRAM re-reads of an (m x k) @ (k x n) tile product split over a ``warps_m x warps_n`` grid
    of warps (or warpgroups): each warp reads its rows of A and its columns of B, so A is read
    ``warps_n`` times and B ``warps_m`` times; :func:`count_mma` counted each once."""
    counters[blk, SRAM_READ] += tile_bytes(m * k * (warps_n - 1) + k * n * (warps_m - 1), elem_bits)


@njit(cache=True)
def count_vector(n_flops, counters, blk):
    """Count ``n_flops`` non-matmul FLOPs (adds, exps, max, scaling ...)."""
    counters[blk, FLOPS_VECTOR] += n_flops


@njit(cache=True)
def count_fma(m, n, k, counters, blk, elem_bits):
    """Count a (m x k) @ (k x n) tile product done with scalar FMAs on the vector units."""
    counters[blk, FLOPS_VECTOR] += 2 * m * n * k
    counters[blk, SRAM_READ] += tile_bytes(m * k + k * n, elem_bits)
