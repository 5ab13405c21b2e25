"""Two views of a nest: low-level NumPy-style Python (as the MLC course writes a primitive
tensor function) and a loop tree.

The NumPy view is a program a reader can run in their head: ``for`` loops with their
extents, the block's axes computed from the loop variables (``i = i_0 * 16 + i_1``), a guard
where a split does not divide, explicit allocations of the caches and their copies as
slices (NumPy slices stop at the array's edge, as the generated kernel's edge tiles do).
Loop kinds and thread bindings are comments. The kernel that runs is :mod:`.codegen`'s.
"""

from __future__ import annotations

import math

from .ir import REDUCE, Index, Nest, as_index

_NP_DTYPE = "float32"      # every buffer holds float32 data; the logical dtype sets the bytes


def piece_value(nest: Nest, li: int, q: int) -> str:
    """The value of piece ``q`` of loop ``li`` in terms of the loop variable."""
    lp = nest.loops[li]
    if len(lp.pieces) == 1:
        return lp.name
    inner = math.prod(p.extent for p in lp.pieces[q + 1:])
    text = lp.name if inner == 1 else f"{lp.name} // {inner}"
    return text if q == 0 else f"{text} % {lp.pieces[q].extent}"


def axis_expr(nest: Nest, axis: str, lo: int = 0, hi: "int | None" = None) -> str:
    """``sum(value * stride)`` over the pieces of ``axis`` in loops ``lo .. hi-1`` ("0" if none)."""
    terms = []
    for li in range(lo, len(nest.loops) if hi is None else hi):
        for q, p in enumerate(nest.loops[li].pieces):
            if p.axis != axis:
                continue
            v = piece_value(nest, li, q)
            v = f"({v})" if " " in v else v
            terms.append(v if p.stride == 1 else f"{v} * {p.stride}")
    return " + ".join(terms) or "0"


def guarded_axes(nest: Nest) -> list:
    """Axes whose pieces cover more values than the axis has (a split that does not divide)."""
    out = []
    for a in nest.func.block.axes:
        top = max((p.extent * p.stride for lp in nest.loops for p in lp.pieces if p.axis == a.name), default=1)
        if top > a.extent:
            out.append(a.name)
    return out


def padding(nest: Nest, operand: int) -> tuple:
    """((low, high), ...) zeros an input needs around it for its affine reads (all zero if none)."""
    acc = nest.access(operand)
    shape = nest.func.buffer(acc.buffer).shape
    widths = []
    for dim, size in zip(acc.axes, shape):
        idx = as_index(dim)
        top = idx.offset + sum(c * (nest.func.block.axis(a).extent - 1) for a, c in idx.terms)
        widths.append((max(0, -idx.offset), max(0, top - (size - 1))))
    return tuple(widths)


def dim_expr(nest: Nest, dim, lo: int = 0, hi: "int | None" = None, shift: int = 0) -> str:
    """An access dimension over the pieces in loops ``lo .. hi-1``, its offset moved by ``shift``."""
    idx = as_index(dim)
    terms = []
    for a, c in idx.terms:
        v = axis_expr(nest, a, lo, hi)
        v = f"({v})" if " " in v and c != 1 else v
        if v != "0":
            terms.append(v if c == 1 else f"{v} * {c}")
    off = idx.offset + shift
    text = " + ".join(terms) or ("0" if not off else "")
    if off:
        text = f"{text} + {off}" if terms and off > 0 else f"{text} - {-off}" if terms else str(off)
    return text


def _slices(nest: Nest, stage, only=None) -> str:
    """The stage's region as slices (of the buffer indexed by ``only``, default the stage's own axes);
    a padded input is sliced in its padded copy."""
    parts = []
    pads = padding(nest, stage.operand) if stage.kind == "read" else None
    for d, (dim, span) in enumerate(zip(nest.access(stage.operand).axes, nest.footprint(stage))):
        if only is not None and dim not in only:
            continue
        base = dim_expr(nest, dim, 0, stage.depth, pads[d][0] if pads else 0)
        parts.append(f"{base} : {span}" if base == "0" else f"{base} : {base} + {span}")
    return ", ".join(parts)


def _valid_part(nest: Nest, stage) -> str:
    """``[:min(4, 10 - i_0 * 4), :]``: the part of a cache tile inside the buffer (edge tiles)."""
    guards = guarded_axes(nest)
    parts = []
    for a, span in zip(nest.access(stage.operand).axes, nest.footprint(stage)):
        base = axis_expr(nest, a, 0, stage.depth)
        ext = nest.func.block.axis(a).extent
        parts.append(f":min({span}, {ext} - ({base}))" if a in guards else ":")
    return f"[{', '.join(parts)}]" if any(p != ":" for p in parts) else ""


def _rel_index(nest: Nest, buffer: str, axes, depth: int) -> str:
    """An element of a cache tile: the access over the loops inside the stage (its base cancels)."""
    parts = []
    for dim in axes:
        idx = as_index(dim)
        parts.append(dim_expr(nest, Index(idx.terms, 0), depth))
    return f"{buffer}[{', '.join(parts)}]"


def numpy_source(nest: Nest) -> str:
    """The nest as low-level NumPy-style Python."""
    f, blk = nest.func, nest.func.block
    lines = [f"def {f.name}({', '.join(b.name for b in f.params)}):"]
    for b in f.params:
        lines.append(f"    # {b.name}: {b.dtype}{list(b.shape)} {b.scope}")
    padded = {}
    for op, acc in enumerate(blk.inputs):
        widths = padding(nest, op)
        if any(lo or hi for lo, hi in widths):
            padded[acc.buffer] = widths
            lines.append(f"    {acc.buffer}_pad = np.pad({acc.buffer}, {widths})    # reads outside {acc.buffer} are 0")
    sizes = {s.name: nest.footprint(s) for s in nest.stages}
    depth_of = {s.name: s.depth for s in nest.stages}

    def stage_lines(d: int, ind: str, after: bool) -> list:
        out = []
        for s in nest.stages:
            if s.depth != d:
                continue
            if s.kind == "read" and not after:
                src = f"{s.source}_pad" if s.source in padded else s.source
                out.append(f"{ind}{s.name} = {src}[{_slices(nest, s)}]"
                           f"    # cache_read -> {s.scope}, {s.dtype}{list(sizes[s.name])}")
            elif s.kind == "write" and not after:
                out.append(f'{ind}{s.name} = np.empty({tuple(sizes[s.name])}, dtype="{_NP_DTYPE}")'
                           f"    # cache_write -> {s.scope}, fp32 accumulator")
            elif s.kind == "write" and after:
                x = f"{s.name}{_valid_part(nest, s)}"
                for step in blk.epilogue:
                    if step.access is not None:
                        x = f"{x} + {step.access.buffer}[{_slices(nest, s, step.access.axes)}]"
                    elif step.kind == "relu":
                        x = f"np.maximum({x}, 0)"
                    else:
                        x = f"gelu({x})"
                note = "    # the epilogue, then the store" if blk.epilogue else ""
                out.append(f"{ind}{s.source}[{_slices(nest, s)}] = {x}{note}")
        return out

    def ref(operand: int) -> str:
        acc = nest.access(operand)
        name = nest.write_buffer() if operand < 0 else nest.read_buffer(operand)
        depth = depth_of.get(name, 0)
        if name in depth_of:
            return _rel_index(nest, name, acc.axes, depth)
        if acc.buffer in padded:
            idx = [as_index(d) for d in acc.axes]
            idx = [Index(i.terms, i.offset + lo).text() for i, (lo, _) in zip(idx, padded[acc.buffer])]
            return f"{acc.buffer}_pad[{', '.join(idx)}]"
        return acc.text()

    out_ref = ref(-1)
    guards = guarded_axes(nest)
    n = len(nest.loops)
    stop = nest.tensorize_depth if nest.tensorize_depth is not None else n

    first_red = min([q for q, lp in enumerate(nest.loops) if nest.is_reduction(lp)], default=n)

    def softmax_rows(d: int, ind: str) -> None:
        """A softmax row: its max and sum (online), then the row written."""
        i_ax, j_ax = blk.spatial[0].name, blk.reduction[0].name
        if (e := axis_expr(nest, i_ax)) != i_ax:
            lines.append(f"{ind}{i_ax} = {e}")
        if i_ax in guards:
            lines.append(f"{ind}if {i_ax} < {blk.axis(i_ax).extent}:")
            ind += "    "
        lines.append(f"{ind}m, s = -np.inf, 0.0          # the row's max and sum (registers)")
        for text in ("x = {x}; m_new = max(m, x); s = s * np.exp(m - m_new) + np.exp(x - m_new); m = m_new",
                     "{y} = np.exp({x} - m) / s"):
            ii = ind
            for lp in nest.loops[d:]:
                lines.append(f"{ii}for {lp.name} in range({lp.extent}):")
                ii += "    "
            if (e := axis_expr(nest, j_ax)) != j_ax:
                lines.append(f"{ii}{j_ax} = {e}")
            if j_ax in guards:
                lines.append(f"{ii}if {j_ax} < {blk.axis(j_ax).extent}:")
                ii += "    "
            lines.append(ii + text.format(x=ref(0), y=out_ref))

    def emit(d: int, ind: str) -> None:
        lines.extend(stage_lines(d, ind, after=False))
        if blk.is_softmax and d == first_red:
            softmax_rows(d, ind)
            return
        if nest.init_depth == d:
            lines.append(f"{ind}# init (decompose_reduction)")
            ii = ind
            if nest.tensorize_depth is None:
                for lp in nest.loops[d:]:
                    if not nest.is_reduction(lp):
                        lines.append(f"{ii}for {lp.name} in range({lp.extent}):")
                        ii += "    "
            if nest.tensorize_depth is not None:     # the init covers exactly the accumulator tile
                lines.append(f"{ind}{nest.write_buffer()}[...] = 0")
            else:
                cond = [f"{a.name} < {a.extent}" for a in blk.spatial if a.name in guards]
                lines.extend(f"{ii}{a.name} = {e}" for a in blk.spatial
                             if (e := axis_expr(nest, a.name)) != a.name)
                if cond:
                    lines.append(f"{ii}if {' and '.join(cond)}:")
                    ii += "    "
                lines.append(f"{ii}{out_ref} = 0")
        if d == stop and nest.tensorize_depth is not None:
            names = ", ".join(lp.name for lp in nest.loops[d:])
            lines.append(f"{ind}{mma_text(nest)}    # tensorized: one MMA over {names}")
        elif d == n:
            lines.extend(f"{ind}{a.name} = {e}" for a in blk.axes if (e := axis_expr(nest, a.name)) != a.name)
            cond = [f"{a} < {blk.axis(a).extent}" for a in guards]
            if cond:
                lines.append(f"{ind}if {' and '.join(cond)}:")
                ind += "    "
            if nest.init_depth is None:
                zero = " and ".join(f"{a.name} == 0" for a in blk.reduction)
                lines.append(f"{ind}if {zero}:")
                lines.append(f"{ind}    {out_ref} = 0")
            lines.append(f"{ind}{out_ref} = {out_ref} + {ref(0)} * {ref(1)}")
        else:
            lp = nest.loops[d]
            note = "" if lp.label == "serial" else f"    # {lp.label}"
            lines.append(f"{ind}for {lp.name} in range({lp.extent}):{note}")
            emit(d + 1, ind + "    ")
        lines.extend(stage_lines(d, ind, after=True))

    emit(0, "    ")
    if blk.epilogue and nest.write_stage() is None:
        _finish_in_place(nest, lines, guards)
    return "\n".join(lines)


def _finish_in_place(nest: Nest, lines: list, guards: list) -> None:
    """No store-back stage: the epilogue runs over each block's outputs once its loops are done."""
    from .codegen import outer_loops

    blk = nest.func.block
    d = len(outer_loops(nest))
    ind = "    " * (d + 1)
    x = blk.output.text()
    for step in blk.epilogue:
        x = step.text(x)
    lines.append(f"{ind}# epilogue: this block's outputs are complete")
    for lp in nest.loops[d:]:
        if not nest.is_reduction(lp):
            lines.append(f"{ind}for {lp.name} in range({lp.extent}):")
            ind += "    "
    lines.extend(f"{ind}{a.name} = {e}" for a in blk.spatial if (e := axis_expr(nest, a.name)) != a.name)
    cond = [f"{a.name} < {a.extent}" for a in blk.spatial if a.name in guards]
    if cond:
        lines.append(f"{ind}if {' and '.join(cond)}:")
        ind += "    "
    lines.append(f"{ind}{blk.output.text()} = {x}")


def mma_text(nest: Nest) -> str:
    """The tensorized tile product: ``C_local += A_shared @ B_shared``, or a conv's implicit GEMM."""
    from .legality import is_conv

    acc, a, b = nest.write_buffer(), nest.read_buffer(0), nest.read_buffer(1)
    if is_conv(nest.func.block):
        f, c = nest.span("f", nest.tensorize_depth), nest.span("c", nest.tensorize_depth)
        return f"{acc}[0].reshape({f}, -1) += {b}.reshape({f}, -1) @ im2col({a}[0])    # implicit GEMM, K = {c} x r x s"
    return f"{acc} += {a} @ {b}"


def loop_tree(nest: Nest) -> str:
    """The nest as a tree: loops with extent and kind, stages and init where they sit."""
    f = nest.func
    head = f"{f.name}(" + ", ".join(f"{b.name}: {b.dtype}{list(b.shape)}" for b in f.params) + ")"
    rows = [head]
    n = len(nest.loops)
    stop = nest.tensorize_depth if nest.tensorize_depth is not None else n
    for d in range(stop + 1):
        ind = "  " * (d + 1)
        for s in nest.stages:
            if s.depth == d:
                shape = "x".join(map(str, nest.footprint(s)))
                verb = "load" if s.kind == "read" else "accumulate, then store to"
                rows.append(f"{ind}{s.name} ({s.scope}, {shape} {s.dtype}): {verb} {s.source}")
        if nest.init_depth == d:
            rows.append(f"{ind}init {nest.write_buffer()} = 0")
        if d == stop:
            if nest.tensorize_depth is not None:
                rows.append(f"{ind}mma {mma_text(nest)}  [{', '.join(lp.name for lp in nest.loops[d:])}]")
            elif f.block.is_softmax:
                rows.append(f"{ind}softmax rows: {nest.write_buffer()} = softmax({nest.read_buffer(0)})")
            else:
                rows.append(f"{ind}update {nest.write_buffer()} += {nest.read_buffer(0)} * {nest.read_buffer(1)}")
            break
        lp = nest.loops[d]
        pieces = " ".join(f"{p.axis}{'(R)' if f.block.axis(p.axis).kind == REDUCE else ''}"
                          f"*{p.stride}" for p in lp.pieces)
        rows.append(f"{ind}for {lp.name} in 0..{lp.extent}  {lp.label:<11} [{pieces}]")
    return "\n".join(rows)
