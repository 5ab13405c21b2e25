"""One decode step, simulated through the real kernels in counting mode.

Every sequence of the batch generates one token. For one transformer layer
(``x``: (B, h) activations in the activation dtype, ``ctx`` cached tokens)::

    a   = norm(x)                         layernorm_fused          (RMSNorm: the LayerNorm kernel stands in,
                                                                    same traffic plus beta's h elements;
                                                                    layernorm_unfused if a row overflows SRAM)
    qkv = a @ W_qkv^T                     linear, W_qkv ((H + 2 KVH) d, h): q, k, v stacked as one matrix
    q,k = rotary(q, k)                    fused_elementwise        (Llama; x cos + x sin: rotary's traffic)
    cache.append(k, v)                    kv_append
    o   = attention(q, K, V, ctx)         decode_attention         (split_kv: Flash-Decoding)
    x   = x + o @ W_o^T                   linear, then fused_elementwise add
    a   = norm(x)                         layernorm_fused
    u   = a @ W_up^T                      linear: [gate; up] stacked (2I, h) for SwiGLU, (I, h) for GeLU
    u   = silu(gate) * up  |  gelu(u+b)   fused_elementwise
    x   = x + u @ W_down^T                linear, then fused_elementwise add

and once per step: the embedding row gather (``fused_elementwise`` copy, plus
the position row for GPT-2), the final norm and the LM head (vocab, h).

``linear`` is ``quantized_gemv`` (batch 1) or ``quantized_matmul`` (batch > 1)
on a shape-only ``QuantizedTensor.meta`` weight of the format, and the tiled
``matmul`` (v3) for fp16/bf16/fp32 weights. Its ``block_n`` (and, for the
plain matmul, the tile shape) is *autotuned*: each candidate is costed in
counting mode and the fastest kept, as Triton's autotuner does on a GPU. Bias
additions (GPT-2) are left out of the projections (they ride in the
kernels' epilogues on a GPU: a few KB).

HBM traffic per step: every linear reads its packed (or fp16) weight once
plus ``x`` once per block before L2 (see the gemv's docstring), attention reads
every cached K and V once, the small kernels move a few vectors of ``h``; in
all within a few percent of :func:`.bound.decode_bytes`, the bytes the
bandwidth bound counts (the tests check ``simulated >= 0.99 x bound bytes``
and ``simulated time >= bound time``).

To stay fast, ONE layer is simulated and multiplied by ``layers`` (every layer
has the same shapes, so it costs the same), plus the once-per-step kernels.
Two times are reported:

* **graph** (the headline): the step replays as one CUDA graph, as vLLM,
  TensorRT-LLM, llama.cpp and gpt-fast do; the launch overhead is paid once
  per step instead of once per kernel (``sum(time - launch) + launch``).
* **eager**: every kernel pays the device's launch overhead (``sum(time)``);
  with ~10 kernels per layer this is what makes eager PyTorch decoding slow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from ..sim import Profile, load_device, meta, tiles_fit
from ..sim.models import load_model
from .bound import Bound, bandwidth_bound
from .formats import weight_format
from .memory import _positive

#: block_n candidates the linear autotuner tries (rows of W per thread block)
BLOCK_N = (1, 2, 4, 8, 16, 32, 64)
#: block_k candidates for the plain (fp16) matmul at small batch, largest first
BLOCK_K = (8192, 4096, 2048, 1024, 512, 256, 128, 64, 32)


@dataclass
class DecodeStep:
    """A simulated decode step: one layer's profile, the once-per-step profile, and the totals."""

    model: str
    format: str
    device: str
    context: int
    batch: int
    split_kv: "int | None"
    layers: int
    layer: Profile                  # one layer's kernels
    head: Profile                   # embedding, final norm, LM head
    roles: list = field(default_factory=list)        # per record of `layer` then `head`: what it computes
    bound: "Bound | None" = None

    @property
    def launch_s(self) -> float:
        return self.layer.device.launch_overhead_s

    @property
    def kernels_per_step(self) -> int:
        return self.layers * len(self.layer.records) + len(self.head.records)

    @property
    def eager_s(self) -> float:
        """Every kernel launched on its own: sum of kernel times."""
        return self.layers * self.layer.time_s + self.head.time_s

    @property
    def graph_s(self) -> float:
        """The step as one CUDA graph: kernel times without their launch overhead, plus one launch."""
        return graph_seconds(self.eager_s, self.kernels_per_step, self.launch_s)

    @property
    def tokens_per_s(self) -> float:
        return self.batch / self.graph_s

    @property
    def eager_tokens_per_s(self) -> float:
        return self.batch / self.eager_s

    @property
    def hbm_bytes(self) -> int:
        return self.layers * self.layer.hbm_bytes + self.head.hbm_bytes

    def kernel_rows(self) -> list[dict]:
        """One row per kernel: the layer's (x layers) then the once-per-step ones."""
        rows = []
        for i, (scope, prof, times) in enumerate(
                (("layer", self.layer, self.layers), ("step", self.head, 1))):
            offset = 0 if i == 0 else len(self.layer.records)
            for j, r in enumerate(prof.records):
                rows.append({
                    "role": self.roles[offset + j], "kernel": r.name, "scope": scope, "times": times,
                    "grid": list(r.grid), "time_s": r.time_s, "total_s": times * r.time_s,
                    "hbm_bytes": r.hbm_bytes, "total_hbm_bytes": times * r.hbm_bytes,
                    "flops": r.flops, "bound": r.bound,
                })
        return rows

    def to_dict(self) -> dict:
        return {
            "model": self.model, "format": self.format, "device": self.device, "context": self.context,
            "batch": self.batch, "split_kv": self.split_kv, "layers": self.layers,
            "kernels_per_step": self.kernels_per_step, "launch_overhead_s": self.launch_s,
            "graph_step_s": self.graph_s, "eager_step_s": self.eager_s,
            "tokens_per_s": self.tokens_per_s, "eager_tokens_per_s": self.eager_tokens_per_s,
            "hbm_bytes_per_step": self.hbm_bytes,
            "bound": self.bound.to_dict() if self.bound else None,
            "fraction_of_bound": self.tokens_per_s / self.bound.tokens_per_s if self.bound else None,
            "kernels": self.kernel_rows(),
        }


def graph_seconds(eager_s: float, kernels: int, launch_s: float) -> float:
    """``kernels`` launched one by one in ``eager_s``, replayed as one CUDA graph: their times without
    their launch overhead, plus the graph's one launch."""
    return eager_s - (kernels - 1) * launch_s


# ---- the linear layer, autotuned ------------------------------------------------------------

def run_linear(f, batch: int, n: int, k: int, blocks: dict):
    """Launch y (B, N) = x (B, K) @ W^T, W (N, K) in format ``f``, into the active profile; returns y."""
    act = f.act_dtype
    if f.plain:
        from ..kernels.matmul import matmul

        return matmul(meta((batch, k), act), meta((k, n), f.name), version=3, dtype=f.name, **blocks)  # (B, N)
    from ..kernels.quant import QuantizedTensor, quantized_gemv, quantized_matmul

    w = QuantizedTensor.meta((n, k), f.scheme)                                  # (N, K) packed
    if batch == 1:
        return quantized_gemv(meta((1, k), act), w, dtype=act, **blocks)      # (1, N)
    return quantized_matmul(meta((batch, k), act), w, dtype=act, **blocks)    # (B, N)


def _candidates(f, device, batch: int, k: int) -> list[dict]:
    """Block sizes to try: block_n for the gemv; (block_m = B, block_n, the deepest block_k that
    fits SRAM) for the plain matmul at small batch; the kernel's own choice otherwise."""
    if not f.plain:
        return [{"block_n": bn} for bn in BLOCK_N] if batch == 1 else [{}]
    if batch > 16:
        return [{}]
    from ..kernels.matmul.block_sizes import MatmulTiles

    out = []
    for bn in BLOCK_N:
        bk = next((b for b in BLOCK_K if b <= k and
                   tiles_fit(device, MatmulTiles(batch, bn, b).sram_tiles(f.name))), None)
        if bk is not None:
            out.append({"block_m": batch, "block_n": bn, "block_k": bk})
    return out or [{}]


@lru_cache(maxsize=1024)
def tune_linear(f, device, batch: int, n: int, k: int) -> tuple:
    """The fastest candidate block sizes for this linear on ``device`` (each costed in counting mode)."""
    from ..kernels.matmul.block_sizes import blocks_time

    best, best_t = (), float("inf")
    for blocks in _candidates(f, device, batch, k):
        t = blocks_time(device, lambda **kw: run_linear(f, batch, n, k, kw), blocks)
        if t is not None and t < best_t:
            best, best_t = tuple(sorted(blocks.items())), t
    return best


def linear(f, batch: int, n: int, k: int):
    """y (B, N) = x (B, K) @ W^T in the active profile, with autotuned block sizes; records one kernel."""
    from ..sim import current_profile

    blocks = dict(tune_linear(f, current_profile().device, batch, n, k))
    return run_linear(f, batch, n, k, blocks)


# ---- the kernel sequence -----------------------------------------------------------------------

class _Recorder:
    """Runs kernels in a profile and remembers what each record computes (its role)."""

    def __init__(self, prof: Profile, roles: list):
        self.prof, self.roles = prof, roles

    def __call__(self, role: str, fn, *args, **kwargs):
        before = len(self.prof.records)
        out = fn(*args, **kwargs)
        self.roles.extend([role] * (len(self.prof.records) - before))
        return out


def _norm(run, m, x, act: str, role: str):
    """The fused norm kernel, or the op-by-op one when a row does not fit SRAM (e.g. h = 8192 on an M2)."""
    from ..kernels.fusion import layernorm_fused, layernorm_unfused
    from ..kernels.fusion.layernorm import LayernormTiles

    g, b = meta((m.hidden,), act), meta((m.hidden,), act)
    one_row = LayernormTiles(1, m.hidden).sram_tiles(act)
    fused = tiles_fit(run.prof.device, one_row)
    return run(role, layernorm_fused if fused else layernorm_unfused, x, g, b, dtype=act)    # (B, h)


def layer_kernels(run, m, f, batch: int, context: int, split_kv, kv_dtype: str) -> None:
    """One transformer layer's decode kernels (see the module docstring)."""
    from ..kernels.attention.decode import decode_attention
    from ..kernels.attention.kv_cache import KVCache
    from ..kernels.fusion import expr as F
    from ..kernels.fusion import fused_elementwise

    act, h, d = f.act_dtype, m.hidden, m.head_dim
    q_w, kv_w = m.heads * d, m.kv_heads * d
    x = meta((batch, h), act)                                                    # (B, h) residual stream
    _norm(run, m, x, act, "attn_norm")
    run("qkv_proj", linear, f, batch, q_w + 2 * kv_w, h)                           # (B, (H + 2 KVH) d)
    if m.position == "rotary":
        width = q_w + kv_w                                                       # q and k
        run("rotary", fused_elementwise, lambda v, c, s: v * c + v * s,
            [meta((batch, width), act), meta((1, width), act), meta((1, width), act)], dtype=act)
    cache = KVCache(batch, m.kv_heads, context, d, dtype=kv_dtype, execute=False)   # (B, KVH, ctx, d) x 2
    cache.lengths[:] = context - 1
    run("kv_append", cache.append, meta((batch, m.kv_heads, d), kv_dtype), meta((batch, m.kv_heads, d), kv_dtype))
    run("attention", decode_attention, meta((batch, m.heads, d), kv_dtype), cache.k, cache.v,
        cache_len=context, split_kv=split_kv, dtype=kv_dtype)                      # (B, H, d)
    run("o_proj", linear, f, batch, h, q_w)                                        # (B, h)
    run("residual", fused_elementwise, ["add"], [x, meta((batch, h), act)], dtype=act)
    _norm(run, m, x, act, "mlp_norm")
    i = m.intermediate
    if m.mlp == "swiglu":
        run("gate_up_proj", linear, f, batch, 2 * i, h)                            # (B, 2I)
        run("silu_mul", fused_elementwise, lambda g, u: F.silu(g) * u,
            [meta((batch, i), act), meta((batch, i), act)], dtype=act)           # (B, I)
    else:
        run("up_proj", linear, f, batch, i, h)                                     # (B, I)
        run("bias_gelu", fused_elementwise, ["add", "gelu"], [meta((batch, i), act), meta((i,), act)], dtype=act)
    run("down_proj", linear, f, batch, h, i)                                       # (B, h)
    run("residual", fused_elementwise, ["add"], [x, meta((batch, h), act)], dtype=act)


def step_kernels(run, m, f, batch: int) -> None:
    """The once-per-step kernels: embedding row gather (+ position row), final norm, LM head."""
    from ..kernels.fusion import fused_elementwise

    act, h = f.act_dtype, m.hidden
    if m.position == "learned":
        x = run("embedding", fused_elementwise, ["add"], [meta((batch, h), act), meta((batch, h), act)], dtype=act)
    else:
        x = run("embedding", fused_elementwise, ["copy"], [meta((batch, h), act)], dtype=act)
    _norm(run, m, x, act, "final_norm")
    run("lm_head", linear, f, batch, m.vocab, h)                                   # (B, vocab)


def simulate_step(model, fmt, device, *, context: int, batch: int = 1, split_kv: "int | None" = None,
                  kv_dtype: str = "fp16") -> DecodeStep:
    """Simulate one decode step of ``batch`` sequences holding ``context`` tokens each (counting mode).

    ``split_kv``: the attention's KV splits (None: the kernel's heuristic; 1: no split).
    Raises :class:`~tinyml.sim.HbmOutOfMemoryError` if one layer's weights and KV cache
    alone exceed the device's HBM.
    """
    m, f, dev = load_model(model), weight_format(fmt), load_device(device)
    context, batch = _positive(context, "context"), _positive(batch, "batch")
    roles: list = []
    with Profile(dev, name=f"{m.name} layer") as layer:
        layer_kernels(_Recorder(layer, roles), m, f, batch, context, split_kv, kv_dtype)
    with Profile(dev, name=f"{m.name} once per step") as head:
        step_kernels(_Recorder(head, roles), m, f, batch)
    return DecodeStep(model=m.name, format=f.name, device=dev.name, context=context, batch=batch,
                      split_kv=split_kv, layers=m.layers, layer=layer, head=head, roles=roles,
                      bound=bandwidth_bound(m, f, dev, context=context, batch=batch, kv_dtype=kv_dtype))
