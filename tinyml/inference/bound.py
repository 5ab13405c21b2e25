"""The bandwidth bound: at small batch, a decode step is as fast as HBM can deliver its bytes.

Generating one token per sequence reads every weight matrix once (however
many sequences share the step), one embedding row per sequence, and each
sequence's whole KV cache; it writes one token's K and V per sequence::

    bytes per step = W_read + B h s_a + B ctx kv + B kv          (reads: weights, embedding rows, KV cache;
                                                                     writes: the new K, V)
    W_read         = layer weights x layers + final norm + LM head (the embedding table is not read whole)
    time per step  >= bytes per step / (HBM bandwidth x efficiency)
    tokens/s       <= B / time per step

``efficiency`` is the device preset's ``eff_hbm`` (what large copies reach,
e.g. 0.85 on the A100); the bound at the spec bandwidth is reported too.
Activations (a few vectors of ``h`` per sequence per layer) are left out: at
batch 1 they are about a millionth of the weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..sim import load_device
from ..sim.dtypes import nbytes
from ..sim.models import load_model
from .formats import weight_format
from .memory import _positive, kv_bytes_per_token, weight_bytes


@dataclass(frozen=True)
class Bound:
    """The bandwidth bound of one decode step."""

    bytes_per_step: int
    weight_read_bytes: int
    kv_read_bytes: int
    hbm_bandwidth: float            # spec, bytes/s
    efficiency: float               # the preset's eff_hbm
    step_s: float                   # bytes / (bandwidth x efficiency)
    tokens_per_s: float             # batch / step_s
    tokens_per_s_spec: float        # at 100% of the spec bandwidth

    def to_dict(self) -> dict:
        return asdict(self)


def decode_bytes(model, fmt, *, context: int, batch: int = 1, kv_dtype: str = "fp16") -> dict[str, int]:
    """HBM bytes one decode step must move (see the module docstring); ``total`` is their sum."""
    m, f = load_model(model), weight_format(fmt)
    context, batch = _positive(context, "context"), _positive(batch, "batch")
    w = weight_bytes(m, f)
    per_token = kv_bytes_per_token(m, kv_dtype)
    head = w["lm_head"] if not m.tied_embeddings else w["embedding"]       # GPT-2's LM head is wte
    parts = {
        "weights": w["layers"] + w["final_norm"] + head,
        "embedding_rows": batch * nbytes(m.hidden, f.act_dtype) * (2 if m.position == "learned" else 1),
        "kv_read": batch * context * per_token,
        "kv_write": batch * per_token,
    }
    parts["total"] = sum(parts.values())
    return parts


def bandwidth_bound(model, fmt, device, *, context: int, batch: int = 1, kv_dtype: str = "fp16") -> Bound:
    """The fastest a decode step of ``batch`` sequences at ``context`` tokens can be on ``device``."""
    dev = load_device(device)
    parts = decode_bytes(model, fmt, context=context, batch=batch, kv_dtype=kv_dtype)
    total = parts["total"]
    step = total / (dev.hbm_bandwidth * dev.eff_hbm)
    return Bound(bytes_per_step=total, weight_read_bytes=parts["weights"], kv_read_bytes=parts["kv_read"],
                 hbm_bandwidth=dev.hbm_bandwidth, efficiency=dev.eff_hbm, step_s=step,
                 tokens_per_s=batch / step, tokens_per_s_spec=batch * dev.hbm_bandwidth / total)
