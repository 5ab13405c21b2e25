"""Code generation for a row reduction (``softmax``): the two passes over each row.

At the count point (every stage sits above it; below it only element loops), a region of
``n_i`` rows by ``n_j`` columns is counted, then (executing) computed::

    count: 7 vector FLOPs per element (4 in the online pass, 3 in the writing pass)
           X read twice per element: HBM (global), SRAM (shared copy) or nothing (registers)
           Y written once per element to HBM
    for the row loops below the count point:
        m, s = -inf, 0                           # the row's max and sum, in registers
        for the j loops: x = X[i, j]             # pass 1, online: rescale s when m grows
            if x > m: s = s * exp(m - x) + 1; m = x
            else:     s = s + exp(x - m)
        for the j loops: Y[i, j] = exp(X[i, j] - m) / s     # pass 2

HBM bytes for an ``M x N`` softmax of ``s``-byte elements: ``3 M N s`` with X in HBM (two
reads and one write), ``2 M N s`` with the row cached (the stage's load reads it once).
"""

from __future__ import annotations

from .workloads import SOFTMAX_STATS_FLOPS, SOFTMAX_WRITE_FLOPS


def emit_softmax(g, ind: int, d: int) -> None:
    """Emit the count and the two passes of the rows below depth ``d`` (``g``: a codegen ``_Gen``)."""
    nest, blk = g.nest, g.blk
    i_ax, j_ax = blk.spatial[0].name, blk.reduction[0].name
    for a in (i_ax, j_ax):
        g.emit(ind, f"n_{a} = {g.valid_points(a, d)}")
    g.emit(ind, f"n_pts = n_{i_ax} * n_{j_ax}")
    g.emit(ind, f"count_vector({SOFTMAX_STATS_FLOPS + SOFTMAX_WRITE_FLOPS} * n_pts, counters, blk)")
    scope, bits_ = g.scope_of(0)
    if scope == "global":
        g.emit(ind, f"count_load_direct(2 * n_pts, counters, blk, 0, {bits_})")
    elif scope == "shared":
        g.emit(ind, f"count_sram(2 * n_pts, 0, counters, blk, {bits_})")
    g.emit(ind, f"count_store_direct(n_pts, counters, blk, {g.scope_of(-1)[1]})")
    rows = [li for li in range(d, len(nest.loops)) if not nest.is_reduction(nest.loops[li])]
    cols = [li for li in range(d, len(nest.loops)) if nest.is_reduction(nest.loops[li])]
    x, y = g.index(0), g.index(-1)

    def online(i: int) -> None:
        g.emit(i, f"x = {x}")
        g.emit(i, "if x > m:")
        g.emit(i + 1, "s = s * np.exp(m - x) + 1.0")
        g.emit(i + 1, "m = x")
        g.emit(i, "else:")
        g.emit(i + 1, "s = s + np.exp(x - m)")

    def row(i: int) -> None:
        g.emit(i, "m = -np.inf")
        g.emit(i, "s = 0.0")
        g.element_loops(i, cols, [j_ax], online)
        g.emit(i, "inv = 1.0 / s")
        g.element_loops(i, cols, [j_ax], lambda q: g.emit(q, f"{y} = np.exp({x} - m) * inv"))

    g.emit(ind, "if execute:")
    g.element_loops(ind + 1, rows, [i_ax], row)
