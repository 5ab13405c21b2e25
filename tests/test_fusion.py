"""tinyml.kernels.fusion: op programs, the fused elementwise kernel and its unfused
baseline, fused/naive softmax, matmul epilogues, layernorm.

Numerics against float64 references over random programs (chains and small DAGs),
random broadcast shapes (1s, primes, odd sizes) and block sizes; counting mode ==
executing mode; HBM bytes == the closed forms in the docstrings, computed here
independently (never copied from the output)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import ELEM_BYTES, block_sizes, logical_dtypes, seeds
from tinyml.kernels.fusion import MAX_SLOTS, Program, ProgramError, expr as F
from tinyml.kernels.fusion import fused_elementwise, unfused_elementwise
from tinyml.sim import DTypeError, MetaTensor, Profile, ShapeError, TinymlError, meta

# Every field of a kernel record that depends on the counters.
COUNTER_FIELDS = ("name", "grid", "n_blocks", "dtype", "time_s", "cycles", "bound", "limiter", "waves",
                  "blocks_per_sm", "sram_per_block_bytes", "hbm_read_bytes", "hbm_write_bytes",
                  "l2_hit_bytes", "sram_read_bytes", "sram_write_bytes", "flops_matmul", "flops_vector",
                  "peak_hbm_bytes", "resource_s")

#: vector FLOPs per element of each op, written out by hand (gelu: x^3 2, *a 1, +x 1, *c 1, tanh 1,
#: +1 1, *x 1, *0.5 1; sigmoid: neg, exp, add, divide; silu: sigmoid and a multiply; rsqrt: sqrt, divide)
FLOPS = {"const": 0, "copy": 0, "neg": 1, "exp": 1, "log": 1, "tanh": 1, "relu": 1, "gelu": 9, "sigmoid": 4,
         "silu": 5, "sqrt": 1, "rsqrt": 2, "square": 1, "abs": 1, "recip": 1, "scale": 1, "pow": 1,
         "add": 1, "sub": 1, "mul": 1, "div": 1, "max": 1, "min": 1, "gt": 1, "lt": 1, "where": 1, "causal": 1}


@pytest.fixture(scope="module", autouse=True)
def warm_fusion():
    """Compile (or load from Numba's cache) the fusion kernels once, in both modes."""
    x = np.ones((3, 5), np.float32)
    with Profile("a100-40gb"):
        fused_elementwise(["add", "gelu"], [x, x])
        fused_elementwise(["add", "gelu"], [meta((3, 5)), meta((3, 5))])


def run(fn, *args, device="a100-40gb", **kw):
    with Profile(device) as prof:
        out = fn(*args, **kw)
    return out, prof


def same_records(a, b):
    assert len(a.records) == len(b.records)
    for ra, rb in zip(a.records, b.records):
        for field in COUNTER_FIELDS:
            assert getattr(ra, field) == getattr(rb, field), (ra.name, field)


# ---- strategies: broadcast shapes and random programs ---------------------------------------

def small_dims():
    return st.one_of(st.just(1), st.sampled_from((2, 3, 5, 7, 13)), st.integers(1, 40))


@st.composite
def broadcast_shapes(draw, n_inputs: int):
    """An output shape (rank 0-3) and ``n_inputs`` shapes that broadcast to it (NumPy rules)."""
    rank = draw(st.integers(0, 3))
    out = tuple(draw(small_dims()) if i == rank - 1 else draw(st.integers(1, 6)) for i in range(rank))
    shapes = []
    for _ in range(n_inputs):
        drop = draw(st.integers(0, rank))
        shapes.append(tuple(d if draw(st.booleans()) else 1 for d in out[drop:]))
    if shapes and draw(st.booleans()):
        shapes[0] = out                                   # usually one input has the full shape
    return out, shapes


@st.composite
def programs(draw, n_inputs: int, positive: tuple, max_ops: int = 7):
    """A random chain or small DAG over ``n_inputs`` inputs whose values stay well conditioned.

    Every value carries a bound |v| <= b and, if positive, a floor v >= p > 0; ops are
    only applied where the result stays within 1e4 and divisions, logs and roots see
    values >= 0.1, so float32 stays close to float64.
    """
    vals = [(2.0, 0.5 if pos else 0.0) for pos in positive]       # (bound, positive floor) per slot
    instrs = []
    n_ops = draw(st.integers(1, max_ops))
    chain = draw(st.booleans())
    while len(instrs) < n_ops:
        n = len(vals)
        pick = (lambda: n - 1) if chain and instrs else (lambda: draw(st.integers(0, n - 1)))
        x = pick()
        y = draw(st.integers(0, n - 1))
        bx, px = vals[x]
        by, py = vals[y]
        op = draw(st.sampled_from(sorted(FLOPS)))
        if op == "causal":
            instrs.append(("causal", ()))
            vals.append((1.0, 0.0))
            continue
        if op == "const":
            c = draw(st.floats(-2, 2, allow_nan=False, width=32))
            instrs.append(("const", (), c))
            vals.append((abs(c), c if c > 0 else 0.0))
            continue
        if op == "copy" or op == "neg" or op == "abs" or op == "relu":
            res = (bx, px if op != "neg" else 0.0)
        elif op == "exp":
            if bx > 4:
                continue
            res = (math.exp(bx), math.exp(-bx))
        elif op in ("tanh",):
            res = (min(bx, 1.0), math.tanh(px))
        elif op in ("gelu", "silu"):
            res = (bx, 0.0)
        elif op == "sigmoid":
            res = (1.0, 1.0 / (1.0 + math.exp(min(bx, 50.0))))
        elif op in ("sqrt", "rsqrt", "recip", "log"):
            if px < 0.1:
                continue
            res = {"sqrt": (math.sqrt(bx), math.sqrt(px)), "rsqrt": (1 / math.sqrt(px), 1 / math.sqrt(bx)),
                   "recip": (1 / px, 1 / bx), "log": (max(abs(math.log(px)), abs(math.log(bx))), 0.0)}[op]
        elif op == "square":
            res = (bx * bx, px * px)
        elif op == "scale":
            c = draw(st.sampled_from((0.5, -1.5, 2.0)))
            instrs.append(("scale", (x,), c))
            vals.append((bx * abs(c), px * c if c > 0 else 0.0))
            continue
        elif op == "pow":
            if bx > 10:
                continue
            instrs.append(("pow", (x,), 3.0))
            vals.append((bx ** 3, px ** 3))
            continue
        elif op in ("add", "sub", "max", "min"):
            res = {"add": (bx + by, px + py if px and py else 0.0), "sub": (bx + by, 0.0),
                   "max": (max(bx, by), max(px, py)), "min": (max(bx, by), min(px, py))}[op]
        elif op == "mul":
            res = (bx * by, px * py)
        elif op == "div":
            if py < 0.1:
                continue
            res = (bx / py, px / by if px else 0.0)
        elif op in ("gt", "lt"):
            res = (1.0, 0.0)
        else:   # where
            z = draw(st.integers(0, n - 1))
            instrs.append(("where", (y, x, z)))
            vals.append((max(bx, vals[z][0]), min(px, vals[z][1])))
            continue
        if res[0] > 1e4:
            continue
        instrs.append((op, (x, y)[:1 if op not in ("add", "sub", "mul", "div", "max", "min", "gt", "lt") else 2]))
        vals.append(res)
    return Program.from_instructions(n_inputs, instrs)


@st.composite
def elementwise_cases(draw):
    """(program, float32 inputs, out_shape) with inputs in [-2, 2] (positive ones in [0.5, 2])."""
    n_in = draw(st.integers(1, 3))
    out, shapes = draw(broadcast_shapes(n_in))
    positive = tuple(draw(st.booleans()) for _ in range(n_in))
    prog = draw(programs(n_in, positive))
    rng = np.random.default_rng(draw(seeds()))
    inputs = [(rng.uniform(0.5, 2.0, s) if pos else rng.uniform(-2.0, 2.0, s)).astype(np.float32)
              for s, pos in zip(shapes, positive)]
    return prog, inputs, tuple(np.broadcast_shapes(*shapes))


def assert_close_to_program(y, prog, inputs, out_shape):
    """float32 vs float64: the error is tiny next to the largest intermediate value. The reference
    takes ``causal``'s rows and columns from the output's shape, as the kernel does."""
    slots = prog.evaluate(inputs, out_shape=out_shape, all_slots=True)
    ref = np.broadcast_to(slots[prog.output], out_shape)
    scale = 1.0 + max(float(np.max(np.abs(s))) for s in slots)
    assert y.shape == out_shape and y.dtype == np.float32
    err = np.abs(y.astype(np.float64) - ref)
    assert np.all(err <= 1e-4 * scale), f"max error {err.max()} (scale {scale})\n{prog}"


def hand_reads(in_shape, out_shape, bm, bn, s):
    """HBM read bytes of one input, by brute force: the distinct elements each block touches."""
    m = math.prod(out_shape[:-1]) if out_shape else 1
    n = out_shape[-1] if out_shape else 1
    idx = np.broadcast_to(np.arange(math.prod(in_shape)).reshape(in_shape), out_shape).reshape(m, n)
    total = 0
    for r0 in range(0, m, bm):
        for c0 in range(0, n, bn):
            total += len(np.unique(idx[r0:r0 + bm, c0:c0 + bn]))
    return total * s


# ---- programs --------------------------------------------------------------------------------

def test_chain_builds_the_program_it_says():
    p = Program.chain(["mul", "add", "gelu"])
    assert p.n_inputs == 3 and [i.op for i in p.instrs] == ["mul", "add", "gelu"]
    assert str(p).splitlines() == ["program(%0, %1, %2) -> %5", "  %3 = mul %0 %1", "  %4 = add %3 %2",
                                   "  %5 = gelu %4"]
    x, w, b = (np.linspace(-2, 2, 12).reshape(3, 4) + i for i in range(3))
    g = x * w + b
    gelu = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g ** 3)))
    np.testing.assert_allclose(p.evaluate([x, w, b]), gelu, rtol=1e-14)
    q = Program.chain(["exp", ("add", 1.0), ("scale", 0.5), ("pow", 3.0), "neg"])
    assert q.n_inputs == 1
    np.testing.assert_allclose(q.evaluate([x]), -((np.exp(x) + 1) * 0.5) ** 3, rtol=1e-14)
    assert q.flops_per_element == 1 + 0 + 1 + 1 + 1 + 1


def test_trace_keeps_only_what_the_output_needs():
    def fn(x, b):
        unused = F.exp(x) * 3.0                            # noqa: F841  (dead code is dropped)
        return F.where(x > 0.0, F.gelu(x + b), -x) / 2.0

    p = Program.trace(fn, 2)
    assert "exp" not in [i.op for i in p.instrs]
    x = np.linspace(-3, 3, 10)
    b = np.float64(0.25)
    g = x + b
    gelu = 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g ** 3)))
    np.testing.assert_allclose(p.evaluate([x, b]), np.where(x > 0, gelu, -x) / 2, rtol=1e-14)
    assert Program.trace(lambda x: x ** 2, 1).instrs[0].op == "square"
    assert Program.trace(lambda x: 1.0 - x, 1).evaluate([np.array([0.25])])[0] == 0.75


@pytest.mark.parametrize("op", sorted(FLOPS))
def test_every_op_against_numpy(op):
    """One kernel per op, on values where the op is defined, vs float64 NumPy."""
    rng = np.random.default_rng(5)
    shape = (7, 33)
    pos = op in ("sqrt", "rsqrt", "log", "recip", "div")
    xs = [(rng.uniform(0.5, 3.0, shape) if pos else rng.uniform(-3, 3, shape)).astype(np.float32)
          for _ in range(3)]
    if op == "pow":
        xs[0] = np.abs(xs[0])                              # x ** 2.5 is real only for x >= 0
    if op == "const":
        prog = Program.from_instructions(1, [("const", (), -1.5), ("add", (0, 1))])
        expected = xs[0] - 1.5
    elif op == "causal":                                   # x where column j <= row i + 33 - 7, else 0
        prog = Program.from_instructions(1, [("causal", ()), ("mul", (0, 1))])
        i, j = np.indices(shape)
        expected = np.where(j <= i + 33 - 7, xs[0], 0.0)
    else:
        from tinyml.kernels.fusion.ops import OPS

        info = OPS[op]
        prog = Program.from_instructions(info.arity, [(op, tuple(range(info.arity))) + ((2.5,) if info.const else ())])
        expected = info.ref(*xs[:info.arity], *([2.5] if info.const else []))
    inputs = xs[:prog.n_inputs]
    y, prof = run(fused_elementwise, prog, inputs)
    np.testing.assert_allclose(y, expected, rtol=2e-6, atol=2e-6)
    assert prof.records[0].flops_vector == 7 * 33 * sum(FLOPS[i.op] for i in prog.instrs)


# ---- numerics: fused == reference, unfused == fused ----------------------------------------------

@given(case=elementwise_cases(), dtype=logical_dtypes(), bm=st.one_of(st.none(), block_sizes(20)),
       bn=st.one_of(st.none(), block_sizes(20)))
def test_fused_and_unfused_match_reference(case, dtype, bm, bn):
    prog, inputs, out = case
    y, prof = run(fused_elementwise, prog, inputs, dtype=dtype, block_m=bm, block_n=bn)
    assert len(prof.records) == 1 and prof.records[0].name == "fused_elementwise"
    assert_close_to_program(y, prog, inputs, out)
    y2, prof2 = run(unfused_elementwise, prog, inputs, dtype=dtype, block_m=bm, block_n=bn)
    np.testing.assert_array_equal(y2, y)              # the same float32 arithmetic, op by op
    launched = [i.op for i in prog.instrs if i.op != "const"]
    names = [r.name for r in prof2.records]
    assert names[:len(launched)] == [f"elementwise_{op}" for op in launched]
    assert len(names) - len(launched) in (0, 1)       # plus a copy when the last result is not the output


@given(case=elementwise_cases())
def test_out_shape_broadcasts_the_result(case):
    prog, inputs, out = case
    big = (2,) + out
    y, _ = run(fused_elementwise, prog, inputs, out_shape=big)
    assert_close_to_program(y, prog, inputs, big)


# ---- counting mode == executing mode --------------------------------------------------------------

@given(case=elementwise_cases(), dtype=logical_dtypes(), bm=st.one_of(st.none(), block_sizes(20)),
       bn=st.one_of(st.none(), block_sizes(20)))
def test_counting_mode_equals_executing_mode(case, dtype, bm, bn):
    prog, inputs, out = case
    metas = [meta(x.shape, dtype) for x in inputs]
    for fn in (fused_elementwise, unfused_elementwise):
        y, executed = run(fn, prog, inputs, dtype=dtype, block_m=bm, block_n=bn)
        z, counted = run(fn, prog, metas, block_m=bm, block_n=bn)
        assert isinstance(z, MetaTensor) and z.shape == y.shape and z.dtype == dtype
        same_records(executed, counted)


# ---- bytes and FLOPs == the closed forms -----------------------------------------------------------

@given(case=elementwise_cases(), dtype=logical_dtypes(), bm=block_sizes(20), bn=block_sizes(20))
def test_fused_bytes_are_each_input_once_per_block(case, dtype, bm, bn):
    prog, inputs, out = case
    s = ELEM_BYTES[dtype]
    _, prof = run(fused_elementwise, prog, [meta(x.shape, dtype) for x in inputs], block_m=bm, block_n=bn)
    rec = prof.records[0]
    m = math.prod(out[:-1]) if out else 1
    n = out[-1] if out else 1
    assert rec.grid == (math.ceil(m / bm), math.ceil(n / bn))
    assert rec.hbm_read_bytes == sum(hand_reads(x.shape, out, bm, bn, s) for x in inputs)
    assert rec.hbm_write_bytes == m * n * s
    assert rec.flops_vector == m * n * sum(FLOPS[i.op] for i in prog.instrs)
    assert rec.flops_matmul == 0 and rec.sram_per_block_bytes == 0 and rec.l2_hit_bytes == 0


@given(m=small_dims(), n=small_dims(), bm=block_sizes(20), bn=block_sizes(20), dtype=logical_dtypes())
def test_broadcast_read_formulas(m, n, bm, bn, dtype):
    """full (M, N): M N s; bias (N,): ceil(M/BM) N s; column (M, 1): M ceil(N/BN) s; scalar: one per block."""
    s = ELEM_BYTES[dtype]
    gm, gn = math.ceil(m / bm), math.ceil(n / bn)
    for shape, reads in (((m, n), m * n), ((n,), gm * n), ((m, 1), m * gn), ((), gm * gn), ((1, 1), gm * gn)):
        _, prof = run(fused_elementwise, ["add"], [meta((m, n), dtype), meta(shape, dtype)], block_m=bm,
                      block_n=bn)
        assert prof.records[0].hbm_read_bytes == (m * n + reads) * s, shape


@given(m=small_dims(), n=small_dims(), k=st.integers(1, 6), dtype=logical_dtypes())
def test_chain_fused_vs_unfused_formula(m, n, k, dtype):
    """A chain of k ops over full tensors with i inputs: fused reads i MN s, writes MN s;
    unfused reads (i + k - 1) MN s, writes k MN s, in k kernels."""
    ops = (["mul", "tanh", "add", "exp", "sub", "gelu"] * 2)[:k]
    i = 1 + sum(op in ("mul", "add", "sub") for op in ops)
    s = ELEM_BYTES[dtype]
    metas = [meta((m, n), dtype) for _ in range(i)]
    _, fused = run(fused_elementwise, ops, metas)
    _, unfused = run(unfused_elementwise, ops, metas)
    assert (fused.hbm_read_bytes, fused.hbm_write_bytes, len(fused.records)) == (i * m * n * s, m * n * s, 1)
    assert (unfused.hbm_read_bytes, unfused.hbm_write_bytes) == ((i + k - 1) * m * n * s, k * m * n * s)
    assert len(unfused.records) == k
    assert fused.flops_vector == unfused.flops_vector


def test_unfused_frees_intermediates():
    """Eager frees a tensor after its last use: a chain never holds more than two intermediates."""
    m, n, s = 64, 96, 2
    metas = [meta((m, n)) for _ in range(3)]
    _, prof = run(unfused_elementwise, ["mul", "exp", "add", "tanh", "gelu"], metas)
    assert prof.peak_hbm_bytes == (3 + 2) * m * n * s
    _, fused = run(fused_elementwise, ["mul", "exp", "add", "tanh", "gelu"], metas)
    assert fused.peak_hbm_bytes == (3 + 1) * m * n * s


def test_fusing_is_faster_on_a100():
    """Memory-bound: the fused chain moves 4/11 of the bytes and is about that much faster."""
    metas = [meta((4096, 4096)) for _ in range(3)]
    _, fused = run(fused_elementwise, ["mul", "add", "gelu"], metas)
    _, unfused = run(unfused_elementwise, ["mul", "add", "gelu"], metas)
    assert unfused.hbm_bytes == (5 + 3) * 4096 * 4096 * 2 and fused.hbm_bytes == 4 * 4096 * 4096 * 2
    assert fused.records[0].bound == "memory"
    assert unfused.time_s > 1.8 * fused.time_s


# ---- errors ---------------------------------------------------------------------------------------

def test_program_errors_say_what_to_do():
    with pytest.raises(ProgramError, match=r"unknown elementwise op 'glu'.*add, sub, mul, div.*gelu"):
        Program.chain(["add", "glu"])
    with pytest.raises(ProgramError, match="at least one instruction"):
        Program.from_instructions(2, [])
    with pytest.raises(ProgramError, match="non-empty list"):
        Program.chain([])
    with pytest.raises(ProgramError, match=rf"{MAX_SLOTS + 1} slots.*holds {MAX_SLOTS}.*split"):
        Program.chain(["tanh"] * MAX_SLOTS)
    with pytest.raises(ProgramError, match=r"reads slot 5.*0\.\.1"):
        Program.from_instructions(2, [("add", (0, 5))])
    with pytest.raises(ProgramError, match="takes 2 operand"):
        Program.from_instructions(2, [("add", (0,))])
    with pytest.raises(ProgramError, match="needs a constant"):
        Program.chain(["scale"])
    with pytest.raises(ProgramError, match="takes no constant"):
        Program.chain([("exp", 2.0)])
    with pytest.raises(ProgramError, match="empty program"):
        Program.trace(lambda x: x, 1)
    assert issubclass(ProgramError, TinymlError)


def test_input_errors_name_the_shapes():
    x = np.ones((4, 5), np.float32)
    with pytest.raises(ShapeError, match=r"inputs\[0\] \(4, 5\), inputs\[1\] \(3,\)"):
        fused_elementwise(["add"], [x, np.ones(3)])
    with pytest.raises(ShapeError, match=r"inputs\[0\] \(4, 5\), inputs\[1\] \(3,\)"):
        unfused_elementwise(["add"], [x, np.ones(3)])
    with pytest.raises(ShapeError, match=r"out_shape \(5,\) is smaller"):
        fused_elementwise(["exp"], [x], out_shape=(5,))
    with pytest.raises(ProgramError, match="takes 2 input.*1 were given"):
        fused_elementwise(["add"], [x])
    with pytest.raises(ProgramError, match="wrap a single input"):
        fused_elementwise(["exp"], x)
    with pytest.raises(DTypeError, match="different logical dtypes"):
        fused_elementwise(["add"], [meta((2, 2), "fp16"), meta((2, 2), "fp32")])
    with pytest.raises(DTypeError, match="mixing NumPy arrays and MetaTensors"):
        fused_elementwise(["add"], [x, meta((4, 5))])
    with pytest.raises(TinymlError, match="NaN"):
        fused_elementwise(["exp"], [np.array([1.0, np.nan])])


def test_causal_mask_matches_the_attention_convention():
    """Bottom-right aligned: query i of Nq sees key j of Nk iff j <= i + Nk - Nq; masked scores are
    -inf (which elementwise inputs may hold, unlike NaN)."""
    rng = np.random.default_rng(3)
    for nq, nk in ((5, 7), (7, 5), (1, 9), (6, 6)):
        x = rng.standard_normal((2, 3, nq, nk)).astype(np.float32)        # (B, H, Nq, Nk)
        prog = Program.trace(lambda s: F.causal_mask(s, 0.125), 1)
        i, j = np.indices((nq, nk))
        expected = np.where(j <= i + nk - nq, x * np.float32(0.125), -np.inf)
        for fn in (fused_elementwise, unfused_elementwise):
            y, _ = run(fn, prog, [x], block_m=4, block_n=3)
            np.testing.assert_array_equal(y, expected)
        np.testing.assert_array_equal(prog.evaluate([x]), expected)
        y, _ = run(fused_elementwise, ["exp"], [y])                       # -inf is a value: exp gives 0
        assert np.all(y[..., j > i + nk - nq] == 0.0)


def test_scalars_and_python_numbers_are_inputs():
    y, prof = run(fused_elementwise, ["mul", "add"], [np.arange(6.0).reshape(2, 3), 2.0, np.array([1.0, 0, -1])])
    np.testing.assert_array_equal(y, np.arange(6.0).reshape(2, 3) * 2 + [1, 0, -1])
    rec = prof.records[0]
    assert rec.hbm_read_bytes == (6 + 1 + 3) * 2        # one block: each input once


# ---- softmax: fused vs the five eager kernels -------------------------------------------------------

EPS32 = float(np.finfo(np.float32).eps)


def assert_softmax_close(y, x):
    """|y - ref| <= (|x - max| / 2 + 2 N + 8) eps ref: exp's argument rounding, then the row sum."""
    from tinyml.kernels import reference

    ref = reference.softmax(x)
    x64 = x.astype(np.float64)
    delta = np.abs(x64 - x64.max(axis=1, keepdims=True))
    bound = (0.5 * np.minimum(delta, 200.0) + 2 * x.shape[1] + 8) * EPS32 * ref + 1e-40
    assert y.shape == ref.shape and y.dtype == np.float32
    assert np.all(np.abs(y - ref) <= bound)


@st.composite
def softmax_inputs(draw):
    m, n = draw(small_dims()), draw(small_dims())
    rng = np.random.default_rng(draw(seeds()))
    scale = draw(st.sampled_from((1e-3, 1.0, 30.0)))
    return (scale * rng.standard_normal((m, n)) + draw(st.sampled_from((0.0, 1e3)))).astype(np.float32)


@given(x=softmax_inputs(), dtype=logical_dtypes())
def test_softmax_naive_and_fused_match_reference(x, dtype):
    from tinyml.kernels.fusion import softmax_fused, softmax_naive

    y, prof = run(softmax_naive, x, dtype=dtype)
    assert_softmax_close(y, x)
    assert [r.name for r in prof.records] == ["reduce_max", "elementwise_sub", "elementwise_exp", "reduce_sum",
                                              "elementwise_div"]
    y3, prof3 = run(softmax_fused, x, dtype=dtype)
    assert_softmax_close(y3, x)
    assert len(prof3.records) == 1


@given(m=small_dims(), n=small_dims(), dtype=logical_dtypes())
def test_softmax_bytes_are_the_triton_formulas(m, n, dtype):
    """naive: reads 5MN + 2M, writes 3MN + 2M; fused: reads MN, writes MN; both 5MN FLOPs."""
    from tinyml.kernels.fusion import softmax_fused, softmax_naive

    s = ELEM_BYTES[dtype]
    _, naive = run(softmax_naive, meta((m, n), dtype))
    _, fused = run(softmax_fused, meta((m, n), dtype))
    assert (naive.hbm_read_bytes, naive.hbm_write_bytes) == ((5 * m * n + 2 * m) * s, (3 * m * n + 2 * m) * s)
    assert (fused.hbm_read_bytes, fused.hbm_write_bytes) == (m * n * s, m * n * s)
    assert naive.flops_vector == fused.flops_vector == 5 * m * n
    assert len(naive.records) == 5 and len(fused.records) == 1


@given(x=softmax_inputs(), dtype=logical_dtypes())
def test_softmax_counting_mode_equals_executing_mode(x, dtype):
    from tinyml.kernels.fusion import softmax_fused, softmax_naive

    for fn in (softmax_naive, softmax_fused):
        _, executed = run(fn, x, dtype=dtype)
        out, counted = run(fn, meta(x.shape, dtype))
        assert isinstance(out, MetaTensor)
        same_records(executed, counted)


def test_softmax_fused_is_several_times_faster_at_scale():
    from tinyml.kernels.fusion import softmax_fused, softmax_naive

    _, naive = run(softmax_naive, meta((4096, 4096)))
    _, fused = run(softmax_fused, meta((4096, 4096)))
    assert naive.hbm_bytes > 3.9 * fused.hbm_bytes
    assert naive.time_s > 3.5 * fused.time_s            # 4x the bytes, 5 launches (tail waves: more)


def test_softmax_naive_errors():
    from tinyml.kernels.fusion import softmax_naive

    with pytest.raises(ShapeError, match="must be 2-D.*reshape"):
        softmax_naive(np.ones((2, 3, 4)))
    with pytest.raises(TinymlError, match="NaN/Inf"):
        softmax_naive(np.array([[0.0, -np.inf]]))


# ---- matmul with a fused epilogue ------------------------------------------------------------------

def gelu64(g):
    return 0.5 * g * (1 + np.tanh(math.sqrt(2 / math.pi) * (g + 0.044715 * g ** 3)))


@st.composite
def epilogue_cases(draw, max_dim: int = 40):
    m, n, k = draw(small_dims()), draw(small_dims()), draw(small_dims())
    rng = np.random.default_rng(draw(seeds()))
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    kw = {"activation": draw(st.sampled_from((None, "gelu", "relu")))}
    if draw(st.booleans()):
        kw["bias"] = rng.standard_normal(n).astype(np.float32)
    if draw(st.booleans()):
        kw["residual"] = rng.standard_normal((m, n)).astype(np.float32)
    return a, b, kw


def epilogue_reference(a, b, bias=None, activation=None, residual=None):
    g = a.astype(np.float64) @ b.astype(np.float64)
    if bias is not None:
        g = g + bias
    g = {None: lambda v: v, "gelu": gelu64, "relu": lambda v: np.maximum(v, 0)}[activation](g)
    return g + residual if residual is not None else g


def meta_kwargs(kw, dtype):
    return {k: (meta(v.shape, dtype) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}


@given(case=epilogue_cases(), dtype=logical_dtypes(), blocks=st.one_of(
    st.none(), st.tuples(block_sizes(20), block_sizes(20), block_sizes(20))))
def test_matmul_epilogue_matches_reference(case, dtype, blocks):
    from tinyml.kernels.fusion import matmul_epilogue, matmul_epilogue_unfused

    a, b, kw = case
    bk = {} if blocks is None else dict(zip(("block_m", "block_n", "block_k"), blocks))
    ref = epilogue_reference(a, b, **kw)
    # float32: the matmul's 2 K eps |a||b| (GeLU's slope is below 1.2), then a few roundings per op
    absab = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
    extra = sum(np.abs(kw[key]) for key in ("bias", "residual") if key in kw)
    bound = 1.2 * 2 * a.shape[1] * EPS32 * absab + 16 * EPS32 * (np.abs(ref) + absab + extra) + 1e-30
    for fn in (matmul_epilogue, matmul_epilogue_unfused):
        y, prof = run(fn, a, b, dtype=dtype, **kw, **bk)
        assert y.shape == ref.shape and y.dtype == np.float32
        assert np.all(np.abs(y - ref) <= bound), fn.__name__
    n_ops = ("bias" in kw) + (kw["activation"] is not None) + ("residual" in kw)
    assert len(prof.records) == 1 + n_ops                  # the unfused form: matmul, then one kernel per op


@given(case=epilogue_cases(), dtype=logical_dtypes())
def test_matmul_epilogue_counting_equals_executing(case, dtype):
    from tinyml.kernels.fusion import matmul_epilogue, matmul_epilogue_unfused

    a, b, kw = case
    for fn in (matmul_epilogue, matmul_epilogue_unfused):
        _, executed = run(fn, a, b, dtype=dtype, **kw)
        out, counted = run(fn, meta(a.shape, dtype), meta(b.shape, dtype), **meta_kwargs(kw, dtype))
        assert isinstance(out, MetaTensor)
        same_records(executed, counted)


@given(case=epilogue_cases(), dtype=logical_dtypes(), blocks=st.tuples(block_sizes(20), block_sizes(20),
                                                                        block_sizes(20)))
def test_matmul_epilogue_bytes_closed_form(case, dtype, blocks):
    """fused: matmul reads + bias ceil(M/BM) N + residual M N; writes M N (all times s)."""
    from tinyml.kernels.fusion import matmul_epilogue

    a, b, kw = case
    (m, k), n = a.shape, b.shape[1]
    bm, bn, bk = blocks
    s = ELEM_BYTES[dtype]
    _, prof = run(matmul_epilogue, meta(a.shape, dtype), meta(b.shape, dtype), **meta_kwargs(kw, dtype),
                  block_m=bm, block_n=bn, block_k=bk)
    rec = prof.records[0]
    reads = m * k * math.ceil(n / bn) + k * n * math.ceil(m / bm)
    reads += math.ceil(m / bm) * n * ("bias" in kw) + m * n * ("residual" in kw)
    assert rec.hbm_read_bytes + rec.l2_hit_bytes == reads * s
    assert rec.hbm_write_bytes == m * n * s
    per_element = ("bias" in kw) + {None: 0, "gelu": 9, "relu": 1}[kw["activation"]] + ("residual" in kw)
    assert (rec.flops_matmul, rec.flops_vector) == (2 * m * n * k, per_element * m * n)
    ab = (bm * bk + bk * bn) * s                  # the epilogue's tiles reuse the A and B buffers
    epi = bn * s * ("bias" in kw) + bm * bn * s * ("residual" in kw)
    sram = ab + bm * bn * 4 + max(0, epi - ab)
    assert rec.sram_per_block_bytes == sram


def test_matmul_epilogue_saves_the_round_trips():
    """GPT-2's MLP up-projection, 8 x 1024 tokens: fused writes C once; unfused also reads and
    writes it once per epilogue op (bias, gelu, residual: 4 M N more reads, 3 M N more writes)."""
    from tinyml.kernels.fusion import matmul_epilogue, matmul_epilogue_unfused

    m, k, n, s = 8192, 768, 3072, 2
    args = (meta((m, k)), meta((k, n)))
    kw = dict(bias=meta((n,)), activation="gelu", residual=meta((m, n)))
    _, fused = run(matmul_epilogue, *args, **kw)
    _, unfused = run(matmul_epilogue_unfused, *args, **kw)
    assert fused.hbm_write_bytes == m * n * s and unfused.hbm_write_bytes == 4 * m * n * s
    assert unfused.time_s > fused.time_s
    assert len(unfused.records) == 4


def test_matmul_epilogue_tiles_fit_sram_with_the_epilogue():
    """On the toy device (2 KB SRAM) the default tiles fit with the bias and residual tiles
    (which reuse the A and B buffers); when not even the smallest fit, the error says so."""
    from tinyml.kernels.fusion import matmul_epilogue
    from tinyml.sim import SramOverflowError, load_device

    kw = dict(bias=meta((40,)), residual=meta((40, 40)))
    _, prof = run(matmul_epilogue, meta((40, 40)), meta((40, 40)), **kw, device="toy")
    assert 0 < prof.records[0].sram_per_block_bytes <= load_device("toy").sram_per_sm
    tiny = load_device("toy").replace(sram_per_sm=700)      # 8 x 8 x 8 fp32 tiles: A, B 512 B, C 256 B
    with pytest.raises(SramOverflowError, match="cannot hold even the smallest tiles"):
        run(matmul_epilogue, meta((40, 40), "fp32"), meta((40, 40), "fp32"), bias=meta((40,), "fp32"),
            residual=meta((40, 40), "fp32"), device=tiny)


def test_matmul_epilogue_errors():
    from tinyml.kernels.fusion import matmul_epilogue

    a, b = np.ones((4, 3)), np.ones((3, 5))
    with pytest.raises(ShapeError, match=r"bias must have shape \(5,\), got \(4,\).*\(4, 5\)"):
        matmul_epilogue(a, b, bias=np.ones(4))
    with pytest.raises(ShapeError, match=r"residual must have shape \(4, 5\), got \(5, 4\)"):
        matmul_epilogue(a, b, residual=np.ones((5, 4)))
    with pytest.raises(ProgramError, match="unknown activation 'swiglu'.*relu, gelu"):
        matmul_epilogue(a, b, activation="swiglu")
    with pytest.raises(ShapeError, match="inner dimensions differ"):
        matmul_epilogue(a, a)
    with pytest.raises(ProgramError, match="either activation or an epilogue"):
        matmul_epilogue(a, b, activation="relu", epilogue=Program.chain(["tanh"]))
    # a custom epilogue over (acc, bias): tanh(acc * bias)
    y, _ = run(matmul_epilogue, a, b, bias=np.arange(5.0), epilogue=Program.chain(["mul", "tanh"]))
    np.testing.assert_allclose(y, np.tanh(3.0 * np.arange(5.0))[None, :].repeat(4, 0), rtol=1e-6)


# ---- layernorm --------------------------------------------------------------------------------------

@st.composite
def layernorm_inputs(draw):
    r, c = draw(small_dims()), draw(small_dims())
    rng = np.random.default_rng(draw(seeds()))
    x = draw(st.sampled_from((1e-2, 1.0, 100.0))) * rng.standard_normal((r, c)) + draw(st.sampled_from((0.0, 50.0)))
    return (x.astype(np.float32), rng.standard_normal(c).astype(np.float32),
            rng.standard_normal(c).astype(np.float32))


def layernorm_reference(x, g, b, eps):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=1, keepdims=True)
    var = ((x64 - mean) ** 2).mean(axis=1, keepdims=True)
    rstd = 1 / np.sqrt(var + eps)
    return (x64 - mean) * rstd * g + b, mean[:, 0], rstd[:, 0]


def assert_layernorm_close(y, x, g, b, eps):
    """float32 sums of C terms: (4 C + 16) eps relative to every term's size, including the
    cancellation in x - mean (|x| rstd |g|)."""
    ref, _, rstd = layernorm_reference(x, g, b, eps)
    c = x.shape[1]
    size = np.abs(ref - b) + np.abs(g) * rstd[:, None] * np.abs(x) + np.abs(b)       # (R, C)
    assert y.shape == ref.shape and y.dtype == np.float32
    assert np.all(np.abs(y - ref) <= (4 * c + 16) * EPS32 * size + 1e-30)


@given(inp=layernorm_inputs(), dtype=logical_dtypes(), eps=st.sampled_from((1e-5, 0.0, 0.1)),
       br=st.one_of(st.none(), block_sizes(20)))
def test_layernorm_fused_and_unfused_match_reference(inp, dtype, eps, br):
    from tinyml.kernels.fusion import layernorm_fused, layernorm_unfused

    x, g, b = inp
    if eps == 0.0 and x.shape[1] == 1:
        eps = 1e-5                                   # a one-column row has variance 0: 1 / sqrt(0) is inf
    (y, mean, rstd), prof = run(layernorm_fused, x, g, b, eps=eps, dtype=dtype, block_rows=br, return_stats=True)
    assert_layernorm_close(y, x, g, b, eps)
    _, ref_mean, ref_rstd = layernorm_reference(x, g, b, eps)
    assert mean.shape == rstd.shape == (x.shape[0],)
    np.testing.assert_allclose(mean, ref_mean, rtol=(x.shape[1] + 4) * EPS32, atol=1e-30 + 1e-6 * np.abs(x).max())
    y2, prof2 = run(layernorm_unfused, x, g, b, eps=eps, dtype=dtype)
    assert_layernorm_close(y2, x, g, b, eps)
    assert len(prof.records) == 1 and len(prof2.records) == 9


@given(inp=layernorm_inputs(), dtype=logical_dtypes(), stats=st.booleans())
def test_layernorm_counting_equals_executing(inp, dtype, stats):
    from tinyml.kernels.fusion import layernorm_fused, layernorm_unfused

    x, g, b = inp
    metas = [meta(v.shape, dtype) for v in inp]
    _, executed = run(layernorm_fused, x, g, b, dtype=dtype, return_stats=stats)
    out, counted = run(layernorm_fused, *metas, return_stats=stats)
    same_records(executed, counted)
    _, executed = run(layernorm_unfused, x, g, b, dtype=dtype)
    out, counted = run(layernorm_unfused, *metas)
    assert isinstance(out, MetaTensor)
    same_records(executed, counted)


@given(r=small_dims(), c=small_dims(), dtype=logical_dtypes(), br=block_sizes(20), stats=st.booleans())
def test_layernorm_bytes_closed_form(r, c, dtype, br, stats):
    """fused: reads R C s + 2 C s ceil(R/BR), writes R C s (+ 8 R); unfused: reads
    (7 R C + 4 R + 2 C ceil(R/BMe)) s, writes (5 R C + 4 R) s; both 7 R C + 5 R FLOPs."""
    from tinyml.kernels.fusion import layernorm_fused, layernorm_unfused

    s = ELEM_BYTES[dtype]
    metas = (meta((r, c), dtype), meta((c,), dtype), meta((c,), dtype))
    _, fused = run(layernorm_fused, *metas, block_rows=br, return_stats=stats)
    assert fused.hbm_read_bytes == r * c * s + 2 * c * s * math.ceil(r / br)
    assert fused.hbm_write_bytes == r * c * s + 8 * r * stats
    assert fused.records[0].sram_per_block_bytes == br * c * s + 2 * c * s + 2 * br * 4
    _, unfused = run(layernorm_unfused, *metas)
    # the elementwise kernel's default block: 1024 threads, a row of up to 1024 columns (powers of two)
    bn = min(2 ** math.ceil(math.log2(c)), 1024)
    bme = min(2 ** math.ceil(math.log2(r)), max(1, 1024 // bn))
    assert unfused.hbm_read_bytes == (7 * r * c + 4 * r + 2 * c * math.ceil(r / bme)) * s
    assert unfused.hbm_write_bytes == (5 * r * c + 4 * r) * s
    assert fused.flops_vector == unfused.flops_vector == 7 * r * c + 5 * r


def test_layernorm_errors():
    from tinyml.kernels.fusion import FusionError, layernorm_fused, layernorm_unfused
    from tinyml.sim import SramOverflowError

    x, g = np.ones((4, 6)), np.ones(6)
    with pytest.raises(ShapeError, match=r"gamma must have shape \(6,\).*got \(5,\)"):
        layernorm_fused(x, np.ones(5), g)
    with pytest.raises(ShapeError, match=r"beta must have shape \(6,\)"):
        layernorm_unfused(x, g, np.ones(7))
    with pytest.raises(ShapeError, match="must be 2-D.*reshape"):
        layernorm_fused(np.ones((2, 3, 6)), g, g)
    with pytest.raises(FusionError, match="eps must be a finite number >= 0"):
        layernorm_fused(x, g, g, eps=-1.0)
    with pytest.raises(SramOverflowError, match="not even one row fits; use layernorm_unfused"):
        run(layernorm_fused, meta((4, 4096)), meta((4096,)), meta((4096,)), device="toy")
    _, prof = run(layernorm_unfused, meta((4, 4096)), meta((4096,)), meta((4096,)), device="toy")
    assert len(prof.records) == 9


# ---- NUMBA_DISABLE_JIT ---------------------------------------------------------------------------

def test_runs_with_jit_disabled(tmp_path):
    """NUMBA_DISABLE_JIT=1 runs every fusion kernel as plain Python, with the jitted numbers."""
    import json
    import os
    import subprocess
    import sys

    script = """
import json, numpy as np
from tinyml.kernels.fusion import (fused_elementwise, unfused_elementwise, softmax_naive, matmul_epilogue,
                                   layernorm_fused, layernorm_unfused)
from tinyml.sim import Profile
rng = np.random.default_rng(0)
x = rng.standard_normal((5, 7)).astype(np.float32)
w = rng.standard_normal((7, 3)).astype(np.float32)
v = rng.standard_normal(7).astype(np.float32)
with Profile("toy") as p:
    outs = [fused_elementwise(["mul", "add", "gelu"], [x, v, 1.5]), unfused_elementwise(["exp", "tanh"], [x]),
            softmax_naive(x), matmul_epilogue(x, w, bias=w[0], activation="relu"),
            layernorm_fused(x, v, v), layernorm_unfused(x, v, v)]
print(json.dumps([[o.tolist() for o in outs], [r.to_dict() for r in p.records]]))
"""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    outs, records = json.loads(proc.stdout)
    jitted = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert jitted.returncode == 0, jitted.stderr
    outs_jit, records_jit = json.loads(jitted.stdout)
    assert records == records_jit
    for a, b in zip(outs, outs_jit):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-6)
