"""Model-level ops: embedding lookup and fused attention.

``embedding(table, ids)``: ``table (V, d)``, ``ids (...)`` of dtype int32 ->
``(..., d)``; an id outside ``[0, V)`` raises (NumPy would wrap a negative one).
Pattern ``injective`` (TVM's ``take``).

``attention(q, k, v, causal, scale)``: ``q (..., H, Nq, d)``, ``k, v (..., KVH, Nk, d)``
with ``H`` a multiple of ``KVH``, rank 3 or 4 -> ``(..., H, Nq, d)``. Its
meaning is :func:`tinyml.kernels.reference.attention` (bottom-right causal
alignment, fully masked rows -> 0), ``scale`` defaults to ``1/sqrt(d)``.
Pattern ``opaque``: it is its own kernel (FlashAttention), nothing fuses in.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import GraphDTypeError, GraphShapeError
from ..types import INDEX_DTYPES, TensorType
from ._util import flag_attr
from .registry import OpDef, register


def _embedding_rule(types, attrs):
    table, ids = types
    if ids.dtype not in INDEX_DTYPES:
        raise GraphDTypeError(f"embedding: ids must be int32, got {ids}")
    if table.rank != 2 or table.dtype in INDEX_DTYPES:
        raise GraphShapeError(f"embedding: the table must be a float (V, d) matrix, got {table}")
    return TensorType(ids.shape + (table.shape[1],), table.dtype)


def embedding_ref(table, ids):
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= table.shape[0]):
        bad = ids[(ids < 0) | (ids >= table.shape[0])][0]
        v = table.shape[0]
        raise GraphShapeError(f"embedding: id {int(bad)} is outside the table's {v} rows [0, {v})")
    return table[ids.astype(np.int64)]


register(OpDef("embedding", 2, _embedding_rule, embedding_ref, "injective", "gather",
               "table[ids]: gather rows of a (V, d) table"))


def _canon_attention(types, attrs):
    q = types[0]
    d = q.shape[-1] if q.rank else None
    scale = attrs.get("scale")
    if scale is None:
        if not isinstance(d, int):
            raise GraphShapeError(f"attention: the head dimension of q {q} is symbolic; pass scale= explicitly")
        scale = 1.0 / math.sqrt(d)
    return {"causal": flag_attr("attention", "causal", attrs.get("causal", False)), "scale": float(scale)}


def _attention_rule(types, attrs):
    q, k, v = types
    if len({t.dtype for t in types}) != 1:
        raise GraphDTypeError(f"attention: q, k, v must share a dtype, got {q}, {k}, {v}")
    if q.rank not in (3, 4) or k.rank != q.rank or v.rank != q.rank:
        raise GraphShapeError(f"attention: q, k, v must all be (H, N, d) or (B, H, N, d), got {q}, {k}, {v}")
    if q.shape[:-3] != k.shape[:-3] or k.shape != v.shape or q.shape[-1] != k.shape[-1]:
        raise GraphShapeError(
            f"attention: expected q (..., H, Nq, d) and k = v (..., KVH, Nk, d) with the same batch and d; "
            f"got q {q}, k {k}, v {v}")
    h, kvh = q.shape[-3], k.shape[-3]
    if h != kvh and not (isinstance(h, int) and isinstance(kvh, int) and h % kvh == 0):
        raise GraphShapeError(f"attention: query heads {h} must be a multiple of key/value heads {kvh}")
    return q


def attention_ref(q, k, v, causal, scale):
    from ...kernels import reference          # lazy: keeps `import tinyml.compiler` light

    if q.ndim == 3:
        o, _ = reference.attention(q[None], k[None], v[None], causal=causal, scale=scale)
        return o[0]
    o, _ = reference.attention(q, k, v, causal=causal, scale=scale)
    return o


register(OpDef("attention", 3, _attention_rule, attention_ref, "opaque", "attention",
               "softmax(scale * q k^T [causal]) v, one fused op", canon=_canon_attention))
