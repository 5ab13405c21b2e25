"""Roofline plots: each kernel at (FLOPs per HBM byte, achieved FLOP/s) under the device's roofs."""

from __future__ import annotations

from pathlib import Path


def draw_roofline(profiles, path, dtype: str = "fp16", title: str | None = None) -> Path:
    """Plot the kernels of one or more profiles (same device) and save to ``path``.

    Roofs: HBM bandwidth x intensity (the slanted memory roof), tensor-core
    matmul peak, and vector (CUDA-core) peak, all at their achievable
    (efficiency-scaled) values.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    dev = profiles[0].device
    bw = dev.hbm_bandwidth * dev.eff_hbm
    mm = dev.matmul_rate(dtype) * dev.eff_matmul
    vec = dev.vector_rate("fp32") * dev.eff_vector
    x = np.logspace(-2, 4, 200)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(x, np.minimum(bw * x, mm), color="black", lw=2, label=f"{dtype} matmul roof ({mm / 1e12:.0f} TFLOP/s)")
    ax.loglog(x, np.minimum(bw * x, vec), color="gray", lw=1, ls="--",
              label=f"vector roof ({vec / 1e12:.1f} TFLOP/s)")
    ax.axvline(mm / bw, color="black", lw=0.5, ls=":")
    ax.text(mm / bw, mm * 1.15, f"ridge {mm / bw:.0f} FLOP/B", ha="center", fontsize=8)
    markers = "osD^v<>p*h"
    for i, prof in enumerate(profiles):
        for j, r in enumerate(r for r in prof.records if r.hbm_bytes and r.flops):
            perf = r.flops / max(r.time_s - dev.launch_overhead_s, 1e-15)
            ax.loglog(r.intensity, perf, markers[(i + j) % len(markers)], ms=8,
                      label=f"{r.name} ({r.bound})")
    ax.set_xlabel("arithmetic intensity (FLOPs per HBM byte)")
    ax.set_ylabel("FLOP/s")
    ax.set_title(title or f"Roofline: {dev.name} (bandwidth {bw / 1e12:.2f} TB/s achievable)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
