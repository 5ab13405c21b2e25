"""Human-readable numbers: bytes, seconds, FLOPs, rates (decimal units, like GPU specs)."""

from __future__ import annotations


def _scaled(x: float, units: tuple, base: float = 1000.0) -> str:
    x = float(x)
    for i, unit in enumerate(units):
        if abs(x) < base or i == len(units) - 1:
            return f"{x:.3g} {unit}" if i else f"{x:.4g} {unit}"
        x /= base
    raise AssertionError


def fmt_bytes(n: float, binary: bool = False) -> str:
    """``fmt_bytes(4.4e9) == '4.4 GB'``; ``binary=True`` for SRAM sizes: ``'192 KiB'``."""
    if binary:
        return _scaled(n, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"), base=1024.0)
    return _scaled(n, ("B", "KB", "MB", "GB", "TB", "PB"))


def fmt_flops(n: float) -> str:
    return _scaled(n, ("FLOP", "KFLOP", "MFLOP", "GFLOP", "TFLOP", "PFLOP"))


def fmt_rate(n: float, unit: str = "B/s") -> str:
    return _scaled(n, (unit, "K" + unit, "M" + unit, "G" + unit, "T" + unit, "P" + unit))


def fmt_time(s: float) -> str:
    """Seconds in the unit that reads best: ns, us, ms or s."""
    s = float(s)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if abs(s) >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"
