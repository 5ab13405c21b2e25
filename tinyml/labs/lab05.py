"""Checks for Lab 5, decoding (``labs/lab05_decoding.py``).

Decode attention's bytes come from the plain decode kernel's own counters
(counting mode); the best split-KV count from timing every candidate with
``decode_attention`` in counting mode on the device; the explanations from
the simulator's numbers for the lab's two problems (how many blocks the
plain kernel launches vs the SMs, and what splitting adds). Hints recognise
the usual mistakes by recomputing the wrong answers they give.
"""

from __future__ import annotations

from .checks import Exercise, Wrong, as_int, call, call_text

#: split counts Exercise 5.2 chooses from (the lab prints the same list)
SPLITS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
#: an answer within this fraction of the best simulated time is accepted
TOLERANCE = 0.05
#: Exercise 5.2's problems: (device, batch, heads, kv_heads, head_dim, context)
SPLIT_PROBLEMS = (
    ("a100-80gb", 1, 32, 32, 128, 4096),        # Llama-2-7B, one sequence
    ("a100-80gb", 64, 32, 32, 128, 4096),       # Llama-2-7B, a batch of 64
    ("a100-80gb", 1, 64, 8, 128, 16384),        # Llama-2-70B (GQA), one long sequence
    ("h100-sxm", 4, 64, 8, 128, 8192),
)


# ---- 5.1 decode_hbm_bytes --------------------------------------------------------------------

def decode_counted(batch, heads, kv_heads, head_dim, cache_len, dtype) -> int:
    """HBM bytes (reads before L2 + writes) of the plain decode kernel, from its counters."""
    from ..kernels.attention import decode_attention
    from ..sim import Profile, meta

    with Profile("a100-80gb") as prof:
        q = meta((batch, heads, head_dim), dtype)                                 # (B, H, d)
        k, v = (meta((batch, kv_heads, cache_len, head_dim), dtype) for _ in range(2))
        decode_attention(q, k, v, cache_len=cache_len, split_kv=1, dtype=dtype)
    r = prof.records[0]
    return r.hbm_read_bytes + r.l2_hit_bytes + r.hbm_write_bytes


def _decode_variants(batch, heads, kv_heads, d, n, s) -> dict:
    """Wrong answers the usual mistakes give, each with its hint."""
    q = o = batch * heads * d * s
    kv = 2 * batch * kv_heads * n * d * s
    return {
        q + o + 2 * batch * heads * n * d * s: "With GQA, one block per kv head reads K and V once for all the "
                                               "heads/kv_heads query heads sharing it: use kv_heads, not heads, "
                                               "for the cache.",
        q + o + kv // 2: "K and V: the cache is read twice over (keys and values), 2 x kv_heads x len x d "
                         "elements per sequence.",
        q + kv: "Count the output o too: batch x heads x head_dim elements written.",
        (q + o + kv) // s: "That counts elements; the question asks for bytes (nbytes(1, dtype) each).",
        q + o + 2 * kv_heads * n * d * s: "Every sequence of the batch has its own cache: multiply by batch.",
    }


def check_decode_hbm_bytes(fn) -> str:
    cases = [(1, 32, 32, 128, 4096, "fp16"), (4, 64, 8, 128, 1000, "fp16"), (3, 8, 1, 64, 77, "fp32"),
             (2, 12, 12, 64, 1, "bf16"), (16, 40, 40, 128, 2048, "fp16")]
    from ..sim import nbytes

    for args in cases:
        text = call_text("decode_hbm_bytes", args)
        got = as_int(call(fn, *args), text)
        want = decode_counted(*args)
        if got == want:
            continue
        s = nbytes(8, args[-1]) // 8
        hint = next((h for wrong, h in _decode_variants(*args[:5], s).items() if got == wrong), None) or (
            "Per sequence: q read once (heads x head_dim), K and V read once per kv head "
            "(2 x kv_heads x cache_len x head_dim), o written once (heads x head_dim); times the batch, "
            "in bytes of the dtype.")
        raise Wrong(f"{text} = {got:,}, but the decode kernel's counters say {want:,} bytes. {hint}")
    return f"matches the decode kernel's counters on {len(cases)} shapes (MHA, GQA, MQA; fp16, bf16, fp32)"


# ---- 5.2 pick_split_kv ------------------------------------------------------------------------

def split_time(device: str, batch, heads, kv_heads, head_dim, context, splits: int) -> float:
    """Simulated seconds of decode attention with ``splits`` KV splits (1: the plain kernel)."""
    from ..kernels.attention import decode_attention
    from ..sim import Profile, meta

    with Profile(device) as prof:
        q = meta((batch, heads, head_dim))                                         # (B, H, d)
        k, v = (meta((batch, kv_heads, context, head_dim)) for _ in range(2))      # (B, KVH, L, d)
        decode_attention(q, k, v, cache_len=context, split_kv=splits)
    return prof.time_s


def _us(t: float) -> str:
    return f"{t * 1e6:.1f} us"


def check_pick_split_kv(fn) -> str:
    from ..sim import load_device

    found = []
    for device, batch, heads, kv_heads, d, ctx in SPLIT_PROBLEMS:
        args = (device, batch, heads, kv_heads, d, ctx)
        text = call_text("pick_split_kv", args)
        s = as_int(call(fn, *args), text)
        if s < 1:
            raise Wrong(f"{text} = {s}; the number of splits is at least 1 (1 = the plain kernel)")
        times = {c: split_time(*args, c) for c in SPLITS}
        best = min(times, key=times.get)
        t = times[s] if s in times else split_time(*args, s)
        if t <= times[best] * (1 + TOLERANCE):
            found.append(f"{device} batch {batch}: S={s}")
            continue
        sms = load_device(device).sm_count
        blocks = batch * kv_heads
        if s == 1 and blocks < sms:
            hint = (f"With S = 1 the kernel runs {blocks} blocks (batch x kv_heads) on {sms} SMs: most SMs idle, "
                    f"and an SM only gets 1/{sms} of the HBM bandwidth. Split the cache.")
        elif s > 1 and blocks >= sms:
            hint = (f"{blocks} blocks already cover the {sms} SMs; splitting adds partial results to write and "
                    f"read back, and a combine kernel.")
        else:
            hint = ("Time each count in SPLITS with decode_time(...) (counting mode) and keep the fastest: "
                    "the waves of B x KVH x S blocks over the SMs decide, and they are hard to guess.")
        raise Wrong(f"{text} = {s} takes {_us(t)}, but S = {best} takes {_us(times[best])}: yours is "
                    f"{t / times[best] - 1:.0%} slower (within {TOLERANCE:.0%} is accepted). {hint}")
    return f"within {TOLERANCE:.0%} of the fastest split count: " + "; ".join(found)


# ---- 5.3 split_kv_reasons -------------------------------------------------------------------------

#: the explanations the lab offers (the lab file prints the same text)
REASONS = {
    "A": "split: batch x kv_heads blocks leave most SMs idle, and each SM only gets its share of HBM bandwidth",
    "B": "split: splitting reads fewer bytes of K and V from HBM",
    "C": "don't split: batch x kv_heads blocks already fill every SM; splits only add partial results and a combine",
    "D": "don't split: at this batch, decode attention is compute-bound",
}


def _facts() -> dict:
    """For batch 1 and 64 (Llama-2-7B, A100-80GB, context 4096): what the simulator says."""
    from ..kernels.attention import decode_attention
    from ..sim import Profile, load_device, meta

    dev = load_device("a100-80gb")
    out = {}
    for batch in (1, 64):
        recs = {}
        for s in (1, 8):
            with Profile(dev) as prof:
                k, v = (meta((batch, 32, 4096, 128)) for _ in range(2))
                decode_attention(meta((batch, 32, 128)), k, v, cache_len=4096, split_kv=s)
            recs[s] = prof
        out[batch] = {"blocks": batch * 32, "sms": dev.sm_count, "bound": recs[1].records[0].bound,
                      "bytes_1": recs[1].hbm_read_bytes + recs[1].hbm_write_bytes,
                      "bytes_8": recs[8].hbm_read_bytes + recs[8].hbm_write_bytes,
                      "speedup_8": recs[1].time_s / recs[8].time_s}
    return out


def check_split_kv_reasons(fn) -> str:
    got = call(fn)
    text = "split_kv_reasons()"
    if not isinstance(got, dict) or set(got) != {1, 64}:
        raise Wrong(f"{text} returned {got!r}; return a dict {{1: letter, 64: letter}} with letters from REASONS")
    facts = _facts()
    for batch in (1, 64):
        letter = str(got[batch]).strip().upper()
        if letter not in REASONS:
            raise Wrong(f"{text}[{batch}] is {got[batch]!r}; choose one of {', '.join(REASONS)}")
        f = facts[batch]
        if letter == "B":
            raise Wrong(f"batch {batch}: splitting does not read fewer bytes: the simulator counts "
                        f"{f['bytes_1']:,} bytes with S = 1 and {f['bytes_8']:,} with S = 8 (K and V are read "
                        f"once either way; the partial results are extra).")
        if letter == "D":
            raise Wrong(f"batch {batch}: the plain kernel is {f['bound']}-bound: each K and V element is used "
                        f"in a handful of FLOPs, far below the A100's ridge point.")
        want = "A" if f["blocks"] < f["sms"] else "C"
        if letter != want:
            if want == "A":
                why = (f"so most SMs idle; S = 8 runs {f['speedup_8']:.2f}x as fast as S = 1 there: "
                       f"splitting is what fills them.")
            else:
                why = (f"so every SM is already busy: S = 8 runs only {f['speedup_8']:.2f}x as fast as S = 1 "
                       f"there (against {facts[1]['speedup_8']:.2f}x at batch 1), a few percent from how the "
                       f"waves fall, not idle SMs; S = 1 is within the 5% Exercise 5.2 accepts.")
            raise Wrong(f"batch {batch}: the plain kernel launches batch x kv_heads = {f['blocks']} blocks on "
                        f"{f['sms']} SMs, {why} Look at the sweep again.")
    return "batch 1: split (A): 32 blocks on 108 SMs; batch 64: don't split (C): 2,048 blocks fill them"


EXERCISES = (
    Exercise("5.1", "decode_hbm_bytes", "predict decode attention's HBM bytes (GQA)", check_decode_hbm_bytes),
    Exercise("5.2", "pick_split_kv", "the fastest split-KV count for four decoding problems", check_pick_split_kv),
    Exercise("5.3", "split_kv_reasons", "why split at batch 1 and not at batch 64", check_split_kv_reasons),
)
