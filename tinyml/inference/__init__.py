"""Serving a model on the simulated GPU: memory, the bandwidth bound, and the per-token kernels.

| module    | what                                                                                  |
|-----------|---------------------------------------------------------------------------------------|
| `formats` | weight formats (fp32, fp16, int8, q8_0, int4-g128, q4_0 ...): bits per weight           |
| `memory`  | model size per format, does it fit, KV-cache budget, max batch at a context length     |
| `bound`   | bytes a decode step must read, and the tokens/s that HBM bandwidth allows              |
| `step`    | one decode step simulated through the real kernels (counting mode), layer x layers     |
| `rnn`     | the same memory and throughput math for an RNN/RWKV-style model with a fixed state    |
| `mixing`  | the same max-batch table with the real decode kernels (KV-cache attention, SSM and RWKV steps) |
| `report`  | one row per format: size, fits, bound and simulated tokens/s, max batch (CLI, docs)   |

Model shapes come from :mod:`tinyml.sim.models` (``load_model("llama-2-7b")``).
Only ``step`` imports the kernels (and Numba); the rest is arithmetic.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FORMATS": "formats", "DEFAULT_FORMATS": "formats", "FormatError": "formats", "weight_format": "formats",
    "WeightFormat": "formats",
    "weight_bytes": "memory", "kv_bytes_per_token": "memory", "fit": "memory", "Fit": "memory",
    "max_batch": "memory",
    "decode_bytes": "bound", "bandwidth_bound": "bound", "Bound": "bound",
    "simulate_step": "step", "DecodeStep": "step",
    "rnn_state_bytes": "rnn", "rnn_max_batch": "rnn", "throughput": "rnn", "compare_batch": "rnn",
    "mixing_rows": "mixing", "state_bytes": "mixing",
    "serving_rows": "report", "size_table": "report", "Throughput": "rnn",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
