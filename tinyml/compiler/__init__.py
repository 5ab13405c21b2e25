"""tinyml.compiler: a small graph compiler that explains itself (docs/architecture.md, "The compiler's pipeline").

* IR: :class:`Graph` of :class:`Node` s with symbolic :class:`TensorType` s
  (:mod:`.symbolic` dims such as ``2*n``, :mod:`.sizes` polynomials such as ``12*n^2``);
* one op registry (:mod:`.ops`): shape rule, NumPy reference, TVM fusion pattern, lowering kind;
* a builder API (``g.matmul(x, w)``), a text printer, :func:`validate`, a reference :func:`interpret` er;
* a model zoo (:mod:`.zoo`: ``mlp``, ``gpt2_block``, ``tiny_gpt``) with seeded random weights;
* passes Graph -> Graph (:mod:`.passes`: ``infer_shapes``, ``dead_code``, ``cse``, ``fuse``,
  ``rewrite_attention``, ``quantize_weights``, ``plan_memory``) and a :func:`run_passes` pipeline
  that keeps, after every pass, the IR text, a Graphviz drawing and a summary;
* :func:`lower` (one kernel launch per fused group, or per node) and :func:`compile`
  (passes + lowering -> :class:`Compiled`, whose ``run`` executes or counts on the simulator).

``import tinyml.compiler`` loads NumPy only: no Numba, no matplotlib (drawings go through :mod:`tinyml.viz`).
"""

from __future__ import annotations

from .errors import BindingError, GraphDTypeError, GraphError, GraphShapeError, SymbolicError
from .graph import FusedGroup, Graph, Node, Value, Weight
from .interpreter import interpret
from .compile import Compiled, compile
from .lowering import lower
from .passes import cse, dead_code, fuse, infer_shapes, plan_memory, quantize_weights, rewrite_attention
from .memory import MemoryPlan, MemoryPlanError, MissingBoundError, arena_offsets
from .onnx import OnnxFileError, OnnxImportError, OnnxUnsupportedError, from_onnx
from .pipeline import Pipeline, PipelineResult, Step, run_passes
from .sizes import Poly
from .symbolic import Affine, dim, sym
from .types import TensorType
from .validate import validate
from . import zoo  # noqa: E402

__all__ = [
    "BindingError", "GraphDTypeError", "GraphError", "GraphShapeError", "SymbolicError",
    "FusedGroup", "Graph", "Node", "Value", "Weight", "interpret",
    "cse", "dead_code", "fuse", "infer_shapes", "rewrite_attention",
    "Pipeline", "PipelineResult", "Step", "run_passes",
    "Poly", "Affine", "dim", "sym", "TensorType", "validate", "zoo",
    "Compiled", "compile", "lower",
    "plan_memory", "quantize_weights", "MemoryPlan", "MemoryPlanError", "MissingBoundError", "arena_offsets",
    "OnnxFileError", "OnnxImportError", "OnnxUnsupportedError", "from_onnx",
]
