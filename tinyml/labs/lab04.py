"""Checks for Lab 4, FlashAttention (``labs/lab04_flash_attention.py``).

Expected byte counts come from the FlashAttention-1 kernel's own counters
(counting mode, on an A100 whose SRAM is made unlimited so any block size
runs); the best block sizes from a search over every candidate pair with
FlashAttention-2 in counting mode on the device itself; one row of attention
from the float64 reference (``tinyml.kernels.reference.attention``). Hints
recognise the usual mistakes by recomputing the wrong answers they produce.
"""

from __future__ import annotations

import math

import numpy as np

from .checks import Exercise, Wrong, as_int, call, call_text

#: Exercise 4.2's problems: one shape per device (forward pass, fp16).
BLOCK_PROBLEMS = {
    "toy": dict(batch=1, heads=8, seq=256, head_dim=4, causal=True),
    "a100-40gb": dict(batch=4, heads=16, seq=4096, head_dim=64, causal=True),
}
#: The block sizes Exercise 4.2 chooses from (block_q and block_k alike).
CANDIDATES = (8, 16, 32, 64, 128, 256)
#: An answer within this fraction of the best simulated time is accepted.
TOLERANCE = 0.02


# ---- 4.1 fa1_hbm_bytes ----------------------------------------------------------------------

def _fa1_counted(batch, heads, seq, head_dim, dtype, block_q, block_k) -> tuple[int, int]:
    """(bytes loaded, bytes stored) by the FlashAttention-1 forward, from its counters."""
    from ..kernels.attention.flash1 import flash_attention_v1
    from ..kernels.attention.paper import PAPER_FLASH1
    from ..sim import Profile, load_device, meta

    dev = load_device("a100-40gb").replace(name="a100-unlimited-sram", sram_per_sm=1 << 40, register_bytes=1 << 40)
    with Profile(dev) as prof:
        q, k, v = (meta((batch, heads, seq, head_dim), dtype) for _ in range(3))
        flash_attention_v1(q, k, v, dtype=dtype, block_q=block_q, block_k=block_k,
                           **PAPER_FLASH1)      # Algorithm 1's grid: the formula the lab derives
    r = prof.records[0]
    return r.hbm_read_bytes + r.l2_hit_bytes, r.hbm_write_bytes + r.l2_write_hit_bytes      # before L2


def _fa1_variants(batch, heads, n, d, dtype, block_q, block_k) -> dict:
    """Wrong answers the usual mistakes give, each with its hint (a formula of our own)."""
    from ..sim import nbytes

    s = nbytes(8, dtype) / 8
    bh = batch * heads

    def total(t, kv=True, qo=True, stats=True, init=True, stat_bytes=4, elem=s, reads=True, writes=True):
        r = (2 * n * d * elem if kv else 0) + (2 * t * n * d * elem if qo else 0) \
            + (2 * t * n * stat_bytes if stats else 0)
        w = ((1 + t) if init else t) * (n * d * elem + (2 * n * stat_bytes if stats else 0))
        return bh * ((r if reads else 0) + (w if writes else 0))

    t_c, t_r = math.ceil(n / block_k), math.ceil(n / block_q)
    return {
        total(t_c, elem=1, stat_bytes=1): "That counts elements; the question asks for bytes "
                                          "(nbytes(1, dtype) per element of Q, K, V, O; 4 per fp32 l, m).",
        total(t_c, writes=False): "Count the writes too: O, l and m go back to HBM at every inner step.",
        total(t_c, reads=False): "Count the reads too: K_j and V_j once, Q_i, O_i, l_i, m_i every inner step.",
        total(n // block_k): "Edge blocks: a partial last K/V block is still a whole pass over Q and O, "
                             "so T_c = ceil(seq / block_k), not seq // block_k.",
        total(n / block_k): "T_c is a whole number of K/V blocks: ceil(seq / block_k).",
        total(t_r): "The passes over Q and O are one per K/V block (outer loop): T_c = ceil(seq / block_k). "
                    "block_q only decides how each pass is cut into tiles; it does not change the bytes.",
        total(t_c * t_r): "Each inner step loads one block_q-row tile of Q, O, l and m; over the T_r inner "
                          "steps of one K/V block that is the whole of Q and O once, not T_r times.",
        total(t_c, stats=False): "Don't forget l and m: fp32 (4 bytes) per query row, read and written "
                                 "at every inner step like O_i.",
        total(t_c, stat_bytes=s): "l and m are fp32 (4 bytes each per row) whatever the dtype of Q, K, V.",
        total(t_c, init=False): "Algorithm 1, line 2 writes O = 0, l = 0, m = -inf to HBM once before the "
                                "loops: one extra write of O, l and m.",
        total(t_c, kv=False): "K_j and V_j are loaded too, once each per (batch, head): 2 seq head_dim bytes.",
        total(t_c) / bh: "That is one (batch, head); the grid has batch * heads blocks.",
    }


def check_fa1_hbm_bytes(fn) -> str:
    cases = [(1, 1, 1024, 64, "fp16", 64, 256), (2, 4, 1000, 64, "fp16", 64, 384),
             (1, 2, 300, 32, "fp32", 48, 80), (3, 1, 77, 16, "bf16", 128, 32), (1, 16, 4096, 128, "fp16", 128, 192)]
    for batch, heads, seq, d, dt, bq, bk in cases:
        args = (batch, heads, seq, d, dt, bq, bk)
        text = call_text("fa1_hbm_bytes", args)
        got = as_int(call(fn, *args), text)
        reads, writes = _fa1_counted(*args)
        expected = reads + writes
        if got == expected:
            continue
        hints = _fa1_variants(*args)
        hint = next((h for wrong, h in hints.items() if math.isclose(got, wrong, rel_tol=1e-9)), None)
        if hint is None:
            hint = ("Per (batch, head): K_j and V_j are loaded once; for each of the T_c = ceil(seq / block_k) "
                    "K/V blocks, Q and O are read once and O written once (rows of block_q at a time), and "
                    "l, m (fp32) likewise; line 2 writes O, l, m once before the loops.")
        raise Wrong(f"{text} = {got:,}, but the FlashAttention-1 forward's counters say {reads:,} bytes read "
                    f"+ {writes:,} written = {expected:,}. {hint}")
    return (f"matches the FlashAttention-1 kernel's counters on {len(cases)} shapes (dtypes fp16, bf16, fp32; "
            f"sequences that are not a multiple of the blocks)")


# ---- 4.2 best_blocks ------------------------------------------------------------------------

def fa2_forward_time(device: str, shape: dict, block_q: int, block_k: int) -> float:
    """Simulated time of the FlashAttention-2 forward at ``shape`` (raises SramOverflowError)."""
    from ..kernels.attention import flash_attention
    from ..sim import Profile, meta

    with Profile(device) as prof:
        b, h, n, d = shape["batch"], shape["heads"], shape["seq"], shape["head_dim"]
        q, k, v = (meta((b, h, n, d), "fp16") for _ in range(3))
        flash_attention(q, k, v, version=2, causal=shape["causal"], block_q=block_q, block_k=block_k)
    return prof.time_s


def search_blocks(device: str, shape: dict) -> dict:
    """{(block_q, block_k): simulated seconds} for every candidate pair that fits SRAM."""
    from ..sim import SramOverflowError

    times = {}
    for bq in CANDIDATES:
        for bk in CANDIDATES:
            try:
                times[bq, bk] = fa2_forward_time(device, shape, bq, bk)
            except SramOverflowError:
                pass
    return times


def _fmt_us(t: float) -> str:
    return f"{t * 1e6:,.2f} us"


def check_best_blocks(fn) -> str:
    from ..kernels.attention import flash_blocks
    from ..sim import SramOverflowError, TinymlError, load_device

    found = []
    for device, shape in BLOCK_PROBLEMS.items():
        text = call_text("best_blocks", (device, shape))
        answer = call(fn, device, dict(shape))
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            raise Wrong(f"{text} returned {answer!r}; it must return a pair (block_q, block_k)")
        bq, bk = (as_int(x, text) for x in answer)
        if bq < 1 or bk < 1:
            raise Wrong(f"{text} = ({bq}, {bk}); block sizes are positive")
        times = search_blocks(device, shape)
        (best_q, best_k), best = min(times.items(), key=lambda kv: kv[1])
        try:
            t = fa2_forward_time(device, shape, bq, bk)
        except SramOverflowError as exc:
            raise Wrong(f"{text} = ({bq}, {bk}) does not fit {device}'s SRAM: {str(exc).split('. ')[0]}. "
                        f"Hint: the forward keeps Q_i, K_j, V_j, S_ij (fp16) and an fp32 O accumulator on "
                        f"chip; a pair that overflows raises SramOverflowError, so skip it in your search.") from None
        except TinymlError as exc:
            raise Wrong(f"{text} = ({bq}, {bk}): the kernel refused it: {exc}") from None
        if t <= best * (1 + TOLERANCE):
            found.append(f"{device}: ({bq}, {bk}), {_fmt_us(t)}")
            continue
        dev = load_device(device)
        if (bq, bk) == flash_blocks(dev, shape["seq"], shape["seq"], shape["head_dim"], "fp16"):
            hint = ("Those are the kernel's defaults (the largest blocks that fit SRAM). Bigger is not always "
                    "faster: smaller blocks can mean more resident blocks per SM, so memory hides behind "
                    "compute, and a better balance of the grid over the SMs.")
        elif (bk, bq) in times and times[bk, bq] <= best * (1 + TOLERANCE):
            hint = "You have the pair the wrong way round: return (block_q, block_k)."
        else:
            hint = ("Time every candidate pair (block_q and block_k from CANDIDATES) with the FlashAttention-2 "
                    "forward in counting mode on this device (meta tensors, inside a Profile), skip the pairs "
                    "that raise SramOverflowError, and keep the fastest.")
        raise Wrong(f"{text} = ({bq}, {bk}) takes {_fmt_us(t)} on {device}, but ({best_q}, {best_k}) takes "
                    f"{_fmt_us(best)}: yours is {t / best - 1:.0%} slower, and within {TOLERANCE:.0%} is "
                    f"accepted. {hint}")
    return "within 2% of the fastest candidate pair: " + "; ".join(found)


# ---- 4.3 online_softmax_attention_row ---------------------------------------------------------

def _reference_row(q_row, K, V, valid) -> np.ndarray:
    from ..kernels import reference

    mask = None if valid is None else np.asarray(valid, dtype=bool)[None, :]
    o, _ = reference.attention(q_row[None, None, None, :], K[None, None], V[None, None], key_padding_mask=mask)
    return o[0, 0, 0]                                                   # (d,)


def _wrong_rows(q_row, K, V, block, valid) -> dict:
    """What the usual mistakes compute, each with its hint (float64, written here from scratch)."""
    d = q_row.shape[0]
    s = K.astype(np.float64) @ q_row.astype(np.float64)               # (N,) unscaled
    ok = np.ones(len(s), bool) if valid is None else np.asarray(valid, bool)

    def softmax_v(scores, keep):
        x = np.where(keep, scores, -np.inf)
        if not keep.any():
            return np.zeros(d)
        e = np.exp(x - x.max())
        return (e / e.sum()) @ V.astype(np.float64)

    def no_rescale():                                                   # forgets exp(m - m_new) on o
        m, l, o = -np.inf, 0.0, np.zeros(d)
        x = np.where(ok, s / math.sqrt(d), -np.inf)
        for j0 in range(0, len(x), block):
            xb = x[j0:j0 + block]
            m_new = max(m, xb.max())
            if m_new == -np.inf:
                continue
            p = np.exp(xb - m_new)
            l = l * math.exp(m - m_new) + p.sum()
            o = o + p @ V[j0:j0 + block].astype(np.float64)
            m = m_new
        return o / l if l > 0 else o

    def no_divide():                                                    # returns sum(p v) without / l
        x = np.where(ok, s / math.sqrt(d), -np.inf)
        if not ok.any():
            return np.zeros(d)
        return np.exp(x - x.max()) @ V.astype(np.float64)

    return {
        "scale": (softmax_v(s, ok), "Scale the scores by 1 / sqrt(head_dim) before the softmax."),
        "mask": (softmax_v(s / math.sqrt(d), np.ones(len(s), bool)),
                 "Masked keys (valid[j] == False) must get probability 0: set their scores to -inf."),
        "rescale": (no_rescale(), "When the running max grows, rescale the running output too: "
                                  "o = o * exp(m - m_new) + P_block @ V_block, like l."),
        "divide": (no_divide(), "Divide the running output by the running sum l at the end."),
    }


def _cases():
    rng = np.random.default_rng(2022)
    cases = []
    n, d = 100, 16
    q, K, V = rng.standard_normal(d), rng.standard_normal((n, d)), rng.standard_normal((n, d))
    cases.append(("random scores, blocks of 32 (the last one partial)", q, K, V, 32, None))
    cases.append(("one key per block", q, K, V, 1, None))
    cases.append(("one block holding every key", q, K, V, 128, None))
    ramp = np.linspace(-3, 3, n)[:, None] * np.ones((1, d))            # scores grow along the row
    cases.append(("the max grows at every block", np.ones(d), ramp * 4.0, V, 10, None))
    big = 300.0 * rng.standard_normal(d)
    cases.append(("huge logits (|scores| ~ 1e3: exp overflows without the max)", big, K, V, 16, None))
    valid = rng.random(n) < 0.6
    cases.append(("masked keys", q, K, V, 16, valid))
    first_out = np.ones(n, bool)
    first_out[:40] = False
    cases.append(("the first blocks fully masked (m = -inf for a while)", big, K, V, 16, first_out))
    cases.append(("every key masked: the output is zeros", q, K, V, 16, np.zeros(n, bool)))
    cases.append(("float32 inputs", q.astype(np.float32), K.astype(np.float32), V.astype(np.float32), 7, None))
    return cases


def check_online_softmax_attention_row(fn) -> str:
    cases = _cases()
    for what, q, K, V, block, valid in cases:
        args = (f"q_row{q.shape}", f"K{K.shape}", f"V{V.shape}", block)
        text = f"online_softmax_attention_row({', '.join(map(str, args))}{', valid=...' if valid is not None else ''})"
        try:
            with np.errstate(all="ignore"):
                got = fn(q.copy(), K.copy(), V.copy(), block) if valid is None else \
                    fn(q.copy(), K.copy(), V.copy(), block, valid.copy())
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - the student's bug, reported as such
            hint = ""
            if isinstance(exc, (OverflowError, FloatingPointError)):
                hint = " Hint: take every exponential relative to the new running max, so it is <= 1."
            raise Wrong(f"{text} raised {type(exc).__name__}: {exc} ({what}).{hint}") from None
        got = np.asarray(got, dtype=np.float64)
        want = _reference_row(q, K, V, valid)
        if got.shape != want.shape:
            raise Wrong(f"{text} returned shape {got.shape}; it must return the output row, shape {want.shape} "
                        f"(head_dim,) ({what})")
        if np.isnan(got).any():
            raise Wrong(f"{text} returned NaN ({what}). Hint: NaN comes from -inf - (-inf): while every key so far "
                        f"is masked the running max is -inf; shift by 0 instead (or skip the block), and return "
                        f"zeros when no key is visible at all.")
        tol = 1e-5 * max(1.0, float(np.abs(want).max()))
        if np.abs(got - want).max() <= tol:
            continue
        hint = next((h for wrong, h in _wrong_rows(q, K, V, block, valid).values()
                     if np.abs(got - wrong).max() <= tol), None)
        if hint is None:
            hint = ("Keep (m, l, o): per block, m_new = max(m, max(s_block)); p = exp(s_block - m_new); "
                    "l = l exp(m - m_new) + sum(p); o = o exp(m - m_new) + p @ V_block; at the end o / l.")
        raise Wrong(f"{text} is off by up to {np.abs(got - want).max():.3g} from softmax(K q / sqrt(d)) @ V "
                    f"({what}). {hint}")
    return (f"matches the float64 reference attention on {len(cases)} rows (partial and single-key blocks, "
            f"logits ~1e3, masked keys, a fully masked row)")


EXERCISES = (
    Exercise("4.1", "fa1_hbm_bytes", "predict FlashAttention-1's forward HBM bytes", check_fa1_hbm_bytes),
    Exercise("4.2", "best_blocks", "the fastest FlashAttention-2 block sizes on toy and A100", check_best_blocks),
    Exercise("4.3", "online_softmax_attention_row", "one row of attention with the online softmax",
             check_online_softmax_attention_row),
)
