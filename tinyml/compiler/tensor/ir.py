"""The tensor-program IR: buffers, one block, and the loop nest a schedule transforms.

A *primitive tensor function* (:class:`PrimFunc`, MLC's word) is a set of buffers and a
block that says *what* is computed, with no loops::

    block matmul  (i: S 64, j: S 48, k: R 32)
        init:    C[i, j] = 0
        update:  C[i, j] = C[i, j] + A[i, k] * B[k, j]

Axes are spatial (``S``: each value writes its own output) or reductions (``R``: the
values accumulate into one output), as in TensorIR. The block is a contraction: the
update multiplies two input elements and adds the product to the output element.

A :class:`Nest` says *how*: the loops around the block. Each loop walks one or more
*pieces* of the block's axes (a piece is ``axis += value * stride`` for ``value`` in
``range(extent)``); a fresh nest has one loop per axis, each one whole piece, and
:mod:`.schedule` splits, reorders, fuses and binds them. Stages (the copies made by
``cache_read`` / ``cache_write``) and the init hang at a *depth*: the number of loops
around them. A stage at depth ``d`` moves the region that loops ``d, d+1, ...`` touch.

Everything here is a frozen dataclass: a schedule step builds a new Nest, so a refused
primitive never leaves a half-changed one behind, and two nests compare with ``==``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

from .errors import TensorProgramError

SCOPES = ("global", "shared", "local")          # HBM, SRAM, registers
LOOP_KINDS = ("serial", "parallel", "vectorized", "unrolled")
THREAD_TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z", "threadIdx.x", "threadIdx.y", "threadIdx.z")
SPATIAL, REDUCE = "S", "R"


@dataclass(frozen=True)
class Buffer:
    """A tensor: ``scope`` says where it lives (global = HBM, shared = SRAM, local = registers)."""

    name: str
    shape: tuple
    dtype: str = "fp16"          # logical dtype: sets the bytes counted (the data is float32)
    scope: str = "global"

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise TensorProgramError(f"buffer {self.name}: scope must be one of {SCOPES}, got {self.scope!r}")


@dataclass(frozen=True)
class Axis:
    """A block iterator: ``kind`` is ``"S"`` (spatial) or ``"R"`` (reduction)."""

    name: str
    extent: int
    kind: str


@dataclass(frozen=True)
class Index:
    """One dimension of an access that is not a plain axis: ``sum(coef * axis) + offset``,
    e.g. a convolution's input row ``y * 2 + r - 1``. Reads outside the buffer are zero
    (padding)."""

    terms: tuple                 # ((axis, coef), ...), coef >= 1
    offset: int = 0

    @property
    def axes(self) -> tuple:
        return tuple(a for a, _ in self.terms)

    def text(self, name=lambda a: a) -> str:
        parts = [name(a) if c == 1 else f"{name(a)} * {c}" for a, c in self.terms]
        out = " + ".join(parts)
        return out + (f" + {self.offset}" if self.offset > 0 else f" - {-self.offset}" if self.offset < 0 else "")


def as_index(dim) -> Index:
    """A dimension of an access as an :class:`Index` (a plain axis name is ``axis * 1 + 0``)."""
    return dim if isinstance(dim, Index) else Index(((dim, 1),), 0)


def access_axes(acc) -> set:
    """Every axis an access's index uses."""
    return {a for d in acc.axes for a in as_index(d).axes}


@dataclass(frozen=True)
class Access:
    """``buffer[axes[0], axes[1], ...]``: each dimension indexed by a block axis (its name) or
    an affine :class:`Index` of axes."""

    buffer: str
    axes: tuple

    def text(self, index=None) -> str:
        idx = index if index is not None else [as_index(d).text() for d in self.axes]
        return f"{self.buffer}[{', '.join(idx)}]"

    @property
    def plain(self) -> bool:
        """True if every dimension is one axis (no strides, offsets or padding)."""
        return all(isinstance(d, str) for d in self.axes)


#: vector FLOPs of each epilogue step per element: an add or a max is one; GeLU's tanh form
#: ``0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`` is nine (as tinyml.kernels.fusion counts it)
EPILOGUE_FLOPS = {"bias": 1, "residual": 1, "relu": 1, "gelu": 9}
EPILOGUE_KINDS = tuple(EPILOGUE_FLOPS)
#: the steps that add an input (``bias[j]``: broadcast along the other axes; ``R[i, j]``: one per element)
EPILOGUE_INPUTS = ("bias", "residual")
GELU_C, GELU_A = 0.7978845608028654, 0.044715        # sqrt(2 / pi), the cubic's coefficient


@dataclass(frozen=True)
class Epilogue:
    """One step applied to a finished output element: ``bias`` and ``residual`` add ``access``
    (an input such as ``bias[j]`` or ``R[i, j]``), ``relu`` takes ``max(x, 0)``, ``gelu`` GPT-2's
    tanh GeLU. Each costs :data:`EPILOGUE_FLOPS` vector FLOPs per element."""

    kind: str
    access: "Access | None" = None

    @property
    def flops(self) -> int:
        return EPILOGUE_FLOPS[self.kind]

    def text(self, x: str) -> str:
        if self.access is not None:
            return f"{x} + {self.access.text()}"
        return f"max({x}, 0)" if self.kind == "relu" else f"gelu({x})"


#: what a block computes: a contraction (``out += x * y``) or a softmax over each row
BLOCK_OPS = ("contraction", "softmax")


@dataclass(frozen=True)
class Block:
    """``op == "contraction"``: ``output = 0`` (init), then ``output += inputs[0] * inputs[1]``
    (update) over all axes; when the reduction is complete, the ``epilogue`` steps in order.

    ``op == "softmax"`` (a row reduction): ``output[i, j] = exp(x - max_j x) / sum_j exp(x - max_j x)``
    of the one input ``x = inputs[0][i, j]``. The reduction axis ``j`` carries the row's max and
    sum (online: one pass keeps both, rescaling the sum when the max grows); a second pass over
    ``j`` writes the row. So every ``j`` loop runs inside every ``i`` loop, and the row's input
    is read twice: from HBM, or once from HBM into a ``shared``/``local`` copy and twice from it.
    """

    name: str
    axes: tuple
    output: Access
    inputs: tuple
    epilogue: tuple = ()
    op: str = "contraction"

    @property
    def is_softmax(self) -> bool:
        return self.op == "softmax"

    def axis(self, name: str) -> Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise TensorProgramError(f"block {self.name} has no axis {name!r}; its axes are "
                                 f"{[a.name for a in self.axes]}")

    @property
    def spatial(self) -> tuple:
        return tuple(a for a in self.axes if a.kind == SPATIAL)

    @property
    def reduction(self) -> tuple:
        return tuple(a for a in self.axes if a.kind == REDUCE)


@dataclass(frozen=True)
class PrimFunc:
    """A workload: its global buffers (inputs, then the output) and its block."""

    name: str
    params: tuple
    block: Block
    reference: Callable = field(compare=False, repr=False, default=None)

    def buffer(self, name: str) -> Buffer:
        for b in self.params:
            if b.name == name:
                return b
        raise TensorProgramError(f"{self.name} has no buffer {name!r}; its buffers are "
                                 f"{[b.name for b in self.params]}")

    @property
    def inputs(self) -> tuple:
        return self.params[:-1]

    @property
    def output(self) -> Buffer:
        return self.params[-1]

    @property
    def dtype(self) -> str:
        return self.output.dtype

    def to_dict(self) -> dict:
        """What identifies the workload in a trace: name, buffers and axes."""
        blk = self.block
        update = (f"{blk.output.text()} = softmax over {blk.reduction[0].name} of {blk.inputs[0].text()}"
                  if blk.is_softmax else f"{blk.output.text()} += {blk.inputs[0].text()} * {blk.inputs[1].text()}")
        return {"name": self.name,
                "buffers": [[b.name, list(b.shape), b.dtype] for b in self.params],
                "axes": [[a.name, a.extent, a.kind] for a in blk.axes],
                "update": update}


# ---- the loop nest ---------------------------------------------------------------------

@dataclass(frozen=True)
class Piece:
    """Part of an axis: the loop adds ``value * stride`` to ``axis``, ``value < extent``."""

    axis: str
    extent: int
    stride: int


@dataclass(frozen=True)
class Loop:
    """A loop over one piece (or, after ``fuse``, several, the first outermost)."""

    name: str
    pieces: tuple
    kind: str = "serial"
    thread: "str | None" = None          # "blockIdx.x" ... when bound

    @property
    def extent(self) -> int:
        return math.prod(p.extent for p in self.pieces)

    @property
    def axes(self) -> tuple:
        return tuple(p.axis for p in self.pieces)

    @property
    def label(self) -> str:
        """The loop's kind as printed: ``serial``, ``vectorized``, ``blockIdx.x`` ..."""
        return self.thread or self.kind


@dataclass(frozen=True)
class Stage:
    """A cache copy made by ``cache_read`` (kind ``read``) or ``cache_write`` (kind ``write``).

    ``name`` is the cache buffer, ``source`` the global buffer it mirrors, ``operand`` the
    block input it feeds (``-1``: the output). The stage sits at ``depth``: a read stage
    loads the region the loops at depth and below will read before they run; a write stage
    holds the region they write and stores it back after they finish.
    """

    name: str
    kind: str
    source: str
    scope: str
    dtype: str
    operand: int
    depth: int = 0


@dataclass(frozen=True)
class Nest:
    """The scheduled loop nest of a :class:`PrimFunc` (see the module docstring)."""

    func: PrimFunc
    loops: tuple
    stages: tuple = ()
    init_depth: "int | None" = None        # set by decompose_reduction; None: ``if k == 0`` in the update
    tensorize_depth: "int | None" = None   # loops from here down are one MMA

    @staticmethod
    def initial(func: PrimFunc) -> "Nest":
        """One loop per axis, in the block's axis order (spatial then reduction, as written)."""
        return Nest(func, tuple(Loop(a.name, (Piece(a.name, a.extent, 1),)) for a in func.block.axes))

    # -- lookups ------------------------------------------------------------------------
    def index(self, loop: str) -> int:
        for i, lp in enumerate(self.loops):
            if lp.name == loop:
                return i
        raise TensorProgramError(f"no loop named {loop!r}; the loops are {[lp.name for lp in self.loops]}")

    def loop(self, name: str) -> Loop:
        return self.loops[self.index(name)]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise TensorProgramError(f"no stage named {name!r}; the stages are {[s.name for s in self.stages]}")

    def read_stage(self, operand: int) -> "Stage | None":
        return next((s for s in self.stages if s.kind == "read" and s.operand == operand), None)

    def write_stage(self) -> "Stage | None":
        return next((s for s in self.stages if s.kind == "write"), None)

    def read_buffer(self, operand: int) -> str:
        """The buffer the block's update reads for input ``operand`` (a cache, or the global one)."""
        s = self.read_stage(operand)
        return s.name if s else self.func.block.inputs[operand].buffer

    def write_buffer(self) -> str:
        s = self.write_stage()
        return s.name if s else self.func.block.output.buffer

    def access(self, operand: int) -> Access:
        """The block's access of input ``operand`` (``-1``: the output; 2, 3 ...: epilogue inputs)."""
        blk = self.func.block
        if operand < 0:
            return blk.output
        extra = [e.access for e in blk.epilogue if e.access is not None]
        return (list(blk.inputs) + extra)[operand]

    def is_reduction(self, loop: Loop) -> bool:
        return any(self.func.block.axis(p.axis).kind == REDUCE for p in loop.pieces)

    # -- regions ------------------------------------------------------------------------
    def span(self, axis: str, depth: int) -> int:
        """How many consecutive values of ``axis`` the loops at ``depth`` and below cover
        (the bounding box: from the smallest to the largest value they reach)."""
        return 1 + sum((p.extent - 1) * p.stride for lp in self.loops[depth:] for p in lp.pieces
                       if p.axis == axis)

    def dim_span(self, dim, depth: int) -> int:
        """The bounding box of one access dimension over the loops at ``depth`` and below."""
        idx = as_index(dim)
        return 1 + sum(c * (self.span(a, depth) - 1) for a, c in idx.terms)

    def footprint(self, stage: Stage) -> tuple:
        """The shape of a cache buffer: the region of its source the loops below it touch."""
        return tuple(self.dim_span(d, stage.depth) for d in self.access(stage.operand).axes)

    def buffers(self) -> tuple:
        """Every buffer: the function's global ones, then the caches with their footprints."""
        caches = tuple(Buffer(s.name, self.footprint(s), s.dtype, s.scope) for s in self.stages)
        return tuple(self.func.params) + caches

    def replace(self, **changes) -> "Nest":
        return replace(self, **changes)
