"""The IR: a :class:`Graph` of :class:`Node` s in topological order.

Every value has a name and a :class:`~tinyml.compiler.types.TensorType`:

* graph inputs (``%x``) and weights (``%w1``, with their data) are named by the user;
* every node defines one value, named by a counter (``%0``, ``%1`` ...).

A node is ``%3 = gelu(%2) : tensor<n x 3072, fp16>``: an op from the registry
(:mod:`tinyml.compiler.ops`), its input value names, its attributes (a sorted,
hashable tuple, so equal nodes compare equal) and its output type.

After the ``fuse`` pass a graph also carries ``groups``: :class:`FusedGroup` s
that partition the nodes, each one future kernel. Passes never mutate a graph:
they build a new one (:meth:`Graph.replace`); nodes are frozen, weight arrays
are shared read-only.

The builder methods (``g.matmul(x, w)`` ...) live in :mod:`tinyml.compiler.builder`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace as _dc_replace

import numpy as np

from ..sim.args import integer
from ..sim.host import check_host_memory
from . import ops as _ops
from .builder import Builder
from .errors import GraphError
from .types import TensorType, canonical_dtype
from .values import weight_array

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\Z")


def _freeze(v):
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, np.ndarray):
        return tuple(_freeze(x) for x in v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    return v


@dataclass(frozen=True)
class Node:
    """``%name = op(inputs...) {attrs} : type`` (``type`` is None until shape inference)."""

    name: str
    op: str
    inputs: tuple
    attrs: tuple = ()
    type: "TensorType | None" = None

    @property
    def attr(self) -> dict:
        return dict(self.attrs)

    @property
    def opdef(self) -> _ops.OpDef:
        return _ops.get(self.op)

    def with_(self, **changes) -> "Node":
        return _dc_replace(self, **changes)


@dataclass(frozen=True, eq=False)
class Weight:
    """A constant of the graph: its type and its float32 data (read-only)."""

    type: TensorType
    data: np.ndarray


@dataclass(frozen=True)
class FusedGroup:
    """One fused kernel: its nodes in order, what it reads and writes, what anchors it.

    * ``nodes``: names of the nodes, in topological order;
    * ``ops``: their op names, same order;
    * ``inputs``: values it reads from HBM (graph inputs, weights, other groups' outputs);
    * ``outputs``: values it materialises in HBM (used by another group or a graph output);
    * ``anchor``: the node that decides the kernel: the group's matmul, reduction or
      attention, or (for a purely elementwise/injective group) its last node;
    * ``kind``: the group's pattern kind (its anchor's, or the largest of a pure group's ops);
    * ``lowering``: how the group lowers (the anchor's; ``"elementwise"`` or
      ``"injective"`` for a pure group of several ops).
    """

    id: int
    nodes: tuple
    ops: tuple
    inputs: tuple
    outputs: tuple
    anchor: str
    kind: str
    lowering: str


@dataclass(frozen=True)
class Value:
    """A handle on one value of a graph under construction (what builder methods return)."""

    graph: "Graph" = field(repr=False, compare=False)
    name: str

    @property
    def type(self) -> TensorType:
        return self.graph.type_of(self.name)

    @property
    def shape(self) -> tuple:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __str__(self) -> str:
        return f"%{self.name}"

    def __repr__(self) -> str:
        return f"%{self.name}: {self.type}"


class Graph(Builder):
    """A dataflow graph: inputs, weights, nodes in topological order, outputs (and groups once fused).

    >>> g = Graph("mlp")
    >>> x = g.input("x", ("n", 768), "fp16")
    >>> w = g.weight("w1", (768, 3072))
    >>> y = g.gelu(g.matmul(x, w))
    >>> g.output(y)
    >>> print(g.nodes[-1].type)
    tensor<n x 3072, fp16>
    """

    def __init__(self, name: str = "graph", *, dtype: str = "fp16", seed: int = 0):
        self.name = name
        self.dtype = canonical_dtype(dtype)
        self.seed = integer(seed, "Graph(seed=...)", lo=0, error=GraphError, hint="the seed of the weights' generator")
        self.inputs: dict[str, TensorType] = {}
        self.weights: dict[str, Weight] = {}
        self.nodes: list[Node] = []
        self.outputs: list[str] = []
        self.groups: tuple[FusedGroup, ...] = ()
        self._rng = np.random.default_rng(seed)
        self._index: dict[str, Node] = {}
        self._indexed: "tuple[int, int] | None" = None

    # ---- looking things up -----------------------------------------------------------------
    def _nodes_by_name(self) -> dict[str, Node]:
        """name -> node, rebuilt when the node list is replaced or grows (nodes are only appended)."""
        key = (id(self.nodes), len(self.nodes))
        if self._indexed != key:
            self._index = {n.name: n for n in self.nodes}
            self._indexed = key
        return self._index

    def node(self, name: str) -> "Node | None":
        """The node defining value ``name`` (None for inputs, weights and unknown names)."""
        return self._nodes_by_name().get(_name(name))

    def has_value(self, name: str) -> bool:
        name = _name(name)
        return name in self.inputs or name in self.weights or name in self._nodes_by_name()

    def type_of(self, name) -> TensorType:
        name = _name(name)
        if name in self.inputs:
            return self.inputs[name]
        if name in self.weights:
            return self.weights[name].type
        node = self._nodes_by_name().get(name)
        if node is None:
            raise GraphError(f"graph {self.name!r} has no value %{name}")
        if node.type is None:
            raise GraphError(f"%{name} = {node.op}(...) has no type yet; run infer_shapes first")
        return node.type

    def group_nodes(self, group: FusedGroup) -> list[Node]:
        """The nodes of a fused group, in order (what lowering walks)."""
        by_name = self._nodes_by_name()
        return [by_name[m] for m in group.nodes]

    def consumers(self) -> dict[str, list[str]]:
        """value name -> names of the nodes that read it (in node order; repeated if read twice)."""
        out: dict[str, list[str]] = {}
        for n in self.nodes:
            for i in n.inputs:
                out.setdefault(i, []).append(n.name)
        return out

    def fresh_name(self) -> str:
        """A node name not used yet: one more than the largest numeric name."""
        nums = [int(n.name) for n in self.nodes if n.name.isdigit()]
        return str(max(nums, default=-1) + 1)

    @property
    def symbols(self) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for t in self.inputs.values():
            out |= t.symbols
        for n in self.nodes:
            if n.type is not None:
                out |= n.type.symbols
        return out

    # ---- copying -------------------------------------------------------------------------------
    def replace(self, **changes) -> "Graph":
        """A new graph with some of ``name, inputs, weights, nodes, outputs, groups`` replaced.

        The input graph is untouched; unchanged containers are copied (shallow).
        """
        g = Graph.__new__(Graph)
        g.name = changes.pop("name", self.name)
        g.dtype, g.seed = self.dtype, self.seed
        g.inputs = dict(changes.pop("inputs", self.inputs))
        g.weights = dict(changes.pop("weights", self.weights))
        g.nodes = list(changes.pop("nodes", self.nodes))
        g.outputs = list(changes.pop("outputs", self.outputs))
        g.groups = tuple(changes.pop("groups", self.groups))
        if changes:
            raise TypeError(f"Graph.replace got unknown fields {sorted(changes)}")
        g._rng = np.random.default_rng(self.seed + 1)
        g._index, g._indexed = {}, None
        return g

    def copy(self) -> "Graph":
        return self.replace()

    # ---- building: inputs, weights, nodes, outputs ------------------------------------------------
    def _check_new_name(self, name: str, what: str) -> str:
        if not isinstance(name, str) or not _IDENT.match(name):
            raise GraphError(f"{what} name {name!r} must be an identifier such as 'x' or 'h0.w_fc' "
                             "(numbers are reserved for node values)")
        if self.has_value(name):
            raise GraphError(f"{what} name {name!r} is already used in graph {self.name!r}")
        return name

    def input(self, name: str, shape, dtype: "str | None" = None) -> Value:
        """Declare a graph input; dims may be symbols (``'n'``) or affine expressions (``'2*n'``)."""
        self._check_new_name(name, "input")
        self.inputs[name] = TensorType.of(shape, dtype or self.dtype)
        return Value(self, name)

    def weight(self, name: str, shape, dtype: "str | None" = None, *, data=None,
               init: str = "normal", mean: float = 0.0, std: float = 0.02) -> Value:
        """Declare a weight with concrete shape and data: ``data``, or drawn by ``init``
        (``"normal"``: ``mean + std * N(0, 1)`` from the graph's seeded generator; ``"ones"``; ``"zeros"``)."""
        self._check_new_name(name, "weight")
        t = TensorType.of(shape, dtype or self.dtype)
        if t.symbols:
            raise GraphError(f"weight {name!r} has a symbolic shape {t}; weights have concrete shapes")
        if data is None:
            # drawn in float64 (8 bytes an element), then kept as float32 (4): ask the host first
            check_host_memory(12 * math.prod(t.shape), f"weight {name!r} {t} of graph {self.name!r}",
                              advice="(a drawn weight is float64 first, then float32). Declare a smaller "
                                     "weight; the compiler's counting mode costs only the shapes of inputs.")
            if init == "normal":
                data = mean + std * self._rng.standard_normal(t.shape)
            elif init in ("ones", "zeros"):
                data = (np.ones if init == "ones" else np.zeros)(t.shape)
            else:
                raise GraphError(f"weight {name!r}: unknown init {init!r}; use 'normal', 'ones' or 'zeros'")
        arr = weight_array(name, data, t.dtype)          # float32 (int64 ids); refuses what would change
        if arr.shape != t.shape:
            raise GraphError(f"weight {name!r}: data has shape {arr.shape} but the declared type is {t}")
        arr.flags.writeable = False
        self.weights[name] = Weight(t, arr)
        return Value(self, name)

    def make_node(self, op: str, inputs, attrs: "dict | None" = None, name: "str | None" = None) -> Node:
        """A typed node for ``op`` over existing values (not appended): attributes are
        canonicalised and the output type computed by the op's shape rule; a rejected
        operand raises an error that names the node, the op and every operand type."""
        opdef = _ops.get(op)
        names = tuple(_name(i) for i in inputs)
        name = name or self.fresh_name()
        attrs = dict(attrs or {})
        for i in names:
            if not self.has_value(i):
                raise GraphError(f"%{name} = {op}(...): operand %{i} is not a value of graph {self.name!r}")
        types = tuple(self.type_of(i) for i in names)
        where = f"%{name} = {op}({', '.join(f'%{i}: {t}' for i, t in zip(names, types))})"
        if opdef.arity is not None and len(names) != opdef.arity:
            raise GraphError(f"{where}: {op} takes {opdef.arity} operand(s), got {len(names)}")
        if opdef.arity is None and not names:
            raise GraphError(f"{where}: {op} needs at least one operand")
        try:
            canon = opdef.canon(types, attrs) if opdef.canon else {}
            unknown = sorted(set(attrs) - set(canon))
            if unknown:
                raise GraphError(f"unknown attribute(s) {unknown} for {op}; it takes {sorted(canon) or 'none'}")
            canon = {k: _freeze(v) for k, v in canon.items()}
            out = opdef.shape_rule(types, canon)
        except GraphError as e:
            raise type(e)(f"{where}: {e}") from None
        return Node(name, op, names, tuple(sorted(canon.items())), out)

    def add_node(self, op: str, *inputs, **attrs) -> Value:
        """Append ``op(*inputs, **attrs)`` and return its value (the builder methods call this)."""
        if self.groups:
            raise GraphError(f"graph {self.name!r} is fused; build on the unfused graph and fuse again")
        node = self.make_node(op, inputs, attrs)
        self.nodes.append(node)
        return Value(self, node.name)

    def output(self, *values) -> None:
        """Mark values as graph outputs (in order)."""
        for v in values:
            if not self.has_value(_name(v)):
                raise GraphError(f"output %{_name(v)} is not a value of graph {self.name!r}")
            self.outputs.append(_name(v))

    # ---- views --------------------------------------------------------------------------------
    def __str__(self) -> str:
        from .printer import format_graph

        return format_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {self.name!r}: {len(self.inputs)} inputs, {len(self.weights)} weights, " \
               f"{len(self.nodes)} nodes, {len(self.groups)} groups>"

    def validate(self) -> "Graph":
        """Raise :class:`GraphError` listing every problem (see :mod:`.validate`); return self if none."""
        from .validate import validate

        validate(self)
        return self

    def interpret(self, inputs, bindings=None) -> list:
        from .interpreter import interpret

        return interpret(self, inputs, bindings)

    def to_dot(self) -> str:
        from .draw import to_dot

        return to_dot(self)


def _name(v) -> str:
    if isinstance(v, Value):
        return v.name
    if isinstance(v, str):
        return v[1:] if v.startswith("%") else v
    raise GraphError(f"expected a graph value (from g.input/g.weight/an op), got {v!r}")

