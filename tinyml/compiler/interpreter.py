"""The reference interpreter: run a graph node by node with each op's NumPy reference.

``interpret(graph, inputs, bindings={"n": 1024})`` returns the graph's outputs
as float32 arrays, in the order of ``graph.outputs``. It is the ground truth
every pass and every compiled graph is compared with, so it is strict:

* every input must be given (and nothing else), with the shape its type has
  under the bindings; a symbol not in ``bindings`` is solved from an input
  dimension that is ``n`` or ``a*n + b`` alone, and a given binding must agree;
* intermediates are float64 (ops are exact references; only the outputs are
  rounded to float32); int32 inputs (token ids) stay integers;
* after every node the array's shape must equal the node's type evaluated with
  the bindings, so a wrong shape rule is caught where it happens;
* a fused graph runs group by group: a group sees only the values it declares
  as inputs and hands on only its declared outputs, so a fusion that forgot to
  materialise a value fails here with the group and the value named;
* before any node runs, the host memory it will hold is checked
  (:func:`host_bytes`, :func:`tinyml.sim.check_host_memory`): every value stays
  alive to the end, in float64, so a large binding (``n`` = 10^5 with an
  n x n score matrix) is refused with the numbers instead of NumPy's
  ``MemoryError`` or the operating system killing the process.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from ..sim.errors import NonFiniteError
from ..sim.host import check_host_memory
from . import ops as _ops
from .errors import BindingError, GraphError
from .symbolic import Affine, evaluate, solve
from .types import INDEX_DTYPES
from .values import given_bindings, input_array


def resolve_bindings(graph, inputs: Mapping, bindings: "Mapping[str, int] | None") -> dict[str, int]:
    """Check the input arrays against the input types; return the complete symbol bindings."""
    bound = given_bindings(bindings)
    extra = sorted(set(inputs) - set(graph.inputs))
    if extra:
        raise BindingError(f"graph {graph.name!r} has no input(s) {extra}; its inputs are {list(graph.inputs)}")
    missing = [k for k in graph.inputs if k not in inputs]
    if missing:
        raise BindingError(f"graph {graph.name!r} needs input(s) {missing} "
                           f"({', '.join(f'{k}: {graph.inputs[k]}' for k in missing)})")
    for name, t in graph.inputs.items():
        shape = np.shape(inputs[name])
        if len(shape) != t.rank:
            raise BindingError(f"input %{name} has shape {shape} but its type is {t} (rank {t.rank})")
        for d, actual in zip(t.shape, shape):                    # solve unbound symbols first
            if isinstance(d, Affine) and not (d.symbols <= bound.keys()):
                found = solve(d, actual)
                if found is not None and found[0] not in bound:
                    bound[found[0]] = found[1]
    for name, t in graph.inputs.items():
        shape = np.shape(inputs[name])
        for axis, (d, actual) in enumerate(zip(t.shape, shape)):
            want = evaluate(d, bound)                            # raises on a missing binding
            if want != actual:
                raise BindingError(
                    f"input %{name} has shape {shape} but its type {t} needs {want} at axis {axis} "
                    f"({d} with {', '.join(f'{k}={v}' for k, v in sorted(bound.items()))})")
    for s in sorted(graph.symbols - bound.keys()):
        raise BindingError(f"symbol {s!r} has no binding and no input dimension determines it; "
                           f"pass bindings={{{s!r}: <int>}}")
    for s, v in bound.items():
        if v < 1:
            raise BindingError(f"symbol {s!r} is bound to {v}; symbols are lengths >= 1")
    return bound


def _concrete_attrs(node, bindings) -> dict:
    def conc(v):
        if isinstance(v, Affine):
            return evaluate(v, bindings)
        if isinstance(v, tuple):
            return tuple(conc(x) for x in v)
        return v
    return {k: conc(v) for k, v in node.attrs}


def run_node(node, env: dict, bindings) -> np.ndarray:
    """Evaluate one node from ``env`` (value name -> array); check the result's shape."""
    opdef = _ops.get(node.op)
    args = [env[i] for i in node.inputs]
    try:
        out = np.asarray(opdef.reference(*args, **_concrete_attrs(node, bindings)))
    except (GraphError, NonFiniteError) as e:
        raise type(e)(f"%{node.name} = {node.op}(...): {e}") from None
    want = node.type.concrete(bindings)
    if out.shape != want:
        raise GraphError(f"%{node.name} = {node.op}({', '.join('%' + i for i in node.inputs)}) produced shape "
                         f"{out.shape} but its type {node.type} says {want} with bindings {bindings}")
    return out


def host_bytes(graph, bindings: Mapping[str, int]) -> int:
    """Host bytes :func:`interpret` holds at its peak, in Python integers (no overflow)::

        8 * (elements of every input, weight and node value)      all alive to the end, float64
      + 8 * (elements of the largest node value)                  the op's temporaries while computing it
    """
    sizes = [math.prod(t.concrete(bindings)) for t in graph.inputs.values()]
    sizes += [math.prod(w.type.concrete(bindings)) for w in graph.weights.values()]
    nodes = [math.prod(n.type.concrete(bindings)) for n in graph.nodes]
    return 8 * (sum(sizes) + sum(nodes) + max(nodes, default=0))


def interpret(graph, inputs: Mapping, bindings: "Mapping[str, int] | None" = None) -> list[np.ndarray]:
    """Run ``graph`` on ``inputs`` (name -> array) and return its outputs as float32 arrays."""
    bound = resolve_bindings(graph, inputs, bindings)
    check_host_memory(host_bytes(graph, bound), f"interpreting graph {graph.name!r} with "
                      f"{', '.join(f'{k}={v}' for k, v in sorted(bound.items())) or 'no bindings'}",
                      advice="(the reference interpreter keeps every value of the graph as a float64 array). "
                             "Interpret smaller bindings, or cost this size with the compiled graph in "
                             "counting mode: compile(graph, ...).run(bindings=..., count=True).")
    env: dict[str, np.ndarray] = {}
    for name, t in graph.inputs.items():
        arr = input_array(name, inputs[name], t.dtype)          # refuses what the compiled plan refuses
        env[name] = arr.astype(np.int64) if t.dtype in INDEX_DTYPES else np.asarray(inputs[name]).astype(np.float64)
    for name, w in graph.weights.items():
        env[name] = w.data if w.type.dtype in INDEX_DTYPES else w.data.astype(np.float64)
    if graph.groups:
        by_name = {n.name: n for n in graph.nodes}
        for grp in graph.groups:
            local = {}
            for i in grp.inputs:
                if i not in env:
                    raise GraphError(f"fused group {grp.id} reads %{i}, which no earlier group wrote to HBM")
                local[i] = env[i]
            for m in grp.nodes:
                node = by_name[m]
                missing = [i for i in node.inputs if i not in local]
                if missing:
                    raise GraphError(f"fused group {grp.id}: %{m} = {node.op} reads "
                                     f"{', '.join('%' + i for i in missing)}, not among the group's inputs "
                                     f"{list(grp.inputs)} nor computed inside it")
                local[m] = run_node(node, local, bound)
            for o in grp.outputs:
                env[o] = local[o]
    else:
        for node in graph.nodes:
            env[node.name] = run_node(node, env, bound)
    outs = []
    for o in graph.outputs:
        if o not in env:
            raise GraphError(f"output %{o} was never written to HBM (is it a fused group's output?)")
        outs.append(np.asarray(env[o], dtype=np.float32))
    return outs
