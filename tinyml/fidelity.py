"""How close is the simulator? Published GPU measurements next to tinyml's numbers for the same setting.

Every row is one published number (with its source) and the simulated number for the same
configuration, all in counting mode (shapes only, a few seconds in all). ``rows()`` is what
``docs/fidelity.md`` prints and ``benchmarks/bench_fidelity.py`` checks (median error)::

    from tinyml.fidelity import rows, median_error
    table = rows()
    print(median_error(table))

The error of a row is ``simulated / published - 1``. The mechanisms behind each gap are on the page.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

N_FIG4 = 16384          # FA2 / FA3 papers: batch x seqlen = 16k tokens, hidden 2048


@dataclass(frozen=True)
class Row:
    """One published number and what tinyml simulates for it."""

    what: str
    device: str
    unit: str
    published: float
    source: str
    simulated: float

    @property
    def error(self) -> float:
        return self.simulated / self.published - 1


def _attention_tflops(device: str, version: int, d: int, n: int = N_FIG4, causal: bool = False) -> float:
    """Forward TFLOP/s of FlashAttention ``version`` at the papers' benchmark shape (16k tokens, hidden 2048),
    counted as the papers count: 4 N^2 d heads batch (halved with a causal mask)."""
    from .kernels.attention.flash import flash_attention
    from .sim import Profile, meta

    b, h = N_FIG4 // n, 2048 // d
    with Profile(device) as prof:
        q, k, v = (meta((b, h, n, d), "fp16") for _ in range(3))
        flash_attention(q, k, v, version=version, causal=causal)
    return 4 * n * n * d * h * b / (2 if causal else 1) / prof.time_s / 1e12


def _matmul_tflops(device: str, n: int = 8192, dtype: str = "bf16", schedule: str = "data-parallel") -> float:
    """TFLOP/s of matmul v4 at n^3. The table's rows keep the data-parallel schedule: no source says which
    schedule cuBLAS picks for the measured shape (docs/fidelity.md, "matmul on the H100")."""
    from .kernels.matmul import matmul_v4
    from .sim import Profile, meta

    with Profile(device) as prof:
        matmul_v4(meta((n, n), dtype), meta((n, n), dtype), dtype=dtype, schedule=schedule)
    return 2 * n ** 3 / prof.time_s / 1e12


def _figure2(variant: str, what: str) -> float:
    from .kernels.attention.paper import run_variant

    prof = run_variant(variant, "a100-40gb")
    return prof.time_s * 1e3 if what == "ms" else prof.hbm_bytes / 1e9


def _decode_tokens(fmt: str, model: str = "llama-2-7b", device: str = "a100-80gb", context: int = 256,
                   launch: str = "graph") -> float:
    """Simulated tokens/s of one decode step at batch 1: ``launch`` "graph" replays the step as one CUDA graph
    (gpt-fast, vLLM), "eager" pays the device's launch overhead per kernel (MLC LLM off CUDA, see MLC_EAGER)."""
    from .inference.report import serving_rows

    (row,) = serving_rows(model, device, formats=(fmt,), context=context)
    return row["sim_tokens_per_s" if launch == "graph" else "sim_eager_tokens_per_s"]


def _decode_attention_us(batch: int, n: int, kernel: str) -> float:
    """Microseconds of one decoding attention step at the Flash-Decoding blog's shape (A100, fp16,
    16 query heads, 2 kv heads, d 128, one query per sequence, ``n`` cached tokens): ``kernel`` "fa2" is
    FlashAttention-2 called with the single query (its q tile padded to 128 rows, ``pad_queries``),
    "flash-decoding" is tinyml's decode_attention with the split count it chooses."""
    from .kernels.attention.decode import decode_attention
    from .kernels.attention.flash import flash_attention
    from .sim import Profile, meta

    q, kv = meta((batch, 16, 1, 128), "fp16"), meta((batch, 2, n, 128), "fp16")
    with Profile("a100-80gb") as prof:
        if kernel == "fa2":
            flash_attention(q, kv, kv, version=2, pad_queries=True)
        else:
            decode_attention(q, kv, kv, cache_len=n)
    return prof.time_s * 1e6


#: the Flash-Decoding blog's micro-benchmark: (batch, seqlen, FlashAttention v2.0.9 us, Flash-Decoding us)
FLASH_DECODING_BLOG = [(256, 256, 390.5, 63.4), (128, 512, 366.3, 67.7), (64, 1024, 364.8, 77.7),
                       (32, 2048, 352.0, 58.5), (16, 4096, 401.7, 57.0), (8, 8192, 529.2, 56.4),
                       (4, 16384, 582.7, 58.2), (2, 32768, 1156.1, 60.3), (1, 65536, 2300.6, 64.4),
                       (1, 131072, 4592.2, 106.6)]


FA1 = "Dao et al. 2022, FlashAttention, Figure 2 (left): GPT-2 medium, A100 40GB, fwd + bwd"
FA2 = "Dao 2023, FlashAttention-2, abstract and Sec. 4.1: forward reaches up to 73% of the A100's 312 TFLOP/s"
FA3_FA2 = "Shah et al. 2024, FlashAttention-3, abstract: FlashAttention-2 reaches only 35% of the H100's 989 TFLOP/s"
FA3 = "Shah et al. 2024, FlashAttention-3, abstract: up to 740 TFLOP/s fp16 forward on H100"
FA3_FIG = ("Shah et al. 2024, FlashAttention-3, attention forward speed bar charts (H100 80GB SXM5, FP16, "
           "no causal mask, batch x seqlen 16k, hidden 2048), seqlen 16k")
MAMF = "Bekman, Machine Learning Engineering, 'Maximum Achievable Matmul FLOPS' table (mamf-finder, bf16)"
GPTFAST = ("gpt-fast README, Llama-2-7B on A100-80GB (330 W), batch 1, short prompt; int8 = one scale per "
           "output channel, int4 (G=32) = tinygemm's bf16 scale and zero per 32 weights (int4-asym-g32)")
TORCHAO = ("torchao quantization README (pytorch/ao, torchao/quantization/README.md), CUDA backend tables, batch 1, "
           "torch.compile: A100-80GB and 'NVIDIA-H100' (h100-sxm assumed: a PCIe H100's 2.0 TB/s could not "
           "carry the 1.9 TB/s it reports); int8wo = one scale per output channel, int4wo-64 = tinygemm's bf16 "
           "scale and zero per 64 weights (int4-asym-g64)")
MLC70B = ("MLC LLM, github.com/mlc-ai/mlc-llm pull request #573 (Jul 2023): Llama-2-70B-chat q4f16_1 (4-bit, an "
          "fp16 scale per 32 weights), Mac Studio with M2 Ultra, decoding 9.8 tokens/s")
MLC8B = ("MLC LLM, github.com/mlc-ai/mlc-llm issue #2174 (Apr 2024), a maintainer's reply: Llama-3-8B-Instruct "
         "q4f16_1, `mlc_llm chat` on an M1 Pro laptop, about 25 tokens/s decode")
#: why every MLC LLM row is timed eager (a launch per kernel), not as a graph: MLC captures CUDA graphs only
#: on CUDA; on Metal, OpenCL and WebGPU each kernel of a step is dispatched on its own, every step
MLC_EAGER = ("MLC LLM's compiler flags (python/mlc_llm/interface/compiler_flags.py, OptimizationFlags.update): "
             "cudagraph is turned off unless the target is CUDA")
WEBLLM = ("Ruan et al. 2024, WebLLM: A High-Performance In-Browser LLM Inference Engine (arXiv 2412.15803), "
          "native vs in-browser table: MacBook Pro with M3 Max, Chrome Canary 133, 4-bit models (q4f16_1 assumed, "
          "the prebuilt default), decoding tokens/s of native MLC LLM (Metal) and WebLLM (WebGPU)")
MLC_ADRENO = ("MLC LLM, github.com/mlc-ai/mlc-llm issue #1896 (Mar 2024): Llama-2-7B q4f16_1 on a Snapdragon 8 Gen 3 "
              "phone (Adreno 750, OpenCL), mlc_llm.build flow, decode 10.1 tokens/s (42-token prompt, 425 decoded)")
MLC_ADRENO_TUNED = ("MLC LLM, github.com/mlc-ai/mlc-llm pull request #1536 (Jan 2024), Qualcomm's Adreno "
                    "enhancements for Llama-2: decode up to 14 tokens/s on Snapdragon 8 Gen 3 (11 on 8 Gen 2)")
FDBLOG = ("Dao, Haziza, Massa, Sizov, Flash-Decoding for long-context inference (Oct 2023, "
          "pytorch.org/blog/flash-decoding), micro-benchmark table: A100, fp16, 16 query heads, 2 kv heads "
          "(CodeLlama-34B on 4 GPUs), d 128")

#: (what, device, unit, published, source, simulate)
SPECS: list[tuple[str, str, str, float, str, Callable[[], float]]] = [
    ("standard attention fwd+bwd runtime", "a100-40gb", "ms", 41.7, FA1, lambda: _figure2("standard", "ms")),
    ("standard attention HBM reads + writes", "a100-40gb", "GB", 40.3, FA1, lambda: _figure2("standard", "GB")),
    ("FlashAttention-1 fwd+bwd runtime", "a100-40gb", "ms", 7.3, FA1, lambda: _figure2("flash1", "ms")),
    ("FlashAttention-1 HBM reads + writes", "a100-40gb", "GB", 4.4, FA1, lambda: _figure2("flash1", "GB")),
    ("FlashAttention-2 forward, best setting (d 128, 16k)", "a100-80gb", "TFLOP/s", 0.73 * 312, FA2,
     lambda: _attention_tflops("a100-80gb", 2, 128)),
    ("FlashAttention-2 forward (d 128, 16k)", "h100-sxm", "TFLOP/s", 0.35 * 989, FA3_FA2,
     lambda: _attention_tflops("h100-sxm", 2, 128)),
    ("FlashAttention-3 forward, best setting (d 256, 16k)", "h100-sxm", "TFLOP/s", 740, FA3,
     lambda: _attention_tflops("h100-sxm", 3, 256)),
    ("FlashAttention-2 forward (d 64, 16k)", "h100-sxm", "TFLOP/s", 324, FA3_FIG,
     lambda: _attention_tflops("h100-sxm", 2, 64)),
    ("FlashAttention-2 forward (d 128, 16k), paper figure", "h100-sxm", "TFLOP/s", 370, FA3_FIG,
     lambda: _attention_tflops("h100-sxm", 2, 128)),
    ("FlashAttention-3 forward (d 64, 16k)", "h100-sxm", "TFLOP/s", 497, FA3_FIG,
     lambda: _attention_tflops("h100-sxm", 3, 64)),
    ("FlashAttention-3 forward (d 128, 16k)", "h100-sxm", "TFLOP/s", 648, FA3_FIG,
     lambda: _attention_tflops("h100-sxm", 3, 128)),
    ("matmul 8192^3 bf16 (matmul v4)", "a100-80gb", "TFLOP/s", 268, MAMF, lambda: _matmul_tflops("a100-80gb")),
    ("matmul 8192^3 bf16 (matmul v4)", "h100-sxm", "TFLOP/s", 792, MAMF, lambda: _matmul_tflops("h100-sxm")),
    ("Llama-2-7B decode, gpt-fast fp16", "a100-80gb", "tokens/s", 104.9, GPTFAST, lambda: _decode_tokens("fp16")),
    ("Llama-2-7B decode, gpt-fast int8", "a100-80gb", "tokens/s", 155.58, GPTFAST, lambda: _decode_tokens("int8")),
    ("Llama-2-7B decode, gpt-fast int4 G=32 (int4-asym-g32)", "a100-80gb", "tokens/s", 196.80, GPTFAST,
     lambda: _decode_tokens("int4-asym-g32")),
]
#: torchao's weight-only decoding (TORCHAO): (model as published, device, format, tokens/s, tinyml model)
TORCHAO_ROWS = [
    ("Llama-2-7B", "a100-80gb", "bf16", 107.38, "llama-2-7b"),
    ("Llama-2-7B", "a100-80gb", "int8", 170.83, "llama-2-7b"),
    ("Llama-2-7B", "a100-80gb", "int4-asym-g64", 201.14, "llama-2-7b"),
    ("Llama-3-8B", "a100-80gb", "bf16", 95.64, "llama-3-8b"),
    ("Llama-3-8B", "a100-80gb", "int8", 153.03, "llama-3-8b"),
    ("Llama-3-8B", "a100-80gb", "int4-asym-g64", 180.80, "llama-3-8b"),
    ("Llama-3.1-8B", "h100-sxm", "bf16", 126.90, "llama-3-8b"),
    ("Llama-3.1-8B", "h100-sxm", "int8", 198.85, "llama-3-8b"),
    ("Llama-3.1-8B", "h100-sxm", "int4-asym-g64", 241.39, "llama-3-8b"),
]
#: torchao's README also gives each quantized model's size (GB, the weights one decode step reads: the
#: embedding table excluded), a check of the formats' bytes: (tinyml model, format) -> GB
TORCHAO_MODEL_GB = {("llama-2-7b", "bf16"): 13.21, ("llama-2-7b", "int8"): 6.62, ("llama-2-7b", "int4-asym-g64"): 3.74,
                    ("llama-3-8b", "bf16"): 15.01, ("llama-3-8b", "int8"): 7.52, ("llama-3-8b", "int4-asym-g64"): 4.22}
for _model, _dev, _fmt, _pub, _tiny in TORCHAO_ROWS:
    SPECS.append((f"{_model} decode, torchao {_fmt}", _dev, "tokens/s", _pub, TORCHAO,
                  lambda f=_fmt, m=_tiny, d=_dev: _decode_tokens(f, m, d)))
#: MLC LLM / WebLLM decoding at batch 1 (4-bit q4f16_1 = tinyml's int4-g32), each timed eager (MLC_EAGER):
#: (what, device, published tokens/s, source, model). Llama-3.1-8B has Llama-3-8B's weight shapes.
MLC_ROWS = [
    ("Llama-2-70B decode, MLC q4f16_1 (int4-g32)", "m2-ultra", 9.8, MLC70B, "llama-2-70b"),
    ("Llama-3-8B decode, MLC q4f16_1 (int4-g32)", "m1-pro", 25.0, MLC8B, "llama-3-8b"),
    ("Llama-3.1-8B decode, native MLC (Metal), 4-bit (int4-g32)", "m3-max", 57.7, WEBLLM, "llama-3-8b"),
    ("Llama-3.1-8B decode, WebLLM (WebGPU), 4-bit (int4-g32)", "m3-max-webgpu", 41.1, WEBLLM, "llama-3-8b"),
    ("Phi-3.5-mini decode, native MLC (Metal), 4-bit (int4-g32)", "m3-max", 89.3, WEBLLM, "phi-3.5-mini"),
    ("Phi-3.5-mini decode, WebLLM (WebGPU), 4-bit (int4-g32)", "m3-max-webgpu", 71.1, WEBLLM, "phi-3.5-mini"),
    ("Llama-2-7B decode, MLC q4f16_1 (int4-g32), Adreno 750", "snapdragon-8-gen-3", 10.1, MLC_ADRENO, "llama-2-7b"),
    ("Llama-2-7B decode, MLC with Qualcomm's kernels (4-bit)", "snapdragon-8-gen-3", 14.0, MLC_ADRENO_TUNED,
     "llama-2-7b"),
]
for _what, _dev, _pub, _src, _model in MLC_ROWS:
    SPECS.append((_what, _dev, "tokens/s", _pub, _src,
                  lambda m=_model, d=_dev: _decode_tokens("int4-g32", m, d, launch="eager")))
for _b, _n, _fa2, _fd in FLASH_DECODING_BLOG:
    SPECS.append((f"FA2 single-query decode attention, batch {_b}, {_n:,} tokens", "a100-80gb", "us", _fa2,
                  FDBLOG, lambda b=_b, n=_n: _decode_attention_us(b, n, "fa2")))
    SPECS.append((f"Flash-Decoding attention, batch {_b}, {_n:,} tokens", "a100-80gb", "us", _fd, FDBLOG,
                  lambda b=_b, n=_n: _decode_attention_us(b, n, "flash-decoding")))


def rows() -> list[Row]:
    """Every published number with its simulated counterpart (a few seconds, counting mode)."""
    return [Row(what, dev, unit, pub, src, float(sim())) for what, dev, unit, pub, src, sim in SPECS]


def median_error(table: list[Row]) -> float:
    """The median of |simulated / published - 1| over the rows."""
    return statistics.median(abs(r.error) for r in table)


def median_error_by_source(table: list[Row]) -> dict[str, tuple[int, float]]:
    """{source: (rows, median |error|)}: no one source's many rows hide another's gaps."""
    by: dict[str, list[float]] = {}
    for r in table:
        by.setdefault(r.source, []).append(abs(r.error))
    return {src: (len(errs), statistics.median(errs)) for src, errs in by.items()}


def markdown(table: list[Row]) -> str:
    """The table as Markdown, sources numbered under it (the docs page prints this)."""
    sources: list[str] = []
    for r in table:
        if r.source not in sources:
            sources.append(r.source)
    out = ["| what | device | published | simulated | error | source |", "|---|---|--:|--:|--:|---|"]
    for r in table:
        out.append(f"| {r.what} | `{r.device}` | {r.published:,.4g} {r.unit} | {r.simulated:,.4g} {r.unit} | "
                   f"{r.error:+.0%} | [{sources.index(r.source) + 1}] |")
    out.append("")
    out += [f"{i}. {src}" for i, src in enumerate(sources, 1)]
    return "\n".join(out)
