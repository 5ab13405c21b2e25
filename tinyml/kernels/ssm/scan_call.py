"""Validation, block sizes and SRAM of the selective-scan kernels (naive, fused, parallel, backward).

Layout (token-major)::

    u, delta: (batch, L, D)   input and step size, logical dtype s bytes per element
    B, C:     (batch, L, N)   input-dependent projections, logical dtype
    A:        (D, N)          the diagonal state matrix, fp32, every entry <= 0 (a decaying state)
    D_skip:   (D,) or None    the skip connection, fp32

A thread block owns ``block_d`` (BD) channels of one sequence and walks the
sequence in chunks of ``chunk`` (T) tokens staged in SRAM; its state
``h`` (BD, N) fp32 lives in registers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...sim import FLOAT_DTYPES, DTypeError, NonFiniteError, ShapeError, bits, check_registers, check_tiles
from ...sim import current_profile, tiles_fit
from ...sim.sram import REG
from .._contract import Operand, block_size, ceil_div, clamp_note, operand, same_mode
from .._counting import stand_in

DUMMY1, DUMMY2 = stand_in(1), stand_in(2)     # the scan launchers' stand-ins for data in counting mode
#: candidate channel blocks BD and token chunks T, largest first
BLOCK_D = (128, 64, 32, 16, 8, 4, 2, 1)
CHUNKS = (256, 128, 64, 32, 16, 8, 4, 2, 1)
#: operand columns of the counters
OP_U, OP_DELTA, OP_A, OP_B, OP_C, OP_D = range(6)


@dataclass
class ScanCall:
    """A validated selective-scan call (see the module docstring)."""

    u: Operand
    delta: Operand
    A: Operand
    B: Operand
    C: Operand
    D: "Operand | None"
    batch: int
    length: int
    channels: int
    state: int
    dtype: str
    execute: bool

    @property
    def elem_bits(self) -> int:
        return bits(self.dtype)

    @property
    def has_d(self) -> bool:
        return self.D is not None

    def data(self, name: str, ndim: int = 2):
        """The float32 data of an operand, reshaped 2-D, or a dummy when counting (or absent)."""
        op = getattr(self, name)
        if op is None or not self.execute:
            return DUMMY1 if ndim == 1 else DUMMY2
        return op.data.reshape(-1) if ndim == 1 else op.data.reshape(-1, op.shape[-1])


@dataclass
class ScanSaved:
    """What the backward needs from a fused forward: the validated inputs and the state checkpoints."""

    call: ScanCall
    checkpoints: object          # (batch, ceil(L / chunk), D, N) fp32: the state at the end of each chunk
    chunk: int


@dataclass
class NaiveScanSaved:
    """What the naive backward reads: the validated inputs and the two (batch, L, D, N) fp32 tensors the
    naive forward kept in HBM, as a framework's autograd keeps them."""

    call: ScanCall
    abar: object                 # exp(delta A), (batch, L, D, N) fp32
    states: object               # h, (batch, L, D, N) fp32


def _refuse(data, name: str, bad, rule: str, fix: str) -> None:
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise NonFiniteError(f"{name}[{idx}] = {float(data[idx]):g}: {rule} ({int(bad.sum())} such entries). {fix}")


def prepare_scan(u, delta, A, B, C, D=None, *, dtype: str, kernel: str) -> ScanCall:
    """Validate a selective-scan call; every error names the shapes and says what to do."""
    U = operand(u, "u", ndim=3, dtype=dtype, allowed=FLOAT_DTYPES)
    DT = operand(delta, "delta", ndim=3, dtype=dtype, allowed=FLOAT_DTYPES)
    AA = operand(A, "A", ndim=2, dtype="fp32", allowed=FLOAT_DTYPES)
    BB = operand(B, "B", ndim=3, dtype=dtype, allowed=FLOAT_DTYPES)
    CC = operand(C, "C", ndim=3, dtype=dtype, allowed=FLOAT_DTYPES)
    DD = None if D is None else operand(D, "D", ndim=1, dtype="fp32", allowed=FLOAT_DTYPES)
    ops = [U, DT, AA, BB, CC] + ([DD] if DD is not None else [])
    execute = same_mode(*ops)
    if len({U.dtype, DT.dtype, BB.dtype, CC.dtype}) > 1:
        raise DTypeError(f"{kernel}: u, delta, B, C have logical dtypes {U.dtype}, {DT.dtype}, {BB.dtype}, "
                         f"{CC.dtype}; use one (A and D are fp32 parameters)")
    bt, L, dm = U.shape
    n = AA.shape[1]
    if DT.shape != U.shape:
        raise ShapeError(f"{kernel}: delta is {DT.shape} but u is {U.shape}; both are (batch, L, D)")
    if AA.shape[0] != dm:
        raise ShapeError(f"{kernel}: A is {AA.shape} but u has D={dm} channels; A must be (D, N) = ({dm}, N)")
    for op in (BB, CC):
        if op.shape != (bt, L, n):
            raise ShapeError(f"{kernel}: {op.name} is {op.shape} but must be (batch, L, N) = ({bt}, {L}, {n}) "
                             f"(u is {U.shape}, A is {AA.shape})")
    if DD is not None and DD.shape != (dm,):
        raise ShapeError(f"{kernel}: D is {DD.shape} but must be (D,) = ({dm},), one skip weight per channel")
    if execute:
        _refuse(AA.data, "A", AA.data > 0, "A must be <= 0 so the state decays (exp(delta A) <= 1)",
                "Mamba parametrises A = -exp(A_log); pass -np.abs(A) or -np.exp(A_log)")
        _refuse(DT.data, "delta", DT.data < 0, "delta is a step size and must be >= 0",
                "Mamba computes delta = softplus(x W + b); apply a softplus first")
    return ScanCall(U, DT, AA, BB, CC, DD, bt, L, dm, n, U.dtype, execute)


def check_dy(dy, call: ScanCall, kernel: str) -> Operand:
    """A backward's ``dy``: the forward's dtype, its mode (arrays or MetaTensors) and y's shape."""
    DY = operand(dy, "dy", ndim=3, dtype=call.dtype, allowed=(call.dtype,))
    if DY.execute != call.execute:
        raise ShapeError(f"{kernel}: dy is {'an array' if DY.execute else 'a MetaTensor'} but the forward "
                         f"{'executed' if call.execute else 'counted'}; use the same mode")
    if DY.shape != call.u.shape:
        raise ShapeError(f"{kernel}: dy is {DY.shape} but y is {call.u.shape}; dy must have y's shape")
    return DY


# ---- tiles ------------------------------------------------------------------------------------------

def fused_tiles(block_d: int, chunk: int, state: int, dtype: str) -> dict:
    """One fused-scan block on chip: the chunk's inputs and outputs in SRAM, A and the state in registers."""
    return {
        "u, delta chunk": ((2, chunk, block_d), dtype), "B, C chunk": ((2, chunk, state), dtype),
        "y chunk": ((chunk, block_d), dtype),
        "A": ((block_d, state), "fp32", REG), "state h": ((block_d, state), "fp32", REG),
    }


def pick_blocks(call: ScanCall, block_d, chunk, tiles_of, kernel: str) -> tuple[int, int, int, int]:
    """(BD, T, SRAM bytes, register bytes): the caller's sizes or the defaults, checked against the chip.

    A caller's ``block_d`` above D or ``chunk`` above L is clamped to D or L (one block then holds the whole
    dimension; the tile is the same as asking for exactly D or L), as FlashAttention clamps its blocks; the
    record's ``notes`` say so (:func:`clamp_notes`).

    Default BD: the largest of 128 .. 1 whose tiles fit and whose grid ``batch x ceil(D / BD)`` fills
    every SM (fewer channels per block means more blocks, but every block re-reads the chunk's B and C);
    default T: the largest of 256 .. 1 (at most L) that fits with that BD.
    """
    dev = current_profile().device
    bds = [min(b, call.channels) for b in BLOCK_D] if block_d is None else \
        [min(block_size(block_d, "block_d", 1), call.channels)]
    ts = [min(t, call.length) for t in CHUNKS] if chunk is None else \
        [min(block_size(chunk, "chunk", 1), call.length)]
    fitting = [(b, t) for b in dict.fromkeys(bds) for t in dict.fromkeys(ts)
               if tiles_fit(dev, tiles_of(b, t))]
    if fitting:
        full = [bt for bt in fitting if call.batch * ceil_div(call.channels, bt[0]) >= dev.sm_count]
        bd = (full or fitting)[0][0] if block_d is None else bds[0]
        t = max(t for b, t in fitting if b == bd) if any(b == bd for b, _ in fitting) else ts[-1]
    else:
        bd, t = bds[-1], ts[-1]

    def suggest() -> str:
        small = [(b, tt) for b in dict.fromkeys(min(x, call.channels) for x in BLOCK_D)
                 for tt in dict.fromkeys(min(x, call.length) for x in CHUNKS) if tiles_fit(dev, tiles_of(b, tt))]
        if not small:
            return (f"Even block_d=1, chunk=1 does not fit: the state of one channel is {call.state} fp32 "
                    f"values; use a smaller state size N or a device with more SRAM (`tinyml devices`)")
        return f"block_d={small[0][0]}, chunk={small[0][1]} fits; or omit them to let tinyml choose"

    tiles = tiles_of(bd, t)
    sram = check_tiles(dev, tiles, kernel=kernel, suggest=suggest)
    return bd, t, sram, check_registers(dev, tiles)


def clamp_notes(block_d, chunk, bd: int, t: int) -> tuple:
    """The record's notes when the caller's ``block_d`` / ``chunk`` were clamped to D / L by
    :func:`pick_blocks` (``()`` when nothing was clamped): the clamp is visible in ``Profile.table()``."""
    return clamp_note("block_d", block_d, bd, "D") + clamp_note("chunk", chunk, t, "L")


def grid_of(call: ScanCall, block_d: int) -> tuple[int, int]:
    return call.batch, ceil_div(call.channels, block_d)


def track_inputs(call: ScanCall) -> None:
    prof = current_profile()
    for op in (call.u, call.delta, call.B, call.C):
        prof.hbm.track(op.obj, op.name, call.dtype)
    prof.hbm.track(call.A.obj, "A", "fp32")
    if call.D is not None:
        prof.hbm.track(call.D.obj, "D", "fp32")
