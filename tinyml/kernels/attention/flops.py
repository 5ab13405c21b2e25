"""How many vector (non-matmul) FLOPs each step of attention is charged, per score element.

One convention for every variant, so their FLOP counts compare fairly. Each
entry is per element of the (seq_q x seq_k) score matrix of one head, charged
only for elements a kernel actually computes.

GPU special functions (exp) run on slower units: tinyml charges them FLOPs
on the vector units like the papers do, and one op each on the special-function
unit (:func:`attention_issue`), whose rate the device presets give.
"""

from __future__ import annotations

from ...sim.cost import Issue
from .rng import RNG_OPS

SCALE = 1          # s = scale * (q . k)
MASK = 1           # select -inf where a mask hides the key (only when a mask is active)
ROW_MAX = 1        # running / row maximum
EXP = 2            # subtract the max, exponentiate
ROW_SUM = 1        # running / row sum
NORMALIZE = 1      # p = e / l (standard softmax writes normalised P)
DROPOUT = RNG_OPS + 2   # generate the random number, compare, scale the kept value
SOFTMAX_BWD = 3    # dS = P * (dP - D): subtract, multiply (and the D rowsum's add)


def forward_per_score(masked: bool, dropout: bool, normalize: bool) -> int:
    """Vector FLOPs per computed score in a forward pass."""
    return SCALE + (MASK if masked else 0) + ROW_MAX + EXP + ROW_SUM + (NORMALIZE if normalize else 0) \
        + (DROPOUT if dropout else 0)


#: matmul FLOPs per computed score, in units of the head dim d: forward S = Q K^T and P V (2 d each);
#: backward S, dP = dO V^T, dV += P^T dO, dK += dS^T Q, dQ += dS K (2 d each)
MATMUL_PER_SCORE = {False: 4, True: 10}


def attention_issue(d: int, backward: bool = False, mma: str = "mma_sync", overlap: bool = False,
                    split_k: "tuple[int, int] | None" = None, dropout: bool = False) -> Issue:
    """What a FlashAttention kernel issues (:class:`tinyml.sim.cost.Issue`): tensor-core ``mma``
    (FlashAttention-1 and -2 use Ampere-style ``mma.sync``, on Hopper too) and one exp on the SFU per
    computed score, that is one per ``MATMUL_PER_SCORE * d`` matmul FLOPs.

    ``split_k = (warps, B_c)``: FlashAttention-1's warps split each K/V tile and sum their partial
    (B_r x d) fp32 outputs and (B_r) row statistics in SRAM: all but one warp write theirs and one
    reads them back, ``2 (warps - 1) (d + 2) 4`` bytes per row of a tile, against
    ``MATMUL_PER_SCORE d B_c`` matmul FLOPs per row. With ``dropout``, the ``RNG_OPS`` integer ops per
    score of the Philox generator go to the INT32 pipe."""
    per_score = MATMUL_PER_SCORE[backward] * d
    exchange = 0.0 if split_k is None else 2 * (split_k[0] - 1) * (d + 2) * 4 / (per_score * split_k[1])
    return Issue(mma=mma, sfu_per_mma_flop=1.0 / per_score, exchange_per_mma_flop=exchange, overlap=overlap,
                 int_per_mma_flop=RNG_OPS / per_score if dropout else 0.0)
