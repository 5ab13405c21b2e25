"""The tensor-program workloads' shape options, shared by ``tinyml schedule`` and ``tinyml tune``.

Each ``add_*`` adds one workload's shape options to its subparser; :func:`build`
turns the parsed options into the workload's PrimFunc.
"""

from __future__ import annotations

from ._args import non_negative_int, positive_int


def add_matmul(p) -> None:
    p.add_argument("--m", type=positive_int, default=1024, help="rows of A and C")
    p.add_argument("--n", type=positive_int, default=1024, help="columns of B and C")
    p.add_argument("--k", type=positive_int, default=1024, help="the reduction length")


def add_conv2d(p) -> None:
    p.add_argument("--batch", type=positive_int, default=1, help="N, images in the batch")
    p.add_argument("--channels", type=positive_int, default=64, help="C, input channels")
    p.add_argument("--size", type=positive_int, default=56, help="H = W, the input's height and width")
    p.add_argument("--filters", type=positive_int, default=64, help="F, output channels")
    p.add_argument("--kernel", type=positive_int, default=3, help="KH = KW, the filter's height and width")
    p.add_argument("--stride", type=positive_int, default=1, help="the stride of both spatial dims")
    p.add_argument("--pad", type=non_negative_int, default=1, help="zero padding on every side")


def add_softmax(p) -> None:
    p.add_argument("--m", type=positive_int, default=4096, help="rows")
    p.add_argument("--n", type=positive_int, default=1024, help="the row length (the reduction)")


def build(args, dtype: str):
    """The PrimFunc that ``args.workload`` and its shape options describe, in ``dtype``."""
    from ..compiler.tensor import conv2d, matmul, softmax

    if args.workload == "matmul":
        return matmul(args.m, args.n, args.k, dtype)
    if args.workload == "softmax":
        return softmax(args.m, args.n, dtype)
    return conv2d(args.batch, args.channels, args.size, args.size, args.filters, args.kernel, args.kernel,
                  stride=args.stride, pad=args.pad, dtype=dtype)
