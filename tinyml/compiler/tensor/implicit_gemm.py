"""Code generation for a tensorized conv2d: the implicit GEMM.

A convolution is a matrix product once its input is unfolded ("im2col")::

    Y[n, f, (y, x)] = sum over (c, r, s) of W[f, (c, r, s)] * X[n, c, y * st + r - pad, x * st + s - pad]
       (M = F)  x  (N = OH OW)                 (M x K, K = C KH KW)     (K x N)

``tensorize`` on a conv2d nest hands the tile ``f_1 x (y_1, x_1) x (c_1, r, s)`` to the MMA:
the filter tile ``W_shared (BF, BC, KH, KW)`` is already the (BF, BC KH KW) operand; the input
tile ``X_shared (1, BC, span_y, span_x)`` is unfolded into the (BC KH KW, BY BX) operand
(:func:`~.counting.im2col`); the accumulator ``Y_local (1, BF, BY, BX)`` is (BF, BY BX). On a
GPU the tensor cores read X_shared through this addressing (CUTLASS's implicit GEMM): the CPU
stand-in copies it, and only the MMA is counted (``count_mma(BF, BY BX, BC KH KW)``: its
FLOPs and its operands read from SRAM), as for a matmul tile. HBM bytes are the stages'
loads and the store, exactly as the scalar schedule with the same stages.
"""

from __future__ import annotations

from .ir import as_index


def _tile(g) -> tuple:
    """(BF, BY, BX, BC) spans of the tensorized region, and the stride of the input's y index."""
    nest = g.nest
    d = nest.tensorize_depth
    return tuple(nest.span(a, d) for a in ("f", "y", "x", "c"))


def emit_col_buffer(g, ind: int) -> None:
    """Allocate the unfolded input tile once per block (one element in counting mode)."""
    bf, by, bx, bc = _tile(g)
    kh, kw = (g.blk.axis(a).extent for a in ("r", "s"))
    k = g.p("COL_K", bc * kh * kw)
    n = g.p("COL_N", by * bx)
    g.emit(ind, f"col = np.zeros(({k} * ex + 1 - ex, {n} * ex + 1 - ex), dtype=np.float32)    # im2col of X_shared")


def emit_conv_mma(g, ind: int) -> None:
    """Count the tile's MMA, then (executing) unfold the input tile and multiply."""
    nest = g.nest
    _, by, bx, _ = _tile(g)
    stride = dict(as_index(nest.access(0).axes[2]).terms)["y"]
    g.emit(ind, "count_mma(n_f, n_y * n_x, n_c * n_r * n_s, counters, blk, "
                f"{g.scope_of(0)[1]})")
    xs, ws, acc = nest.read_buffer(0), nest.read_buffer(1), nest.write_buffer()
    g.emit(ind, "if execute:")
    g.emit(ind + 1, f"im2col({xs}[0], col, {g.p('KH', g.blk.axis('r').extent)}, {g.p('KW', g.blk.axis('s').extent)}, "
                    f"{g.p('STRIDE', stride)}, {g.p('TY', by)}, {g.p('TX', bx)})")
    g.emit(ind + 1, f"mma_acc({ws}.reshape(({ws}.shape[0], -1)), col, {acc}[0].reshape(({acc}.shape[1], -1)), gemm)")
