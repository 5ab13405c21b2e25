"""Checks for Lab 2, tiled matmul (``labs/lab02_tiled_matmul.py``).

Expected byte counts come from the kernels' own counters (counting mode),
tile footprints from :class:`~tinyml.kernels.matmul.MatmulTiles`, the best
toy tiles from a search over every power-of-two tile that fits, and wave
counts from the cost model and from recorded kernel launches.
"""

from __future__ import annotations

import math

from .checks import Exercise, Wrong, as_int, call, call_text

#: Exercise 2.3's problem: C (M x N) = A (M x K) @ B (K x N) in fp16 on the toy device.
TOY_PROBLEM = (256, 256, 256, "fp16")
POWERS_OF_TWO = tuple(2 ** i for i in range(9))           # 1 .. 256


def _loads(version: int, m: int, n: int, k: int, dtype: str, device: str = "a100-40gb", **blocks) -> int:
    """Bytes a matmul kernel loads from HBM (before L2 reuse), from its counters."""
    from ..kernels.matmul import matmul
    from ..sim import Profile, meta

    with Profile(device) as prof:
        matmul(meta((m, k), dtype), meta((k, n), dtype), version=version, dtype=dtype, **blocks)
    r = prof.records[0]
    return r.hbm_read_bytes + r.l2_hit_bytes


def _elem(dtype: str) -> float:
    from ..sim import nbytes

    return nbytes(8, dtype) / 8


# ---- 2.1 naive_hbm_read_bytes --------------------------------------------------------------

def check_naive_hbm_read_bytes(fn) -> str:
    cases = [(64, 64, 64, "fp16"), (5, 7, 3, "fp32"), (100, 30, 17, "bf16"), (1, 512, 256, "fp16")]
    for m, n, k, dt in cases:
        text = call_text("naive_hbm_read_bytes", (m, n, k, dt))
        got = as_int(call(fn, m, n, k, dt), text)
        expected = _loads(1, m, n, k, dt)
        if got == expected:
            continue
        s = _elem(dt)
        if got == 2 * m * n * k:
            hint = "That counts elements; the question asks for bytes (times nbytes(1, dtype))."
        elif got == (m * k + k * n) * s:
            hint = ("That is what a kernel with perfect reuse reads. The naive kernel reuses nothing: "
                    "every output element streams a whole row of A and a whole column of B.")
        elif got == m * n * k * s:
            hint = "Each output element reads a row of A *and* a column of B: two length-K vectors."
        elif got == 2 * m * n * k * s + m * n * s:
            hint = "Count only the reads; the write of C is separate (hbm_write_bytes)."
        else:
            hint = "Each of the M*N outputs reads K elements of A and K elements of B from HBM."
        raise Wrong(f"{text} = {got:,}, but matmul v1's counters say it reads {expected:,} bytes. {hint}")
    return f"matches matmul v1's counters on {len(cases)} shapes"


# ---- 2.2 tiled_hbm_read_bytes --------------------------------------------------------------

def check_tiled_hbm_read_bytes(fn) -> str:
    cases = [(256, 256, 256, "fp16", 16, 16), (100, 70, 50, "fp32", 32, 16),
             (1, 4096, 4096, "fp16", 16, 64), (33, 65, 17, "bf16", 16, 32)]
    for m, n, k, dt, bm, bn in cases:
        text = call_text("tiled_hbm_read_bytes", (m, n, k, dt, bm, bn))
        got = as_int(call(fn, m, n, k, dt, bm, bn), text)
        expected = _loads(2, m, n, k, dt, block_m=bm, block_n=bn, block_k=16)
        if got == expected:
            continue
        s = _elem(dt)
        cm, cn = math.ceil(m / bm), math.ceil(n / bn)
        fractional = (m * k * n / bn + k * n * m / bm) * s
        floored = (m * k * (n // bn) + k * n * (m // bm)) * s
        if math.isclose(got, fractional) or got == floored:
            hint = ("Edge tiles: a partial tile row or column still makes its own pass over K, "
                    "so round the tile counts up (ceil), not down or fractionally.")
        elif got == (m * k * cm + k * n * cn) * s:
            hint = ("A and B are swapped: a tile row of A is loaded once for every tile *column* of C "
                    "(ceil(N / block_n) times), and B once for every tile row (ceil(M / block_m) times).")
        elif got == 2 * m * n * k * s:
            hint = "That is the naive kernel's traffic; tiles in SRAM let each element be reused."
        elif got == (m * k * cn + k * n * cm) * s + m * n * s:
            hint = "Count only the loads; the store of C is separate (hbm_write_bytes)."
        else:
            hint = ("Each block loads its row panel of A (block_m x K) and column panel of B "
                    "(K x block_n); sum over the ceil(M/block_m) x ceil(N/block_n) blocks.")
        raise Wrong(f"{text} = {got:,}, but matmul v2's counters say its blocks load {expected:,} bytes "
                    f"(hbm_read_bytes + l2_hit_bytes). {hint}")
    return f"matches matmul v2's counters on {len(cases)} shapes, edge tiles included"


# ---- 2.3 toy_tiles ------------------------------------------------------------------------

def _tile_parts(tiles, dtype: str) -> str:
    from ..sim import nbytes

    return ", ".join(f"{name} {'x'.join(map(str, shape))} {dt} = {nbytes(math.prod(shape), dt):,} B"
                     for name, (shape, dt) in tiles.sram_tiles(dtype).items())


def best_toy_tiles():
    """(loads, tiles) of every power-of-two tile set that fits the toy SM, best first.

    Best = fewest bytes loaded (v2's formula), then the deepest block_k."""
    from ..kernels.matmul import MatmulTiles
    from ..kernels.matmul.v2_tiled import expected_bytes
    from ..sim import load_device

    m, n, k, dt = TOY_PROBLEM
    toy = load_device("toy")
    found = []
    for bm in POWERS_OF_TWO:
        for bn in POWERS_OF_TWO:
            for bk in POWERS_OF_TWO:
                t = MatmulTiles(bm, bn, bk)
                if t.sram_bytes(dt) <= toy.sram_per_sm:
                    found.append((int(expected_bytes(m, n, k, _elem(dt), bm, bn)[0]), t))
    found.sort(key=lambda x: (x[0], -x[1].block_k))
    return found


def check_toy_tiles(fn) -> str:
    from ..kernels.matmul import MatmulTiles
    from ..sim import load_device

    m, n, k, dt = TOY_PROBLEM
    toy = load_device("toy")
    answer = call(fn)
    if not isinstance(answer, (tuple, list)) or len(answer) != 3:
        raise Wrong(f"toy_tiles() returned {answer!r}; it must return three numbers "
                    f"(block_m, block_n, block_k)")
    bm, bn, bk = (as_int(x, "toy_tiles()") for x in answer)
    shown = f"toy_tiles() = ({bm}, {bn}, {bk})"
    if min(bm, bn, bk) < 1 or any(x & (x - 1) for x in (bm, bn, bk)):
        raise Wrong(f"{shown}: every block size must be a power of two (1, 2, 4, ..., 256)")
    tiles = MatmulTiles(bm, bn, bk)
    need = tiles.sram_bytes(dt)
    if need > toy.sram_per_sm:
        raise Wrong(f"{shown} needs {need:,} bytes of SRAM but the toy SM has {toy.sram_per_sm:,} "
                    f"({_tile_parts(tiles, dt)}). Hint: the fp32 accumulator alone takes 4 * block_m * "
                    f"block_n bytes; shrink the tiles until all three fit.")
    loads = _loads(2, m, n, k, dt, device="toy", block_m=bm, block_n=bn, block_k=bk)
    ranked = best_toy_tiles()
    best_loads, best = ranked[0]
    if loads > best_loads:
        raise Wrong(f"{shown} fits ({need:,} of {toy.sram_per_sm:,} bytes) but its blocks load {loads:,} "
                    f"bytes for a {m}x{n}x{k} {dt} matmul; tiles that fit can load as little as "
                    f"{best_loads:,}. Hint: loads are M*K*ceil(N/block_n) + K*N*ceil(M/block_m) elements, "
                    f"and block_k does not appear: spend the SRAM on block_m and block_n.")
    if bk < best.block_k:
        raise Wrong(f"{shown} loads the fewest bytes ({loads:,}), but a deeper block_k also fits: "
                    f"fewer, larger tile products per block. Use the deepest block_k that still fits.")
    return f"{shown}: {need:,} of {toy.sram_per_sm:,} bytes of SRAM, {loads:,} bytes loaded (the minimum)"


# ---- 2.4 waves ----------------------------------------------------------------------------

def _recorded_waves(device: str, m: int, n: int, k: int, blocks: tuple) -> tuple[int, int, int]:
    """(n_blocks, sram_per_block, waves) of a real launch."""
    from ..kernels.matmul import matmul
    from ..sim import Profile, meta

    bm, bn, bk = blocks
    with Profile(device) as prof:
        matmul(meta((m, k)), meta((k, n)), version=3, block_m=bm, block_n=bn, block_k=bk)
    r = prof.records[0]
    return r.n_blocks, r.sram_per_block_bytes, r.waves


def check_waves(fn) -> str:
    from ..sim import load_device, waves_for

    cases = [("toy", 16, 2048), ("toy", 25, 2048), ("toy", 25, 1024), ("toy", 9, 0), ("toy", 9, 600),
             ("a100-40gb", 512, 180224), ("a100-40gb", 1000, 0), ("a100-40gb", 10000, 4096)]
    checks = [(d, nb, spb, waves_for(load_device(d), nb, spb)) for d, nb, spb in cases]
    for d, shape, blocks in [("toy", (80, 80, 80), (16, 16, 16)), ("toy", (128, 128, 128), (8, 8, 8)),
                             ("a100-40gb", (2048, 2048, 512), (128, 128, 32))]:
        checks.append((d, *_recorded_waves(d, *shape, blocks)))
    for name, nb, spb, expected in checks:
        dev = load_device(name)
        text = call_text("waves", (dev, nb, spb))
        got = as_int(call(fn, dev, nb, spb), text)
        if got == expected:
            continue
        by_sram = dev.sram_per_sm // spb if spb else dev.max_blocks_per_sm
        per_sm = max(1, min(dev.max_blocks_per_sm, by_sram))
        slots = dev.sm_count * per_sm
        if got == math.ceil(nb / dev.sm_count):
            hint = ("An SM can hold several blocks at once: as many as its SRAM allows, "
                    "up to device.max_blocks_per_sm.")
        elif got == math.ceil(nb / (dev.sm_count * dev.max_blocks_per_sm)):
            hint = "SRAM limits how many blocks fit on an SM: sram_per_sm // sram_per_block of them."
        elif by_sram > dev.max_blocks_per_sm and got == math.ceil(nb / (dev.sm_count * by_sram)):
            hint = "The hardware caps resident blocks at device.max_blocks_per_sm, whatever SRAM allows."
        elif got == nb // slots:
            hint = "The last, partial wave still takes a whole wave: round up."
        else:
            hint = ("waves = ceil(n_blocks / slots), slots = sm_count x resident blocks per SM "
                    "(SRAM-limited, capped by max_blocks_per_sm, at least 1).")
        raise Wrong(f"{text} = {got}, but the simulator runs {nb:,} blocks of {spb:,} B of SRAM on "
                    f"{dev.name} in {expected} waves. {hint}")
    return f"matches the cost model on {len(checks)} launches, 3 of them recorded from real kernels"


EXERCISES = (
    Exercise("2.1", "naive_hbm_read_bytes", "HBM bytes the naive matmul reads", check_naive_hbm_read_bytes),
    Exercise("2.2", "tiled_hbm_read_bytes", "bytes the SRAM-tiled matmul loads", check_tiled_hbm_read_bytes),
    Exercise("2.3", "toy_tiles", "tile sizes for the toy device's 2 KB SRAM", check_toy_tiles),
    Exercise("2.4", "waves", "how many waves a grid takes", check_waves),
)
