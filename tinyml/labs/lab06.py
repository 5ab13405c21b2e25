"""Checks for Lab 6, quantization (``labs/lab06_quantization.py``).

The bandwidth bound is compared with ``tinyml.inference.bandwidth_bound``;
the student's NF4 ``quantize_groups`` is wrapped in a quant-package
:class:`~tinyml.kernels.quant.Scheme` (4 bits, groups of 64, the NF4 table
below) and run through ``quantize`` and the fused ``quantized_gemv``: its
error is compared with nearest-level rounding computed here and with
int4-g64 (the same 4.25 bits per weight), its bytes with the layout formula
and the gemv's counters. The best format comes from ``tinyml.inference.fit``.
"""

from __future__ import annotations

import math

import numpy as np

from .checks import Exercise, Wrong, as_number, call, call_text

#: NF4 (QLoRA, Dettmers et al. 2023, Appendix E): the 16 quantiles of N(0, 1), scaled to [-1, 1]
NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=np.float32)
NF4_GROUP = 64
#: Exercise 6.3 chooses from these, best quality (most bits per weight) first
CHOICES = ("fp16", "q8_0", "int8", "q4_0", "int4-g128")


# ---- 6.1 bound_tokens_per_s ----------------------------------------------------------------------

BOUND_CASES = (("llama-2-7b", "fp16", "a100-80gb", 4096), ("llama-2-70b", "q4_0", "h100-sxm", 2048),
               ("llama-2-13b", "int8", "m2-max", 1024), ("gpt2", "fp16", "rtx-4090", 1024))


def check_bound_tokens_per_s(fn) -> str:
    from ..inference import bandwidth_bound, kv_bytes_per_token, weight_bytes
    from ..sim import load_device

    for model, fmt, device, ctx in BOUND_CASES:
        text = call_text("bound_tokens_per_s", (model, fmt, device, ctx))
        got = as_number(call(fn, model, fmt, device, ctx), text)
        want = bandwidth_bound(model, fmt, device, context=ctx).tokens_per_s
        if math.isclose(got, want, rel_tol=0.01):
            continue
        dev = load_device(device)
        w = weight_bytes(model, fmt)
        kv = ctx * kv_bytes_per_token(model)
        bw = dev.hbm_bandwidth * dev.eff_hbm
        variants = {
            bw / (w["total"] + kv): "The embedding table is not read whole: a step reads one row of it per "
                                    "sequence. Leave it out (unless it doubles as the LM head, as GPT-2's does).",
            bw / (w["total"] - w["embedding"]): "Each step also reads the whole KV cache: context x KV bytes "
                                                "per token.",
            dev.hbm_bandwidth / (w["total"] - w["embedding"] + kv): "Use the achievable bandwidth: the spec "
                                                                    "bandwidth x the preset's eff_hbm.",
            bw / (w["total"] - w["embedding"] + kv / 2): "The KV cache holds K and V: 2 x layers x kv_heads x "
                                                         "head_dim x s bytes per token (kv_bytes_per_token).",
        }
        hint = next((h for v, h in variants.items() if math.isclose(got, v, rel_tol=0.005)), None) or (
            "tokens/s = HBM bandwidth x eff_hbm / bytes per token; bytes per token = every weight matrix once "
            "(not the embedding table) + the whole KV cache of `context` tokens.")
        raise Wrong(f"{text} = {got:,.1f}, expected {want:,.1f} (within 1%). {hint}")
    return f"within 1% of tinyml.inference.bandwidth_bound on {len(BOUND_CASES)} models, formats and devices"


# ---- 6.2 nf4_quantize_groups ------------------------------------------------------------------------

def nf4_scheme(fn):
    """The quant-package Scheme a student's NF4 ``quantize_groups`` function makes."""
    from ..kernels.quant import Scheme

    class StudentNF4(Scheme):
        name = "lab6-nf4"
        bits = 4
        group_size = NF4_GROUP
        has_min = False

        def levels(self):
            return NF4_LEVELS

        def quantize_groups(self, groups):
            return fn(groups)

    return StudentNF4()


def nearest_level_rmse(w: np.ndarray) -> tuple[float, np.ndarray]:
    """Weight RMSE of NF4 with nearest-level codes for the fp16 absmax scale, and the decoded weights."""
    from ..kernels.quant import to_fp16

    n, k = w.shape
    kp = -(-k // NF4_GROUP) * NF4_GROUP
    padded = np.zeros((n, kp), np.float32)
    padded[:, :k] = w
    g = padded.reshape(-1, NF4_GROUP)                                        # (N*G, 64)
    scale = to_fp16(np.abs(g).max(axis=1))                                  # (N*G,)
    safe = np.where(scale > 0, scale, 1.0)
    codes = np.abs(g[:, :, None] / safe[:, None, None] - NF4_LEVELS).argmin(axis=2)
    deq = (NF4_LEVELS[codes] * scale[:, None]).reshape(n, kp)[:, :k]
    return float(np.sqrt(np.mean((deq - w) ** 2))), deq


def _weights() -> np.ndarray:
    rng = np.random.default_rng(2023)
    w = (0.02 * rng.standard_normal((96, 700))).astype(np.float32)         # (N, K): K not a multiple of 64
    w[5] = 0.0                                                              # an all-zero row: scale 0
    w[7, :64] = 0.25                                                        # a constant group
    w[9, 3] = 1.5                                                           # an outlier
    return w


def check_nf4_quantize_groups(fn) -> str:
    from ..kernels.quant import quantize, quantized_gemv
    from ..sim import Profile, TinymlError

    w = _weights()
    n, k = w.shape
    try:
        q = quantize(w, nf4_scheme(fn))
    except NotImplementedError:
        raise
    except TinymlError as exc:
        raise Wrong(f"quantize(w, your NF4 scheme) refused what nf4_quantize_groups returned: {exc}. "
                    f"Return (codes (n_groups, 64) integers in [0, 16), scale (n_groups,), None).") from None
    except Exception as exc:  # noqa: BLE001 - the student's bug, reported as such
        raise Wrong(f"nf4_quantize_groups raised {type(exc).__name__}: {exc}") from None
    deq = q.dequantize()
    if not np.all(np.isfinite(deq)):
        raise Wrong("the decoded weights hold NaN/Inf. Hint: an all-zero group has scale 0; dividing by it gives "
                    "NaN. Give such a group scale 0 and any code (it decodes to 0 either way).")
    rmse = float(np.sqrt(np.mean((deq - w) ** 2)))
    best, _ = nearest_level_rmse(w)
    if rmse > best * 1.001 + 1e-9:
        hint = ("Per group: scale = max|w| (stored as fp16: round it with to_fp16 before computing the codes), "
                "then each weight's code is the index of the NF4 level nearest to w / scale.")
        if np.abs(deq[5]).max() == 0 and rmse > 1.5 * best:
            hint = ("The scale is the group's absmax, so w / scale lies in [-1, 1], the range of the levels "
                    "(not max|w| / 7 as for int4). " + hint)
        raise Wrong(f"your NF4 weights have RMSE {rmse:.4g}; nearest-level codes for the fp16 absmax scale give "
                    f"{best:.4g}. {hint}")
    int4 = quantize(w, "int4-g64")
    int4_rmse = float(np.sqrt(np.mean((int4.dequantize() - w) ** 2)))
    expected_bytes = n * -(-k // NF4_GROUP) * (2 + NF4_GROUP // 2)         # fp16 scale + 32 bytes of nibbles
    if q.nbytes != expected_bytes:
        raise Wrong(f"the packed NF4 weights take {q.nbytes:,} bytes, expected {expected_bytes:,}")
    x = np.random.default_rng(1).standard_normal(k).astype(np.float32)
    with Profile("a100-80gb") as prof:
        y = quantized_gemv(x, q, block_n=16)                                # the fused kernel, executing
    exact = deq.astype(np.float64) @ x.astype(np.float64)
    err = float(np.abs(y - exact).max() / (np.abs(exact).max() or 1.0))
    r = prof.records[0]
    reads = r.hbm_read_bytes + r.l2_hit_bytes
    want_reads = q.nbytes + -(-n // 16) * k * 2                              # packed W once, x once per block (fp16)
    if err > 1e-4 or reads != want_reads:
        raise Wrong(f"the fused gemv on your NF4 weights is off by {err:.2g} (relative) or read {reads:,} bytes "
                    f"instead of {want_reads:,}; check that the codes are integers in [0, 16)")
    return (f"NF4 RMSE {rmse:.3g} vs int4-g64's {int4_rmse:.3g} at the same 4.25 bits/weight "
            f"({1 - rmse / int4_rmse:.0%} lower); the fused gemv reads {reads:,} bytes = packed W + x per block")


# ---- 6.3 best_format ----------------------------------------------------------------------------------

FORMAT_CASES = (("llama-2-7b", "a100-40gb", 4096, 1), ("llama-2-70b", "a100-80gb", 4096, 1),
                ("llama-2-70b", "a100-80gb", 4096, 16), ("llama-2-70b", "a100-40gb", 4096, 1),
                ("llama-2-13b", "rtx-4090", 2048, 4), ("llama-2-70b", "h200", 4096, 8),
                ("llama-2-70b", "rtx-4090", 512, 1))


def best_format_answer(model, device, context, batch):
    from ..inference import fit

    for fmt in CHOICES:
        if fit(model, fmt, device, context=context, batch=batch).fits:
            return fmt
    return None


def check_best_format(fn) -> str:
    from ..inference import fit

    for args in FORMAT_CASES:
        text = call_text("best_format", args)
        got = call(fn, *args)
        want = best_format_answer(*args)
        if got == want:
            continue
        model, device, context, batch = args
        if got is not None and got not in CHOICES:
            raise Wrong(f"{text} = {got!r}; return one of {', '.join(CHOICES)}, or None if none fits")
        if got is not None and not fit(model, got, device, context=context, batch=batch).fits:
            f = fit(model, got, device, context=context, batch=batch)
            raise Wrong(f"{text} = {got!r}, but {model} in {got} needs {f.weight_bytes / 1e9:.1f} GB of weights + "
                        f"{f.kv_bytes / 1e9:.1f} GB of KV cache ({batch} x {context} tokens) > "
                        f"{f.capacity_bytes / 1e9:.0f} GB. Count the KV cache of every sequence too.")
        raise Wrong(f"{text} = {got!r}, but {want!r} fits too and keeps more bits per weight. Try the formats in "
                    f"CHOICES order (most bits first) and return the first whose weights plus batch x context "
                    f"tokens of KV cache fit (tinyml.inference.fit).")
    return f"the highest-precision format that fits, on {len(FORMAT_CASES)} (model, device, context, batch) cases"


EXERCISES = (
    Exercise("6.1", "bound_tokens_per_s", "the bandwidth bound on tokens/s at batch 1", check_bound_tokens_per_s),
    Exercise("6.2", "nf4_quantize_groups", "bring your own scheme: NF4 through the fused gemv",
             check_nf4_quantize_groups),
    Exercise("6.3", "best_format", "the best weight format that fits a device", check_best_format),
)
