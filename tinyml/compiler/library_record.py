"""The library call's cost of a conv2d workload: what a scheduled convolution is compared with.

It sits at the top of the compiler package because it compiles a one-node graph
(:func:`~tinyml.compiler.compile`), which in turn lowers through
:mod:`tinyml.compiler.lowering.scheduled`.
"""

from __future__ import annotations

from .compile import compile
from .errors import GraphError
from .graph import Graph


def library_record(func, device: str = "a100-40gb"):
    """The KernelRecord the default lowering gives a conv2d workload's node: a library call with the
    idealised cost (X and W read once, Y written once, the FLOPs on the tensor cores). What a scheduled
    convolution is compared with (``benchmarks/bench_tensor.py``, the tensor-programs page, lab 11)."""
    if func.block.name != "conv2d":
        raise GraphError(f"library_record: {func.name} is not a conv2d workload; only conv2d lowers to a library call")
    x, w = func.inputs[:2]
    idx = func.block.inputs[0].axes[2]                  # X's row index: y * stride + r - pad
    stride, pad = dict(idx.terms)["y"], -idx.offset
    g = Graph("conv", dtype=func.dtype)
    args = [g.input("x", x.shape), g.weight("w", w.shape)] + ([g.weight("b", func.inputs[2].shape)]
                                                             if len(func.inputs) == 3 else [])
    g.output(g.add_node("conv2d", *args, strides=(stride, stride), pads=(pad,) * 4))
    (rec,) = compile(g, device=device, explain=False, dtype=func.dtype).profile().records
    return rec

