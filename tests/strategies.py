"""Every hypothesis strategy of the test suite, in one place (MiniTorch style).

The tests never take an expected number from tinyml's own output: the
constants here (bytes per element, primes ...) are written out independently.
"""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

from tinyml.sim import list_presets, load_device
from tinyml.sim.counters import FIRST_OPERAND, HBM_READ, new_counters

#: bytes per element of the floating-point logical dtypes, written out by hand
ELEM_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}
FLOAT_DTYPES = tuple(ELEM_BYTES)
PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67)
PRESETS = tuple(list_presets())


# ---- how many examples ----------------------------------------------------------

#: the ``ci`` profile's number of examples (conftest.py); a profile above it is a thorough run
CI_EXAMPLES = 20


def examples(n: int) -> int:
    """``max_examples`` for a property that sets its own: ``n`` under the fast ``ci`` profile, at least
    the profile's number under ``dev`` (500) and ``deep`` (1,000), so a thorough run is thorough for it too.

    ``@settings(max_examples=examples(15))`` (a bare ``max_examples=15`` would stay 15 under ``deep``).
    """
    profile = settings.default.max_examples
    return n if profile <= CI_EXAMPLES else max(n, profile)


# ---- shapes and block sizes -----------------------------------------------------

def dims(max_value: int = 70) -> st.SearchStrategy[int]:
    """A matrix dimension: 1, a prime, or anything up to ``max_value``."""
    return st.one_of(
        st.just(1),
        st.sampled_from([p for p in PRIMES if p <= max_value]),
        st.integers(1, max_value),
    )


def matmul_shapes(max_value: int = 70) -> st.SearchStrategy[tuple[int, int, int]]:
    """(M, N, K) for C (M x N) = A (M x K) @ B (K x N)."""
    return st.tuples(dims(max_value), dims(max_value), dims(max_value))


def block_sizes(max_value: int = 40) -> st.SearchStrategy[int]:
    """A block size: 1, a prime, a power of two, or anything up to ``max_value``."""
    return st.one_of(
        st.just(1),
        st.sampled_from([p for p in PRIMES if p <= max_value]),
        st.sampled_from([2 ** i for i in range(6) if 2 ** i <= max_value]),
        st.integers(1, max_value),
    )


def tiled_blocks(max_value: int = 40) -> st.SearchStrategy[tuple[int, int, int]]:
    """(block_m, block_n, block_k) of a tiled matmul."""
    return st.tuples(block_sizes(max_value), block_sizes(max_value), block_sizes(max_value))


def logical_dtypes() -> st.SearchStrategy[str]:
    return st.sampled_from(FLOAT_DTYPES)


def seeds() -> st.SearchStrategy[int]:
    """A NumPy seed: data is drawn from it (much faster than element-wise strategies)."""
    return st.integers(0, 2 ** 32 - 1)


def tile_sram_bytes(bm: int, bn: int, bk: int, dtype: str) -> int:
    """SRAM of one tiled-matmul block, by hand: A and B tiles in the dtype, fp32 accumulator."""
    return (bm * bk + bk * bn) * ELEM_BYTES[dtype] + bm * bn * 4


# ---- devices ----------------------------------------------------------------------

def preset_names() -> st.SearchStrategy[str]:
    return st.sampled_from(PRESETS)


def devices() -> st.SearchStrategy:
    """A shipped preset."""
    return preset_names().map(load_device)


@st.composite
def small_devices(draw):
    """A teaching device with few SMs and few resident blocks, so grids take many waves."""
    return load_device("toy").replace(
        sm_count=draw(st.integers(1, 8)),
        max_blocks_per_sm=draw(st.integers(1, 4)),
    )


def any_devices() -> st.SearchStrategy:
    return st.one_of(devices(), small_devices())


def sram_per_block(device) -> st.SearchStrategy[int]:
    """SRAM bytes of one block: none declared, anything up to the SM's SRAM, or just
    at / just over a size where one more block fits (sram_per_sm // j, + 1)."""
    edges = sorted({e for j in range(1, 41) for e in (device.sram_per_sm // j, device.sram_per_sm // j + 1)
                    if 1 <= e <= device.sram_per_sm})
    return st.one_of(st.just(0), st.integers(1, device.sram_per_sm), st.sampled_from(edges))


# ---- counters ---------------------------------------------------------------------

_BIG = 10 ** 9


@st.composite
def counters_arrays(draw, max_blocks: int = 300, n_operands: int = 0, big: int = _BIG):
    """Per-block counters (int64, shape (n, 6 + n_operands)) with consistent columns:
    the HBM read column is at least the sum of the operand columns."""
    n = draw(st.integers(1, max_blocks))
    seed = draw(seeds())
    rng = np.random.default_rng(seed)
    c = new_counters(n, n_operands)
    # Mix zeros in, so single resources dominate some blocks.
    c[:, :FIRST_OPERAND] = rng.integers(0, big, size=(n, FIRST_OPERAND)) * rng.integers(0, 2, size=(n, FIRST_OPERAND))
    if n_operands:
        ops = rng.integers(0, big, size=(n, n_operands))
        c[:, FIRST_OPERAND:] = ops
        c[:, HBM_READ] = ops.sum(axis=1) + c[:, HBM_READ] // 4
    return c


@st.composite
def block_class_launches(draw, max_classes: int = 6, max_runs: int = 40, max_run: int = 400,
                         n_operands: int = 2):
    """(BlockClasses, panels, reuse) for a random launch: a few block classes (duplicates
    allowed), runs of them in launch order, random L2 panels per block and, half the time,
    a per-class Reuse declaration."""
    from tinyml.sim import Reuse
    from tinyml.sim.classes import BlockClasses

    rng = np.random.default_rng(draw(seeds()))
    n_classes = draw(st.integers(1, max_classes))
    c = new_counters(n_classes, n_operands)
    c[:, :FIRST_OPERAND] = rng.integers(0, _BIG, size=(n_classes, FIRST_OPERAND)) * rng.integers(
        0, 2, size=(n_classes, FIRST_OPERAND))
    c[:, FIRST_OPERAND:] = rng.integers(0, 10 ** 6, size=(n_classes, n_operands))
    c[:, HBM_READ] += c[:, FIRST_OPERAND:].sum(axis=1)
    if draw(st.booleans()):
        c[rng.integers(0, n_classes)] = c[0]                         # a duplicate class
    n_runs = draw(st.integers(1, max_runs))
    run_class = rng.integers(0, n_classes, size=n_runs)
    run_length = rng.integers(0 if draw(st.booleans()) else 1, draw(st.integers(1, max_run)) + 1, size=n_runs)
    if run_length.sum() == 0:
        run_length[0] = 1
    launch = BlockClasses(c, run_class, run_length)
    n = int(run_length.sum())
    panels = None
    if draw(st.booleans()):
        panels = {op: rng.integers(0, draw(st.integers(1, 50)), size=n) for op in range(n_operands)}
    reuse = None
    if draw(st.booleans()):
        reuse = Reuse(reads={0: rng.integers(0, 10 ** 6, size=n_classes)},
                      writes=rng.integers(0, 10 ** 6, size=n_classes))
    return launch, panels, reuse


@st.composite
def panel_launches(draw, max_blocks: int = 300, n_operands: int = 2):
    """Counters plus L2 panels where every block of one panel reads that panel's bytes.

    Returns (counters, panels, panel_bytes) where panels = {operand: int array (n,)}
    and panel_bytes = {operand: int array (n_panels,)}.
    """
    n = draw(st.integers(1, max_blocks))
    rng = np.random.default_rng(draw(seeds()))
    c = new_counters(n, n_operands)
    panels, panel_bytes = {}, {}
    extra = rng.integers(0, 10 ** 6, size=n) * rng.integers(0, 2, size=n)   # reads outside any panel
    c[:, HBM_READ] = extra
    for op in range(n_operands):
        n_panels = draw(st.integers(1, max(1, n)))
        pan = rng.integers(0, n_panels, size=n)
        pbytes = rng.integers(0, 10 ** 6, size=n_panels)
        panels[op] = pan
        panel_bytes[op] = pbytes
        c[:, FIRST_OPERAND + op] = pbytes[pan]
        c[:, HBM_READ] += pbytes[pan]
    # other resources, so time is not only memory
    c[:, 1:FIRST_OPERAND] = rng.integers(0, 10 ** 6, size=(n, FIRST_OPERAND - 1))
    return c, panels, panel_bytes


# ---- HBM ledger ---------------------------------------------------------------------

def ledger_shapes() -> st.SearchStrategy[tuple]:
    return st.lists(st.integers(1, 64), min_size=0, max_size=3).map(tuple)


def ledger_dtypes() -> st.SearchStrategy[str]:
    return st.sampled_from(("fp32", "fp16", "bf16", "fp8", "int8", "int4"))


#: bits per element, written out by hand
DTYPE_BITS = {"fp32": 32, "tf32": 32, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8, "int4": 4}


def ledger_ops() -> st.SearchStrategy[list]:
    """A program of ("alloc", shape, dtype) and ("free", pick) steps."""
    alloc = st.tuples(st.just("alloc"), ledger_shapes(), ledger_dtypes())
    free = st.tuples(st.just("free"), st.integers(0, 10 ** 6))
    return st.lists(st.one_of(alloc, free), min_size=1, max_size=40)


# ---- attention ------------------------------------------------------------------------

@st.composite
def attention_shapes(draw, max_seq: int = 40, head_dims=(1, 3, 8, 16, 59, 64)):
    """(batch, heads, kv_heads, seq_q, seq_k, head_dim): seq 1, primes, GQA/MQA, seq_q != seq_k."""
    kv_heads = draw(st.sampled_from((1, 2)))
    group = draw(st.sampled_from((1, 2, 3)))
    seq_q = draw(st.one_of(st.sampled_from((1, 2, 7, 13, 17, 31)), st.integers(1, max_seq)))
    seq_k = draw(st.one_of(st.just(seq_q), st.integers(1, max_seq)))
    return (draw(st.integers(1, 2)), kv_heads * group, kv_heads, seq_q, seq_k,
            draw(st.sampled_from(head_dims)))


@st.composite
def attention_inputs(draw, max_seq: int = 40, head_dims=(1, 3, 8, 16, 59, 64), big_logits: bool = True):
    """q, k, v, dout as float32 arrays (logits up to about +-1e4 when big_logits), plus the shape."""
    b, h, kvh, nq, nk, d = draw(attention_shapes(max_seq, head_dims))
    rng = np.random.default_rng(draw(seeds()))
    amp = draw(st.sampled_from((1.0, 1.0, 10.0, 100.0))) if big_logits else 1.0
    q = (amp * rng.standard_normal((b, h, nq, d))).astype(np.float32)     # (B, H, Nq, d)
    k = (amp * rng.standard_normal((b, kvh, nk, d))).astype(np.float32)   # (B, KVH, Nk, d)
    v = rng.standard_normal((b, kvh, nk, d)).astype(np.float32)           # (B, KVH, Nk, d)
    do = rng.standard_normal((b, h, nq, d)).astype(np.float32)            # (B, H, Nq, d)
    return q, k, v, do


@st.composite
def attention_options(draw, seq_k: int, batch: int, allow_window: bool = False):
    """causal / key padding (sometimes masking whole rows) / dropout / scale / window keyword arguments."""
    kw = {"causal": draw(st.booleans())}
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(seeds()))
        mask = rng.random((batch, seq_k)) < draw(st.sampled_from((0.5, 0.9)))
        if draw(st.booleans()):
            mask[0, :] = False                       # a batch whose every key is padding
        kw["key_padding_mask"] = mask
    if draw(st.booleans()):
        kw["dropout_p"] = draw(st.sampled_from((0.1, 0.5)))
        kw["seed"] = draw(st.integers(0, 2 ** 31))
    if draw(st.booleans()):
        kw["scale"] = draw(st.sampled_from((0.05, 1.0)))
    if allow_window and draw(st.booleans()):
        kw["window"] = draw(st.sampled_from((0, 1, 3, (2, 1), (5, -1))))
    return kw


def attention_tolerance(naive_err: float, factor: float = 2.0) -> float:
    """FlashAttention's rule: error vs float64 at most `factor` x the naive float32 error + 1e-6."""
    return factor * naive_err + 1e-6


def naive_float32_attention(q, k, v, **kw):
    """The naive implementation in float32 (the baseline of the tolerance rule)."""
    from tinyml.kernels.attention.masks import visible_matrix
    from tinyml.kernels.attention._common import _window
    from tinyml.kernels.attention.rng import keep_mask

    b, h, nq, d = q.shape
    g = h // k.shape[1]
    k32 = np.repeat(k, g, axis=1).astype(np.float32)
    v32 = np.repeat(v, g, axis=1).astype(np.float32)
    scale = np.float32(1.0 / np.sqrt(d) if kw.get("scale") is None else kw["scale"])
    s = scale * (q.astype(np.float32) @ np.swapaxes(k32, -1, -2))
    ok = np.broadcast_to(visible_matrix(nq, k.shape[2], kw.get("causal", False),
                                        _window(kw.get("window"), kw.get("causal", False))), s.shape)
    if kw.get("key_padding_mask") is not None:
        ok = ok & kw["key_padding_mask"][:, None, None, :]
    s = np.where(ok, s, np.float32(-np.inf))
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, np.float32(0))
    e = np.where(ok, np.exp(s - m), np.float32(0))
    den = e.sum(axis=-1, keepdims=True)
    p = np.where(den > 0, e / np.where(den > 0, den, 1), np.float32(0)).astype(np.float32)
    if kw.get("dropout_p", 0.0) > 0:
        p = (p * keep_mask(kw.get("seed", 0), b, h, nq, k.shape[2], kw["dropout_p"])
             / np.float32(1 - kw["dropout_p"])).astype(np.float32)
    return p @ v32


# ---- softmax --------------------------------------------------------------------------

def softmax_shapes(max_value: int = 70) -> st.SearchStrategy[tuple[int, int]]:
    """(rows, cols) of a row-wise softmax: 1, primes, anything up to ``max_value``."""
    return st.tuples(dims(max_value), dims(max_value))


def softmax_blocks(max_value: int = 40) -> st.SearchStrategy[tuple[int, int]]:
    """(block_rows, block_cols) of a tiled softmax."""
    return st.tuples(block_sizes(max_value), block_sizes(max_value))


#: logit magnitudes: tiny, ordinary, past fp16's exp overflow (~11), far past fp32's (~88)
LOGIT_SCALES = (1e-3, 1.0, 30.0, 1e4)


@st.composite
def logit_arrays(draw, max_value: int = 70, masked: bool = True):
    """(rows, cols) float32 logits up to about +-1e4, sometimes all shifted far from 0;
    with ``masked``, sometimes with -inf entries and some rows that are -inf everywhere."""
    r, c = draw(softmax_shapes(max_value))
    rng = np.random.default_rng(draw(seeds()))
    x = draw(st.sampled_from(LOGIT_SCALES)) * rng.standard_normal((r, c))       # (R, C)
    x = (x + draw(st.sampled_from((0.0, 0.0, 1e4, -1e4)))).astype(np.float32)   # (R, C)
    if masked:
        mode = draw(st.sampled_from(("none", "some", "some", "rows")))
        if mode in ("some", "rows"):
            x[rng.random((r, c)) < draw(st.sampled_from((0.2, 0.7)))] = -np.inf
        if mode == "rows":
            x[rng.random(r) < 0.5] = -np.inf                                    # fully masked rows
    return x
