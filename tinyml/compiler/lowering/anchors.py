"""Groups anchored by a complex op: matmul (+ epilogue), softmax, layernorm, reduce_*, attention.

Each becomes one kernel launch when the kernel can do the whole group:

* ``quantized_matmul`` -> :func:`~tinyml.kernels.quant.quantized_gemv` when the rows fold to one
  (decoding), :func:`~tinyml.kernels.quant.quantized_matmul` otherwise, with the epilogue
  inside, as for ``matmul`` below;
* ``matmul`` + elementwise epilogue -> :func:`~tinyml.kernels.fusion.matmul_epilogue`
  with the epilogue as an op program over ``(acc, bias?, residual?)`` (plain
  :func:`~tinyml.kernels.matmul.matmul` when there is no epilogue). Leading
  dimensions of A fold into M (``(H, n, K) @ (K, N)`` is one ``(H n, K) @ (K, N)``).
  With few rows (M <= ``SKINNY_ROWS``: decoding, short prompts) the default
  tiles, the widest that fit, would leave most SMs idle; the lowering costs
  tiles that spread N over more blocks and keeps the fastest (``_skinny_blocks``).
  Batched ``(.., M, K) @ (.., K, N)`` -> :func:`~tinyml.kernels.matmul.batched.bmm`.
* ``softmax`` -> the fused softmax (v3, whole rows in SRAM; v2 when a row does not fit);
* ``layernorm`` -> :func:`~tinyml.kernels.fusion.layernorm_fused`;
* ``reduce_sum/max/mean`` -> :func:`~tinyml.kernels.fusion.row_reduce` over the
  reduced axes moved last;
* ``attention`` -> FlashAttention-2 (:func:`~tinyml.kernels.attention.flash.flash_attention`).

What the kernels cannot take costs a second kernel, never a wrong answer: an
epilogue with another operand than one bias ``(N,)`` and one residual ``(M, N)``,
an intermediate the group must also write, or a batched matmul's epilogue run
as a fused elementwise kernel after the matmul; the elementwise ops in front of
a reduction (its prologue) run as one fused elementwise kernel before it.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .pure import ELEMENTWISE, node_instructions, run_pure


# ---- matmul -------------------------------------------------------------------------------------

def _epilogue(ctx, mm, epi, outputs, m: int, n: int):
    """(Program or None, bias, residual) for a one-kernel epilogue, or None if it needs a cut."""
    from ...kernels.fusion import Program

    if not epi:
        return None, None, None
    if list(outputs) != [epi[-1].name]:
        return None                              # an intermediate is also written
    inside = {mm.name} | {e.name for e in epi}
    extras: dict[str, str] = {}                  # value -> "bias" | "residual"
    for node in epi:
        if node.op not in ELEMENTWISE or node.op == "causal_mask":
            return None
        for i in node.inputs:
            if i in inside or i in extras:
                continue
            shape = ctx.shape(i)
            if math.prod(shape) == n and shape[-1:] == (n,) and "bias" not in extras.values():
                extras[i] = "bias"
            elif math.prod(shape) == m * n and shape[-1:] == (n,) and "residual" not in extras.values():
                extras[i] = "residual"
            else:
                return None
    bias = next((i for i, k in extras.items() if k == "bias"), None)
    res = next((i for i, k in extras.items() if k == "residual"), None)
    slot = {mm.name: 0}
    if bias is not None:
        slot[bias] = 1
    if res is not None:
        slot[res] = 1 + (bias is not None)
    n_in, instrs = len(slot), []

    def emit(op, refs, const=None) -> int:
        instrs.append((op, tuple(refs)) if const is None else (op, tuple(refs), const))
        return n_in + len(instrs) - 1

    for node in epi:
        slot[node.name] = node_instructions(node, tuple(slot[i] for i in node.inputs), emit)
    return Program.from_instructions(n_in, instrs), bias, res


def run_quantized_matmul(ctx, nodes, outputs) -> dict:
    """``quantized_matmul(x, Wq)`` (+ epilogue): leading dims of x fold into M; M = 1 -> the gemv
    kernel. An epilogue the kernels can take (elementwise ops over the result, one bias (N,), one
    residual (M, N), only the last value written) runs inside them, as for ``matmul_epilogue``;
    any other runs as one fused elementwise kernel after them."""
    from ...kernels.quant import quantized_gemv, quantized_matmul

    mm, epi = nodes[0], nodes[1:]
    sx, out_shape = ctx.shape(mm.inputs[0]), ctx.shape(mm.name)
    m, k = math.prod(sx[:-1]), sx[-1]
    n = out_shape[-1]
    x2 = ctx.reshape(ctx.env[mm.inputs[0]], (m, k))                         # (M, K)
    qw = ctx.env[mm.inputs[1]]                                              # QuantizedTensor (N, K)
    kernel = quantized_gemv if m == 1 else quantized_matmul
    plan = _epilogue(ctx, mm, epi, outputs, m, n)
    if plan is not None:
        prog, bias, res = plan
        out = epi[-1].name if epi else mm.name
        extra = {}
        if prog is not None:
            extra = dict(epilogue=prog, bias=None if bias is None else ctx.reshape(ctx.env[bias], (n,)),
                         residual=None if res is None else ctx.reshape(ctx.env[res], (m, n)))
        with ctx.output(out):
            y = kernel(x2, qw, dtype=ctx.dtype, **extra)                    # (M, N)
        return {out: ctx.reshape(y, out_shape)}
    in_place = len(outputs) == 1 and math.prod(ctx.shape(outputs[0])) == math.prod(out_shape)
    with ctx.output(outputs[0] if in_place else mm.name):
        y = kernel(x2, qw, dtype=ctx.dtype)                                 # (M, N)
    c = ctx.reshape(y, out_shape)
    out = {mm.name: c} if mm.name in outputs else {}
    out.update(run_pure(ctx, epi, [o for o in outputs if o != mm.name], local={mm.name: c}))
    return out


#: rows past which the default tiles already spread a matmul over the GPU (one full tile row of 256)
SKINNY_ROWS = 256


def _skinny_blocks(m: int, n: int, k: int, dtype: str, epilogue: bool, bias: bool, residual: bool) -> dict:
    """Block sizes for a matmul of few rows (decoding: M = 1 to a few): the default tiles maximise
    arithmetic intensity, which at M = 1 means the widest N tile, and a (1 x 768) @ (768 x 2304) then runs
    as 9 blocks on 108 SMs. As the serving step tunes its linears (:func:`tinyml.inference.step.tune_linear`),
    cost the default and tiles that spread N over more blocks (block_m the rows rounded up, block_n 16 to
    256, the deepest block_k that fits SRAM) in counting mode and keep the fastest; {} keeps the default.
    Larger M keeps the default without costing anything."""
    if m > SKINNY_ROWS:
        return {}
    from ...sim import current_profile

    return dict(_search_blocks(current_profile().device, m, n, k, dtype, epilogue, bias, residual))


@lru_cache(maxsize=1024)
def _search_blocks(device, m, n, k, dtype, epilogue, bias, residual) -> tuple:
    """The default tiles (``()``) and, per block_n, the deepest block_k that fits, each costed in a scratch
    profile (counting mode); the fastest wins, the default on a tie."""
    from ...kernels.fusion import matmul_epilogue
    from ...kernels.matmul import matmul
    from ...kernels.matmul.block_sizes import DEPTHS, SIZES, _cap, blocks_time
    from ...sim import meta

    a, b = meta((m, k), dtype), meta((k, n), dtype)                              # (M, K), (K, N)
    if epilogue:
        def launch(**blocks):
            matmul_epilogue(a, b, dtype=dtype, bias=meta((n,), dtype) if bias else None,
                            residual=meta((m, n), dtype) if residual else None, **blocks)
    else:
        def launch(**blocks):
            matmul(a, b, dtype=dtype, **blocks)

    best, best_t = (), blocks_time(device, launch, {}) or float("inf")
    for bn in (size for size in SIZES if size < 2 * n):
        for bk in (depth for depth in reversed(DEPTHS) if depth <= max(k, DEPTHS[0])):
            blocks = (("block_m", _cap(m)), ("block_n", bn), ("block_k", bk))
            t = blocks_time(device, launch, dict(blocks))
            if t is not None:                         # the deepest block_k that fits this block_n
                if t < best_t:
                    best, best_t = blocks, t
                break
    return best


def run_matmul(ctx, nodes, outputs) -> dict:
    from ...kernels.fusion import matmul_epilogue
    from ...kernels.matmul import matmul

    if nodes[0].op == "quantized_matmul":
        return run_quantized_matmul(ctx, nodes, outputs)
    mm, epi = nodes[0], nodes[1:]
    sa, sb, out_shape = ctx.shape(mm.inputs[0]), ctx.shape(mm.inputs[1]), ctx.shape(mm.name)
    a, b = ctx.env[mm.inputs[0]], ctx.env[mm.inputs[1]]
    if len(sb) == 2:
        m, n = math.prod(sa[:-1]), sb[1]
        a2 = ctx.reshape(a, (m, sa[-1]))                                    # (M, K): leading dims fold into M
        plan = _epilogue(ctx, mm, epi, outputs, m, n)
        if plan is not None:
            prog, bias, res = plan
            out = epi[-1].name if epi else mm.name
            k = sa[-1]
            blocks = _skinny_blocks(m, n, k, ctx.dtype, prog is not None, bias is not None, res is not None)
            with ctx.output(out):
                if prog is None:
                    y = matmul(a2, b, dtype=ctx.dtype, **blocks)              # (M, N)
                else:
                    y = matmul_epilogue(a2, b, dtype=ctx.dtype, epilogue=prog,
                                        bias=None if bias is None else ctx.reshape(ctx.env[bias], (n,)),
                                        residual=None if res is None else ctx.reshape(ctx.env[res], (m, n)),
                                        **blocks)
            return {out: ctx.reshape(y, out_shape)}
        blocks = _skinny_blocks(m, n, sa[-1], ctx.dtype, False, False, False)
        with ctx.output(mm.name):
            c = ctx.reshape(matmul(a2, b, dtype=ctx.dtype, **blocks), out_shape)
    else:
        with ctx.output(mm.name):
            c = _batched(ctx, a, b, sa, sb, out_shape)
    out = {mm.name: c} if mm.name in outputs else {}
    rest = [o for o in outputs if o != mm.name]
    if rest:
        out.update(run_pure(ctx, epi, rest, local={mm.name: c}))
    return out


def _batched(ctx, a, b, sa, sb, out_shape):
    """``(.., M, K) @ (.., K, N)`` with broadcast batch dims as one bmm over (1, batch, M, K)."""
    from ...kernels.matmul import bmm

    batch = tuple(out_shape[:-2])
    m, k, n = sa[-2], sa[-1], sb[-1]
    heads = math.prod(batch)
    if tuple(sa[:-2]) != batch:
        a = ctx.broadcast(a, batch + (m, k))                                # a kernel reads every copy
    hb = math.prod(sb[:-2])
    if tuple(sb[:-2]) != batch and hb != 1:
        b = ctx.broadcast(b, batch + (k, n))
    hb = 1 if tuple(sb[:-2]) != batch and hb == 1 else heads               # one b shared by all: GQA
    c = bmm(ctx.reshape(a, (1, heads, m, k)), ctx.reshape(b, (1, hb, k, n)), dtype=ctx.dtype,
            check_finite=False)                                             # (1, heads, M, N)
    return ctx.reshape(c, out_shape)


# ---- reductions and attention ----------------------------------------------------------------------

def _prologue(ctx, nodes, outputs) -> dict:
    """Run the elementwise ops in front of a reduction (one kernel); returns the values the
    reduction and the group's outputs need. Layout-only values the reduction reads are read
    in place (no kernel); those the group must write are copied."""
    pro, anchor = nodes[:-1], nodes[-1]
    if not pro:
        return {}
    names = {p.name for p in pro}
    need = [i for i in dict.fromkeys(anchor.inputs) if i in names]
    need += [o for o in outputs if o in names and o not in need]
    return run_pure(ctx, pro, need, copy_leaves=[o for o in outputs if o in names])


def _val(ctx, local, name):
    return local[name] if name in local else ctx.env[name]


def _as_rows(ctx, x, shape):
    return ctx.reshape(x, (math.prod(shape[:-1]), shape[-1]))             # (R, C): a view


def run_softmax(ctx, nodes, outputs) -> dict:
    from ...kernels.softmax import longest_row, softmax
    from ...sim import current_profile

    local = _prologue(ctx, nodes, outputs)
    sm = nodes[-1]
    shape = ctx.shape(sm.name)
    x = _as_rows(ctx, _val(ctx, local, sm.inputs[0]), shape)             # (R, C)
    fits = shape[-1] <= longest_row(current_profile().device, ctx.dtype)
    with ctx.output(sm.name):
        y = softmax(x, version=3 if fits else 2, dtype=ctx.dtype)
    local[sm.name] = ctx.reshape(y, shape)
    return {o: local[o] for o in outputs}


def run_layernorm(ctx, nodes, outputs) -> dict:
    from ...kernels.fusion import layernorm_fused

    local = _prologue(ctx, nodes, outputs)
    ln = nodes[-1]
    shape = ctx.shape(ln.name)
    x, w, b = (_val(ctx, local, i) for i in ln.inputs)
    with ctx.output(ln.name):
        y = layernorm_fused(_as_rows(ctx, x, shape), w, b, eps=ln.attr["eps"], dtype=ctx.dtype)
    local[ln.name] = ctx.reshape(y, shape)
    return {o: local[o] for o in outputs}


def run_reduce(ctx, nodes, outputs) -> dict:
    from ...kernels.fusion import row_reduce

    local = _prologue(ctx, nodes, outputs)
    red = nodes[-1]
    src = red.inputs[0]
    x, shape = _val(ctx, local, src), ctx.shape(src)
    axes = red.attr["axis"]
    keep = [i for i in range(len(shape)) if i not in axes]
    rows, cols = math.prod(shape[i] for i in keep), math.prod(shape[i] for i in axes)
    if isinstance(x, np.ndarray):                                          # reduced axes last, (R, C)
        x = np.ascontiguousarray(np.transpose(x, keep + list(axes))).reshape(rows, cols)
    else:
        x = ctx.reshape(x, (rows, cols))
    with ctx.output(red.name):
        y = row_reduce(x, red.op.removeprefix("reduce_"), dtype=ctx.dtype)  # (R, 1)
    local[red.name] = ctx.reshape(y, ctx.shape(red.name))
    return {o: local[o] for o in outputs}


def run_attention(ctx, nodes, outputs) -> dict:
    from ...kernels.attention.flash import flash_attention

    att = nodes[-1]
    shapes = [ctx.shape(i) for i in att.inputs]
    args = [ctx.reshape(ctx.env[i], s if len(s) == 4 else (1,) + s) for i, s in zip(att.inputs, shapes)]
    with ctx.output(att.name):
        o = flash_attention(*args, version=2, causal=att.attr["causal"], scale=att.attr["scale"],
                            dtype=ctx.dtype, check_finite=False)           # (B, H, Nq, d)
    return {att.name: ctx.reshape(o, ctx.shape(att.name))}
