"""Checks for Lab 1, the memory hierarchy (``labs/lab01_memory_hierarchy.py``).

Every expected answer comes from tinyml: intensities from a kernel run in
counting mode, ridge points and launch break-even sizes from the device
presets, HBM capacity from the simulator's own out-of-memory error.
"""

from __future__ import annotations

from .checks import Exercise, Wrong, as_int, as_number, call, call_text, close

DTYPES = ("fp16", "fp32")


# ---- 1.1 matmul_intensity ------------------------------------------------------------

def _one_pass_intensity(m: int, n: int, k: int, dtype: str) -> tuple[float, int, int]:
    """(FLOPs per HBM byte, FLOPs, bytes) of a matmul that moves each matrix once.

    Measured, not computed: run the v3 kernel in counting mode with a single
    block whose tiles are the whole matrices, on an A100 with unlimited SRAM.
    """
    from ..kernels.matmul import matmul
    from ..sim import Profile, load_device, meta

    dev = load_device("a100-40gb").replace(name="a100-unlimited-sram", sram_per_sm=1 << 50)
    with Profile(dev) as prof:
        matmul(meta((m, k), dtype), meta((k, n), dtype), version=3, dtype=dtype,
               block_m=m, block_n=n, block_k=k)
    r = prof.records[0]
    moved = r.hbm_read_bytes + r.l2_hit_bytes + r.hbm_write_bytes
    return r.flops / moved, r.flops, moved


def check_matmul_intensity(fn) -> str:
    from ..sim import nbytes

    cases = [(4096, 4096, 4096, "fp16"), (1, 4096, 4096, "fp16"), (128, 50, 70, "fp32"), (16, 16, 16, "bf16")]
    for m, n, k, dt in cases:
        text = call_text("matmul_intensity", (m, n, k, dt))
        got = as_number(call(fn, m, n, k, dt), text)
        expected, flops, moved = _one_pass_intensity(m, n, k, dt)
        if close(got, expected):
            continue
        s = nbytes(8, dt) / 8
        if close(got, expected * s):
            hint = ("That is FLOPs per *element*; intensity is per byte: multiply element counts by "
                    "the bytes per element (nbytes(1, dtype)).")
        elif close(got, flops / ((m * k + k * n) * s)):
            hint = "You count the reads of A and B but not the write of C: C crosses HBM once too."
        elif close(got, expected / 2):
            hint = "A multiply-add is 2 FLOPs, so a matmul does 2*M*N*K FLOPs."
        elif close(got, 1 / expected):
            hint = "That is bytes per FLOP; intensity is FLOPs per byte."
        else:
            hint = "FLOPs = 2*M*N*K; bytes = every element of A, B and C once, times the bytes per element."
        raise Wrong(f"{text} = {got:.6g}, but a kernel that moves each matrix once does {flops:,} FLOPs "
                    f"on {moved:,} HBM bytes = {expected:.6g} FLOPs per byte. {hint}")
    return f"matches the counted FLOPs and bytes of a one-pass kernel on {len(cases)} shapes"


# ---- 1.2 ridge_point -----------------------------------------------------------------

def check_ridge_point(fn) -> str:
    from ..sim import list_presets, load_device

    n = 0
    for name in list_presets():
        dev = load_device(name)
        for dt in DTYPES:
            text = call_text("ridge_point", (dev, dt))
            got = as_number(call(fn, dev, dt), text)
            expected = dev.ridge_point(dt)
            n += 1
            if close(got, expected):
                continue
            spec = dev.matmul_rate(dt) / dev.hbm_bandwidth
            if close(got, spec):
                hint = ("That uses the spec rates. Kernels reach only a fraction of them: multiply the "
                        "matmul rate by device.eff_matmul and the bandwidth by device.eff_hbm.")
            elif close(got, 1 / expected) or close(got, 1 / spec):
                hint = "That is bytes per FLOP; the ridge point is FLOPs per byte (rate / bandwidth)."
            elif close(got, dev.vector_rate(dt) * dev.eff_vector / (dev.hbm_bandwidth * dev.eff_hbm)):
                hint = "Use the tensor-core rate, device.matmul_rate(dtype), not the vector rate."
            elif close(got, dev.ridge_point("fp16")):
                hint = "The ridge point depends on the dtype: use device.matmul_rate(dtype)."
            else:
                hint = ("The ridge point is achievable matmul FLOP/s divided by achievable HBM bytes/s "
                        "(matmul_rate(dtype) * eff_matmul) / (hbm_bandwidth * eff_hbm).")
            raise Wrong(f"{text} = {got:.6g} FLOPs/byte, expected {expected:.6g}. {hint}")
    return f"right for all {n} preset/dtype pairs"


# ---- 1.3 launch_break_even_bytes ---------------------------------------------------------

def check_launch_break_even_bytes(fn) -> str:
    from ..sim import list_presets, load_device

    names = list_presets()
    for name in names:
        dev = load_device(name)
        text = call_text("launch_break_even_bytes", (dev,))
        got = as_number(call(fn, dev), text)
        achievable = dev.hbm_bandwidth * dev.eff_hbm
        expected = dev.launch_overhead_s * achievable
        if close(got, expected, rel=1e-4):
            continue
        if close(got, dev.launch_overhead_s * dev.hbm_bandwidth, rel=1e-4):
            hint = "Use the achievable bandwidth, hbm_bandwidth * eff_hbm, as the cost model does."
        elif close(got, dev.launch_overhead_s / achievable) or close(got, achievable / dev.launch_overhead_s):
            hint = "Bytes = time x bandwidth: the launch overhead (seconds) times bytes per second."
        else:
            hint = ("Find the bytes whose transfer time at the achievable HBM bandwidth equals "
                    "device.launch_overhead_s.")
        raise Wrong(f"{text} = {got:,.6g} bytes, but moving that many takes {got / achievable * 1e6:.4g} us "
                    f"on {dev.name} while a launch costs {dev.launch_overhead_s * 1e6:.4g} us "
                    f"(expected {expected:,.6g} bytes). {hint}")
    return f"right for all {len(names)} presets"


# ---- 1.4 largest_square_matmul -------------------------------------------------------------

def _matmul_fits(dev, n: int, dtype: str) -> "str | None":
    """None if an n x n @ n x n matmul fits in HBM, else the simulator's OOM message."""
    from ..kernels.matmul import matmul
    from ..sim import HbmOutOfMemoryError, Profile, meta

    try:
        with Profile(dev):
            # one block covering everything: the HBM check is what matters, and it is instant
            matmul(meta((n, n), dtype), meta((n, n), dtype), version=1, dtype=dtype, block_m=n, block_n=n)
    except HbmOutOfMemoryError as exc:
        return str(exc)
    return None


def check_largest_square_matmul(fn) -> str:
    from ..sim import load_device
    from ..sim.units import fmt_bytes

    cases = [("toy", "fp16"), ("toy", "fp32"), ("a100-40gb", "fp16"), ("m2-max", "fp32")]
    for name, dt in cases:
        dev = load_device(name)
        text = call_text("largest_square_matmul", (dev, dt))
        n = as_int(call(fn, dev, dt), text)
        if n < 1:
            raise Wrong(f"{text} = {n}; a matrix needs at least one row")
        oom = _matmul_fits(dev, n, dt)
        if oom is not None:
            raise Wrong(f"{text} = {n} is too big: the simulator runs out of HBM:\n{oom.splitlines()[0]}\n"
                        f"Hint: A, B and C are all live at once, each {n}x{n} {dt}.")
        if _matmul_fits(dev, n + 1, dt) is None:
            raise Wrong(f"{text} = {n} is too small: a {n + 1}x{n + 1} {dt} matmul still fits in the "
                        f"{fmt_bytes(dev.hbm_capacity)} of HBM of {dev.name}. Hint: solve "
                        f"3 * N**2 * bytes_per_element <= hbm_capacity for the largest whole N.")
    return f"the simulator agrees on {len(cases)} device/dtype pairs (N fits, N+1 runs out of HBM)"


EXERCISES = (
    Exercise("1.1", "matmul_intensity", "arithmetic intensity of a one-pass matmul", check_matmul_intensity),
    Exercise("1.2", "ridge_point", "the ridge point of a device's roofline", check_ridge_point),
    Exercise("1.3", "launch_break_even_bytes", "bytes a kernel must move to outweigh its launch",
             check_launch_break_even_bytes),
    Exercise("1.4", "largest_square_matmul", "the largest square matmul that fits in HBM",
             check_largest_square_matmul),
)
