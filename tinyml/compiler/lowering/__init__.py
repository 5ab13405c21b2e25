"""Lowering a graph to kernel launches on the simulator (see :mod:`.launches`).

* :func:`lower` -> :class:`Plan`: one :class:`Launch` per fused group (or per node, op by op);
* :mod:`.layout`: which layout ops are views (no kernel);
* :mod:`.pure`: elementwise/injective groups as one op program;
* :mod:`.anchors`: matmul (+ epilogue), softmax, layernorm, reductions, attention.
"""

from .launches import Launch, Plan, lower, singleton_groups

__all__ = ["Launch", "Plan", "lower", "singleton_groups"]
