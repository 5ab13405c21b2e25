"""Checks for Lab 11, tensor programs (``labs/lab11_tensor_programs.py``).

11.1 ``schedule_matmul(m, n, k, bm, bn, bk)`` must return a :class:`Schedule` of
``matmul(m, n, k)`` that computes the reference (executed on a small shape) and, on a
4096^3 fp16 matmul on ``a100-40gb``, runs within 10% of matmul v3's simulated time
with the same tiles. What is still slow is read off the student's nest and profile
(:func:`diagnose`), most important first. 11.2 ``toy_tiles()`` must give tiles for
which the hand schedule (:func:`tinyml.compiler.tensor.examples.tiled_matmul`) of a
256^3 fp16 matmul on ``toy`` takes at most 70% of matmul v3's time with the tiles
``choose_tiles`` picks (which maximise arithmetic intensity, not speed). 11.3
``schedule_conv2d(n, c, h, f, bf, by, bc)`` must return a schedule of a 3x3 conv2d that
computes the reference (executed on a small shape with edge tiles) and, on ResNet-50's layer
(8, 64, 56, 64) in fp16 on ``a100-40gb`` with tiles (64, 1, 16), runs within 1.25x of the
library call's idealised time; :func:`diagnose_conv` says what is still slow.
"""

from __future__ import annotations

import numpy as np

from .checks import Exercise, Wrong, as_int, call, call_text

BIG = (4096, 4096, 4096)           # the 11.1 target problem, fp16, a100-40gb
BIG_TILES = (128, 256, 64)         # matmul v3's choice for it (choose_tiles)
TARGET_11_1 = 1.10                 # at most 10% slower than matmul v3 with the same tiles
TOY_PROBLEM = (256, 256, 256)
TARGET_11_2 = 0.70                 # at most 70% of v3's time with choose_tiles' tiles on toy
CONV = (8, 64, 56, 64)             # 11.3: (N, C, H = W, F), ResNet-50's 3x3 layer, fp16, a100-40gb
CONV_TILES = (64, 1, 16)           # (BF, BY, BC)
TARGET_11_3 = 1.25                 # at most 1.25x the library call's idealised time


def v3_record(m: int, n: int, k: int, bm: int, bn: int, bk: int, device: str):
    """The KernelRecord of matmul v3 (hand-written) with these tiles, counted."""
    from ..kernels.matmul import matmul_v3
    from ..sim import Profile, meta

    with Profile(device) as prof:
        matmul_v3(meta((m, k)), meta((k, n)), block_m=bm, block_n=bn, block_k=bk)
    return prof.records[0]


def diagnose(sch, device: str = "a100-40gb") -> list:
    """What is still slow in a matmul schedule, most important first (empty: nothing obvious).

    Read off the nest: no grid, C updated in HBM, A or B re-read from HBM, the tile product
    on the vector units."""
    from ..sim import load_device

    nest, dev = sch.nest, load_device(device)
    m, n, k = (a.extent for a in sch.func.block.axes)
    out = []
    grid = [lp for lp in nest.loops if lp.thread and lp.thread.startswith("blockIdx")]
    if not grid:
        out.append(f"the nest runs as one thread block, on one of {dev.sm_count} SMs: split i and j into tiles "
                   f"and bind the tile loops to blockIdx.y / blockIdx.x so the grid spreads over the SMs")
    ws = nest.write_stage()
    if ws is None:
        out.append(f"C is read and written in HBM on every step of k ({k} times per element): "
                   f"cache_write('local') and reverse_compute_at it under the innermost block loop, so a block "
                   f"accumulates its tile in registers and stores it once")
    for op, name, reuse in ((0, "A", "its BN columns"), (1, "B", "its BM rows")):
        st = nest.read_stage(op)
        if st is None:
            out.append(f"{name} is re-read from HBM for every multiply-add: cache_read('{name}', 'shared') and "
                       f"compute_at it under the K-tile loop (k_0), so a block loads each {name} tile once per "
                       f"K step and reuses it from SRAM across {reuse}")
        elif st.scope != "shared":
            out.append(f"{name} is staged in {st.scope!r}; stage its tile in 'shared' (SRAM), where the whole "
                       f"block reuses it")
    if nest.tensorize_depth is None:
        out.append(f"the tile product is not tensorized: the vector units do the {2 * m * n * k:,} FLOPs "
                   f"({dev.vector_rate(sch.func.dtype) / 1e12:.0f} TFLOP/s against the tensor cores' "
                   f"{dev.matmul_rate(sch.func.dtype) / 1e12:.0f}): decompose_reduction(k_0), then tensorize(i_1)")
    return out


def library_time(func, device: str = "a100-40gb") -> float:
    """Simulated seconds of the library call the graph compiler gives a conv2d workload by default
    (the idealised cost: X and W read once, Y written once, FLOPs on the tensor cores)."""
    from ..compiler.library_record import library_record

    return library_record(func, device).time_s


def diagnose_conv(sch, device: str = "a100-40gb") -> list:
    """What is still slow in a conv2d schedule, most important first (empty: nothing obvious)."""
    from ..sim import load_device

    nest, dev = sch.nest, load_device(device)
    ext = {a.name: a.extent for a in sch.func.block.axes}
    out = []
    if not any(lp.thread and lp.thread.startswith("blockIdx") for lp in nest.loops):
        out.append(f"the nest runs as one thread block, on one of {dev.sm_count} SMs: fuse n and the filter and "
                   f"row tile loops (n, f_0, y_0) and bind the fused loop to blockIdx.x")
    if nest.write_stage() is None:
        out.append(f"Y is read and written in HBM by every multiply-add ({ext['c'] * ext['r'] * ext['s']} times per "
                   f"output): cache_write('local') and reverse_compute_at it at the grid loop")
    for op, name, what in ((0, "X", "the input rows a block's outputs need"), (1, "W", "the block's filters")):
        st = nest.read_stage(op)
        if st is None:
            out.append(f"{name} is re-read from HBM for every multiply-add: cache_read('{name}', 'shared') and "
                       f"compute_at it at the channel loop c_0, so a block loads {what} once per channel step")
        elif st.scope != "shared":
            out.append(f"{name} is staged in {st.scope!r}; the tensor cores read their operands from 'shared'")
    if nest.tensorize_depth is None:
        flops = 2 * ext["n"] * ext["f"] * ext["y"] * ext["x"] * ext["c"] * ext["r"] * ext["s"]
        out.append(f"the tile product is not tensorized: the {flops:,} FLOPs run one multiply-add at a time on the "
                   f"vector units, each reading two operands from SRAM; with the loops under f_1 one implicit GEMM "
                   f"(f_1, y_1, x, c_1, r, s) and the init decomposed at c_0, tensorize(f_1) hands it to the "
                   f"tensor cores")
    return out


def _tiles(sch) -> "tuple | None":
    """(BM, BN, BK) of a schedule's stages: C's register tile and A's SRAM tile."""
    nest = sch.nest
    ws, a = nest.write_stage(), nest.read_stage(0)
    if ws is None or a is None:
        return None
    (bm, bn), (_, bk) = nest.footprint(ws), nest.footprint(a)
    return bm, bn, bk


def _get(fn, m, n, k, bm, bn, bk):
    from ..compiler.tensor import Schedule

    text = call_text("schedule_matmul", (m, n, k, bm, bn, bk))
    sch = call(fn, m, n, k, bm, bn, bk)
    if not isinstance(sch, Schedule):
        raise Wrong(f"{text} returned {type(sch).__name__}; return the Schedule you applied the primitives to")
    if sch.func.to_dict() != _matmul(m, n, k).to_dict():
        raise Wrong(f"{text} returned a schedule of {sch.func.to_dict()['buffers']}; build it on "
                    f"Schedule(matmul({m}, {n}, {k}))")
    return sch, text


def _matmul(m, n, k):
    from ..compiler.tensor import matmul

    return matmul(m, n, k)


def check_schedule_matmul(fn) -> str:
    from ..compiler.tensor import build, simulate
    from ..sim import Profile, TinymlError

    # 1. it computes the product (a small shape whose edges are partial tiles; executed)
    m, n, k, bm, bn, bk = 40, 24, 32, 16, 8, 16
    sch, text = _get(fn, m, n, k, bm, bn, bk)
    rng = np.random.default_rng(11)
    a = rng.standard_normal((m, k)).astype(np.float32)                      # (M, K)
    b = rng.standard_normal((k, n)).astype(np.float32)                      # (K, N)
    try:
        with Profile("a100-40gb"):
            c = build(sch, parallel=False)(a, b)                            # (M, N)
    except TinymlError as exc:
        raise Wrong(f"{text}: the scheduled kernel was refused: {exc}") from None
    err = float(np.abs(c - sch.func.reference(a, b)).max())
    if not err < 1e-3:
        raise Wrong(f"{text}: the generated kernel's C differs from the float64 reference by {err:.3g}")
    # 2. the tiles asked for
    big = BIG + BIG_TILES
    sch, text = _get(fn, *big)
    got = _tiles(sch)
    # 3. the time target, and what is still slow
    v3 = v3_record(*big, "a100-40gb")
    try:
        r = simulate(sch, "a100-40gb")
    except TinymlError as exc:
        raise Wrong(f"{text}: the scheduled kernel was refused: {exc}") from None
    slow = diagnose(sch, "a100-40gb")
    if r.time_s <= TARGET_11_1 * v3.time_s and not slow:
        if got != BIG_TILES:
            raise Wrong(f"{text} is fast, but its blocks hold tiles {got}; use the tiles asked for, "
                        f"(BM, BN, BK) = {BIG_TILES}: split i by bm, j by bn and k by bk")
        return (f"{text}: {r.time_s * 1e6:,.0f} us on a100-40gb, {r.time_s / v3.time_s:.2f}x matmul v3 with the "
                f"same tiles; {r.hbm_bytes:,} HBM bytes against v3's {v3.hbm_bytes:,}")
    why = "; ".join(slow) if slow else (f"its tiles are {got}, not {BIG_TILES}" if got != BIG_TILES else
                                        "compare its loop tree with the walkthrough's final nest")
    raise Wrong(f"{text} takes {r.time_s * 1e3:,.3f} ms on a100-40gb ({r.bound}-bound, {r.hbm_bytes:,} HBM bytes), "
                f"{r.time_s / v3.time_s:,.1f}x matmul v3's {v3.time_s * 1e3:.3f} ms with the same tiles; the target "
                f"is {TARGET_11_1:.2f}x. Still slow: {why}.")


def check_toy_tiles(fn) -> str:
    from ..compiler.tensor import matmul, simulate
    from ..compiler.tensor.examples import tiled_matmul
    from ..kernels.matmul import choose_tiles
    from ..sim import TinymlError, load_device

    toy = load_device("toy")
    answer = call(fn)
    if not isinstance(answer, (tuple, list)) or len(answer) != 3:
        raise Wrong(f"toy_tiles() returned {answer!r}; it must return three numbers (block_m, block_n, block_k)")
    bm, bn, bk = (as_int(x, "toy_tiles()") for x in answer)
    shown = f"toy_tiles() = ({bm}, {bn}, {bk})"
    if min(bm, bn, bk) < 1:
        raise Wrong(f"{shown}: every tile size must be >= 1")
    m, n, k = TOY_PROBLEM
    t = choose_tiles(toy, m, n, k, "fp16")
    v3 = v3_record(m, n, k, t.block_m, t.block_n, t.block_k, "toy")
    try:
        r = simulate(tiled_matmul(matmul(m, n, k), bm, bn, bk), "toy")
    except TinymlError as exc:
        raise Wrong(f"{shown}: {exc} (this schedule keeps the fp32 accumulator in registers: SRAM holds only "
                    f"the A and B tiles, 2 * (BM * BK + BK * BN) bytes)") from None
    ratio = r.time_s / v3.time_s
    if ratio <= TARGET_11_2:
        return (f"{shown}: {r.time_s * 1e6:.1f} us, {ratio:.2f}x matmul v3 with choose_tiles' "
                f"({t.block_m}, {t.block_n}, {t.block_k}); {r.blocks_per_sm} block(s) per SM, {r.bound}-bound")
    hints = []
    if r.n_blocks < toy.sm_count * r.blocks_per_sm:
        hints.append(f"the grid has {r.n_blocks} blocks for {toy.sm_count} SMs x {r.blocks_per_sm} resident: "
                     f"smaller tiles keep every SM busy")
    if bm * bn <= t.block_m * t.block_n:
        hints.append(f"this schedule keeps the fp32 accumulator in registers, so SRAM holds only the A and B "
                     f"tiles ({r.sram_per_block_bytes:,} of {toy.sram_per_sm:,} B): a larger BM x BN output tile "
                     f"than v3's fits, and re-reads A and B fewer times")
    if r.bound == "memory":
        hints.append(f"it is memory-bound with {r.hbm_bytes:,} HBM bytes: A is loaded ceil(N/BN) times and B "
                     f"ceil(M/BM) times, so larger BM and BN move fewer")
    raise Wrong(f"{shown} takes {r.time_s * 1e6:.1f} us on toy ({r.bound}-bound), {ratio:.2f}x matmul v3 with "
                f"choose_tiles' ({t.block_m}, {t.block_n}, {t.block_k}); the target is {TARGET_11_2:.2f}x. "
                + ("; ".join(hints) or "try other powers of two: the fastest tiles are not the largest") + ".")


def check_schedule_conv2d(fn) -> str:
    from ..compiler.tensor import Schedule, build, conv2d, simulate
    from ..sim import Profile, TinymlError

    def get(*args):
        text = call_text("schedule_conv2d", args)
        sch = call(fn, *args)
        if not isinstance(sch, Schedule):
            raise Wrong(f"{text} returned {type(sch).__name__}; return the Schedule you applied the primitives to")
        n, c, h, f = args[:4]
        want = conv2d(n, c, h, h, f, 3, 3, stride=1, pad=1)
        if sch.func.to_dict() != want.to_dict():
            raise Wrong(f"{text} returned a schedule of {sch.func.to_dict()['buffers']}; build it on "
                        f"Schedule(conv2d({n}, {c}, {h}, {h}, {f}, 3, 3, stride=1, pad=1))")
        return sch, text

    # 1. it computes the convolution (edges: 7 filters in tiles of 4, 9 rows in tiles of 2, 5 channels in 2s)
    small = (2, 5, 9, 7, 4, 2, 2)
    sch, text = get(*small)
    rng = np.random.default_rng(113)
    x = rng.standard_normal((2, 5, 9, 9)).astype(np.float32)               # (N, C, H, W)
    w = rng.standard_normal((7, 5, 3, 3)).astype(np.float32)               # (F, C, KH, KW)
    try:
        with Profile("a100-40gb"):
            y = build(sch, parallel=False)(x, w)                            # (N, F, OH, OW)
    except TinymlError as exc:
        raise Wrong(f"{text}: the scheduled kernel was refused: {exc}") from None
    err = float(np.abs(y - sch.func.reference(x, w)).max())
    if not err < 1e-3:
        raise Wrong(f"{text}: the generated kernel's Y differs from the float64 reference by {err:.3g}")
    # 2. the time target on ResNet-50's layer, and what is still slow
    sch, text = get(*CONV, *CONV_TILES)
    lib = library_time(sch.func, "a100-40gb")
    try:
        r = simulate(sch, "a100-40gb")
    except TinymlError as exc:
        raise Wrong(f"{text}: the scheduled kernel was refused: {exc}") from None
    if r.time_s <= TARGET_11_3 * lib:
        return (f"{text}: {r.time_s * 1e6:,.1f} us on a100-40gb, {r.time_s / lib:.2f}x the library call's idealised "
                f"{lib * 1e6:,.1f} us; {r.hbm_bytes:,} HBM bytes")
    slow = diagnose_conv(sch, "a100-40gb")
    why = "; ".join(slow) if slow else (f"it is {r.bound}-bound with {r.hbm_bytes:,} HBM bytes and "
                                        f"{r.sram_per_block_bytes:,} B of SRAM per block; use the tiles asked for")
    raise Wrong(f"{text} takes {r.time_s * 1e6:,.1f} us on a100-40gb ({r.bound}-bound), {r.time_s / lib:,.1f}x the "
                f"library call's idealised {lib * 1e6:,.1f} us; the target is {TARGET_11_3:.2f}x. Still slow: {why}.")


EXERCISES = (
    Exercise("11.1", "schedule_matmul", "schedule a matmul by hand to matmul v3's simulated time",
             check_schedule_matmul),
    Exercise("11.2", "toy_tiles", "tiles that make the hand schedule fast on the toy device", check_toy_tiles),
    Exercise("11.3", "schedule_conv2d", "schedule a ResNet-50 conv2d as an implicit GEMM, near the library's cost",
             check_schedule_conv2d),
)
