"""Why a fixed-size state batches better: a transformer's KV cache vs an RNN/RWKV state.

A transformer keeps K and V for every token it has seen, so the memory per
sequence grows with the context; an RNN (RWKV, Mamba, ...) folds the past into
a state of fixed size. With the weights fixed, the sequences that fit next to
them are::

    transformer:  max batch = floor((capacity - weights) / (context x 2 x layers x kv_heads x head_dim x s))
    RNN:          max batch = floor((capacity - weights) / state),   state = layers x hidden x c x s_state

The RNN here is an RWKV-style model *of the same size*: the same weight bytes,
its attention replaced by a recurrence. ``c`` = 5 vectors of ``hidden`` per
layer in fp32 is RWKV-4's state (the attention and FFN token-shift inputs and
the WKV numerator, denominator and running max: ``state`` has
``5 x n_layer`` rows of ``n_embd`` in the RWKV-4 reference code).

Throughput at a batch, a roofline bound (:func:`throughput`)::

    step time = max(bytes / (HBM bandwidth x eff_hbm), FLOPs / (matmul FLOP/s x eff_matmul))
    bytes     = transformer: decode_bytes (weights + every sequence's KV cache)
                RNN:         weights + batch x (embedding row + state read + state written)
    FLOPs     = 2 x (matrix parameters read per step) x batch  (+ 4 x layers x heads x head_dim x context x batch
                for the transformer's attention)
    tokens/s  = batch / step time

At long contexts the transformer's batch is capped by its KV caches, and each
step reads them all; the RNN's batch is capped by its tiny state, so it can
batch until compute, not memory, is the limit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..sim import load_device
from ..sim.dtypes import nbytes
from ..sim.models import load_model
from .bound import decode_bytes
from .formats import weight_format
from .memory import _positive, fit, weight_bytes

#: RWKV-4's state: 5 vectors of `hidden` per layer
RWKV_STATE_VECTORS = 5
RWKV_STATE_DTYPE = "fp32"


def rnn_state_bytes(model, vectors: int = RWKV_STATE_VECTORS, dtype: str = RWKV_STATE_DTYPE) -> int:
    """Bytes of one sequence's recurrent state: layers x hidden x vectors x s (RWKV-4: 5 vectors, fp32)."""
    m = load_model(model)
    return nbytes(m.layers * m.hidden * _positive(vectors, "vectors"), dtype)


def rnn_max_batch(model, fmt, device, vectors: int = RWKV_STATE_VECTORS) -> int:
    """The most sequences whose states fit next to the weights (any context: the state does not grow)."""
    dev = load_device(device)
    free = dev.hbm_capacity - weight_bytes(model, fmt)["total"]
    return max(0, int(free // rnn_state_bytes(model, vectors)))


@dataclass(frozen=True)
class Throughput:
    """The roofline bound of one decode step at a batch."""

    kind: str                       # "transformer" | "rnn"
    batch: int
    context: int
    bytes_per_step: int
    flops_per_step: int
    step_s: float
    tokens_per_s: float
    bound: str                      # "memory" | "compute"

    def to_dict(self) -> dict:
        return asdict(self)


def _matrix_params_read(m) -> int:
    """Parameters of the matrices a step multiplies by: every layer's, and the LM head."""
    per_layer = sum(n * k for n, k in m.layer_matrices().values())
    return m.layers * per_layer + m.vocab * m.hidden


def throughput(model, fmt, device, *, context: int, batch: int, kind: str = "transformer",
               kv_dtype: str = "fp16") -> Throughput:
    """Roofline bound of a decode step (see the module docstring); ``kind``: 'transformer' or 'rnn'."""
    m, f, dev = load_model(model), weight_format(fmt), load_device(device)
    context, batch = _positive(context, "context"), _positive(batch, "batch")
    flops = 2 * _matrix_params_read(m) * batch
    if kind == "transformer":
        total = decode_bytes(m, f, context=context, batch=batch, kv_dtype=kv_dtype)["total"]
        flops += 4 * m.layers * m.heads * m.head_dim * context * batch
    elif kind == "rnn":
        parts = decode_bytes(m, f, context=1, batch=1, kv_dtype=kv_dtype)
        total = parts["weights"] + batch * (nbytes(m.hidden, f.act_dtype) + 2 * rnn_state_bytes(m))
    else:
        from ..sim.errors import TinymlError

        raise TinymlError(f"kind must be 'transformer' or 'rnn', got {kind!r}")
    t_mem = total / (dev.hbm_bandwidth * dev.eff_hbm)
    t_comp = flops / (dev.matmul_rate(f.act_dtype) * dev.eff_matmul)
    step = max(t_mem, t_comp)
    return Throughput(kind, batch, context, int(total), int(flops), step, batch / step,
                      "memory" if t_mem >= t_comp else "compute")


def compare_batch(model, fmt, device, contexts) -> list[dict]:
    """For each context: the max batch and its tokens/s bound, transformer vs same-size RNN."""
    rows = []
    r_batch = rnn_max_batch(model, fmt, device)
    for ctx in contexts:
        t_batch = fit(model, fmt, device, context=ctx).max_batch
        t = throughput(model, fmt, device, context=ctx, batch=t_batch) if t_batch else None
        r = throughput(model, fmt, device, context=ctx, batch=r_batch, kind="rnn") if r_batch else None
        rows.append({
            "context": ctx,
            "transformer_max_batch": t_batch,
            "transformer_tokens_per_s": t.tokens_per_s if t else 0.0,
            "transformer_bound": t.bound if t else None,
            "rnn_max_batch": r_batch,
            "rnn_tokens_per_s": r.tokens_per_s if r else 0.0,
            "rnn_bound": r.bound if r else None,
        })
    return rows
