"""Workloads: builders of primitive tensor functions, each with a float64 NumPy reference.

    matmul(M, N, K)          C[i, j]    += A[i, k]    * B[k, j]       (C: M x N)
        bias=True, relu=True:  then C[i, j] = max(C[i, j] + bias[j], 0)
        gelu=True, residual=True: then C[i, j] = gelu(C[i, j]) + R[i, j]
    batched_matmul(B, M, N, K) C[b, i, j] += A[b, i, k] * B[b, k, j]  (C: B x M x N)
    conv2d(N, C, H, W, F, KH, KW, stride, pad)
                             Y[n, f, y, x] += X[n, c, y*st + r - pad, x*st + s - pad] * W[f, c, r, s]
    softmax(M, N)            Y[i, j] = exp(X[i, j] - max_j X[i, :]) / sum_j exp(X[i, j] - max_j X[i, :])
                             (a row reduction: j carries the row's max and sum)

:func:`contraction` is the general builder behind them: any ``out += x * y`` whose
buffers are indexed by the block's axes, one axis per dimension.
"""

from __future__ import annotations

import numpy as np

from ...sim import FLOAT_DTYPES, canonical
from ...sim.args import flag, integer
from .errors import TensorProgramError
from .ir import EPILOGUE_INPUTS, EPILOGUE_KINDS, GELU_A, GELU_C, REDUCE, SPATIAL, Access, Axis, Block, Buffer, Epilogue, Index, PrimFunc


def _positive(name: str, value) -> int:
    """An extent: an integer >= 1 (Python or NumPy; not a bool, a float or a string), at most the int64
    maximum (the generated kernels index with int64)."""
    return integer(value, name, lo=1, error=TensorProgramError,
                   hint="an extent is a whole number of elements, e.g. matmul(256, 256, 256)")


def _flag(name: str, value) -> bool:
    return flag(value, f"{name}=", error=TensorProgramError)


def contraction(name: str, extents: dict, inputs: dict, output: tuple, dtype: str = "fp16",
                epilogue: tuple = ()) -> PrimFunc:
    """``output[...] += inputs[0][...] * inputs[1][...]`` over the axes in ``extents``.

    ``extents`` maps axis name -> extent (in loop order); ``inputs`` maps buffer name ->
    its axes; ``output`` is ``(buffer name, axes)``. Axes the output does not use are
    reductions. Example (matmul)::

        contraction("matmul", {"i": 64, "j": 48, "k": 32},
                    {"A": ("i", "k"), "B": ("k", "j")}, ("C", ("i", "j")))

    ``epilogue`` lists steps applied to each finished output element, in order:
    ``("bias", buffer, axes)`` and ``("residual", buffer, axes)`` add ``buffer[axes]`` (an extra
    input), ``("relu",)``, ``("gelu",)``.
    """
    dtype = canonical(dtype, FLOAT_DTYPES)
    if not isinstance(extents, dict) or not isinstance(inputs, dict):
        raise TensorProgramError(f"{name}: extents and inputs are dicts ({{axis: extent}}, {{buffer: axes}}), got "
                                 f"{type(extents).__name__} and {type(inputs).__name__}")
    if not (isinstance(output, (tuple, list)) and len(output) == 2 and isinstance(output[0], str)):
        raise TensorProgramError(f"{name}: output is (buffer name, axes), e.g. ('C', ('i', 'j')), got {output!r}")
    if len(inputs) != 2:
        raise TensorProgramError(f"{name}: a contraction multiplies two inputs, got {list(inputs)}")
    out_name, out_axes = output
    steps = []
    for step in epilogue:
        if not step or step[0] not in EPILOGUE_KINDS or (step[0] in EPILOGUE_INPUTS) != (len(step) == 3):
            raise TensorProgramError(f"{name}: epilogue step {step!r} is not ('bias' | 'residual', buffer, axes), "
                                     f"('relu',) or ('gelu',)")
        steps.append(Epilogue(step[0], Access(step[1], tuple(step[2])) if step[0] in EPILOGUE_INPUTS else None))
    extra = {s.access.buffer: s.access.axes for s in steps if s.access is not None}
    for buf, axes in [*inputs.items(), *extra.items(), output]:
        for a in axes:
            if a not in extents:
                raise TensorProgramError(f"{name}: buffer {buf} is indexed by {a!r}, which is not an axis "
                                         f"(axes: {list(extents)})")
    axes = tuple(Axis(a, _positive(a, e), SPATIAL if a in out_axes else REDUCE) for a, e in extents.items())
    ext = {a.name: a.extent for a in axes}
    for b in extra:
        if any(a not in out_axes for a in extra[b]):
            raise TensorProgramError(f"{name}: epilogue input {b}{list(extra[b])} must be indexed by output axes "
                                     f"{list(out_axes)} (it is added to a finished output element)")
    params = tuple(Buffer(b, tuple(ext[a] for a in ax), dtype)
                   for b, ax in [*inputs.items(), *extra.items(), output])
    block = Block(name, axes, Access(out_name, tuple(out_axes)),
                  tuple(Access(b, tuple(ax)) for b, ax in inputs.items()), tuple(steps))
    return PrimFunc(name, params, block, reference=_einsum_reference(block))


def _einsum_reference(block: Block):
    letters = {a.name: chr(ord("a") + i) for i, a in enumerate(block.axes)}
    sub = ",".join("".join(letters[a] for a in acc.axes) for acc in block.inputs)
    spec = f"{sub}->{''.join(letters[a] for a in block.output.axes)}"

    out_axes = block.output.axes

    def reference(*arrays):
        """float64 ``np.einsum(spec, a, b)``, then the epilogue steps."""
        x = [np.asarray(v, dtype=np.float64) for v in arrays]
        y = np.einsum(spec, x[0], x[1])
        extra = iter(x[2:])
        for step in block.epilogue:
            if step.access is not None:   # broadcast the input along the output axes it is indexed by
                v = next(extra)
                shape = [y.shape[d] if a in step.access.axes else 1 for d, a in enumerate(out_axes)]
                order = sorted(range(len(step.access.axes)), key=lambda q: out_axes.index(step.access.axes[q]))
                y = y + np.transpose(v, order).reshape(shape)
            elif step.kind == "relu":
                y = np.maximum(y, 0.0)
            else:
                y = 0.5 * y * (1.0 + np.tanh(GELU_C * (y + GELU_A * y ** 3)))
        return y
    reference.spec = spec
    return reference


def matmul(m: int, n: int, k: int, dtype: str = "fp16", *, bias: bool = False, relu: bool = False,
           gelu: bool = False, residual: bool = False, epilogue: "tuple | None" = None) -> PrimFunc:
    """C (M x N) = A (M x K) @ B (K x N), then optionally an epilogue on each finished element,
    inside the kernel: ``+ bias`` (N,), ReLU or GeLU, ``+ R`` (M, N, a residual), in that order;
    ``epilogue`` gives the steps in another order (names from ``"bias" "relu" "gelu" "residual"``,
    e.g. ``("bias", "gelu", "residual")``). The workload is named after its steps
    (``matmul_bias_gelu_residual``); its extra inputs are ``bias`` and ``R``, after A and B."""
    flags = {nm: _flag(nm, on) for nm, on in (("bias", bias), ("relu", relu), ("gelu", gelu),
                                                ("residual", residual))}
    bias, relu, gelu, residual = flags.values()
    if epilogue is None:
        epilogue = tuple(nm for nm, on in flags.items() if on)
    elif isinstance(epilogue, str) or not isinstance(epilogue, (tuple, list)):
        raise TensorProgramError(f"matmul: epilogue is a tuple of step names, e.g. ('bias', 'gelu'), got "
                                 f"{epilogue!r}; write ({epilogue!r},) for one step")
    elif bias or relu or gelu or residual:
        raise TensorProgramError("matmul: give the epilogue either as flags (bias=, relu=, gelu=, residual=) "
                                 "or as epilogue=(...), not both")
    inputs = {"bias": ("bias", "bias", ("j",)), "residual": ("residual", "R", ("i", "j"))}
    steps = []
    for name in epilogue:
        if name not in EPILOGUE_KINDS:
            raise TensorProgramError(f"matmul: epilogue step {name!r} is not one of {list(EPILOGUE_KINDS)}")
        if name in inputs and any(st[0] == name for st in steps):
            raise TensorProgramError(f"matmul: the epilogue adds {name} twice; a matmul takes one {name} input")
        steps.append(inputs.get(name, (name,)))
    return contraction("_".join(["matmul", *epilogue]), {"i": m, "j": n, "k": k}, {"A": ("i", "k"), "B": ("k", "j")},
                       ("C", ("i", "j")), dtype, tuple(steps))


def batched_matmul(batch: int, m: int, n: int, k: int, dtype: str = "fp16") -> PrimFunc:
    """C (B x M x N) = A (B x M x K) @ B (B x K x N), one matmul per batch index."""
    return contraction("batched_matmul", {"b": batch, "i": m, "j": n, "k": k},
                       {"A": ("b", "i", "k"), "B": ("b", "k", "j")}, ("C", ("b", "i", "j")), dtype)


def conv2d(n: int, c: int, h: int, w: int, f: int, kh: int, kw: int, *, stride: int = 1, pad: int = 0,
           dtype: str = "fp16", bias: bool = False) -> PrimFunc:
    """Y (N, F, OH, OW) = X (N, C, H, W) convolved with W (F, C, KH, KW): NCHW, one stride and
    zero padding for both spatial dims (ResNet's layers)::

        Y[n, f, y, x] += X[n, c, y * stride + r - pad, x * stride + s - pad] * W[f, c, r, s]

    with OH = (H + 2 pad - KH) // stride + 1 (OW likewise); reads of X outside it are 0.
    ``bias=True`` adds an input ``B (F,)`` to every finished output element (``Y[n, f, y, x] += B[f]``,
    the epilogue of an ONNX Conv with a bias); the workload is then named ``conv2d_bias``.
    """
    dtype = canonical(dtype, FLOAT_DTYPES)
    n, c, h, w, f, kh, kw, stride = (_positive(nm, v) for nm, v in
                                     zip("n c h w f kh kw stride".split(), (n, c, h, w, f, kh, kw, stride)))
    pad = integer(pad, "pad", lo=0, error=TensorProgramError, hint="zero padding on each side, e.g. pad=1 for a "
                                                                 "3x3 kernel that keeps the size")
    bias = _flag("bias", bias)
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    if oh < 1 or ow < 1:
        raise TensorProgramError(f"conv2d: a {kh}x{kw} kernel does not fit a {h}x{w} input with pad {pad}: "
                                 f"the output would be {oh}x{ow}; pad more or use a smaller kernel")
    axes = (Axis("n", n, SPATIAL), Axis("f", f, SPATIAL), Axis("y", oh, SPATIAL), Axis("x", ow, SPATIAL),
            Axis("c", c, REDUCE), Axis("r", kh, REDUCE), Axis("s", kw, REDUCE))
    x_acc = Access("X", ("n", "c", Index((("y", stride), ("r", 1)), -pad), Index((("x", stride), ("s", 1)), -pad)))
    epilogue = (Epilogue("bias", Access("B", ("f",))),) if bias else ()
    block = Block("conv2d", axes, Access("Y", ("n", "f", "y", "x")), (x_acc, Access("W", ("f", "c", "r", "s"))),
                  epilogue)
    params = ((Buffer("X", (n, c, h, w), dtype), Buffer("W", (f, c, kh, kw), dtype))
              + ((Buffer("B", (f,), dtype),) if bias else ()) + (Buffer("Y", (n, f, oh, ow), dtype),))

    def reference(x, wt, b=None):
        """float64: pad X, then for each kernel offset (r, s) one strided window times W[:, :, r, s]."""
        xp = np.pad(np.asarray(x, dtype=np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        wt = np.asarray(wt, dtype=np.float64)
        out = np.zeros((n, f, oh, ow))
        for r in range(kh):
            for s in range(kw):
                win = xp[:, :, r:r + stride * (oh - 1) + 1:stride, s:s + stride * (ow - 1) + 1:stride]  # (N, C, OH, OW)
                out += np.einsum("nchw,fc->nfhw", win, wt[:, :, r, s])
        if b is not None:
            out += np.asarray(b, dtype=np.float64).reshape(1, f, 1, 1)
        return out
    return PrimFunc("conv2d_bias" if bias else "conv2d", params, block, reference=reference)


#: vector FLOPs per element of a softmax: the online pass (compare, subtract, exp, add) and
#: the writing pass (subtract, exp, multiply by 1 / sum)
SOFTMAX_STATS_FLOPS, SOFTMAX_WRITE_FLOPS = 4, 3


def softmax(m: int, n: int, dtype: str = "fp16") -> PrimFunc:
    """Y (M x N) = softmax of each row of X (M x N): a row reduction.

    ``i`` is spatial (rows are independent); ``j`` is a reduction: the row's max and sum
    accumulate across it. The kernel makes two passes over each row (online softmax)::

        for i:
            m, s = -inf, 0
            for j: x = X[i, j]; s = s * exp(m - max(m, x)) + exp(x - max(m, x)); m = max(m, x)
            for j: Y[i, j] = exp(X[i, j] - m) / s

    so a schedule that leaves X in HBM reads it twice (``2 M N s`` bytes, plus ``M N s`` to
    write Y); one that caches the row (``cache_read("X", "shared")`` at a loop over rows)
    reads it once (``2 M N s`` in all).
    """
    dtype = canonical(dtype, FLOAT_DTYPES)
    m, n = _positive("m", m), _positive("n", n)
    axes = (Axis("i", m, SPATIAL), Axis("j", n, REDUCE))
    block = Block("softmax", axes, Access("Y", ("i", "j")), (Access("X", ("i", "j")),), op="softmax")

    def reference(x):
        """float64 softmax of each row (the max subtracted first)."""
        x = np.asarray(x, dtype=np.float64)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return PrimFunc("softmax", (Buffer("X", (m, n), dtype), Buffer("Y", (m, n), dtype)), block, reference=reference)


WORKLOADS = {"matmul": matmul, "batched_matmul": batched_matmul, "conv2d": conv2d, "softmax": softmax}
