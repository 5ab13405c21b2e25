"""The FlashAttention paper's Figure 2 (left), and tinyml's reproduction of it.

Dao et al. 2022 (arXiv 2205.14135), Figure 2 left: GPT-2 medium attention on an
A100 40GB, sequence 1024, head dim 64, 16 heads, batch 64, fp16, forward plus
backward, with dropout and masking. tinyml runs the same configuration in
counting mode (shapes only) on the ``a100-40gb`` preset.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The configuration of Figure 2 (left).
FIG2 = dict(batch=64, heads=16, seq=1024, head_dim=64, dtype="fp16", causal=True, dropout_p=0.1)

#: FlashAttention-1 as the paper measured it (May 2022): one block per (batch, head) and every tile
#: computed, causal or not. The kernel the FlashAttention-2 paper benchmarked a year later (v1.0)
#: splits the sequence when batch x heads is small and skips fully masked tiles (the defaults of
#: :func:`~tinyml.kernels.attention.flash1.flash_attention_v1`).
PAPER_FLASH1 = dict(num_splits=1, skip_masked=False)

#: What the paper reports: GFLOPs, HBM reads + writes (GB), runtime (ms), forward + backward.
PAPER = {"standard": (66.6, 40.3, 41.7), "flash": (75.2, 4.4, 7.3)}


@dataclass(frozen=True)
class Row:
    """One variant of the reproduction: simulated numbers next to the paper's."""

    variant: str
    paper_gflops: float | None
    paper_hbm_gb: float | None
    paper_ms: float | None
    flops_matmul: int
    flops_vector: int
    hbm_bytes: int
    time_s: float
    peak_hbm_bytes: int


def run_variant(variant: str, device="a100-40gb", **config):
    """Forward + backward of one variant ("standard", "flash1", "flash2") in counting mode.

    Returns the Profile holding every kernel launched.
    """
    from ...sim import Profile, meta
    from .flash import flash_attention, flash_attention_backward
    from .standard import standard_attention, standard_attention_backward

    cfg = {**FIG2, **config}
    b, h, n, d, dt = cfg["batch"], cfg["heads"], cfg["seq"], cfg["head_dim"], cfg["dtype"]
    opts = dict(causal=cfg["causal"], dropout_p=cfg["dropout_p"], dtype=dt)
    with Profile(device, name=variant) as prof:
        q, k, v = (meta((b, h, n, d), dt) for _ in range(3))       # (B, H, N, d)
        dout = meta((b, h, n, d), dt)
        if variant == "standard":
            _, saved = standard_attention(q, k, v, return_saved=True, **opts)
            standard_attention_backward(dout, saved)
        elif variant == "flash1":          # the kernel the paper measured: Algorithm 1's grid, every tile
            from .flash1 import flash_attention_v1
            _, saved = flash_attention_v1(q, k, v, return_saved=True, **PAPER_FLASH1, **opts)
            flash_attention_backward(dout, saved)
        else:
            version = {"flash2": 2}[variant]
            _, saved = flash_attention(q, k, v, version=version, return_saved=True, **opts)
            flash_attention_backward(dout, saved)
    return prof


def reproduce(device="a100-40gb", variants=("standard", "flash1", "flash2")) -> list[Row]:
    """Simulate Figure 2 (left) for each variant; FA1 is the paper's "FlashAttention" row."""
    rows = []
    for variant in variants:
        prof = run_variant(variant, device)
        paper = PAPER.get({"standard": "standard", "flash1": "flash"}.get(variant, ""), (None,) * 3)
        rows.append(Row(variant, *paper, prof.flops_matmul, prof.flops_vector, prof.hbm_bytes,
                        prof.time_s, prof.peak_hbm_bytes))
    return rows
