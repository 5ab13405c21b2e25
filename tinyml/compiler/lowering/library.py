"""Library ops (convolution, pooling, normalisations): one vendor-library call per group.

tinyml writes no tiled kernel for these (see :mod:`tinyml.compiler.ops.library`);
like TVM or ONNX Runtime handing a convolution to cuDNN, lowering records one
*library call* for the group: the anchor op plus its elementwise epilogue
(cuDNN's ``ConvolutionBiasActivationForward`` fuses bias and ReLU the same way).
Its stated cost, the cost of a good library kernel::

    HBM reads  = sum over the group's inputs of numel * s       (each read once)
    HBM writes = sum over the group's outputs of numel * s      (each written once)
    FLOPs      = library.flops(anchor) + numel(out) per epilogue op
                 (matmul FLOPs for a convolution: im2col + GEMM on tensor cores; vector FLOPs otherwise)

``s``: bytes per element of the run's dtype. The call is spread over one block
per SM (the cost model's waves then give one wave). Numerics: each node's NumPy
reference, in float32, outside the counters.
"""

from __future__ import annotations

import math

import numpy as np

from ...sim import current_profile, nbytes
from ...sim.counters import FLOPS_MATMUL, FLOPS_VECTOR, HBM_READ, HBM_WRITE, new_counters
from ..interpreter import _concrete_attrs

#: library ops whose FLOPs run on the tensor cores
MATMUL_LIKE = ("conv2d",)


def _spread(counters, column: int, total: int) -> None:
    """Put ``total`` into ``column`` spread evenly over the blocks (the first ones take the remainder)."""
    n = counters.shape[0]
    counters[:, column] = total // n
    counters[: total % n, column] += 1


def run_library(ctx, nodes, outputs) -> dict:
    from ..ops.library import flops

    prof = current_profile()
    anchor = next(n for n in nodes if n.opdef.lowering == "library")
    inside = {n.name for n in nodes}
    inputs = list(dict.fromkeys(i for n in nodes for i in n.inputs if i not in inside))
    for i in inputs:
        prof.hbm.track(ctx.env[i], i, ctx.dtype)
    shapes = {i: ctx.shape(i) for i in inputs}
    f_anchor = flops(anchor.op, [ctx.shape(i) for i in anchor.inputs], ctx.shape(anchor.name),
                     _concrete_attrs(anchor, ctx.bindings))
    f_epilogue = sum(math.prod(ctx.shape(n.name)) for n in nodes if n is not anchor)
    local = {}
    if ctx.execute:
        env = {i: ctx.env[i] for i in inputs}
        for n in nodes:
            args = [env[i] if i in env else local[i] for i in n.inputs]
            local[n.name] = np.asarray(n.opdef.reference(*args, **_concrete_attrs(n, ctx.bindings)),
                                       dtype=np.float32)
    results = {}
    for o in outputs:
        with ctx.output(o):
            out = prof.hbm.new_tensor(o, ctx.shape(o), ctx.dtype, ctx.execute)
        if ctx.execute:
            out[...] = local[o]
        results[o] = out
    counters = new_counters(prof.device.sm_count)
    _spread(counters, HBM_READ, sum(nbytes(math.prod(s), ctx.dtype) for s in shapes.values()))
    _spread(counters, HBM_WRITE, sum(nbytes(math.prod(ctx.shape(o)), ctx.dtype) for o in outputs))
    on_tensor_cores = anchor.op in MATMUL_LIKE
    _spread(counters, FLOPS_MATMUL, f_anchor if on_tensor_cores else 0)
    _spread(counters, FLOPS_VECTOR, f_epilogue + (0 if on_tensor_cores else f_anchor))
    prof.record(f"library_{anchor.op}", (counters.shape[0],), counters, dtype=ctx.dtype, sram_per_block=0)
    return results
