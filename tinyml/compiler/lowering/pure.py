"""Elementwise and injective groups: one fused elementwise kernel running an op program.

A pure group (elementwise, broadcast and layout ops, no matmul or reduction)
becomes one launch of :func:`tinyml.kernels.fusion.fused_elementwise`'s kernel:
its graph ops are translated into an op program (:class:`~tinyml.kernels.fusion.Program`)
whose inputs are the group's *leaves*: group inputs, possibly seen through
layout ops (a slice, a transpose, a gather of embedding rows), which the kernel
reads element by element, each once::

    %3 = slice(%2) ; %4 = mul(%3, %x) ; %5 = gelu(%4)
    ->  program(%0 = slice(%2), %1 = %x) -> %3 :  %2 = mul %0 %1 ; %3 = gelu %2

so the kernel reads ``numel(%3) + numel(%x)`` elements and writes ``numel(%5)``,
whatever the layout of ``%2``. Translations:

* ``exp tanh relu gelu sigmoid add sub mul div`` -> the same opcode; ``scale(f)`` -> ``scale f``
  for ``f > 0``, else ``where(-inf < x, scale f x, x)`` (a masked ``-inf`` stays ``-inf``:
  :mod:`tinyml.compiler.ops.elementwise`);
* ``clip(lo, hi)`` -> ``min(max(x, lo), hi)`` with the constants in the program (an
  infinite bound is left out: ``clip(x, 0, inf)`` is one ``max``);
* ``causal_mask(scale, fill)`` over ``(.., Nq, Nk)``: a GPU kernel computes each
  element's row ``i`` and column ``j`` from its thread index; the op program has
  no such opcode, so tinyml passes them as two small index vectors ``(Nq, 1)``
  and ``(Nk,)`` and runs ``where(j - i < Nk - Nq + 1/2, scale * x, fill)`` (``scale * x`` as ``scale(f)`` above). The
  kernel then uses 32 x 32 blocks, so the vectors add ``M ceil(Nk/32) + ceil(M/32) Nk``
  element reads (1/16 of x's) rather than one ``Nk`` row per block row.

A layout op applied to a value *computed* in the group (``transpose(gelu(x))``)
cannot be a load pattern of the same kernel: the computed value is written out
by one kernel first ("a cut"), and the rest of the group reads it. Every output
of the group is written by its own launch of the program (the kernel writes one
output), so a group with two outputs costs two kernels.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import numpy as np

from ...sim import FLOAT_DTYPES

if TYPE_CHECKING:
    from ...kernels.fusion import Program

#: graph ops that become instructions of an op program
ELEMENTWISE = ("exp", "tanh", "relu", "gelu", "sigmoid", "clip", "add", "sub", "mul", "div", "scale", "causal_mask")


def node_instructions(node, refs, emit):
    """The op-program instructions of one elementwise graph node (not ``causal_mask``, which needs
    position vectors: :class:`Chain`) over operand refs; returns the ref of its result.

    ``emit(op, refs, const=None)`` appends one instruction and returns its ref. ``scale(f)`` ->
    ``scale f``; ``clip(lo, hi)`` -> ``min(max(x, lo), hi)`` with the bounds as constants (an
    infinite bound left out; ``copy`` if both are); every other op is its own opcode.
    """
    a = node.attr
    if node.op == "scale":
        return scaled(refs[0], a["factor"], emit)
    if node.op == "clip":
        (x,) = refs
        if a["lo"] > -np.inf:
            x = emit("max", (x, emit("const", (), a["lo"])))
        if a["hi"] < np.inf:
            x = emit("min", (x, emit("const", (), a["hi"])))
        return x if x != refs[0] else emit("copy", (x,))
    return emit(node.op, refs)


def scaled(x, factor: float, emit):
    """``factor * x`` with ``-inf`` left ``-inf``: one ``scale`` for ``factor > 0`` (IEEE keeps -inf
    there), else ``where(-inf < x, factor * x, x)``, two more instructions."""
    if factor > 0:
        return emit("scale", (x,), factor)
    visible = emit("lt", (emit("const", (), -np.inf), x))
    return emit("where", (visible, emit("scale", (x,), factor), x))


class Chain:
    """An op program under construction over leaves (tensors) and instructions."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.leaves: list = []              # tensors the kernel reads
        self.instrs: list = []              # (op, refs, const or None); a ref is ("in", i) or ("ins", k)
        self._leaf_index: dict[int, int] = {}
        self._index_vectors: dict = {}
        self.masked = False                 # a causal mask: square blocks (see the module docstring)

    # ---- building ------------------------------------------------------------------------------
    def leaf(self, x) -> tuple:
        key = id(x)
        if key not in self._leaf_index:
            self._leaf_index[key] = len(self.leaves)
            self.leaves.append(x)
        return ("in", self._leaf_index[key])

    def emit(self, op: str, refs=(), const=None) -> tuple:
        self.instrs.append((op, tuple(refs), const))
        return ("ins", len(self.instrs) - 1)

    def add_node(self, node, refs: list) -> tuple:
        """Instructions for one elementwise graph node over operand refs; returns its ref."""
        a = node.attr
        if node.op == "causal_mask":
            nq, nk = self.ctx.shape(node.name)[-2:]
            i, j = self._indices(nq, nk)
            visible = self.emit("lt", (self.emit("sub", (j, i)), self.emit("const", (), nk - nq + 0.5)))
            return self.emit("where", (visible, scaled(refs[0], a["scale"], self.emit),
                                       self.emit("const", (), a["fill"])))
        return node_instructions(node, refs, self.emit)

    def _indices(self, nq: int, nk: int) -> tuple:
        self.masked = True
        key = (nq, nk)
        if key not in self._index_vectors:
            i = self.ctx.new((nq, 1), np.arange(nq))                # (Nq, 1) row index
            j = self.ctx.new((nk,), np.arange(nk))                  # (Nk,) column index
            self._index_vectors[key] = (self.leaf(i), self.leaf(j))
        return self._index_vectors[key]

    # ---- emitting one kernel -----------------------------------------------------------------
    def program(self, out: tuple) -> tuple[Program, list]:
        """The program computing ``out`` (only the instructions it needs) and its input tensors."""
        from ...kernels.fusion import Program           # lazy: `import tinyml.compiler` stays light

        if out[0] == "in":                                         # the output is a leaf: copy it
            return Program.from_instructions(1, [("copy", (0,))]), [self.leaves[out[1]]]
        live, stack = set(), [out]
        while stack:
            kind, k = stack.pop()
            if kind == "ins" and k not in live:
                live.add(k)
                stack.extend(self.instrs[k][1])
        used = []
        for k in sorted(live):
            for kind, i in self.instrs[k][1]:
                if kind == "in" and i not in used:
                    used.append(i)
        slot = {("in", i): s for s, i in enumerate(used)}
        instrs = []
        for k in sorted(live):
            op, refs, const = self.instrs[k]
            slot[("ins", k)] = len(used) + len(instrs)
            args = tuple(slot[r] for r in refs)
            instrs.append((op, args) if const is None else (op, args, const))
        return Program.from_instructions(len(used), instrs), [self.leaves[i] for i in used]

    def run(self, out: tuple, shape: tuple, name: str, value: "str | None" = None):
        """Launch one kernel computing ``out`` with output ``shape``; returns the output tensor
        (in the arena slot of graph value ``value`` when the graph has a memory plan)."""
        from ...kernels._contract import operand
        from ...kernels.fusion.elementwise import launch

        prog, tensors = self.program(out)
        ops = [operand(x, f"in{i}", ndim=len(x.shape), dtype=self.ctx.dtype, allowed=FLOAT_DTYPES,
                       check_finite=False) for i, x in enumerate(tensors)]
        blocks = dict(block_m=32, block_n=32) if self.masked and any(i.op == "where" for i in prog.instrs) else {}
        with self.ctx.output(value) if value else contextlib.nullcontext():
            return launch(prog, ops, dtype=self.ctx.dtype, out_shape=tuple(shape), name=name, **blocks)


def kernel_name(nodes) -> str:
    """What a pure kernel is called in the Profile: ``elementwise_<op>`` for one op,
    ``fused_elementwise`` for several, ``gather`` / ``copy`` for layout only."""
    compute = [n.op for n in nodes if n.op in ELEMENTWISE]
    if len(compute) == 1:
        return f"elementwise_{compute[0]}"
    if compute:
        return "fused_elementwise"
    return "gather" if any(n.op == "embedding" for n in nodes) else "copy"


def run_pure(ctx, nodes, outputs, name: "str | None" = None, local: "dict | None" = None,
             copy_leaves=True) -> dict:
    """Compute ``outputs`` of the pure ``nodes``; returns value name -> tensor.

    ``local`` holds values computed earlier in the same group (e.g. a matmul's
    result); everything else is read from ``ctx.env``. An output that is only a
    layout of a tensor (no arithmetic) is copied by a kernel if ``copy_leaves``
    is True or names it; otherwise it is handed on as it is (a view, or a layout
    the next kernel of the same group reads in place). ``name``: the kernels'
    name (default :func:`kernel_name`).
    """
    name = name or kernel_name(nodes)
    local = dict(local or {})
    chain = Chain(ctx)
    refs: dict[str, tuple] = {}

    def ref(name_):
        if name_ not in refs:
            refs[name_] = chain.leaf(local[name_] if name_ in local else ctx.env[name_])
        return refs[name_]

    def tensor(name_):
        """The tensor behind a value: a leaf as it is, a computed value written out (a cut)."""
        r = ref(name_)
        if r[0] == "ins":
            out = chain.run(r, ctx.shape(name_), name, value=name_)
            refs[name_] = chain.leaf(out)
            return out
        return chain.leaves[r[1]]

    results = {}
    for node in nodes:
        if node.op in ELEMENTWISE:
            refs[node.name] = chain.add_node(node, [ref(i) for i in node.inputs])
        else:                                                       # layout / gather: a new leaf
            args = [tensor(i) if not _is_index(ctx, i) else _raw(ctx, local, i) for i in node.inputs]
            refs[node.name] = chain.leaf(ctx.layout(node, args))
    for o in outputs:
        r = refs[o] if o in refs else ref(o)
        copy = copy_leaves if isinstance(copy_leaves, bool) else o in copy_leaves
        if r[0] == "in" and not copy:
            results[o] = chain.leaves[r[1]]
        else:
            results[o] = chain.run(r, ctx.shape(o), name, value=o)
    return results


def _is_index(ctx, name: str) -> bool:
    return ctx.graph.type_of(name).dtype == "int32"


def _raw(ctx, local, name):
    return local[name] if name in local else ctx.env[name]
