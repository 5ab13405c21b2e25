"""Lab 6: Quantization

How many bytes a weight costs in each format, the tokens/s that HBM bandwidth
allows at batch 1 (predicted, then simulated), a 4-bit scheme of your own (NF4)
run through the fused dequantize-gemv kernel, and the best format that fits.

The reference solution: the lab with every exercise answered. CI checks it with
`tinyml lab check 6 --file labs/solutions/lab06_quantization.py`.

Run it:       python labs/solutions/lab06_quantization.py    (or open it as a notebook in VS Code)
Check it:     tinyml lab check 6 --file labs/solutions/lab06_quantization.py
Walkthrough:  docs/quantization.md and docs/serving.md
"""

# %% [markdown]
# # Lab 6: Quantization
#
# At batch 1 a decode step multiplies one vector by every weight matrix: each
# weight is read from HBM once and used in one multiply-add. The step takes
# as long as reading the weights, so storing them in fewer bits makes it
# faster, *if* the kernel reads the packed bytes and dequantizes on chip
# (fused), instead of first writing the fp16 weights back to HBM (unfused).
# tinyml has the formats and kernels (`tinyml/kernels/quant/`):
#
# * `quantize(w, "q4_0")` -> a `QuantizedTensor` (llama.cpp's Q4_0 byte layout);
# * `quantized_gemv(x, q)`: the fused kernel; `unfused_quantized_matmul`: the baseline;
# * a `Scheme` class: bring your own format, and the fused kernels run it unchanged.
#
# Exercises are the functions marked *Exercise 6.x*: replace each
# `raise NotImplementedError(...)`, re-run, and check with `tinyml lab check 6`.

# %%
import math  # noqa: F401  (for your answers)
import os

import numpy as np

from tinyml.inference import FORMATS, fit, kv_bytes_per_token, simulate_step, weight_bytes  # noqa: F401
from tinyml.kernels.matmul import matmul
from tinyml.kernels.quant import QuantizedTensor, Scheme, quantize, quantized_gemv, unfused_quantized_matmul
from tinyml.kernels.quant import to_fp16  # noqa: F401  (for your answer)
from tinyml.sim import Profile, load_device, meta
from tinyml.sim.units import fmt_bytes

SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"   # CI runs every lab this way: small shapes

A100 = load_device("a100-80gb")
DEVICES = ("a100-40gb", "a100-80gb", "rtx-4090", "m2-max")

# %% [markdown]
# ## 1. Bytes per weight, model sizes, and what fits
#
# A quantized format stores small integer codes plus an fp16 scale per group
# of weights: Q4_0 spends 4 bits per weight and 16 bits per group of 32, so
# 4.5 bits per weight. Norm weights stay in fp16. Does the model fit, with one
# sequence of 4096 tokens of KV cache?

# %%
for name in ("llama-2-7b", "llama-2-70b"):
    for fmt in FORMATS:
        f = [fit(name, fmt, d, context=4096) for d in DEVICES]
        print(f"{name:<12} {fmt:<10} {f[0].bits_per_weight:6.3f} bits/w {fmt_bytes(f[0].weight_bytes):>9}   "
              + "  ".join(f"{d}: {'fits' if x.fits else '-':<4}" for d, x in zip(DEVICES, f)))

# %% [markdown]
# ## 2. The bandwidth bound
#
# A decode step at batch 1 reads every weight *matrix* once (the embedding
# table is not a matrix the step multiplies by: it reads one row of it),
# and the whole KV cache of the sequence. It cannot be faster than those bytes
# over the HBM bandwidth that kernels really reach (the spec bandwidth times
# the device preset's `eff_hbm`). `weight_bytes(model, fmt)` gives the weights
# by part; `kv_bytes_per_token(model)` the cache per token.

# %%
def bound_tokens_per_s(model: str, fmt: str, device: str, context: int) -> float:
    """Exercise 6.1: the most tokens/s a batch-1 decode step can reach on ``device`` (a preset name).

    Bytes per token: every weight matrix once (not the embedding table, unless it is also the LM head)
    and the KV cache of ``context`` tokens; bandwidth: hbm_bandwidth x eff_hbm. Within 1% is accepted.
    """
    dev = load_device(device)
    w = weight_bytes(model, fmt)
    lm_head = w["lm_head"] if w["lm_head"] else w["embedding"]           # GPT-2's head is its embedding
    read = w["layers"] + w["final_norm"] + lm_head + context * kv_bytes_per_token(model)
    return dev.hbm_bandwidth * dev.eff_hbm / read


# %%
for fmt in ("fp16", "q4_0"):
    step = simulate_step("llama-2-7b", fmt, A100, context=4096)
    try:
        mine = f"{bound_tokens_per_s('llama-2-7b', fmt, 'a100-80gb', 4096):.1f}"
    except NotImplementedError:
        mine = "[Exercise 6.1 not attempted]"
    print(f"llama-2-7b {fmt:<5}: your bound {mine} tokens/s; simulated through the kernels "
          f"{step.tokens_per_s:.1f} tokens/s ({step.kernels_per_step} kernels per token)")

# %% [markdown]
# Fused or not? The same int4 weights through the fused gemv, and through the
# unfused baseline that writes fp16 weights to HBM first (counting mode):

# %%
N, K = (1024, 2752) if SMOKE else (4096, 11008)
for label, run in (("fp16 weights, no quantization", None),
                   ("int4-g32, fused quantized_gemv", "fused"),
                   ("int4-g32, dequantize then matmul", "unfused")):
    with Profile(A100) as prof:
        if run is None:
            matmul(meta((1, K)), meta((K, N)), block_m=1, block_n=16)
        elif run == "fused":
            quantized_gemv(meta((K,)), QuantizedTensor.meta((N, K), "int4-g32"))
        else:
            unfused_quantized_matmul(meta((1, K)), QuantizedTensor.meta((N, K), "int4-g32"))
    print(f"  {label:<34} {fmt_bytes(prof.hbm_bytes):>9} of HBM traffic in {prof.time_s * 1e6:7.1f} us")

# %% [markdown]
# ## 3. Bring your own scheme: NF4
#
# QLoRA's NF4 (Dettmers et al. 2023) stores 4-bit codes that index 16 levels
# placed at the quantiles of a normal distribution, scaled per group by the
# group's largest |w| (absmax). Trained weights are roughly normal, so the
# levels sit where the weights are dense: less error than evenly spaced int4
# levels at the same bits. In tinyml a scheme is a `Scheme` subclass: the
# levels, the group size, and `quantize_groups`; packing, `dequantize` and the
# fused kernels come for free (`w = scale * levels[code]`).

# %%
NF4_LEVELS = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=np.float32)


def nf4_quantize_groups(groups: np.ndarray):
    """Exercise 6.2: NF4-quantize ``groups`` (n_groups, 64) float32.

    Return ``(codes, scale, None)``: scale (n_groups,) = each group's max |w|, rounded to fp16
    (``to_fp16``); codes (n_groups, 64) = the index of the NF4 level nearest to w / scale.
    An all-zero group has scale 0 (any code decodes to 0).
    """
    scale = to_fp16(np.abs(groups).max(axis=1))                               # (n_groups,)
    safe = np.where(scale > 0, scale, 1.0)
    x = groups / safe[:, None]                                                # (n_groups, 64) in [-1, 1]
    codes = np.abs(x[:, :, None] - NF4_LEVELS[None, None, :]).argmin(axis=2)  # (n_groups, 64)
    return codes.astype(np.uint8), scale, None


class NF4(Scheme):
    """NF4: 4-bit codes into the normal-quantile levels, an fp16 absmax scale per 64 weights (4.25 bits/w)."""

    name = "nf4"
    bits = 4
    group_size = 64
    has_min = False

    def levels(self):
        return NF4_LEVELS

    def quantize_groups(self, groups):
        return nf4_quantize_groups(groups)


# %%
rng = np.random.default_rng(0)
w = (0.02 * rng.standard_normal((256, 1024))).astype(np.float32)             # (N, K), roughly like trained weights
x = rng.standard_normal(1024).astype(np.float32)                              # (K,)
exact = w.astype(np.float64) @ x
try:
    for fmt in ("int4-g64", NF4(), "q4_0", "q8_0"):
        q = quantize(w, fmt)
        with Profile(A100) as prof:
            y = quantized_gemv(x, q)                                          # the fused kernel, executing
        rmse = np.sqrt(np.mean((q.dequantize() - w) ** 2))
        print(f"  {q.fmt:<9} {q.bits_per_weight:5.2f} bits/w  weight RMSE {rmse:.3e}  gemv rel. error "
              f"{np.linalg.norm(y - exact) / np.linalg.norm(exact):.4f}  read {fmt_bytes(prof.hbm_read_bytes)}")
except NotImplementedError as exc:
    print(f"[Exercise 6.2 not attempted] {exc}")

# %% [markdown]
# ## 4. Which format should you serve?
#
# More bits per weight, less error. Pick the format with the most bits per
# weight whose weights *and* the KV caches of the batch fit.

# %%
CHOICES = ("fp16", "q8_0", "int8", "q4_0", "int4-g128")        # most bits per weight first


def best_format(model: str, device: str, context: int, batch: int):
    """Exercise 6.3: the first format of CHOICES whose weights plus ``batch`` x ``context`` tokens of
    KV cache fit ``device``'s HBM, or None if none does."""
    for fmt in CHOICES:
        if fit(model, fmt, device, context=context, batch=batch).fits:
            return fmt
    return None


# %%
for args in (("llama-2-70b", "a100-80gb", 4096, 1), ("llama-2-70b", "a100-80gb", 4096, 16),
             ("llama-2-13b", "rtx-4090", 2048, 4)):
    try:
        print(f"best_format{args} = {best_format(*args)!r}")
    except NotImplementedError as exc:
        print(f"[Exercise 6.3 not attempted] {exc}")

# %% [markdown]
# Fewer bits per weight buy speed at batch 1 and room for more sequences;
# they cost accuracy, which better-placed levels (NF4) or smaller groups win
# back. What to try next: `tinyml quant --model llama-2-70b --device m2-max`,
# and `benchmarks/bench_quant.py`.
#
# ## Check your answers
#
# The same check as `tinyml lab check 6`: it loads only your functions (not
# these cells; save the file first) and compares them with what tinyml computes.

# %%
from tinyml.labs import check_lab  # noqa: E402

print(check_lab(6, path=globals().get("__file__")).render())
