"""FlashAttention, the public entry point: ``flash_attention(q, k, v, version=2, ...)``.

``version=1`` runs FlashAttention-1 (Dao et al. 2022: outer loop over K/V
blocks, O, l, m read and written back to HBM on every step, one block per
(batch, head)); ``version=2`` runs FlashAttention-2 (Dao 2023: outer loop over
Q blocks, O, l, m on chip, one block per (batch, head, q block)). Both take the
same arguments and return O, or ``(O, saved)`` with ``return_saved=True``;
:func:`flash_attention_backward` takes ``saved`` and returns (dq, dk, dv) with
the version that made it. :func:`flash_blocks` answers "which block sizes
would it choose?" without running anything.
"""

from __future__ import annotations

from ...sim import TileConfigError


def flash_attention(q, k, v, *, version: int = 2, causal: bool = False, key_padding_mask=None,
                    dropout_p: float = 0.0, seed: int = 0, scale=None, window=None,
                    block_q: "int | None" = None, block_k: "int | None" = None, dtype: str = "fp16",
                    check_finite: bool = True, return_saved: bool = False, pad_queries: bool = False):
    """Exact attention without an N x N matrix in HBM, by FlashAttention ``version`` 1, 2 or 3 (3: the
    forward on Hopper devices, :mod:`~tinyml.kernels.attention.flash3`; its backward is FA2's).

    q: (B, H, Nq, d); k, v: (B, KVH, Nk, d) with H a multiple of KVH (GQA);
    NumPy arrays (executing) or ``tinyml.sim.meta`` tensors (counting).
    ``causal`` aligns bottom-right; ``key_padding_mask`` (B, Nk) bool is True
    for real keys; ``dropout_p`` / ``seed`` drop probabilities (the mask is
    regenerated, never stored); ``scale`` defaults to 1/sqrt(d); ``window``
    (int or (left, right), version 2 only) is a sliding window; ``block_q`` /
    ``block_k`` are the Q / K-V block rows (B_r / B_c; default: the largest
    that fit SRAM); a block larger than its sequence is the whole sequence
    (block_q=64 on 8 queries runs 8-row blocks, and SRAM is counted for those:
    the record's ``sram_per_block_bytes`` shows it, and its ``notes`` name the
    clamp), as in FlashAttention's own kernels, which never load rows that do
    not exist; ``pad_queries=True`` (versions 2 and 3) runs such a block at its
    full tile rows instead, as FlashAttention-2's CUDA kernel does (the missing
    rows are not loaded but are multiplied and exponentiated: decoding with
    FlashAttention-2); ``dtype`` is the logical dtype bytes are counted in.
    """
    if isinstance(version, bool) or version not in (1, 2, 3):
        raise TileConfigError(f"FlashAttention version must be 1, 2 or 3, got {version!r}")
    kw = dict(causal=causal, key_padding_mask=key_padding_mask, dropout_p=dropout_p, seed=seed, scale=scale,
              block_q=block_q, block_k=block_k, dtype=dtype, check_finite=check_finite,
              return_saved=return_saved)
    if version == 1:
        if pad_queries:
            raise TileConfigError("pad_queries is a FlashAttention-2/3 option (their CUDA kernels' fixed q "
                                  "tile); FlashAttention-1 runs Algorithm 1's blocks. Use version=2")
        if window is not None:
            raise TileConfigError(f"FlashAttention-1 has no sliding window (window={window!r}); "
                                  f"use version=2 for a sliding window")
        from .flash1 import flash_attention_v1

        return flash_attention_v1(q, k, v, **kw)
    if version == 3:
        from .flash3 import flash_attention_v3
        return flash_attention_v3(q, k, v, window=window, pad_queries=pad_queries, **kw)
    from .flash2 import flash_attention_v2

    return flash_attention_v2(q, k, v, window=window, pad_queries=pad_queries, **kw)


def flash_attention_backward(dout, saved):
    """Gradients (dq, dk, dv) of ``sum(O * dout)``; ``saved`` from ``flash_attention(..., return_saved=True)``.

    dk, dv are shaped like k, v (summed over each GQA group). The backward of
    the version that made ``saved`` runs.
    """
    from ._common import check_saved
    from .flash1 import Flash1Saved, flash_attention_v1_backward
    from .flash2 import Flash2Saved, flash_attention_v2_backward

    check_saved(saved, (Flash2Saved, Flash1Saved), "flash_attention_backward", "flash_attention")
    if isinstance(saved, Flash2Saved):
        return flash_attention_v2_backward(dout, saved)
    return flash_attention_v1_backward(dout, saved)


def flash_blocks(device, seq_q: int, seq_k: int, head_dim: int, dtype: str = "fp16", *, version: int = 2,
                 backward: bool = False) -> tuple[int, int]:
    """(block_q, block_k): the block sizes ``flash_attention(version=...)`` picks by default on ``device``.

    ``device`` is a Device or a preset name. FlashAttention-1 takes Algorithm 1's
    ``B_c = ceil(M / 4d)``, ``B_r = min(B_c, d)`` and halves them until its tiles fit;
    FlashAttention-2 takes the largest sizes from its candidate list whose tiles fit
    SRAM and the register file. Both clamp to the sequence lengths. Raises
    :class:`~tinyml.sim.SramOverflowError` when not even the smallest blocks fit.
    """
    from ...sim import SramOverflowError, load_device

    if isinstance(version, bool) or version not in (1, 2):
        raise TileConfigError(f"FlashAttention version must be 1 or 2, got {version!r}")
    dev = load_device(device)
    if version == 1:
        from .flash1 import default_blocks, largest_head_dim

        blocks = default_blocks(dev, seq_q, seq_k, head_dim, dtype, backward)
        if blocks is None:
            raise SramOverflowError(
                f"FlashAttention-1: no block size fits {dev.name} at head_dim={head_dim}: even 1 x 1 blocks "
                f"overflow its {dev.sram_per_sm:,}-byte SRAM; the largest head_dim that fits in {dtype} is "
                f"{largest_head_dim(dev, dtype, backward)}. Use a smaller head_dim or a device with more SRAM")
        return blocks
    from .flash2 import choose_blocks

    kind = "bwd" if backward else "fwd"
    blocks = choose_blocks(dev, kind, seq_q, seq_k, head_dim, dtype, f"flash2_{kind}")
    return blocks.block_q, blocks.block_k
