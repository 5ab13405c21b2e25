"""Attention: standard (as PyTorch ran it in 2022) -> FlashAttention-1 -> FlashAttention-2.

Layout: q (batch, heads, seq_q, head_dim); k, v (batch, kv_heads, seq_k, head_dim).

| module        | what                                                                  |
|---------------|-----------------------------------------------------------------------|
| `standard`    | S = QK^T, mask, softmax, dropout, PV: one kernel each, N x N in HBM   |
| `flash1`      | FlashAttention-1, Algorithm 1 (K/V outer loop, O, l, m back to HBM)   |
| `flash2`      | FlashAttention-2 (Q outer loop, O on chip, sequence parallel, causal skipping) |
| `flash`       | `flash_attention(version=1 or 2)` and `flash_attention_backward`      |
| `paper`       | the FlashAttention paper's Figure 2, reproduced                       |
| `decode`       | decoding: one query per sequence vs a KV cache, GQA heads share a block (`decode_attention`) |
| `decode_split` | Flash-Decoding: split-KV partials + combine, split count from the SM count |
| `kv_cache`     | `KVCache` (append kernel, per-sequence lengths), `bytes_per_token`        |
"""
