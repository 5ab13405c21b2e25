"""ResNet-50's convolutions: the 23 distinct conv2d layers (53 in all) of the ONNX model zoo's
ResNet-50 v1 (``light_resnet50.onnx``, which ``tinyml.compiler.onnx`` imports), batch 1.

Each row is ``(C, H, F, K, stride, pad, count)``: input channels, input height = width,
filters, kernel height = width, stride, zero padding, and how many of the network's layers
have that shape. :func:`conv_layers` reads the same table from an imported graph (a test
checks the two agree).
"""

from __future__ import annotations

RESNET50_CONVS = (
    (3, 224, 64, 7, 2, 3, 1),          # the stem
    (64, 56, 64, 1, 1, 0, 1), (64, 56, 64, 3, 1, 1, 3), (64, 56, 256, 1, 1, 0, 4), (256, 56, 64, 1, 1, 0, 2),
    (256, 56, 128, 1, 1, 0, 1), (128, 56, 128, 3, 2, 1, 1), (128, 28, 512, 1, 1, 0, 4),
    (256, 56, 512, 1, 2, 0, 1), (512, 28, 128, 1, 1, 0, 3), (128, 28, 128, 3, 1, 1, 3),
    (512, 28, 256, 1, 1, 0, 1), (256, 28, 256, 3, 2, 1, 1), (256, 14, 1024, 1, 1, 0, 6),
    (512, 28, 1024, 1, 2, 0, 1), (1024, 14, 256, 1, 1, 0, 5), (256, 14, 256, 3, 1, 1, 5),
    (1024, 14, 512, 1, 1, 0, 1), (512, 14, 512, 3, 2, 1, 1), (512, 7, 2048, 1, 1, 0, 3),
    (1024, 14, 2048, 1, 2, 0, 1), (2048, 7, 512, 1, 1, 0, 2), (512, 7, 512, 3, 1, 1, 2),
)


def resnet50_convs(batch: int = 1, dtype: str = "fp16") -> list:
    """The distinct layers as ``conv2d`` workloads at ``batch``: ``[(workload, count), ...]``."""
    from .workloads import conv2d

    return [(conv2d(batch, c, h, h, f, k, k, stride=st, pad=pad, dtype=dtype), n)
            for c, h, f, k, st, pad, n in RESNET50_CONVS]


def conv_layers(graph) -> tuple:
    """``(C, H, F, K, stride, pad, count)`` of every distinct square conv2d in an imported graph,
    in order of first use."""
    from ..interpreter import _concrete_attrs

    seen: dict = {}
    for node in graph.nodes:
        if node.op != "conv2d":
            continue
        at = _concrete_attrs(node, {})
        _, c, h, _ = graph.type_of(node.inputs[0]).shape
        f, _, k, _ = graph.type_of(node.inputs[1]).shape
        key = (c, h, f, k, at["strides"][0], at["pads"][0])
        seen[key] = seen.get(key, 0) + 1
    return tuple(key + (n,) for key, n in seen.items())
