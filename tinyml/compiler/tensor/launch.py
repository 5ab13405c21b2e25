"""Build and launch a scheduled nest: source -> module file -> ``numba.njit`` -> Profile.

:func:`build` turns a nest into a :class:`Kernel`. Calling the kernel follows the kernel
contract of :mod:`tinyml.kernels._contract`: validate the operands (NumPy arrays execute,
``tinyml.sim.meta`` tensors count), check the block's tiles against the device
(``check_tiles``: ``shared`` buffers in SRAM, ``local`` ones in the register file), track
the inputs and allocate the output in the HBM ledger, run the body over the grid, and
record the launch in the active Profile.

Compiled code is cached by its source text: in memory, and on disk as a module file named
after the text's hash (so Numba's ``cache=True`` keeps the machine code across runs). The
source depends only on the nest's structure; every number arrives in the ``P`` array, so
re-costing a schedule with other tile sizes costs no compile::

    k = build(sch)              # Kernel: k.source, k.params
    with Profile("a100-40gb") as prof:
        k(meta((4096, 4096)), meta((4096, 4096)))     # counting mode: walks the tile loops only

Two tiers, as a JIT with an interpreter in front of it has: compiling a nest costs 1-6 s of
CPU, while counting walks only the tile loops, a few microseconds per step in plain Python,
and only one block per edge class of a grid (:mod:`.block_classes`). So a *short* counting walk
(at most :data:`INTERPRETED_STEPS` steps, :func:`walk_steps`) of a nest never compiled on this
machine runs the generated function's Python source, the same text (the tile helpers it calls
stay compiled), until its walks have taken :data:`INTERPRETED_SECONDS` in all. Executing mode,
every longer walk and every nest compiled before (its machine code loads from the disk cache
in milliseconds) run the machine code. The counts are the same either way (tested:
interpreted, compiled and executing), so costing a new loop structure, as a tuner does for
each candidate, takes milliseconds, not a compile.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ...kernels._contract import blas_single_thread, operand, same_mode
from ...kernels._counting import input_array, stand_in
from ...sim import FLOAT_DTYPES, DTypeError, ShapeError, check_registers, check_tiles, current_profile
from ...sim.args import flag
from ...sim.classes import BlockClasses
from ...sim.counters import new_counters
from ...sim.jit import parallel_kernels
from .block_classes import block_classes, piece_values
from .codegen import count_depth, generate
from .errors import BindError, TensorProgramError
from .limits import MAX_THREADS_PER_BLOCK
from .ir import Nest, PrimFunc, access_axes

_COMPILED: dict = {}        # source text -> jitted kernel
_HERE = Path(__file__).resolve().parent

#: The longest counting walk (:func:`walk_steps`) run as plain Python rather than compiled. A
#: step costs 2-40 us interpreted (measured on one core: tile loads 2-4 us, a block's region
#: arithmetic up to 40 us), so the longest such walk takes well under a second, where compiling
#: the nest takes 1-6 s.
INTERPRETED_STEPS = 20_000

#: Seconds of interpreted walks a structure may take before it is compiled after all: a tuner
#: that counts one structure hundreds of times would otherwise pay more than the compile. As in
#: ski rental, rent until the rent reaches the price of buying, then buy: at most the rent more
#: than the better choice made in hindsight (a compile costs 1-6 s).
INTERPRETED_SECONDS = 0.5
_INTERPRETED: dict = {}     # source text -> seconds its walks have run interpreted
_MODULES: dict = {}         # source text -> its module file


def _module_dir() -> Path:
    """Generated modules live next to tinyml's versioned Numba cache (a new folder per version)."""
    from ...sim import jit

    base = Path(jit.CACHE_DIR) if jit.CACHE_DIR else Path(tempfile.gettempdir()) / "tinyml-tensor-programs"
    folder = base / "tensor-programs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def compile_source(source: str):
    """The ``kernel`` function of a generated source, compiled once per text."""
    fn = _COMPILED.get(source)
    if fn is not None:
        return fn
    helpers = (_HERE / "counting.py").read_bytes()        # an edit there must not reuse stale machine code
    digest = hashlib.sha256(source.encode() + helpers).hexdigest()[:24]
    path = _module_dir() / f"tp_{digest}.py"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
    name = f"tinyml_tensor_program_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    fn = _COMPILED[source] = module.kernel
    _MODULES[source] = path
    return fn


def _compiled_mark(source: str) -> Path:
    """A file beside the module, written once its machine code is in Numba's disk cache: a later
    process loads that (tens of milliseconds) rather than interpreting."""
    return _MODULES[source].with_suffix(".compiled")


class Kernel:
    """A nest ready to launch: ``source`` (the generated Python), ``params`` (its numbers)."""

    def __init__(self, nest: Nest, name: "str | None" = None, parallel: bool = True):
        self.nest = nest
        self.func = nest.func
        self.name = name or f"{self.func.name}_scheduled"
        gen = generate(nest, parallel)
        self.source = gen.source
        self.params = np.array(gen.params, dtype=np.int64)
        self.param_names = list(gen.names)
        self.outer = gen.outer
        self.is_grid = bool(gen.outer) and nest.loops[gen.outer[0]].thread is not None
        self.grid = tuple(nest.loops[i].extent for i in gen.outer) if self.is_grid else (1,)
        self.tensorized = nest.tensorize_depth is not None

    @property
    def threads(self) -> int:
        """Threads per block: the product of the ``threadIdx`` loops' extents (1 if none)."""
        return math.prod(lp.extent for lp in self.nest.loops if lp.thread and lp.thread.startswith("threadIdx"))

    @property
    def declared_threads(self) -> int:
        """Threads per block for the occupancy limit: :attr:`threads` if any loop is bound to
        ``threadIdx``, else 0 (the kernel declares none, as the hand-written kernels do)."""
        bound = any(lp.thread and lp.thread.startswith("threadIdx") for lp in self.nest.loops)
        return self.threads if bound else 0

    def copies(self, stage) -> int:
        """How many copies of a stage one block holds at once: one per thread of the
        ``threadIdx`` loops above it (each thread of a GPU block runs its own iteration, so a
        register tile under ``threadIdx.x`` of 128 is 128 tiles in the block's register file)."""
        return math.prod(lp.extent for lp in self.nest.loops[:stage.depth]
                         if lp.thread and lp.thread.startswith("threadIdx"))

    def tiles(self) -> dict:
        """The tiles one block keeps on chip: shared buffers in SRAM, local ones in registers;
        a stage under ``threadIdx`` loops once per thread (a leading dimension of that many)."""
        out = {}
        for st in self.nest.stages:
            shape = self.nest.footprint(st)
            n = self.copies(st)
            shape = (n,) + shape if n > 1 else shape
            out[st.name] = (shape, st.dtype, "reg") if st.scope == "local" else (shape, st.dtype)
        return out

    def check_threads(self, device) -> None:
        """A block's threads within the device's limit (``[sm] max_threads_per_block``, CUDA's 1024 if unset)."""
        limit = device.max_threads_per_block or MAX_THREADS_PER_BLOCK
        if self.threads > limit:
            loops = " x ".join(f"{lp.name}={lp.extent}" for lp in self.nest.loops
                               if lp.thread and lp.thread.startswith("threadIdx"))
            raise BindError(f"{self.name}: a block has {loops} = {self.threads} threads but {device.name} allows "
                            f"{limit} per block; split the threadIdx loops smaller (bind the outer part to blockIdx)")

    def panels(self) -> "dict | None":
        """L2 panels: blocks that read the same region of an input (same grid values on its axes)."""
        if not self.is_grid:
            return None
        n = math.prod(self.grid)
        values = piece_values(self)                   # (loop index, piece index) -> value per block
        panels = {}
        for op in range(len(self.func.inputs)):
            acc = self.nest.access(op)
            key = np.zeros(n, dtype=np.int64)
            for (li, q), v in sorted(values.items()):
                pc = self.nest.loops[li].pieces[q]
                if pc.axis in access_axes(acc):
                    key = key * pc.extent + v
            panels[op] = np.unique(key, return_inverse=True)[1].reshape(-1)
        return panels

    def __call__(self, *inputs, by_class: bool = True):
        """Execute (NumPy arrays) or count (``tinyml.sim.meta`` tensors) on the active Profile's device.

        Counting a grid walks one block per edge class (:mod:`.block_classes`: the record equals
        walking every block, which ``by_class=False`` does), so a large launch counts in
        milliseconds."""
        f = self.func
        if len(inputs) != len(f.inputs):
            raise ShapeError(f"{self.name} takes {len(f.inputs)} inputs "
                             f"({', '.join(b.name for b in f.inputs)}), got {len(inputs)}")
        ops = [operand(x, b.name, ndim=len(b.shape), dtype=b.dtype, allowed=FLOAT_DTYPES)
               for x, b in zip(inputs, f.inputs)]
        for op, b in zip(ops, f.inputs):
            if op.shape != b.shape:
                raise ShapeError(f"{self.name}: {b.name} has shape {op.shape}, but the workload was built for "
                                 f"{b.shape}; build the workload for these shapes")
            if op.dtype != b.dtype:
                raise DTypeError(f"{self.name}: {b.name} is {op.dtype} but the workload counts bytes in {b.dtype}; "
                                 f"pass meta(..., {b.dtype!r}) or build the workload with dtype={op.dtype!r}")
        execute = same_mode(*ops)
        prof = current_profile()
        self.check_threads(prof.device)
        tiles = self.tiles()
        sram = check_tiles(prof.device, tiles, kernel=self.name, suggest=lambda: (
            "Split the loops under the stages into smaller tiles, or compute_at the stages at a deeper loop"))
        regs = check_registers(prof.device, tiles)
        for op in ops:
            prof.hbm.track(op.obj, op.name, op.dtype)
        out = prof.hbm.new_tensor(f.output.name, f.output.shape, f.output.dtype, execute)
        arrays = kernel_arrays([op.data for op in ops], out) if execute else counting_arrays(f)
        if not execute and by_class and self.is_grid:
            ids, run_class, run_length = block_classes(self)
            params = self.params.copy()
            params[self.param_names.index("ROWS")] = len(ids)
            params[self.param_names.index("IDS")] = len(params)       # the ids follow the numbers
            counters = new_counters(len(ids), n_operands=len(ops))
            self.run(arrays, np.concatenate([params, ids]), False, counters, len(ids))
            counters = BlockClasses(counters, run_class, run_length)
        else:
            rows = math.prod(self.nest.loops[i].extent for i in self.outer)
            counters = new_counters(rows, n_operands=len(ops))
            self.run(arrays, self.params, execute, counters, rows)
        if not self.is_grid:               # a parallel CPU loop: its iterations are one block's work
            counters = counters.sum(axis=0, keepdims=True)
        prof.record(self.name, self.grid, counters, dtype=f.dtype, sram_per_block=sram, panels=self.panels(),
                    regs_per_block=regs, threads_per_block=self.declared_threads)
        return out

    def run(self, arrays: list, params: np.ndarray, execute: bool, counters: np.ndarray, rows: int) -> None:
        """Run the body over ``rows`` blocks: compiled, or interpreted for a short counting walk
        of a nest never compiled on this machine (module docstring: two tiers)."""
        fn = compile_source(self.source)
        compiled = getattr(fn, "signatures", None)     # None under NUMBA_DISABLE_JIT: fn is Python already
        spent = _INTERPRETED.get(self.source, 0.0)
        interpret = (not execute and compiled == [] and spent < INTERPRETED_SECONDS
                     and walk_steps(self, rows) <= INTERPRETED_STEPS and not _compiled_mark(self.source).exists())
        if interpret:
            fn = fn.py_func                # the same source, run by Python: no compile
        start = time.perf_counter()
        if self.tensorized:
            from ...kernels._mma import sgemm

            gemm = sgemm()                 # load SciPy's BLAS first, so blas_single_thread pins it too
            with blas_single_thread():
                fn(*arrays, params, execute, counters, gemm)
        else:
            fn(*arrays, params, execute, counters, 0)
        if interpret:
            _INTERPRETED[self.source] = spent + time.perf_counter() - start
        elif compiled == []:
            _compiled_mark(self.source).touch()


def walk_steps(kernel: Kernel, rows: int) -> int:
    """How long a counting walk of ``rows`` blocks is: per block, one step per iteration of each
    level of the tile loops down to the count point, plus one per tile-helper call of the stages
    loaded or stored there (a stage of more than two dimensions calls the helper once per 2-D
    slice)::

        steps = rows * sum over depths d (grid .. count point) of
                       iterations(d) * (1 + sum over stages at d of prod(footprint[:-2]))
    """
    nest = kernel.nest
    stop = count_depth(nest)
    steps, iterations = 0, 1
    for d in range(len(kernel.outer), stop + 1):
        calls = sum(math.prod(nest.footprint(st)[:-2]) for st in nest.stages if st.depth == d)
        steps += iterations * (1 + calls)
        if d < stop:
            iterations *= nest.loops[d].extent
    return rows * steps


def kernel_arrays(inputs: list, out: np.ndarray) -> list:
    """The arrays a generated kernel takes: the inputs as read-only views (no copy), then the output.

    Read-only whatever the caller's flags (a compiled graph's weights are read-only, a user's arrays
    are not): a kernel never writes its inputs, and Numba compiles one machine code per signature,
    writability included, so this keeps it to one per nest, shared by both modes.
    """
    return [input_array(a) for a in inputs] + [out]


def counting_arrays(func: PrimFunc) -> list:
    """Counting mode's stand-ins (one float32 element per buffer, nothing is read or written),
    typed as :func:`kernel_arrays` types a launch's arrays."""
    return kernel_arrays([stand_in(len(b.shape)) for b in func.inputs], stand_in(len(func.output.shape)))


def build(nest_or_schedule, name: "str | None" = None, parallel: "bool | None" = None) -> Kernel:
    """A :class:`Kernel` for a :class:`~.ir.Nest` or a :class:`~.schedule.Schedule`'s nest.

    ``parallel=True`` runs the grid's blocks on the CPU's cores (``prange``); ``False`` runs
    them one after another: the same loops and counters, compiled several times faster;
    ``None`` (the default) follows ``TINYML_PARALLEL_KERNELS`` as the hand-written kernels do
    (:func:`tinyml.sim.jit.parallel_kernels`: serial unless it is 1; read at each call)."""
    parallel = parallel_kernels() if parallel is None else flag(parallel, "parallel", error=TensorProgramError)
    if name is not None and not (isinstance(name, str) and name):
        raise TensorProgramError(f"build(name={name!r}): the kernel's name is a non-empty string (it names the "
                                 f"kernel's record in the profile), e.g. 'matmul_tiled'")
    nest = getattr(nest_or_schedule, "nest", nest_or_schedule)
    if not isinstance(nest, Nest):
        hint = ("; pass Schedule(func) (its naive nest until primitives change it)"
                if isinstance(nest_or_schedule, PrimFunc) else "")
        raise TensorProgramError(f"build() and simulate() take a Schedule or a Nest, got "
                                 f"{type(nest_or_schedule).__name__}{hint}")
    return Kernel(nest, name, parallel)


def simulate(nest_or_schedule, device="a100-40gb"):
    """Cost a schedule on a simulated ``device`` in counting mode: its :class:`~tinyml.sim.KernelRecord`.

    Builds the kernel with ``parallel=False`` (counting walks only the tile loops; the serial
    kernel compiles several times faster) and runs it on ``meta`` inputs in a fresh Profile.
    """
    from ...sim import Profile, meta

    kernel = build(nest_or_schedule, parallel=False)
    with Profile(device) as prof:
        kernel(*(meta(b.shape, b.dtype) for b in kernel.func.inputs))
    return prof.records[0]
