"""FlashAttention-3 forward (Shah, Bikshandi, Zhang, Thakkar, Ramani, Dao 2024, arXiv 2407.08608), on Hopper.

The algorithm is FlashAttention-2's forward (the same tile loop, the same HBM bytes, the same
numerics: :mod:`tinyml.kernels.attention.flash2.fwd`); what changes is how one SM runs it:

* **wgmma.** The S = Q K^T and O += P V products are Hopper warpgroup MMAs (``wgmma``), which reach
  the tensor cores' peak; FlashAttention-2 issues Ampere-style ``mma.sync``, which on an H100 tops
  out well below it (the device's ``[mma_sync_flops]``).
* **Warp specialisation.** Producer warps issue TMA copies of the next K_j, V_j while consumer
  warpgroups compute: loads overlap compute (``pipelined``, as FA2's cp.async double buffering).
* **Ping-pong and intra-warpgroup overlap.** Two consumer warpgroups alternate: while one runs its
  softmax (exp on the special-function unit, 16 results per clock per SM) the other runs its GEMMs,
  and inside a warpgroup the softmax of tile j overlaps the GEMMs of tile j + 1. The cost model's
  matmul and vector phases therefore overlap (``Issue(overlap=True)``): an SM's compute time is the
  slower of the two instead of their sum.

Tile loop and bytes: :mod:`~tinyml.kernels.attention.flash2.fwd` (recorded as ``flash3_fwd``).
No dropout (FA3 has none). ``return_saved`` gives FlashAttention-2's saved state, and
``flash_attention_backward`` runs FlashAttention-2's backward on it: tinyml models FA3's forward only.
"""

from __future__ import annotations

from ...sim import TileConfigError, current_profile
from ._common import prepare_attention
from .flash2.fwd import forward
from .flops import attention_issue

KERNEL = "flash3_fwd"


def flash_attention_v3(q, k, v, *, causal: bool = False, key_padding_mask=None, dropout_p: float = 0.0,
                       seed: int = 0, scale=None, window=None, block_q: "int | None" = None,
                       block_k: "int | None" = None, dtype: str = "fp16", check_finite: bool = True,
                       return_saved: bool = False, pad_queries: bool = False):
    """FlashAttention-3 forward: O = softmax(scale Q K^T + mask) V on a Hopper device.

    Arguments as :func:`~tinyml.kernels.attention.flash2.flash_attention_v2`; records one kernel,
    ``flash3_fwd``. Refuses a device without wgmma (its ``[mma_sync_flops]`` would be the peak) and
    dropout.
    """
    call = prepare_attention(q, k, v, causal=causal, key_padding_mask=key_padding_mask, dropout_p=dropout_p,
                             seed=seed, scale=scale, window=window, dtype=dtype, kernel=KERNEL,
                             check_finite=check_finite)
    dev = current_profile().device
    if not dev.has_wgmma:
        raise TileConfigError(
            f"FlashAttention-3 runs on Hopper (wgmma, TMA): {dev.name} has no tensor-core instruction "
            f"faster than mma.sync (its preset lists no mma_sync_flops rate below the peak). Use version=2 here, "
            f"or a Hopper device such as h100-sxm or h200")
    if call.dropout_p > 0:
        raise TileConfigError(f"FlashAttention-3 has no dropout (dropout_p={call.dropout_p}); "
                              f"use version=2 for attention dropout")
    issue = attention_issue(call.head_dim, mma="wgmma", overlap=True)
    return forward(call, block_q, block_k, return_saved, check_finite, kernel=KERNEL, issue=issue,
                   pad_queries=bool(pad_queries))


__all__ = ["flash_attention_v3"]
