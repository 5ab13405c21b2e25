"""How much each format costs in accuracy: RMSE and max error per format on a weight matrix,
and the output error of the quantized gemv against the fp32 product.

    >>> rows = error_report(sample_weights("realistic"))
    >>> print(format_report(rows))
"""

from __future__ import annotations

import numpy as np

from ...sim.args import integer
from .registry import get_scheme
from .tensor import quantize

DEFAULT_FORMATS = ("int8", "q8_0", "int4-g32", "q4_0", "int4-g64", "int4-g128")


def sample_weights(kind: str = "gaussian", shape=(256, 1024), seed: int = 0) -> np.ndarray:
    """A seeded weight matrix (N, K), float32.

    ``gaussian``: N(0, 0.02^2). ``realistic``: heavy-tailed rows (Student-t,
    3 degrees of freedom, scaled to std ~0.02) plus a few outlier input
    channels (1% of the columns, 20x larger), as in trained transformer layers.
    """
    rng = np.random.default_rng(integer(seed, "seed", lo=0))
    n, k = shape
    if kind == "gaussian":
        return (0.02 * rng.standard_normal((n, k))).astype(np.float32)
    if kind == "realistic":
        w = 0.02 / np.sqrt(3.0) * rng.standard_t(3, size=(n, k))                # (N, K), var of t3 = 3
        outliers = rng.choice(k, size=max(1, k // 100), replace=False)
        w[:, outliers] *= 20.0
        return w.astype(np.float32)
    from ...sim import TinymlError

    raise TinymlError(f"unknown test weights {kind!r}; choose 'gaussian' or 'realistic'")


def error_report(w, formats=DEFAULT_FORMATS, *, x=None, seed: int = 0) -> list[dict]:
    """One row per format: bits per weight, weight RMSE / max error (absolute and relative
    to the weights' RMS), and the quantized gemv's output error vs fp32 (relative L2 and max).

    ``x`` (K,) defaults to a seeded standard normal vector. The gemv runs the fused
    kernel in a private Profile (nothing is recorded in yours).
    """
    from ...sim import Profile
    from .gemv import quantized_gemv

    w = np.asarray(w, dtype=np.float32)
    k = w.shape[1]
    x = np.random.default_rng(integer(seed, "seed", lo=0)).standard_normal(k).astype(np.float32) if x is None else \
        np.asarray(x, dtype=np.float32)
    w_rms = float(np.sqrt(np.mean(w.astype(np.float64) ** 2)))
    exact = w.astype(np.float64) @ x.astype(np.float64)                         # (N,)
    rows = []
    for fmt in formats:
        scheme = get_scheme(fmt)
        q = quantize(w, scheme)
        err = q.dequantize().astype(np.float64) - w
        with Profile():
            y = quantized_gemv(x, q, dtype="fp32").astype(np.float64)           # (N,)
        rows.append({
            "format": scheme.name,
            "group": q.layout.group,
            "bits_per_weight": q.bits_per_weight,
            "rmse": float(np.sqrt(np.mean(err ** 2))),
            "max_error": float(np.abs(err).max()),
            "rel_rmse": float(np.sqrt(np.mean(err ** 2)) / w_rms) if w_rms else 0.0,
            "gemv_rel_error": float(np.linalg.norm(y - exact) / (np.linalg.norm(exact) or 1.0)),
            "gemv_max_error": float(np.abs(y - exact).max()),
        })
    return rows


def format_report(rows: list[dict]) -> str:
    """The rows of :func:`error_report` as a plain-text table."""
    w = max([11] + [len(r["format"]) for r in rows])
    head = f"{'format':<{w}} {'bits/w':>7} {'RMSE':>10} {'max err':>10} {'RMSE/RMS':>9} {'gemv rel':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['format']:<{w}} {r['bits_per_weight']:>7.3f} {r['rmse']:>10.3e} {r['max_error']:>10.3e} "
                     f"{r['rel_rmse']:>9.4f} {r['gemv_rel_error']:>9.4f}")
    return "\n".join(lines)
