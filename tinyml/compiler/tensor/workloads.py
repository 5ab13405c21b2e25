"""Workloads: builders of primitive tensor functions, each with a float64 NumPy reference.

    matmul(M, N, K)          C[i, j]    += A[i, k]    * B[k, j]       (C: M x N)
        bias=True, relu=True:  then C[i, j] = max(C[i, j] + bias[j], 0)
    batched_matmul(B, M, N, K) C[b, i, j] += A[b, i, k] * B[b, k, j]  (C: B x M x N)

:func:`contraction` is the general builder behind them: any ``out += x * y`` whose
buffers are indexed by the block's axes, one axis per dimension.
"""

from __future__ import annotations

import numpy as np

from ...sim import FLOAT_DTYPES, canonical
from .errors import TensorProgramError
from .ir import EPILOGUE_KINDS, REDUCE, SPATIAL, Access, Axis, Block, Buffer, Epilogue, PrimFunc


def _positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise TensorProgramError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def contraction(name: str, extents: dict, inputs: dict, output: tuple, dtype: str = "fp16",
                epilogue: tuple = ()) -> PrimFunc:
    """``output[...] += inputs[0][...] * inputs[1][...]`` over the axes in ``extents``.

    ``extents`` maps axis name -> extent (in loop order); ``inputs`` maps buffer name ->
    its axes; ``output`` is ``(buffer name, axes)``. Axes the output does not use are
    reductions. Example (matmul)::

        contraction("matmul", {"i": 64, "j": 48, "k": 32},
                    {"A": ("i", "k"), "B": ("k", "j")}, ("C", ("i", "j")))

    ``epilogue`` lists steps applied to each finished output element, in order:
    ``("bias", buffer, axes)`` adds ``buffer[axes]`` (an extra input), ``("relu",)``.
    """
    dtype = canonical(dtype, FLOAT_DTYPES)
    if len(inputs) != 2:
        raise TensorProgramError(f"{name}: a contraction multiplies two inputs, got {list(inputs)}")
    out_name, out_axes = output
    steps = []
    for step in epilogue:
        if not step or step[0] not in EPILOGUE_KINDS or (step[0] == "bias") != (len(step) == 3):
            raise TensorProgramError(f"{name}: epilogue step {step!r} is not ('bias', buffer, axes) or ('relu',)")
        steps.append(Epilogue(step[0], Access(step[1], tuple(step[2])) if step[0] == "bias" else None))
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
            if step.kind == "bias":       # broadcast the input along the output axes it is indexed by
                v = next(extra)
                shape = [y.shape[d] if a in step.access.axes else 1 for d, a in enumerate(out_axes)]
                order = sorted(range(len(step.access.axes)), key=lambda q: out_axes.index(step.access.axes[q]))
                y = y + np.transpose(v, order).reshape(shape)
            else:
                y = np.maximum(y, 0.0)
        return y
    reference.spec = spec
    return reference


def matmul(m: int, n: int, k: int, dtype: str = "fp16", *, bias: bool = False, relu: bool = False) -> PrimFunc:
    """C (M x N) = A (M x K) @ B (K x N), then optionally ``+ bias`` (N,) and ReLU."""
    epilogue = ((("bias", "bias", ("j",)),) if bias else ()) + ((("relu",),) if relu else ())
    name = "_".join(["matmul"] + (["bias"] if bias else []) + (["relu"] if relu else []))
    return contraction(name, {"i": m, "j": n, "k": k}, {"A": ("i", "k"), "B": ("k", "j")},
                       ("C", ("i", "j")), dtype, epilogue)


def batched_matmul(batch: int, m: int, n: int, k: int, dtype: str = "fp16") -> PrimFunc:
    """C (B x M x N) = A (B x M x K) @ B (B x K x N), one matmul per batch index."""
    return contraction("batched_matmul", {"b": batch, "i": m, "j": n, "k": k},
                       {"A": ("b", "i", "k"), "B": ("b", "k", "j")}, ("C", ("b", "i", "j")), dtype)


WORKLOADS = {"matmul": matmul, "batched_matmul": batched_matmul}
