"""State-space and linear-recurrent kernels: where the state lives decides the bytes.

| module            | what                                                                          |
|-------------------|-------------------------------------------------------------------------------|
| `scan_naive`      | selective scan in three kernels, the (batch, L, D, N) state through HBM        |
| `scan_fused`      | the IO-aware scan: state in registers, only inputs, outputs, checkpoints in HBM |
| `scan_naive_bwd`  | the naive scan's backward: the saved (batch, L, D, N) states read back from HBM |
| `scan_bwd`        | the IO-aware backward: states recomputed per chunk from the checkpoints        |
| `scan_parallel`   | the scan as an associative (Blelloch / Hillis-Steele) scan: work vs depth      |
| `linear_*`        | linear attention / RWKV-style decayed recurrence: recurrent, quadratic, chunked, chunked backward |
| `decode`          | one decoding step with the fixed-size state (vs a KV cache)                    |
| `reference`       | float64 NumPy references                                                       |
"""

from __future__ import annotations

from .decode import linear_decode_step, ssm_decode_step
from .linear_bwd import linear_attention_chunked_backward
from .linear_chunked import linear_attention_chunked
from .linear_quadratic import linear_attention_quadratic
from .linear_recurrent import linear_attention_recurrent
from .scan_bwd import selective_scan_backward
from .scan_call import NaiveScanSaved, ScanSaved
from .scan_fused import selective_scan_fused
from .scan_naive import selective_scan_naive
from .scan_naive_bwd import selective_scan_naive_backward
from .scan_parallel import scan_stats, selective_scan_parallel

__all__ = ["ssm_decode_step", "linear_decode_step", "linear_attention_chunked", "linear_attention_chunked_backward",
           "linear_attention_quadratic", "linear_attention_recurrent",
           "selective_scan_fused", "selective_scan_naive", "selective_scan_parallel", "scan_stats", "selective_scan_backward", "ScanSaved",
           "selective_scan_naive_backward", "NaiveScanSaved"]
