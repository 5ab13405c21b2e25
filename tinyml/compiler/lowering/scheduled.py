"""Lowering a matmul or conv2d node with a user's schedule (a generated tensor program).

By default lowering gives a matmul group a hand-written kernel and a conv2d group a *library
call* with an idealised cost (see :mod:`.anchors`, :mod:`.library`). With ``schedules`` (on
:func:`~tinyml.compiler.compile` or :func:`~.launches.lower`) a node found there is lowered to
the kernel its schedule generates (:mod:`tinyml.compiler.tensor`), whose bytes the simulator
counts loop by loop::

    from tinyml.compiler.tensor.examples import tiled_matmul
    c = compile(g, schedules={"matmul": lambda f: tiled_matmul(f, 64, 64, 32)})

How a node finds its schedule (:class:`ScheduleTable`), first match wins:

1. the node's name (``"fc1"``);
2. its workload key (:func:`workload_key`: op, buffer shapes, dtype, e.g.
   ``"matmul:fp16:A(64,32),B(32,48)->C(64,48)"``) or its hash (:func:`workload_hash`, 16 hex
   digits: what a tuning log records next to a device);
3. its op kind (``"matmul"``, ``"conv2d"``).

A value is a :class:`~tinyml.compiler.tensor.Schedule`, a trace (JSON text or its dict, see
:mod:`tinyml.compiler.tensor.trace`) or a callable ``func -> Schedule`` (a hand schedule
such as ``tiled_matmul``; it is called with the node's workload). A schedule or trace made
on another workload is refused (:class:`ScheduleMismatchError`, naming both). Any object
with a ``lookup(node, func)`` method returning a Schedule or None can stand in for the
table (a tuning log's best record per workload).

The node's workload, at the run's bindings and dtype (:func:`node_workload`):

* ``matmul (.., M, K) @ (K, N)``: ``matmul(M', N, K)``, the leading dims of A folded into M';
* ``matmul (.., M, K) @ (.., K, N)`` with equal batch dims: ``batched_matmul(prod(batch), M, N, K)``;
* ``conv2d(x, w[, b])`` with one stride and one padding for both axes, no dilation, one group:
  ``conv2d(N, C, H, W, F, KH, KW, stride, pad, bias=b given)``.

The scheduled kernel computes the node. A 2-D matmul whose fused group is a chain of
``+ bias (N,)``, ``+ residual (M, N)``, ``relu`` and ``gelu`` with only its last value written
(a Linear + GeLU, a projection + residual) becomes one generated kernel with the epilogue
inside (:func:`fold_epilogue`: the schedule, made on the plain matmul, is replayed on
``matmul(..., epilogue=steps)``; the epilogue runs where the output tile is stored). Any
other group's rest (batch-norm, a conv's ReLU ...) runs after it as one fused elementwise
kernel, so that group costs two kernels where the hand-written kernel or the library call
fused it into one.
"""

from __future__ import annotations

import hashlib
import json
import math

from ..errors import GraphError
from .pure import run_pure

#: the ops a schedule can lower, and the op kind keys a table accepts
SCHEDULABLE = ("matmul", "conv2d")


class ScheduleMismatchError(GraphError):
    """A schedule (or trace) was made on another workload than the node it is given for."""


def workload_key(func) -> str:
    """``op:dtype:buffers->output`` of a workload, e.g. ``"matmul:fp16:A(64,32),B(32,48)->C(64,48)"``."""
    return key_of(func.to_dict())


def key_of(workload: dict) -> str:
    """:func:`workload_key` of a trace's ``"workload"`` entry (``PrimFunc.to_dict()``)."""
    try:
        bufs = [f"{b[0]}({','.join(str(s) for s in b[1])})" for b in workload["buffers"]]
        return f"{workload['name']}:{workload['buffers'][-1][2]}:{','.join(bufs[:-1])}->{bufs[-1]}"
    except (KeyError, IndexError, TypeError):
        raise GraphError(f"{str(workload)[:80]!r} is not a trace's workload (name, buffers, axes); write traces "
                         f"with tinyml.compiler.tensor.to_json or tinyml schedule --write-trace") from None


def table_from_json(data, source: str) -> dict:
    """Schedules from a JSON document: one trace (keyed by its workload, so it lowers the nodes of
    exactly that workload), or an object mapping node names, workload keys or op kinds to traces."""
    if isinstance(data, dict) and "instructions" in data:
        return {key_of(data.get("workload", {})): data}
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "instructions" in v for v in data.values()):
        return dict(data)
    raise GraphError(f"{source} is neither a trace (an object with \"workload\" and \"instructions\") nor an object "
                     f"mapping node names, workload keys or op kinds to traces")


def workload_hash(func) -> str:
    """16 hex digits of SHA-256 over the workload's trace identity (``func.to_dict()``)."""
    text = json.dumps(func.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _shape(b) -> str:
    return "x".join(str(s) for s in b.shape)


def describe(func) -> str:
    """``matmul A 64x32, B 32x48 -> C 64x48 (fp16)``: the shapes a mismatch message names."""
    ins = ", ".join(f"{b.name} {_shape(b)}" for b in func.inputs)
    return f"{func.name} {ins} -> {func.output.name} {_shape(func.output)} ({func.dtype})"


def node_workload(ctx, node):
    """``(func, operands)``: the node's :class:`~tinyml.compiler.tensor.PrimFunc` at ``ctx``'s
    bindings and dtype, and the kernel's operands (views of the values in ``ctx.env``)."""
    from ..tensor import workloads as wl

    if node.op == "matmul":
        sa, sb, out = ctx.shape(node.inputs[0]), ctx.shape(node.inputs[1]), ctx.shape(node.name)
        a, b = ctx.env[node.inputs[0]], ctx.env[node.inputs[1]]
        k, n = sa[-1], sb[-1]
        if len(sb) == 2:
            m = math.prod(sa[:-1])
            return wl.matmul(m, n, k, ctx.dtype), [ctx.reshape(a, (m, k)), b]   # (M, K), (K, N)
        batch = tuple(out[:-2])
        if tuple(sa[:-2]) != batch or tuple(sb[:-2]) != batch:
            raise GraphError(f"matmul %{node.name}: {sa} @ {sb} broadcasts its batch dims; a schedule lowers a "
                             f"matmul (.., M, K) @ (K, N) or a batched one with equal batch dims; drop this "
                             f"node from schedules (its hand-written bmm kernel broadcasts)")
        h, m = math.prod(batch), sa[-2]
        return (wl.batched_matmul(h, m, n, k, ctx.dtype),
                [ctx.reshape(a, (h, m, k)), ctx.reshape(b, (h, k, n))])                # (B, M, K), (B, K, N)
    if node.op == "conv2d":
        from ..interpreter import _concrete_attrs

        at = _concrete_attrs(node, ctx.bindings)
        (sh, sw), (ph0, pw0, ph1, pw1) = at["strides"], at["pads"]
        if at["groups"] != 1 or tuple(at["dilations"]) != (1, 1) or sh != sw or len({ph0, pw0, ph1, pw1}) != 1:
            raise GraphError(f"conv2d %{node.name}: strides {at['strides']}, pads {at['pads']}, dilations "
                             f"{at['dilations']}, groups {at['groups']}; the conv2d workload has one stride and one "
                             f"padding for both axes, no dilation and one group; drop this node from schedules")
        nb, c, hh, ww = ctx.shape(node.inputs[0])
        f, _, kh, kw = ctx.shape(node.inputs[1])
        bias = len(node.inputs) == 3
        func = wl.conv2d(nb, c, hh, ww, f, kh, kw, stride=sh, pad=ph0, dtype=ctx.dtype, bias=bias)
        return func, [ctx.env[i] for i in node.inputs]
    raise GraphError(f"%{node.name} is a {node.op}; schedules lower {' and '.join(SCHEDULABLE)} nodes only")


class ScheduleTable:
    """Schedules keyed by node name, workload key or hash, or op kind (module docstring)."""

    def __init__(self, entries: dict):
        if not isinstance(entries, dict):
            raise GraphError(f"schedules must be a dict (node name, workload key or op kind -> schedule, "
                             f"trace or callable), got {type(entries).__name__}")
        self.entries = dict(entries)

    def check(self, graph) -> None:
        """Refuse keys that can name nothing in ``graph`` (a typo would otherwise be silently ignored)."""
        nodes = {n.name: n for n in graph.nodes}
        can = sorted(n.name for n in graph.nodes if n.op in SCHEDULABLE)
        for key in self.entries:
            if not isinstance(key, str):
                raise GraphError(f"schedules key {key!r} is not a string (a node name, workload key or op kind)")
            if key in nodes:
                if nodes[key].op not in SCHEDULABLE:
                    raise GraphError(f"schedules names %{key}, a {nodes[key].op} node; only "
                                     f"{' and '.join(SCHEDULABLE)} nodes take a schedule: {can}")
            elif key not in SCHEDULABLE and ":" not in key and not _is_hash(key):
                raise GraphError(f"schedules key {key!r} is no node of {graph.name!r}, no op kind "
                                 f"({', '.join(SCHEDULABLE)}) and no workload key; schedulable nodes: {can}")

    def names(self, node) -> bool:
        """True if an entry is keyed by ``node``'s name or op kind (it must then be schedulable)."""
        return node.name in self.entries or node.op in self.entries

    def lookup(self, node, func):
        """The Schedule for ``node`` (workload ``func``), or None to lower it as by default."""
        for key in (node.name, workload_key(func), workload_hash(func), node.op):
            if key in self.entries:
                return resolve(self.entries[key], func, node)
        return None


def _is_hash(key: str) -> bool:
    return len(key) == 16 and all(ch in "0123456789abcdef" for ch in key)


def resolve(value, func, node):
    """A Schedule of ``func`` from a Schedule, a trace or a callable; refuses another workload's."""
    from ..tensor import Schedule, replay

    where = f"the schedule for %{node.name}"
    if callable(value) and not isinstance(value, Schedule):
        value = value(func)
        if not isinstance(value, Schedule):
            raise GraphError(f"{where} is a callable that returned {type(value).__name__}, not a Schedule")
    elif isinstance(value, (str, dict)):
        trace = json.loads(value) if isinstance(value, str) and value.lstrip().startswith("{") else value
        if isinstance(trace, str):
            raise GraphError(f"{where} is the string {value[:40]!r}: give a trace's JSON text, its dict, "
                             f"a Schedule or a callable")
        made = trace.get("workload") if isinstance(trace, dict) else None
        if made is not None and made != func.to_dict():
            raise ScheduleMismatchError(f"{where} is a trace made on {_describe_dict(made)}, but the node is "
                                        f"{describe(func)}; make the trace on the node's workload "
                                        f"(key {workload_key(func)!r})")
        value = replay(func, trace)
    elif not isinstance(value, Schedule):
        raise GraphError(f"{where} is a {type(value).__name__}; give a Schedule, a trace (JSON text or dict) "
                         f"or a callable func -> Schedule")
    if value.func.to_dict() != func.to_dict():
        raise ScheduleMismatchError(f"{where} was made on {describe(value.func)}, but the node is "
                                    f"{describe(func)}; schedule the node's workload (key {workload_key(func)!r})")
    return value


def _describe_dict(d: dict) -> str:
    bufs = [f"{b[0]} {'x'.join(str(s) for s in b[1])}" for b in d.get("buffers", [])]
    dtype = d.get("buffers", [[None, None, "?"]])[-1][2]
    return f"{d.get('name')} {', '.join(bufs[:-1])} -> {bufs[-1] if bufs else '?'} ({dtype})"


def anchor_of(nodes):
    """The node of a matmul or library group a schedule may lower (None for other groups)."""
    for n in nodes:
        if n.op in SCHEDULABLE:
            return n
    return None


def scheduled_group(ctx, nodes, outputs, table) -> "dict | None":
    """Run the group with its anchor's schedule from ``table``; None when no schedule applies
    (the caller then lowers the group as by default)."""
    anchor = anchor_of(nodes)
    if anchor is None:
        return None
    try:
        func, operands = node_workload(ctx, anchor)
    except GraphError:
        if hasattr(table, "names") and table.names(anchor):
            raise                                  # asked for by name or op kind: say why it cannot be
        return None                                # no workload, so no workload key can name it
    sch = table.lookup(anchor, func)
    if sch is None:
        return None
    return run_scheduled(ctx, nodes, outputs, anchor, sch, func, operands)


#: graph ops a generated matmul takes inside as epilogue steps
EPILOGUE_OPS = ("add", "relu", "gelu")


def fold_epilogue(ctx, anchor, rest, outputs, func):
    """``(steps, extra values, output name)`` when ``rest`` is an epilogue the generated matmul can
    take inside (module docstring), else None. ``steps`` names the workload's epilogue, in order
    (``("bias", "gelu")``); ``extra`` maps its input buffers (``bias``, ``R``) to graph values."""
    if func.name != "matmul" or not rest or list(outputs) != [rest[-1].name]:
        return None
    m, n = func.output.shape
    prev, steps, extra = anchor.name, [], {}
    for node in rest:
        if node.op not in EPILOGUE_OPS or prev not in node.inputs:
            return None
        if node.op != "add":
            if list(node.inputs) != [prev]:
                return None
            steps.append(node.op)
        else:
            others = [i for i in node.inputs if i != prev]
            if len(others) != 1:
                return None
            shape = tuple(ctx.shape(others[0]))
            kind = ("bias" if math.prod(shape) == n and shape[-1:] == (n,) else
                    "residual" if math.prod(shape) == m * n and shape[-1:] == (n,) else None)
            if kind is None or kind in steps:
                return None
            steps.append(kind)
            extra["bias" if kind == "bias" else "R"] = others[0]
        prev = node.name
    return tuple(steps), extra, prev


def run_scheduled(ctx, nodes, outputs, anchor, sch, func, operands) -> dict:
    """Run ``anchor`` as ``sch``'s generated kernel, then the rest of the group (its epilogue),
    or the whole group as one kernel when its epilogue folds in (:func:`fold_epilogue`)."""
    from ..tensor import build, replay
    from ..tensor import workloads as wl

    rest = [n for n in nodes if n is not anchor]
    folded = fold_epilogue(ctx, anchor, rest, outputs, func)
    if folded is not None:
        steps, extra, last = folded
        m, n = func.output.shape
        k = func.block.axis("k").extent
        efunc = wl.matmul(m, n, k, func.dtype, epilogue=steps)
        kernel = build(replay(efunc, sch.trace), name=f"{efunc.name}_scheduled")
        shapes = {"bias": (n,), "R": (m, n)}
        args = operands + [ctx.reshape(ctx.env[extra[b.name]], shapes[b.name]) for b in efunc.inputs[2:]]
        with ctx.output(last):
            y = ctx.reshape(kernel(*args), ctx.shape(last))
        return {last: y}
    kernel = build(sch, name=f"{func.name}_scheduled")
    with ctx.output(anchor.name):
        y = ctx.reshape(kernel(*operands), ctx.shape(anchor.name))
    out = {anchor.name: y} if anchor.name in outputs else {}
    todo = [o for o in outputs if o != anchor.name]
    if todo:
        out.update(run_pure(ctx, rest, todo, local={anchor.name: y}))
    return out
