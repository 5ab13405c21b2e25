"""Lab 1: The memory hierarchy

Where a GPU keeps its data, how fast each level moves it, and what that decides
about a kernel: bandwidth vs capacity, arithmetic intensity, the ridge point
and the roofline, memory- vs compute-bound kernels, launch overhead, and
running out of HBM.

The reference solution: the lab with every exercise answered. CI checks it with
`tinyml lab check 1 --file labs/solutions/lab01_memory_hierarchy.py`.

Run it:       python labs/solutions/lab01_memory_hierarchy.py    (or open it as a notebook in VS Code)
Check it:     tinyml lab check 1 --file labs/solutions/lab01_memory_hierarchy.py
Walkthrough:  docs/memory-hierarchy.md
"""

# %% [markdown]
# # Lab 1: The memory hierarchy
#
# A GPU kernel lives between two memories:
#
# * **HBM** (high-bandwidth memory): tens of GB, off chip, a few TB/s.
# * **SRAM** (shared memory, one slice per streaming multiprocessor, or *SM*):
#   a few hundred KB per SM, on chip, about ten times faster.
#
# The arithmetic units are so fast that most kernels spend their time waiting
# for HBM. This lab measures that with `tinyml.sim`, a simulated GPU whose
# numbers come from device presets (TOML files; every number has a source).
#
# **Exercises** are the functions marked *Exercise 1.x*. Replace each
# `raise NotImplementedError(...)` with your answer, re-run the lab, and check
# your answers with `tinyml lab check 1`. The cells after each exercise try
# your function and tell you if it is not written yet.

# %%
import os
import tempfile
from pathlib import Path

from tinyml.kernels.matmul import matmul
from tinyml.sim import HbmOutOfMemoryError, Profile, list_presets, load_device, meta, nbytes
from tinyml.sim.units import fmt_bytes, fmt_rate, fmt_time

SMOKE = os.environ.get("TINYML_LAB_SMOKE") == "1"   # CI runs every lab this way: small shapes, no figures

A100 = load_device("a100-40gb")   # the A100 as the FlashAttention paper describes it
TOY = load_device("toy")          # a teaching GPU: 4 SMs, 2 KB of SRAM each, 1 MiB of HBM

# %% [markdown]
# ## 1. A device is a bundle of numbers
#
# `load_device(name)` returns a frozen `Device`. Here is every preset. "SRAM"
# is the total over all SMs; rates are *spec* numbers (the cost model scales
# each by an efficiency factor, `eff_hbm`, `eff_matmul`, ..., to what real
# kernels reach).

# %%
W = max(len(name) for name in list_presets())   # the longest preset name
print(f"{'device':<{W}} {'SMs':>4} {'SRAM/SM':>9} {'SRAM':>9} {'SRAM BW':>11} {'HBM':>9} {'HBM BW':>11} "
      f"{'fp16 matmul':>13} {'launch':>8}")
for name in list_presets():
    d = load_device(name)
    print(f"{d.name:<{W}} {d.sm_count:>4} {fmt_bytes(d.sram_per_sm, binary=True):>9} "
          f"{fmt_bytes(d.sram_total, binary=True):>9} "
          f"{fmt_rate(d.sram_bandwidth):>11} {fmt_bytes(d.hbm_capacity):>9} {fmt_rate(d.hbm_bandwidth):>11} "
          f"{fmt_rate(d.matmul_rate('fp16'), 'FLOP/s'):>13} {fmt_time(d.launch_overhead_s):>8}")
print()
print("Where the A100's numbers come from:")
for key in ("sm.sram_bytes", "sram.bandwidth", "hbm.bandwidth", "efficiency.hbm"):
    print(f"  {key:<16} {A100.sources[key]}")

# %% [markdown]
# ## 2. Fast memory is small, big memory is slow
#
# Each level trades capacity for bandwidth. A useful way to feel the numbers:
# how long does it take to read each level *once*, end to end?

# %%
for d in (A100, TOY):
    print(f"{d.name}: {d.description}")
    levels = [
        ("SRAM (on chip)", d.sram_total, d.sram_bandwidth, True),   # SRAM sizes in KiB/MiB, as on spec sheets
        ("HBM", d.hbm_capacity, d.hbm_bandwidth, False),
        ("host link", d.hbm_capacity, d.host_bandwidth, False),   # filling HBM from the CPU
    ]
    for level, size, bw, binary in levels:
        print(f"  {level:<15} {fmt_bytes(size, binary):>9} at {fmt_rate(bw):>11}: read it all in {fmt_time(size / bw)}")
    print(f"  SRAM is {d.sram_bandwidth / d.hbm_bandwidth:.0f}x faster than HBM "
          f"and {d.hbm_capacity / d.sram_total:,.0f}x smaller.\n")

# %% [markdown]
# So a kernel should read its inputs from HBM as few times as it can and do as
# much work as possible on what it holds in SRAM. How much work per byte a
# kernel does is its **arithmetic intensity**:
#
#     intensity = FLOPs / HBM bytes moved            (FLOPs per byte)
#
# An elementwise `c = a + b` in fp16 does 1 FLOP per element and moves 3
# elements (read a, read b, write c) = 6 bytes: 1/6 FLOP per byte, whatever its
# size. A matmul is different: C (M x N) = A (M x K) @ B (K x N) does
# 2 * M * N * K FLOPs (a multiply and an add per term), but each matrix only
# *needs* to cross HBM once.

# %%
def matmul_intensity(m: int, n: int, k: int, dtype: str) -> float:
    """Exercise 1.1: the arithmetic intensity (FLOPs per HBM byte) of C = A @ B
    for a kernel that moves each matrix across HBM exactly once.

    A is (m, k) and B is (k, n), both read once; C is (m, n), written once. All
    three are stored in the logical dtype ``dtype`` ("fp16", "bf16", "fp32");
    ``nbytes(count, dtype)`` gives the bytes of ``count`` elements.

    >>> round(matmul_intensity(2, 2, 2, "fp32"), 3)   # 16 FLOPs on 12 elements of 4 bytes
    0.333
    """
    flops = 2 * m * n * k                                   # a multiply and an add per term
    moved = nbytes(m * k, dtype) + nbytes(k * n, dtype) + nbytes(m * n, dtype)   # read A, B; write C
    return flops / moved


# %%
try:
    rows = [(size, matmul_intensity(size, size, size, "fp16")) for size in (16, 64, 256, 1024, 4096, 16384)]
    print(f"{'M=N=K':>7} {'FLOP/B at best':>15}   (fp16)")
    for size, intensity in rows:
        print(f"{size:>7} {intensity:>15.1f}")
    print(f"gemv (M=1, N=K=4096): {matmul_intensity(1, 4096, 4096, 'fp16'):.2f} FLOP/B")
except NotImplementedError as exc:
    print(f"[Exercise 1.1 not attempted] {exc}")
    print("  Hint: a square N x N x N fp16 matmul should come out at N/3 FLOPs per byte.")

# %% [markdown]
# Big matmuls can do a lot of work per byte; a matrix-vector product (M=1)
# cannot. Whether that is *enough* work depends on the device.
#
# ## 3. The ridge point and the roofline
#
# A kernel with intensity I can go no faster than
#
#     min(peak FLOP/s,  HBM bandwidth x I)
#
# (the *roofline*): below some intensity the memory roof is lower, above it the
# compute roof. Where the two roofs meet is the **ridge point**. Use the
# *achievable* rates (spec x efficiency), as tinyml's cost model does.

# %%
def ridge_point(device, dtype: str = "fp16") -> float:
    """Exercise 1.2: the ridge point of ``device`` for matmuls in ``dtype``, in FLOPs per HBM byte.

    It is the intensity at which the tensor cores' achievable rate,
    ``device.matmul_rate(dtype) * device.eff_matmul`` (FLOP/s), equals what
    the achievable HBM bandwidth, ``device.hbm_bandwidth * device.eff_hbm``
    (bytes/s), can feed. (``Device.ridge_point`` exists: don't call it, build
    the number yourself.)
    """
    flops_per_s = device.matmul_rate(dtype) * device.eff_matmul      # achievable tensor-core rate
    bytes_per_s = device.hbm_bandwidth * device.eff_hbm              # achievable HBM bandwidth
    return flops_per_s / bytes_per_s


# %%
try:
    for name in list_presets():
        d = load_device(name)
        print(f"{name:<{W}} ridge point: {ridge_point(d, 'fp16'):6.1f} FLOP/B (fp16) "
              f"{ridge_point(d, 'fp32'):6.1f} (fp32)")
except NotImplementedError as exc:
    print(f"[Exercise 1.2 not attempted] {exc}")
    print("  Hint: the toy device's fp16 ridge point is 4 TFLOP/s / 128 GB/s, about 31 FLOP/B.")

# %% [markdown]
# A kernel whose intensity is below the ridge point is **memory-bound**: HBM
# is the bottleneck and faster arithmetic would not help. Above it, it is
# **compute-bound**. Let's measure real kernels. `meta(shape, dtype)` makes a
# shape-only tensor: the kernel walks its tile loops in *counting mode* and
# reports its bytes and FLOPs without doing the arithmetic, so even a huge
# matmul costs a fraction of a second. `matmul(..., version=3)` is the tiled
# tensor-core kernel; `version=1` is the naive one (lab 2 explains both).

# %%
sizes = (64, 512, 4096) if SMOKE else (64, 256, 512, 1024, 2048, 4096, 8192, 16384)
with Profile(A100, name="matmul sweep") as sweep:
    for size in sizes:
        matmul(meta((size, size)), meta((size, size)), version=3)
    matmul(meta((sizes[-1], sizes[-1])), meta((sizes[-1], sizes[-1])), version=1)
print(sweep.table(width=140))

peak = A100.matmul_rate("fp16") * A100.eff_matmul
bandwidth = A100.hbm_bandwidth * A100.eff_hbm
print(f"\nA100 roofs: {fmt_rate(peak, 'FLOP/s')} (fp16 tensor cores), {fmt_rate(bandwidth)} (HBM); "
      f"ridge {peak / bandwidth:.0f} FLOP/B")
print(f"{'kernel':<16} {'size':>6} {'FLOP/B':>8} {'achieved':>14} {'roof here':>14} {'of roof':>8}  bound")
for r, size in zip(sweep.records, (*sizes, sizes[-1])):
    achieved = r.flops / (r.time_s - A100.launch_overhead_s)
    roof = min(peak if r.flops_matmul else A100.vector_rate() * A100.eff_vector, bandwidth * r.intensity)
    print(f"{r.name:<16} {size:>6} {r.intensity:>8.1f} {fmt_rate(achieved, 'FLOP/s'):>14} "
          f"{fmt_rate(roof, 'FLOP/s'):>14} {achieved / roof:>8.0%}  {r.bound}")

# %% [markdown]
# Read the `bound` column: the naive kernel is memory-bound at any size (its
# intensity stays below 1 FLOP/B); the tiled one becomes compute-bound once
# its intensity passes the ridge point. Two more things to notice:
#
# * The *smallest* matmuls say `launch`: they finish before the launch
#   overhead does (section 4).
# * Some mid-sized ones reach only a small fraction of their roof. Look at the
#   `grid` column: when a kernel has fewer thread blocks than the A100 has
#   SMs, the idle SMs' share of HBM bandwidth goes unused (the cost model
#   gives each SM 1/108 of it). Lab 2 is about tiles, blocks and waves.

# %%
for r, size in zip(sweep.records, sizes):
    if r.n_blocks < A100.sm_count:
        print(f"{size} x {size}: grid {r.grid}, {r.n_blocks} block(s) for {A100.sm_count} SMs: "
              f"{1 - r.n_blocks / A100.sm_count:.0%} of the chip idle")

# %% [markdown]
# The roofline as a picture (each kernel a point under the two roofs):

# %%
if SMOKE:
    print("(smoke mode: no figure)")
else:
    out = Path(os.environ.get("TINYML_LAB_OUT", tempfile.gettempdir()))
    png = sweep.roofline(out / "lab01_roofline.png")
    print(f"roofline written to {png}")

# %% [markdown]
# ## 4. Launch overhead: tiny kernels do not pay
#
# Every kernel launch costs a few microseconds before a single byte moves
# (`device.launch_overhead_s`). For a tiny kernel that is most of its time,
# which is one reason compilers *fuse* small operations into one kernel.

# %%
def launch_break_even_bytes(device) -> float:
    """Exercise 1.3: how many HBM bytes a memory-bound kernel must move on
    ``device`` for its transfer time to equal the launch overhead.

    Moving ``b`` bytes takes ``b / (device.hbm_bandwidth * device.eff_hbm)``
    seconds; a launch costs ``device.launch_overhead_s``. Below this many
    bytes, launching the kernel costs more than running it.
    """
    return device.launch_overhead_s * device.hbm_bandwidth * device.eff_hbm   # seconds x bytes/s


# %%
try:
    for name in list_presets():
        d = load_device(name)
        bytes_ = launch_break_even_bytes(d)
        print(f"{name:<{W}} launch {fmt_time(d.launch_overhead_s):>7} = moving {fmt_bytes(bytes_):>9}")
except NotImplementedError as exc:
    print(f"[Exercise 1.3 not attempted] {exc}")
    print("  Hint: on the A100 it is a few megabytes.")

# %% [markdown]
# The same story from the simulator: small tiled matmuls, with the share of
# their time that is launch overhead.

# %%
with Profile(A100, name="tiny kernels") as tiny:
    for size in (16, 64, 256, 1024):
        matmul(meta((size, size)), meta((size, size)), version=3)
print(f"{'M=N=K':>6} {'HBM bytes':>10} {'time':>9} {'launch share':>13}  bound")
for size, r in zip((16, 64, 256, 1024), tiny.records):
    print(f"{size:>6} {fmt_bytes(r.hbm_bytes):>10} {fmt_time(r.time_s):>9} "
          f"{A100.launch_overhead_s / r.time_s:>13.0%}  {r.bound}")

# %% [markdown]
# ## 5. HBM is big, but not infinite
#
# tinyml accounts for every tensor a kernel touches in the simulated HBM.
# Inputs and outputs must all fit at once, or the kernel fails with
# `HbmOutOfMemoryError`, naming what is live. The toy device has 1 MiB of
# HBM: a 256 x 256 fp16 matmul (three 128 KiB matrices) fits...

# %%
with Profile(TOY, name="fits") as prof:
    matmul(meta((256, 256)), meta((256, 256)))
print(f"256 x 256 fp16 on toy: peak HBM {fmt_bytes(prof.peak_hbm_bytes)} of {fmt_bytes(TOY.hbm_capacity)}")

# %% [markdown]
# ... but at 512 x 512, A and B alone fill all of it, and there is no room left for C:

# %%
try:
    with Profile(TOY, name="too big"):
        matmul(meta((512, 512)), meta((512, 512)))
except HbmOutOfMemoryError as exc:
    print(f"HbmOutOfMemoryError: {exc}")

# %%
def largest_square_matmul(device, dtype: str = "fp16") -> int:
    """Exercise 1.4: the largest N for which C = A @ B with A, B and C all
    N x N in ``dtype`` fits in ``device``'s HBM (``device.hbm_capacity`` bytes).

    All three matrices are live at once; nothing else is in HBM. For N + 1 the
    simulator must raise ``HbmOutOfMemoryError``.
    """
    # 3 * N*N elements must fit: N = floor(sqrt(capacity / (3 * bytes per element)))
    n = int((device.hbm_capacity / (3 * nbytes(1, dtype))) ** 0.5)
    while 3 * nbytes((n + 1) * (n + 1), dtype) <= device.hbm_capacity:   # guard against float rounding
        n += 1
    while 3 * nbytes(n * n, dtype) > device.hbm_capacity:
        n -= 1
    return n


# %%
try:
    n = largest_square_matmul(TOY, "fp16")
    for size in (n, n + 1):
        try:
            with Profile(TOY):
                matmul(meta((size, size)), meta((size, size)), version=1, block_m=size, block_n=size)
            print(f"{size} x {size}: fits")
        except HbmOutOfMemoryError as exc:
            print(f"{size} x {size}: out of HBM ({str(exc).splitlines()[0]})")
    print(f"A100 40GB: the largest square fp16 matmul is {largest_square_matmul(A100, 'fp16'):,} on a side")
except NotImplementedError as exc:
    print(f"[Exercise 1.4 not attempted] {exc}")
    print("  Hint: on the toy device the answer for fp16 is a bit over 400.")

# %% [markdown]
# ## Check your answers
#
# The same check as `tinyml lab check 1`: it loads only your functions (not
# these cells; save the file first) and compares them with what tinyml computes.

# %%
from tinyml.labs import check_lab  # noqa: E402

print(check_lab(1, path=globals().get("__file__")).render())
