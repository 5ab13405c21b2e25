"""Schedule primitives: each one builds a new :class:`~.ir.Nest` that computes the same thing.

A :class:`Schedule` holds the current nest and the *trace* of the primitives applied so far
(see :mod:`.trace`). Loops and stages are named by strings; a primitive that makes loops
returns their names::

    sch = Schedule(matmul(256, 256, 256))
    i0, i1 = sch.split("i", [None, 64])           # i = i0 * 64 + i1
    j0, j1 = sch.split("j", [None, 64])
    k0, k1 = sch.split("k", [None, 32])
    sch.reorder(i0, j0, k0, i1, j1, k1)
    sch.bind(i0, "blockIdx.y"); sch.bind(j0, "blockIdx.x")
    a = sch.cache_read("A", "shared"); sch.compute_at(a, k0)    # a 64 x 32 tile of A per k0 step
    ...

Legality, checked before anything changes (a refused primitive raises a
:class:`~.errors.ScheduleError` subclass naming the loop, the dependence and the numbers,
and leaves the schedule as it was):

* ``split`` needs factors that cover the loop. A factor that does not divide is allowed on
  the outermost piece of an axis (the nest then runs a guard ``if i < M``, as TVM's
  predicate), refused on an inner piece, where the extra values would alias the next one.
* ``reorder`` and ``fuse`` may not move a loop across a stage, the init or a tensorized
  region (the region those move would change), and ``fuse`` does not mix spatial and
  reduction loops.
* A reduction loop carries the dependence ``C[i, j] += ...`` from one iteration to the
  next: it cannot be ``parallel`` or bound to blocks or threads, and it must stay inside
  the store-back of a ``cache_write`` and below the init of ``decompose_reduction``.
* Binding follows CUDA: ``blockIdx`` loops outermost, ``threadIdx`` inside them, extents
  within :mod:`.limits`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace

from ...sim.args import integer, number
from .errors import BindError, ComputeAtError, ReorderError, ScheduleError, SplitError, TensorizeError
from .ir import SCOPES, THREAD_TAGS, Loop, Nest, Piece, PrimFunc, Stage
from .legality import attachments, check_attachments, check_nest, check_tensorize, shift_depths
from .sampling import Sampled, check_categorical, check_perfect_tile, divisors, perfect_tile


@dataclass
class Instruction:
    """One step of a trace: a primitive, its arguments (loop and stage names, numbers,
    ``{"var": "t0.1"}`` references to sampled values), the names it made, and for a
    sampling instruction its decision."""

    kind: str
    args: list
    outputs: list = field(default_factory=list)
    decision: object = None

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "args": self.args, "outputs": self.outputs}
        if self.decision is not None:
            d["decision"] = self.decision
        return d


def _arg(x):
    """How an argument is written in the trace."""
    if isinstance(x, Sampled):
        return {"var": x.var}
    if isinstance(x, (list, tuple)):
        return [_arg(v) for v in x]
    return x


class Schedule:
    """A workload being scheduled: ``nest`` is the current loop nest, ``trace`` the steps."""

    def __init__(self, func: PrimFunc, *, seed: int = 0, decisions: "dict | None" = None):
        if not isinstance(func, PrimFunc):
            raise ScheduleError(f"Schedule takes a workload (a PrimFunc, e.g. tinyml.compiler.tensor.matmul(256, 256, "
                                f"256)), got {func!r} ({type(func).__name__})")
        seed = integer(seed, "seed", error=ScheduleError, hint="the seed of the sampling instructions")
        if decisions is not None and not isinstance(decisions, dict):
            raise ScheduleError(f"decisions map instruction indices to decisions, e.g. {{0: [4, 16]}}, got "
                                f"{decisions!r} ({type(decisions).__name__})")
        self.func = func
        self.nest = Nest.initial(func)
        self.trace: list = []
        self._rng = random.Random(seed)
        self._forced = dict(decisions or {})     # instruction index -> decision (replay, mutation)

    # ---- bookkeeping -----------------------------------------------------------------
    def _record(self, kind: str, args: list, outputs=(), decision=None) -> None:
        self.trace.append(Instruction(kind, [_arg(a) for a in args], list(outputs), decision))

    def _commit(self, kind: str, args: list, nest: Nest, outputs=()) -> None:
        check_nest(nest, kind)
        self.nest = nest
        self._record(kind, args, outputs)

    def _loop(self, name) -> tuple:
        """(index, loop) of a loop name, refusing loops inside a tensorized region."""
        if not isinstance(name, str):
            raise ScheduleError(f"loops are named by strings (from get_loops() or split()), got {name!r}")
        i = self.nest.index(name)
        t = self.nest.tensorize_depth
        if t is not None and i >= t:
            raise TensorizeError(f"loop {name} is inside the region tensorized at "
                                 f"{self.nest.loops[t].name}: it is one MMA now and has no loops to change")
        return i, self.nest.loops[i]

    def get_loops(self) -> list:
        return [lp.name for lp in self.nest.loops]

    def show(self) -> str:
        from .printer import numpy_source
        return numpy_source(self.nest)

    # ---- sampling ----------------------------------------------------------------------
    def sample_perfect_tile(self, loop: str, n: int, max_innermost_factor: int = 16) -> list:
        """``n`` factors multiplying exactly to the loop's extent (use them in ``split``)."""
        _, lp = self._loop(loop)
        if len(lp.pieces) != 1:
            raise SplitError(f"sample_perfect_tile({loop}): the loop is fused from {len(lp.pieces)} pieces; "
                             f"sample and split before fusing")
        n = integer(n, f"sample_perfect_tile({loop}): n", lo=1, error=SplitError,
                    hint="the number of loops the split makes")
        max_innermost_factor = integer(max_innermost_factor, f"sample_perfect_tile({loop}): max_innermost_factor",
                                       lo=1, error=SplitError, hint="the largest innermost factor drawn")
        idx = len(self.trace)
        if idx in self._forced:
            factors = check_perfect_tile(self._forced[idx], lp.extent, n, max_innermost_factor)
        else:
            factors = perfect_tile(self._rng, lp.extent, n, max_innermost_factor)
        outs = [f"t{idx}.{q}" for q in range(n)]
        self._record("sample_perfect_tile", [loop, n, max_innermost_factor], outs, list(factors))
        return [Sampled(f, v) for f, v in zip(factors, outs)]

    def sample_categorical(self, candidates: list, probs: "list | None" = None) -> Sampled:
        """One of ``candidates`` (ints), drawn with ``probs`` (uniform by default)."""
        if isinstance(candidates, (str, bytes)) or not isinstance(candidates, (list, tuple)) or not candidates:
            raise ScheduleError(f"sample_categorical takes a non-empty list of integer candidates, e.g. [0, 1], "
                                f"got {candidates!r}")
        cands = [integer(c, f"sample_categorical: candidate {q}", error=ScheduleError) for q, c in enumerate(candidates)]
        if probs is not None and (isinstance(probs, (str, bytes)) or not isinstance(probs, (list, tuple))):
            raise ScheduleError(f"sample_categorical: probs is a list of {len(cands)} numbers, got {probs!r}")
        probs = [1.0 / len(cands)] * len(cands) if probs is None else [
            number(p, f"sample_categorical: probs[{q}]", lo=0, error=ScheduleError) for q, p in enumerate(probs)]
        if len(probs) != len(cands) or sum(probs) <= 0:
            raise ScheduleError(f"sample_categorical: {len(cands)} candidates need as many non-negative "
                                f"probabilities, got {probs}")
        idx = len(self.trace)
        if idx in self._forced:
            choice = check_categorical(self._forced[idx], len(cands))
        else:
            choice = self._rng.choices(range(len(cands)), weights=probs)[0]
        var = f"t{idx}.0"
        self._record("sample_categorical", [cands, probs], [var], choice)
        return Sampled(cands[choice], var)

    # ---- loop transformations ------------------------------------------------------------
    def split(self, loop: str, factors: list) -> list:
        """Split ``loop`` into ``len(factors)`` loops, outermost first; one factor may be
        ``None`` (inferred: the extent divided by the others, rounded up)."""
        i, lp = self._loop(loop)
        if lp.thread or lp.kind != "serial":
            raise SplitError(f"split({loop}): the loop is {lp.label}; split it before binding or annotating it")
        if len(lp.pieces) != 1:
            raise SplitError(f"split({loop}): the loop is fused from {len(lp.pieces)} pieces "
                             f"({', '.join(p.axis for p in lp.pieces)}); split the pieces before fusing them")
        if isinstance(factors, (str, bytes)) or not isinstance(factors, (list, tuple)):
            raise SplitError(f"split({loop}, {factors!r}): factors are a list, outermost first, e.g. [None, 16]")
        if not factors or sum(f is None for f in factors) > 1:
            raise SplitError(f"split({loop}, {list(factors)}): give at least one factor, at most one None")
        factors = [f if f is None or isinstance(f, Sampled) else
                   integer(f, f"split({loop}, {list(factors)}): factor {q}", lo=1, error=SplitError,
                           hint="a loop's extent; None lets the split infer it")
                   for q, f in enumerate(factors)]
        piece = lp.pieces[0]
        known = math.prod(f for f in factors if f is not None)
        vals = [f if f is not None else -(-piece.extent // known) for f in factors]
        total = math.prod(vals)
        inner = math.prod(vals[1:])
        if total > piece.extent and (vals[0] - 1) * inner >= piece.extent:
            need = -(-piece.extent // inner)
            raise SplitError(f"split({loop}, {vals}): the outer factor {vals[0]} makes iterations that all fall past "
                             f"the extent {piece.extent} ({vals[0]} x {inner} = {total}; {need} x {inner} covers it); "
                             f"use {need} or None")
        if total < piece.extent:
            raise SplitError(f"split({loop}, {vals}): the factors multiply to {total}, less than the loop's extent "
                             f"{piece.extent}; the loops would skip values of {piece.axis}")
        top = max(p.extent * p.stride for x in self.nest.loops for p in x.pieces if p.axis == piece.axis)
        if total > piece.extent and piece.extent * piece.stride != top:
            raise SplitError(
                f"split({loop}, {vals}): {total} does not equal the extent {piece.extent} of {loop}, an inner piece "
                f"of axis {piece.axis} (stride {piece.stride}); the extra values would run into the next piece and "
                f"a guard cannot tell them apart. Use factors multiplying to {piece.extent} "
                f"(its divisors: {divisors(piece.extent)}), or split the outermost loop of {piece.axis}")
        names = [f"{loop}_{q}" for q in range(len(vals))]
        for nm in names:
            if nm in self.get_loops():
                raise SplitError(f"split({loop}): a loop named {nm} exists already")
        new = []
        for q, (nm, f) in enumerate(zip(names, vals)):
            new.append(Loop(nm, (Piece(piece.axis, f, piece.stride * math.prod(vals[q + 1:])),)))
        m = len(new)
        nest = shift_depths(self.nest, lambda d: d + m - 1 if d > i else d)
        nest = nest.replace(loops=self.nest.loops[:i] + tuple(new) + self.nest.loops[i + 1:])
        self._commit("split", [loop, list(factors)], nest, names)
        return names

    def reorder(self, *loops: str) -> None:
        """Put ``loops`` in this order, in the positions they occupy now."""
        if len(set(loops)) != len(loops) or len(loops) < 2:
            raise ReorderError(f"reorder{loops}: give two or more distinct loops")
        pos = [self._loop(x)[0] for x in loops]
        order = list(self.nest.loops)
        for p, name in zip(sorted(pos), loops):
            order[p] = self.nest.loop(name)
        check_attachments(self.nest, tuple(order), f"reorder({', '.join(loops)})")
        self._commit("reorder", list(loops), self.nest.replace(loops=tuple(order)))

    def fuse(self, *loops: str) -> str:
        """Fuse adjacent loops (outermost first) into one whose extent is the product."""
        if len(loops) < 2:
            raise ReorderError(f"fuse{loops}: give two or more adjacent loops")
        pos = [self._loop(x)[0] for x in loops]
        if pos != list(range(pos[0], pos[0] + len(pos))):
            raise ReorderError(f"fuse({', '.join(loops)}): the loops are at positions {pos} of "
                               f"{self.get_loops()}; fuse needs adjacent loops, outermost first")
        lps = [self.nest.loops[p] for p in pos]
        for lp in lps:
            if lp.thread or lp.kind != "serial":
                raise ReorderError(f"fuse: loop {lp.name} is {lp.label}; fuse before binding or annotating")
        kinds = {self.nest.is_reduction(lp) for lp in lps}
        if len(kinds) > 1:
            red = [lp.name for lp in lps if self.nest.is_reduction(lp)]
            raise ReorderError(f"fuse({', '.join(loops)}): {', '.join(red)} reduce (they carry C += ...) and the "
                               f"others are spatial; a fused loop must be one or the other")
        lo, m = pos[0], len(pos)
        for name, d in attachments(self.nest):
            if lo < d < lo + m:
                raise ReorderError(f"fuse({', '.join(loops)}): {name} sits between them (under "
                                   f"{self.nest.loops[d - 1].name}); fusing would change the region it covers")
        fused = Loop("_".join(loops) + "_fused", tuple(p for lp in lps for p in lp.pieces))
        nest = shift_depths(self.nest, lambda d: d - (m - 1) if d >= lo + m else d)
        nest = nest.replace(loops=self.nest.loops[:lo] + (fused,) + self.nest.loops[lo + m:])
        self._commit("fuse", list(loops), nest, [fused.name])
        return fused.name

    # ---- annotations ---------------------------------------------------------------------
    def _annotate(self, primitive: str, loop: str, **change) -> None:
        i, lp = self._loop(loop)
        if self.nest.is_reduction(lp) and primitive != "unroll":
            what = f", {change['thread']!r}" if primitive == "bind" else ""
            raise BindError(f"{primitive}({loop}{what}): {loop} is a reduction loop; its iterations all add into "
                            f"the same output element ({self.nest.func.block.output.text()}), so running them "
                            f"at once would race. Choose a spatial loop")
        if lp.thread or lp.kind != "serial":
            raise BindError(f"{primitive}({loop}): the loop is {lp.label} already")
        loops = list(self.nest.loops)
        loops[i] = replace(lp, **change)
        args = [loop, change["thread"]] if primitive == "bind" else [loop]
        self._commit(primitive, args, self.nest.replace(loops=tuple(loops)))

    def bind(self, loop: str, thread: str) -> None:
        """Bind a spatial loop to ``blockIdx.*`` (the grid) or ``threadIdx.*``."""
        if thread not in THREAD_TAGS:
            raise BindError(f"bind({loop}, {thread!r}): the thread axis must be one of {THREAD_TAGS}")
        used = [lp.name for lp in self.nest.loops if lp.thread == thread]
        if used:
            raise BindError(f"bind({loop}, {thread!r}): {used[0]} is bound to {thread} already; "
                            f"fuse the loops first to put both on one axis")
        self._annotate("bind", loop, thread=thread)

    def parallel(self, loop: str) -> None:
        """Run the iterations on the CPU's cores (``prange``); the outermost loop only."""
        self._annotate("parallel", loop, kind="parallel")

    def vectorize(self, loop: str) -> None:
        """Vectorize the innermost (spatial) loop: the generated kernel writes its trip count into
        the source as a constant, so LLVM vectorizes it without a remainder loop. The simulator's
        counts do not change: it charges bytes and FLOPs, not instructions (a GPU's vectorized
        128-bit loads move the same bytes in fewer instructions)."""
        self._annotate("vectorize", loop, kind="vectorized")

    def unroll(self, loop: str) -> None:
        """Unroll a loop: its trip count goes into the generated source as a constant, so LLVM
        unrolls it fully (a new extent is a new compile). The counts do not change (the same
        bytes and FLOPs; fewer branch instructions, which the simulator does not charge)."""
        self._annotate("unroll", loop, kind="unrolled")

    # ---- stages ----------------------------------------------------------------------
    def cache_read(self, buffer: str, scope: str) -> str:
        """Read input ``buffer`` through a copy in ``scope`` (shared = SRAM, local = registers).

        The copy starts at the root (the whole buffer); ``compute_at`` moves it under a loop,
        where it holds only the tile the inner loops read."""
        inputs = [a.buffer for a in self.func.block.inputs]
        if buffer not in inputs:
            raise ScheduleError(f"cache_read({buffer!r}): the block reads {inputs}")
        if scope not in SCOPES[1:]:
            raise ScheduleError(f"cache_read({buffer!r}, {scope!r}): the scope must be 'shared' or 'local'")
        op = inputs.index(buffer)
        if self.nest.read_stage(op):
            raise ScheduleError(f"cache_read({buffer!r}): {buffer} is read through {self.nest.read_stage(op).name} "
                                f"already")
        st = Stage(f"{buffer}_{scope}", "read", buffer, scope, self.func.buffer(buffer).dtype, op, 0)
        self._commit("cache_read", [buffer, scope], self.nest.replace(stages=self.nest.stages + (st,)), [st.name])
        return st.name

    def cache_write(self, scope: str) -> str:
        """Accumulate the output in an fp32 buffer in ``scope`` and store it back afterwards."""
        out = self.func.block.output.buffer
        if self.func.block.is_softmax:
            raise ScheduleError(f"cache_write: {self.func.name} writes each element of {out} once, in its second "
                                f"pass over the row; there is no sum to accumulate. Cache its input instead "
                                f"(cache_read)")
        if scope not in SCOPES[1:]:
            raise ScheduleError(f"cache_write({scope!r}): the scope must be 'shared' or 'local'")
        if self.nest.write_stage():
            raise ScheduleError(f"cache_write: {out} is written through {self.nest.write_stage().name} already")
        if self.nest.init_depth is not None:
            raise ScheduleError("cache_write after decompose_reduction: the init would still write the global "
                                f"{out}; cache the output first, then decompose the reduction")
        st = Stage(f"{out}_{scope}", "write", out, scope, "fp32", -1, 0)
        self._commit("cache_write", [scope], self.nest.replace(stages=self.nest.stages + (st,)), [st.name])
        return st.name

    def _stage_move(self, kind: str, stage: str, loop: str, want: str) -> None:
        st = self.nest.stage(stage)
        if st.kind != want:
            other = "reverse_compute_at" if st.kind == "write" else "compute_at"
            raise ComputeAtError(f"{kind}({stage}, {loop}): {stage} is a {st.kind} stage "
                                 f"(made by cache_{st.kind}); move it with {other}")
        i, _ = self._loop(loop)
        depth = i + 1
        t = self.nest.tensorize_depth
        if t is not None and depth > t:
            raise ComputeAtError(f"{kind}({stage}, {loop}): the loop is inside the tensorized region")
        if st.kind == "read" and self.func.block.is_softmax:
            red = [lp.name for lp in self.nest.loops[:depth] if self.nest.is_reduction(lp)]
            if red:
                raise ComputeAtError(
                    f"{kind}({stage}, {loop}): {red[0]} walks the row ({self.func.block.reduction[0].name}), so "
                    f"{stage} would hold only part of it, and the second pass over the row would find the first "
                    f"part gone. compute_at it at a row loop "
                    f"({', '.join(lp.name for lp in self.nest.loops if not self.nest.is_reduction(lp))})")
        if st.kind == "write":
            red = [lp.name for lp in self.nest.loops[:depth] if self.nest.is_reduction(lp)]
            if red:
                where = f"{loop} is a reduction loop" if red[0] == loop else f"reduction loop {red[0]} encloses {loop}"
                raise ComputeAtError(
                    f"{kind}({stage}, {loop}): {where}, so {stage} would be stored "
                    f"to {st.source} after every {red[0]} step, before the sum over it is complete (the update "
                    f"{self.func.block.output.text()} += ... carries a dependence across {red[0]}). "
                    f"Choose a loop outside every reduction loop")
            for ax in self.nest.access(-1).axes:       # the store-back writes the tile's whole box
                pieces = sorted((p for lp in self.nest.loops[depth:] for p in lp.pieces
                                 if p.axis == ax and p.extent > 1), key=lambda p: p.stride)
                expect = 1
                for p in pieces:
                    if p.stride != expect:
                        lower = [lp.name for lp in self.nest.loops[:depth]
                                 if any(q.axis == ax and q.extent > 1 and q.stride < p.stride for q in lp.pieces)]
                        raise ComputeAtError(
                            f"{kind}({stage}, {loop}): under {loop} the loops walk {ax} with strides "
                            f"{[q.stride for q in pieces]}, a strided region: {stage}'s box would also cover the "
                            f"{ax} values that {', '.join(lower)} (at or above {loop}) writes, and storing it back "
                            f"would overwrite them. Choose a loop that encloses {', '.join(lower)}, or reorder first")
                    expect = p.stride * p.extent
            if self.nest.init_depth is not None and self.nest.init_depth < depth:
                raise ComputeAtError(f"{kind}({stage}, {loop}): the init (decompose_reduction) sits above "
                                     f"{loop} and would zero more than {stage} holds; move the stage first")
        stages = tuple(replace(s, depth=depth) if s.name == stage else s for s in self.nest.stages)
        self._commit(kind, [stage, loop], self.nest.replace(stages=stages))

    def compute_at(self, stage: str, loop: str) -> None:
        """Move a cache_read copy under ``loop``: it loads the tile the loops inside read."""
        self._stage_move("compute_at", stage, loop, "read")

    def reverse_compute_at(self, stage: str, loop: str) -> None:
        """Move a cache_write buffer under ``loop``: it holds the tile the loops inside write,
        stored back when they finish."""
        self._stage_move("reverse_compute_at", stage, loop, "write")

    def decompose_reduction(self, loop: str) -> None:
        """Take the init (``if k == 0: C = 0``) out of the update: zero the output region
        of the loops inside ``loop`` right before ``loop`` runs."""
        i, lp = self._loop(loop)
        if self.func.block.is_softmax:
            raise ComputeAtError(f"decompose_reduction({loop}): {self.func.name}'s row max and sum start at "
                                 f"(-inf, 0) in registers for every row; there is no output to zero")
        if self.nest.init_depth is not None:
            raise ComputeAtError(f"decompose_reduction({loop}): the reduction is decomposed already "
                                 f"(init before {self.nest.loops[self.nest.init_depth].name})")
        red = [x.name for x in self.nest.loops[:i] if self.nest.is_reduction(x)]
        if red:
            raise ComputeAtError(f"decompose_reduction({loop}): reduction loop {red[0]} is outside {loop}; an init "
                                 f"there would zero the partial sums on every {red[0]} step. Choose a loop at or "
                                 f"above the outermost reduction loop")
        w = self.nest.write_stage()
        if w is not None and i < w.depth:
            raise ComputeAtError(f"decompose_reduction({loop}): {w.name} lives under "
                                 f"{self.nest.loops[w.depth - 1].name}, inside {loop}; the init must be inside it too")
        self._commit("decompose_reduction", [loop], self.nest.replace(init_depth=i))

    def tensorize(self, loop: str, intrinsic: str = "mma") -> None:
        """Replace ``loop`` and the loops inside it by one tile product on the tensor cores.

        Needs: the loops inside cover one whole (m, n, k) tile of the matmul axes and nothing of
        the others; both inputs read from ``shared`` caches whose tile is exactly that (m, k)
        and (k, n); the output accumulates in a cache_write tile of exactly (m, n); the init
        decomposed above. (The MMA reads its operands from SRAM and accumulates in registers.)
        """
        if intrinsic != "mma":
            raise TensorizeError(f"tensorize({loop}, {intrinsic!r}): the only intrinsic is 'mma'")
        i, _ = self._loop(loop)
        check_tensorize(self.nest, i, loop)
        self._commit("tensorize", [loop, intrinsic], self.nest.replace(tensorize_depth=i))
