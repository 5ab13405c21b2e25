"""Checks for Lab 3, online softmax (``labs/lab03_online_softmax.py``).

The online update and the merge are checked against the definition, computed
directly in float64: after streaming a row through ``online_update`` (or
merging the states of its pieces in any order), ``m`` must be the row's max
and ``d = sum(exp(x - m))``. Single steps are checked on the edge cases
(``x = -inf``, ``x`` far above ``m``, ``m = -inf`` at the start). Byte counts
come from the softmax kernels' own counters (counting mode); the longest fused
row from running softmax v3 at that length (it must fit) and one longer (it
must raise ``SramOverflowError``).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .checks import Exercise, Wrong, as_int, call, call_text

INF = math.inf


# ---- helpers -----------------------------------------------------------------------------

def direct_state(xs) -> tuple[float, float]:
    """(max, sum(exp(x - max))) of the values ``xs`` in float64; (-inf, 0) if all are -inf or none."""
    xs = np.asarray(xs, dtype=np.float64)
    if xs.size == 0 or np.isneginf(xs).all():
        return -INF, 0.0
    m = float(xs.max())
    return m, float(np.exp(xs - m).sum())


def _state(value, text: str) -> tuple[float, float]:
    """A student's (m, d) pair as floats, or Wrong. m may be -inf; neither may be NaN."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Wrong(f"{text} returned {value!r}; it must return a pair (m_new, d_new)")
    out = []
    for v in value:
        if isinstance(v, (np.ndarray,)) and v.shape == ():
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise Wrong(f"{text} returned {value!r}; m and d must be numbers, got {type(v).__name__}")
        out.append(float(v))
    m, d = out
    if math.isnan(m) or math.isnan(d):
        raise Wrong(f"{text} returned {value!r}: NaN. Hint: NaN comes from -inf - (-inf) or "
                    f"inf * 0; when the new max is -inf (the states hold nothing but -inf), shift "
                    f"the exponents by 0 instead of by the max, so d stays 0.")
    return m, d


def _same(got: tuple[float, float], want: tuple[float, float], rel: float = 1e-6) -> bool:
    (gm, gd), (wm, wd) = got, want
    m_ok = gm == wm or (math.isfinite(wm) and math.isclose(gm, wm, rel_tol=rel, abs_tol=1e-12))
    return m_ok and math.isclose(gd, wd, rel_tol=rel, abs_tol=1e-300)


def _show(state) -> str:
    m, d = state
    return f"(m={m:.6g}, d={d:.6g})"


def _rows():
    """Rows that exercise every branch: growing, shrinking, flat, huge, masked, empty start."""
    rng = np.random.default_rng(2018)
    rows = [
        [0.5, 2.0, 1.0, 7.0, 3.0, 7.5, -INF, 1.0],
        list(np.arange(10.0)),                          # the max grows at every step
        list(np.arange(10.0)[::-1]),                    # the max never grows after the first
        [3.0] * 6,
        [-INF, -INF, 2.0, -INF, 5.0],                   # masked entries, and an all -inf start
        [-INF, -INF, -INF],                             # a fully masked row: (-inf, 0)
        [0.0, 1000.0, -1000.0, 1e4, -1e4],              # far above / below: exp would overflow
        list(rng.normal(0, 3, 50)),
        list(rng.normal(0, 1e4, 20)),
        list(np.cumsum(rng.normal(0.1, 1.0, 300))),    # a long row with a drifting max
    ]
    return rows


def _merge_direct(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The state of the union of two disjoint sets, from the definition: every term of
    each sum re-expressed relative to the common max (a float64 reference)."""
    (m1, d1), (m2, d2) = a, b
    m = max(m1, m2)
    if m == -INF:
        return -INF, 0.0
    t1 = d1 * math.exp(m1 - m) if m1 > -INF else 0.0
    t2 = d2 * math.exp(m2 - m) if m2 > -INF else 0.0
    return m, t1 + t2


# ---- 3.1 online_update ---------------------------------------------------------------------

def _step_hint(m: float, d: float, x: float, got: tuple[float, float]) -> str:
    m_new = max(m, x)
    gm, gd = got
    if m_new != -INF and gm == m_new:
        if math.isclose(gd, d + math.exp(x - m_new), rel_tol=1e-6) and x > m and d > 0:
            return ("The max grew, but the old sum was not rescaled: its terms were taken relative to the "
                    "old max m, so multiply d by exp(m - m_new) before adding exp(x - m_new).")
        if x > m > -INF and d > 0 and math.isclose(gd, d * math.exp(min(m_new - m, 700)) + math.exp(x - m_new),
                                                      rel_tol=1e-6):
            return "The rescale goes the other way: the factor is exp(m - m_new), which is <= 1."
        if x > m > -INF and math.isclose(gd, d + math.exp(min(x - m, 700)), rel_tol=1e-6):
            return ("exp(x - m) takes x relative to the *old* max (and overflows when x is far above it); "
                    "after the update, every term must be relative to m_new, the old ones included.")
    if gm != m_new:
        return "m_new is the larger of the old max m and the new element x."
    return "d_new = d * exp(m - m_new) + exp(x - m_new), with m_new = max(m, x)."


def _update(fn, m, d, x, why: str = "") -> tuple[float, float]:
    text = call_text("online_update", (m, d, x))
    try:
        value = fn(m, d, x)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001 - the student's bug, reported as such
        hint = ""
        if isinstance(exc, OverflowError):
            hint = (" Hint: exp overflowed, so some exponent was positive. Take every exponential "
                    "relative to the *new* max: exp(m - m_new) and exp(x - m_new) are both <= 1.")
        raise Wrong(f"{text} raised {type(exc).__name__}: {exc}{why}.{hint}") from None
    return _state(value, text)


def check_online_update(fn) -> str:
    steps = [   # (m, d, x, what it tests), plain cases first: their hints say the most
        (1.0, 2.0, 0.0, "x below the max: no rescale"),
        (1.0, 2.0, 4.0, "x above the max: rescale"),
        (3.0, 2.0, 3.0, "x equal to the max"),
        (-INF, 0.0, 3.0, "the first element: m = -inf at the start"),
        (2.0, 1.5, -INF, "a masked element: x = -inf adds nothing"),
        (0.0, 5.0, 1000.0, "x far above m: exp(x - m) overflows, the new max must absorb it"),
        (1000.0, 1.0, -1000.0, "x far below m: its term underflows to 0"),
        (-1e4, 3.0, 1e4, "m far below x"),
        (-INF, 0.0, -INF, "a masked element at the start: the state stays empty"),
    ]
    for m, d, x, what in steps:
        want = _merge_direct((m, d), direct_state([x]))      # the state of "what m, d stood for" plus x
        got = _update(fn, m, d, x, f" ({what})")
        if not _same(got, want):
            text = call_text("online_update", (m, d, x))
            raise Wrong(f"{text} = {_show(got)}, expected {_show(want)} ({what}). {_step_hint(m, d, x, got)}")
    rows = _rows()
    for row in rows:
        state = (-INF, 0.0)
        for x in row:
            state = _update(fn, *state, float(x), " (while streaming a row)")
        want = direct_state(row)
        if not _same(state, want, rel=1e-4):          # float32 arithmetic over 300 steps is fine
            shown = row if len(row) <= 10 else f"{len(row)} values starting {[round(v, 3) for v in row[:4]]}"
            raise Wrong(f"streaming the row {shown} through online_update from (m=-inf, d=0) ends at "
                        f"{_show(state)}, but the row's max is {want[0]:.6g} and sum(exp(x - max)) = "
                        f"{want[1]:.6g}. Hint: d must always be the sum relative to the *current* max.")
    return (f"right on {len(steps)} edge cases (m = -inf, x = -inf, x far above m) and on {len(rows)} "
            f"streamed rows against max and sum(exp(x - max)) computed directly")


# ---- 3.2 merge -----------------------------------------------------------------------------

def _merge(fn, a, b, why: str = "") -> tuple[float, float]:
    args = (*a, *b)
    text = call_text("merge", args)
    try:
        value = fn(*args)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001
        hint = ""
        if isinstance(exc, OverflowError):
            hint = (" Hint: exp overflowed; rescale each sum to the *larger* max, so both factors "
                    "exp(m1 - m) and exp(m2 - m) are <= 1.")
        raise Wrong(f"{text} raised {type(exc).__name__}: {exc}{why}.{hint}") from None
    return _state(value, text)


def _merge_hint(a, b, got) -> str:
    (m1, d1), (m2, d2) = a, b
    m = max(m1, m2)
    if got[0] != m:
        return "The merged max is the larger of the two maxes."
    if m1 > -INF and m2 > -INF and math.isclose(got[1], d1 + d2, rel_tol=1e-6):
        return ("Adding d1 + d2 mixes sums taken relative to different maxes; rescale each to the common "
                "max first: d1 * exp(m1 - m) + d2 * exp(m2 - m).")
    if m1 > -INF and m2 > -INF and math.isclose(
            got[1], d1 * math.exp(min(m - m1, 700)) + d2 * math.exp(min(m - m2, 700)), rel_tol=1e-6):
        return "The rescale goes the other way: the factors are exp(m1 - m) and exp(m2 - m), both <= 1."
    return "m = max(m1, m2); d = d1 * exp(m1 - m) + d2 * exp(m2 - m)."


def check_merge(fn) -> str:
    empty = (-INF, 0.0)
    pairs = [
        ((1.0, 2.0), (3.0, 1.5), "the second max is larger"),
        ((3.0, 1.5), (1.0, 2.0), "the first max is larger"),
        ((2.0, 1.0), (2.0, 4.0), "equal maxes"),
        (empty, (2.0, 3.0), "an empty first state (m1 = -inf)"),
        ((2.0, 3.0), empty, "an empty second state (m2 = -inf)"),
        (empty, empty, "two empty states"),
        ((1e4, 1.0), (-1e4, 7.0), "maxes far apart: the smaller side vanishes"),
        ((-1e4, 7.0), (1e4, 1.0), "maxes far apart, the other way round"),
    ]
    for a, b, what in pairs:
        want = _merge_direct(a, b)
        got = _merge(fn, a, b, f" ({what})")
        if not _same(got, want):
            raise Wrong(f"{call_text('merge', (*a, *b))} = {_show(got)}, expected {_show(want)} ({what}). "
                        f"{_merge_hint(a, b, got)}")
    rng = np.random.default_rng(2021)
    n_rows = 0
    for row in _rows():
        row = np.asarray(row, dtype=np.float64)
        cuts = np.sort(rng.choice(np.arange(1, len(row)), size=min(4, len(row) - 1), replace=False)) \
            if len(row) > 1 else []
        pieces = [direct_state(p) for p in np.split(row, cuts)]
        want = direct_state(row)
        orders = {"left to right": pieces, "right to left": pieces[::-1],
                  "shuffled": [pieces[i] for i in rng.permutation(len(pieces))]}
        for name, order in orders.items():
            state = empty
            for p in order:
                state = _merge(fn, state, p, f" (merging the pieces of a row {name})")
            if not _same(state, want, rel=1e-4):
                raise Wrong(f"merging the (m, d) states of {len(pieces)} pieces of a row {name} gives "
                            f"{_show(state)}, but the whole row has max {want[0]:.6g} and "
                            f"sum(exp(x - max)) = {want[1]:.6g}. Hint: the merge must not depend on the "
                            f"order (it is associative and commutative).")
        tree = list(pieces)
        while len(tree) > 1:
            tree = [_merge(fn, tree[i], tree[i + 1], " (merging as a tree)") if i + 1 < len(tree) else tree[i]
                    for i in range(0, len(tree), 2)]
        if not _same(tree[0], want, rel=1e-4):
            raise Wrong(f"merging the states of {len(pieces)} pieces of a row as a tree gives {_show(tree[0])}, "
                        f"but the whole row has state {_show(want)}")
        n_rows += 1
    return (f"right on {len(pairs)} edge cases (empty states, maxes 2e4 apart) and on {n_rows} rows cut into "
            f"pieces and merged in four orders, against the whole row's max and sum computed directly")


# ---- 3.3 hbm_read_bytes ----------------------------------------------------------------------

def _counted(version: int, rows: int, cols: int, dtype: str) -> tuple[int, int]:
    """(HBM read bytes, HBM write bytes) of softmax ``version``, from its counters."""
    from ..kernels.softmax import softmax
    from ..sim import Profile, load_device, meta

    dev = load_device("a100-40gb").replace(name="a100-unlimited-sram", sram_per_sm=1 << 40)
    with Profile(dev) as prof:
        softmax(meta((rows, cols), dtype), version=version, dtype=dtype)
    r = prof.records[0]
    return r.hbm_read_bytes + r.l2_hit_bytes, r.hbm_write_bytes


def check_hbm_read_bytes(fn) -> str:
    from ..sim import nbytes

    cases = [(1, 4096, 4096, "fp16"), (2, 4096, 4096, "fp16"), (3, 4096, 4096, "fp16"),
             (1, 7, 13, "fp32"), (2, 1, 100_000, "bf16"), (3, 300, 1, "fp32"), (2, 1024, 50_257, "fp16")]
    for version, rows, cols, dt in cases:
        text = call_text("hbm_read_bytes", (version, rows, cols, dt))
        got = as_int(call(fn, version, rows, cols, dt), text)
        expected, writes = _counted(version, rows, cols, dt)
        if got == expected:
            continue
        elems = rows * cols
        passes = expected // nbytes(elems, dt)
        if got == expected // nbytes(1, dt) or got == passes * elems:
            hint = "That counts elements; the question asks for bytes (times nbytes(1, dtype))."
        elif got == expected + writes:
            hint = "Count only the reads; the write of y is separate (hbm_write_bytes)."
        elif got % nbytes(elems, dt) == 0:
            hint = (f"That is {got // nbytes(elems, dt)} read(s) of the matrix; version {version} "
                    f"reads it {passes} time(s). How many passes does its tile loop make over HBM?")
        else:
            hint = "Each pass over HBM reads every element of x once: passes * rows * cols * bytes."
        raise Wrong(f"{text} = {got:,}, but softmax v{version}'s counters say it reads {expected:,} bytes. {hint}")
    return f"matches the softmax kernels' counters on {len(cases)} version/shape/dtype cases"


# ---- 3.4 longest_fused_row -------------------------------------------------------------------

def _v3_fits(dev, cols: int, dtype: str) -> "str | None":
    """None if softmax v3 runs on rows of ``cols`` elements on ``dev``, else its SRAM error."""
    from ..kernels.softmax import softmax
    from ..sim import Profile, SramOverflowError, meta

    try:
        with Profile(dev):
            softmax(meta((2, cols), dtype), version=3, dtype=dtype, block_rows=1)
    except SramOverflowError as exc:
        return str(exc)
    return None


def check_longest_fused_row(fn) -> str:
    from ..sim import load_device, nbytes

    cases = [("toy", "fp16"), ("toy", "fp32"), ("a100-40gb", "fp16"), ("m2-max", "bf16"), ("h100-sxm", "fp32")]
    for name, dt in cases:
        dev = load_device(name)
        text = call_text("longest_fused_row", (dev, dt))
        n = as_int(call(fn, dev, dt), text)
        if n < 1:
            raise Wrong(f"{text} = {n}; a row has at least one element")
        over = _v3_fits(dev, n, dt)
        if over is not None:
            if nbytes(n, dt) <= dev.sram_per_sm:
                hint = "Don't forget the 8 bytes per row for the fp32 max and sum."
            elif n == dev.sram_per_sm:
                hint = "That is bytes; the question asks for elements (divide by the bytes per element)."
            else:
                hint = (f"A row of {n:,} {dt} elements alone takes {nbytes(n, dt):,} bytes. The row in "
                        f"{dt} (nbytes(1, dtype) bytes per element) plus 8 bytes of fp32 max and sum must "
                        f"fit in device.sram_per_sm.")
            raise Wrong(f"{text} = {n:,} is too long: softmax v3 refuses rows of {n:,} {dt} elements on "
                        f"{dev.name}:\n{over.split('. ')[0]}.\nHint: {hint}")
        if _v3_fits(dev, n + 1, dt) is None:
            raise Wrong(f"{text} = {n:,} is too short: softmax v3 still fits rows of {n + 1:,} {dt} elements "
                        f"in {dev.name}'s {dev.sram_per_sm:,} bytes of SRAM per SM. Hint: one row in the "
                        f"dtype plus an fp32 max and an fp32 sum must fit; solve for the longest whole row.")
    return f"softmax v3 agrees on {len(cases)} device/dtype pairs (the row fits, one element more does not)"


EXERCISES = (
    Exercise("3.1", "online_update", "the online-softmax update of (m, d) by one element", check_online_update),
    Exercise("3.2", "merge", "merge two partial softmax states", check_merge),
    Exercise("3.3", "hbm_read_bytes", "HBM bytes each softmax version reads", check_hbm_read_bytes),
    Exercise("3.4", "longest_fused_row", "the longest row fused softmax keeps in SRAM", check_longest_fused_row),
)
