"""The max-batch table with real kernels: a decode step's token mixing, KV cache vs fixed state.

:mod:`.rnn` compares a transformer with an RNN of the same size by roofline
arithmetic. Here each model's *mixing layer* (what replaces attention) runs as
the real kernel in counting mode, once per layer, at the batch the KV cache allows:

* transformer: ``decode_attention`` over a KV cache of ``context`` tokens
  (``kv_heads`` x ``head_dim``, fp16);
* SSM (Mamba-style, same width): ``ssm_decode_step`` with ``D = 2 hidden``
  channels and a state of ``N = 16`` per channel, fp32;
* RWKV-style linear attention (same width): ``linear_decode_step`` with
  ``hidden / 64`` heads of a 64 x 64 fp32 state.

Max batch = floor((capacity - weights) / bytes per sequence), where a
sequence holds its KV cache (``context x`` :func:`.memory.kv_bytes_per_token`) or
its state (``layers x`` the state above: no growth with the context). The
weight reads and the MLPs are the same for the three models and left out:
``mixing tokens/s = batch / (layers x kernel time)``, at the transformer's max batch (at least 1,
at most ``max_batch_cap``) for all three; 0 for a transformer whose one KV cache does not fit.
"""

from __future__ import annotations

from ..sim import load_device
from ..sim.models import load_model
from .memory import kv_bytes_per_token, weight_bytes

SSM_EXPAND, SSM_STATE = 2, 16
RWKV_HEAD = 64


def state_bytes(model) -> dict:
    """Bytes of one sequence's state over all layers: {'ssm': ..., 'rwkv': ...} (fp32)."""
    m = load_model(model)
    return {"ssm": m.layers * SSM_EXPAND * m.hidden * SSM_STATE * 4,
            "rwkv": m.layers * (m.hidden // RWKV_HEAD) * RWKV_HEAD * RWKV_HEAD * 4}


def _time(fn, *args, device, **kw) -> float:
    from ..sim import Profile

    with Profile(device) as prof:
        fn(*args, **kw)
    return prof.time_s


def mixing_rows(model, fmt, device, contexts, max_batch_cap: int = 256) -> list[dict]:
    """One row per context: max batch and mixing tokens/s of the three models (module docstring)."""
    from ..kernels.attention import decode_attention
    from ..kernels.ssm import linear_decode_step, ssm_decode_step
    from ..sim import meta

    m, dev = load_model(model), load_device(device)
    free = dev.hbm_capacity - weight_bytes(m, fmt)["total"]
    states = state_bytes(m)
    D, H = SSM_EXPAND * m.hidden, m.hidden // RWKV_HEAD
    rows = []
    for ctx in contexts:
        kv_seq = int(ctx) * kv_bytes_per_token(m)
        mb = {"transformer": max(0, int(free // kv_seq)), "ssm": max(0, int(free // states["ssm"])),
              "rwkv": max(0, int(free // states["rwkv"]))}
        b = max(1, min(mb["transformer"], max_batch_cap))
        t_att = _time(decode_attention, meta((b, m.heads, 1, m.head_dim)), meta((b, m.kv_heads, ctx, m.head_dim)),
                      meta((b, m.kv_heads, ctx, m.head_dim)), cache_len=ctx, device=dev)
        t_ssm = _time(ssm_decode_step, meta((b, D)), meta((b, D)), meta((D, SSM_STATE), "fp32"),
                      meta((b, SSM_STATE)), meta((b, SSM_STATE)), meta((D,), "fp32"),
                      state=meta((b, D, SSM_STATE), "fp32"), device=dev)
        t_rwkv = _time(linear_decode_step, meta((b, H, RWKV_HEAD)), meta((b, H, RWKV_HEAD)), meta((b, H, RWKV_HEAD)),
                       state=meta((b, H, RWKV_HEAD, RWKV_HEAD), "fp32"), device=dev)
        rows.append({"context": int(ctx), "batch": b, "kv_bytes_per_sequence": kv_seq,
                     "max_batch": mb, "mixing_tokens_per_s": {       # 0: not even one KV cache fits
                         "transformer": b / (m.layers * t_att) if mb["transformer"] else 0.0,
                         "ssm": b / (m.layers * t_ssm),
                         "rwkv": b / (m.layers * t_rwkv)}})
    return rows
