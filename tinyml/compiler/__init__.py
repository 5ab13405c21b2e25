"""tinyml.compiler: the graph compiler (arrives with its own issue).

What will live here, following DESIGN.md section 4: a ``Graph`` IR of ``Node``s
with symbolic ``TensorType`` shapes, an op registry using TVM's fusion-pattern
vocabulary, passes that explain themselves (shape inference, operator fusion,
the attention -> FlashAttention rewrite, weight quantization, memory planning,
lowering), and a runner that executes compiled graphs through
``tinyml.kernels`` on the simulator.

It imports ``tinyml.kernels`` and ``tinyml.sim``; nothing below imports it.
This module intentionally exports nothing yet.
"""

__all__: list[str] = []
