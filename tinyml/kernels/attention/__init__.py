"""Attention: standard (as PyTorch ran it in 2022) -> FlashAttention-1 -> FlashAttention-2.

Layout: q (batch, heads, seq_q, head_dim); k, v (batch, kv_heads, seq_k, head_dim).

The public entry points are exported here::

    from tinyml.kernels.attention import flash_attention, standard_attention

    o = flash_attention(q, k, v, causal=True)                     # FlashAttention-2 (version=1: FA-1)
    o, saved = standard_attention(q, k, v, return_saved=True)     # S and P through HBM
    bq, bk = flash_blocks("a100-40gb", 1024, 1024, 64, version=1)  # the default block sizes

| module        | what                                                                  |
|---------------|-----------------------------------------------------------------------|
| `standard`    | S = QK^T, mask, softmax, dropout, PV: one kernel each, N x N in HBM   |
| `flash1/`     | FlashAttention-1, Algorithm 1 (K/V outer loop, O, l, m back to HBM)   |
| `flash2/`     | FlashAttention-2 (Q outer loop, O on chip, sequence parallel, causal skipping) |
|               | each: `block_sizes`, `grid` (splits, skipped tiles, block classes), `fwd`, `bwd` (body + launcher) |
| `gqa_reduce`  | the GQA dK/dV reduction both backwards launch (per-query-head gradients summed per kv head) |
| `flash3`      | FlashAttention-3 forward on Hopper (wgmma, warp specialisation, softmax/GEMM overlap) |
| `flash`       | `flash_attention(version=1, 2 or 3)` and `flash_attention_backward`   |
| `paper`       | the FlashAttention paper's Figure 2, reproduced                       |
| `decode`       | decoding: one query per sequence vs a KV cache, GQA heads share a block (`decode_attention`) |
| `decode_split` | Flash-Decoding: split-KV partials + combine, split count from the SM count |
| `kv_cache`     | `KVCache` (append kernel, per-sequence lengths), `bytes_per_token`        |
| `decode_common` | what the decoding kernels share: the call, cache lengths, the K/V tile step |
"""

from __future__ import annotations

from .decode import decode_attention
from .decode_split import auto_splits
from .flash import flash_attention, flash_attention_backward, flash_blocks
from .kv_cache import KVCache, bytes_per_token
from .standard import standard_attention, standard_attention_backward

__all__ = ["flash_attention", "flash_attention_backward", "flash_blocks", "standard_attention",
           "standard_attention_backward", "decode_attention", "KVCache", "bytes_per_token", "auto_splits"]
