"""Will it fit? Model size per format, the KV-cache budget, and the largest batch.

A decoding server keeps two things in HBM: the weights (once) and a KV cache
per sequence, which grows with its context::

    weights          = sum over 2-D weights of their bytes in the format + 1-D weights in the act dtype
    KV bytes / token = 2 x layers x kv_heads x head_dim x s        (K and V; s: bytes of the KV dtype)
    fits             : weights + batch x context x KV bytes/token <= HBM capacity
    KV budget        = floor((capacity - weights) / KV bytes/token)            tokens of context, in all
    max batch        = floor((capacity - weights) / (context x KV bytes/token))

Activations and the runtime's workspace are left out (a few hundred MB at
batch 1, far below the weights); so is the CUDA context. That makes ``fits``
a lower bound on what a real server needs: a model that does not fit here
does not fit anywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..sim import load_device
from ..sim.dtypes import nbytes
from ..sim.errors import ShapeError
from ..sim.models import load_model
from .formats import weight_format


def weight_bytes(model, fmt) -> dict[str, int]:
    """HBM bytes of the weights by part (``total`` is the sum); see :mod:`.formats` for what is quantized."""
    m, f = load_model(model), weight_format(fmt)
    layer = sum(f.matrix_bytes(n, k) for n, k in m.layer_matrices().values())
    parts = {
        "embedding": f.matrix_bytes(m.vocab, m.hidden),
        "positions": f.matrix_bytes(m.max_context, m.hidden) if m.position == "learned" else 0,
        "layers": m.layers * (layer + nbytes(m.layer_vector_params(), f.act_dtype)),
        "final_norm": nbytes(m.hidden * (1 if m.norm == "rmsnorm" else 2), f.act_dtype),
        "lm_head": 0 if m.tied_embeddings else f.matrix_bytes(m.vocab, m.hidden),
    }
    parts["total"] = sum(parts.values())
    return parts


def kv_bytes_per_token(model, dtype: str = "fp16") -> int:
    """HBM bytes one token of context takes in the KV cache: 2 x layers x kv_heads x head_dim x s."""
    m = load_model(model)
    return nbytes(2 * m.layers * m.kv_heads * m.head_dim, dtype)


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ShapeError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class Fit:
    """How a model in one format sits in one device's HBM at a context length and batch."""

    model: str
    format: str
    device: str
    context: int
    batch: int
    bits_per_weight: float          # weights' bytes x 8 / parameters (1-D weights included)
    weight_bytes: int
    kv_bytes_per_token: int
    kv_bytes: int                   # batch x context x KV bytes/token
    capacity_bytes: int
    fits: bool                      # weights + kv_bytes <= capacity
    weights_fit: bool               # weights alone <= capacity
    kv_budget_tokens: int           # tokens of context the rest of HBM holds (0 if the weights do not fit)
    max_batch: int                  # sequences of `context` tokens that fit next to the weights

    def to_dict(self) -> dict:
        return asdict(self)


def fit(model, fmt, device, *, context: "int | None" = None, batch: int = 1, kv_dtype: str = "fp16") -> Fit:
    """Does ``model`` in ``fmt`` fit ``device`` with ``batch`` sequences of ``context`` tokens?

    ``context`` defaults to the model's ``max_context``.
    """
    m, f, dev = load_model(model), weight_format(fmt), load_device(device)
    context = _positive(m.max_context if context is None else context, "context")
    batch = _positive(batch, "batch")
    w = weight_bytes(m, f)["total"]
    per_token = kv_bytes_per_token(m, kv_dtype)
    free = dev.hbm_capacity - w
    budget = max(0, free // per_token)
    return Fit(model=m.name, format=f.name, device=dev.name, context=context, batch=batch,
               bits_per_weight=8 * w / m.n_params, weight_bytes=w, kv_bytes_per_token=per_token,
               kv_bytes=batch * context * per_token, capacity_bytes=dev.hbm_capacity,
               fits=w + batch * context * per_token <= dev.hbm_capacity, weights_fit=free >= 0,
               kv_budget_tokens=int(budget), max_batch=int(budget // context))


def max_batch(model, fmt, device, context: int, kv_dtype: str = "fp16") -> int:
    """The most sequences of ``context`` tokens whose KV caches fit next to the weights (0: none)."""
    return fit(model, fmt, device, context=context, kv_dtype=kv_dtype).max_batch

