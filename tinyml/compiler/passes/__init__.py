"""Graph -> Graph passes. None mutates its input; each returns a new, valid graph.

* :func:`infer_shapes`: fill (or check) every node's type from the op registry's shape rules;
* :func:`dead_code`: drop nodes (and weights) no output depends on;
* :func:`cse`: merge nodes that compute the same thing;
* :func:`rewrite_attention`: matmul -> scale -> [mask] -> softmax -> matmul becomes one ``attention`` node;
* :func:`fuse`: partition the nodes into fused groups (future kernels) by TVM's rules;
* :func:`plan_memory`: liveness and one arena for every intermediate (attaches ``graph.memory_plan``);
* :func:`quantize_weights`: weight matmuls read int4/int8/Q4_0/Q8_0 weights (fused dequantize kernels).

Passes other than ``fuse`` drop an existing grouping (fuse again afterwards).
"""

from .cse import cse
from .dce import dead_code
from .fuse import fuse
from .infer_shapes import infer_shapes
from .plan_memory import plan_memory
from .quantize_weights import quantize_weights
from .rewrite_attention import rewrite_attention

#: passes by name, for ``run_passes(g, ["cse", "fuse"])`` and the CLI
PASSES = {
    "infer_shapes": infer_shapes,
    "dead_code": dead_code,
    "dce": dead_code,
    "cse": cse,
    "rewrite_attention": rewrite_attention,
    "fuse": fuse,
    "plan_memory": plan_memory,
    "quantize_weights": quantize_weights,
}

__all__ = ["PASSES", "cse", "dead_code", "fuse", "infer_shapes", "plan_memory", "quantize_weights", "rewrite_attention"]
