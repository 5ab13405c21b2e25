"""Attention: standard (as PyTorch ran it in 2022) -> FlashAttention-1 -> FlashAttention-2.

Layout: q (batch, heads, seq_q, head_dim); k, v (batch, kv_heads, seq_k, head_dim).
"""
