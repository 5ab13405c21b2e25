"""FlashAttention-2 (Dao 2023, arXiv 2307.08691): forward (Algorithm 1) and backward (Algorithm 2).

Files (FlashAttention-1's package has the same four):

* :mod:`.block_sizes`: the tiles a block keeps on chip and the largest block sizes that fit;
* :mod:`.grid`: the launch grid: which tiles of the (i, j) grid are computed, counting mode's
  block classes, L2 panels;
* :mod:`.fwd`: the forward tile loop (outer loop over Q blocks, O / l / m on chip, one division
  by l at the end, O and lse saved), its HBM formula and its launcher :func:`flash_attention_v2`;
* :mod:`.bwd`: the backward (D = rowsum(dO * O), one block per K/V column block, dQ through an
  fp32 accumulator, dQ conversion, GQA group sums), its HBM formula and its launcher
  :func:`flash_attention_v2_backward`.

HBM traffic of the forward without masks (``s`` bytes per element)::

    reads  = B H Nq d s + 2 B H ceil(Nq / B_r) Nk d s      (Q once; K, V once per q block, before L2)
    writes = B H Nq d s + 4 B H Nq                          (O and the fp32 lse, once)

Usage::

    o, saved = flash_attention_v2(q, k, v, causal=True, return_saved=True)
    dq, dk, dv = flash_attention_v2_backward(do, saved)
"""

from __future__ import annotations

from .block_sizes import Flash2Blocks, choose_blocks, largest_head_dim
from .bwd import flash_attention_v2_backward
from .fwd import Flash2Saved, flash_attention_v2

__all__ = ["flash_attention_v2", "flash_attention_v2_backward", "Flash2Saved", "Flash2Blocks",
           "choose_blocks", "largest_head_dim"]
