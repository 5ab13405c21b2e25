"""``quantize_weights``: every matmul that reads a weight reads it quantized instead.

For each ``matmul(x, W)`` whose right operand is a 2-D weight ``W (K, N)``, or
the transpose of one (GPT-2's tied LM head ``x @ wte^T``, ``wte (V, d)``), the pass

1. quantizes ``W`` in the ``(N, K)`` (out, in) layout with
   :func:`tinyml.kernels.quant.quantize` into ``scheme``: ``"int4-g32"``
   (default), ``"q4_0"``, ``"q8_0"``, ``"int8"``, any ``"int4-g<N>"``, or your own
   :class:`~tinyml.kernels.quant.Scheme` instance;
2. replaces the weight by a :class:`QuantizedWeight` (packed codes and scales,
   plus the dequantized values the reference interpreter computes with);
3. replaces the matmul by ``quantized_matmul(x, Wq) {fmt}``
   (:mod:`tinyml.compiler.ops.quant`), which lowers to the fused dequantize
   kernel: ``quantized_gemv`` at one row, ``quantized_matmul`` otherwise.

Policy:

* ``skip``: weight names or ``fnmatch`` patterns (``"h0.*"``) left in fp16,
  and the keyword ``"lm_head"``: a matmul whose result is a graph output
  (GPT's logits). Default ``skip=()``: every weight matmul, the LM head included;
* **embeddings are never quantized**: the table is read by a gather (``n``
  rows per forward, not a matmul) and tinyml has no quantized gather kernel.
  For a *tied* head (``wte`` read by the embedding and, transposed, by the
  head) the head gets its own quantized copy and the gather keeps the fp16
  table, so the model holds both (skip ``"lm_head"`` to keep one fp16 table).

The pass keeps, as ``graph.quant_report``, one row per quantized layer:
weight, shape ``(N, K)``, fp16 bytes, quantized bytes (codes + scales) and
ratio; :func:`quant_table` formats it (the ``--explain`` output).

Shape-only weights (``zoo.get(..., weights="meta")``) are quantized as shapes
(:meth:`QuantizedTensor.meta`): such a graph can be counted, not executed.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np

from ...sim.units import fmt_bytes
from ..errors import GraphError
from ..graph import Weight
from ..types import TensorType

#: what ``skip`` holds when not given: quantize every weight matmul, the LM head included
DEFAULT_SKIP = ()


@dataclass(frozen=True, eq=False)
class QuantizedWeight(Weight):
    """A weight in a quantized format: ``type`` ``(N, K)`` in the code width's dtype, ``data`` the
    dequantized float32 ``(N, K)`` (what the interpreter uses), ``qtensor`` the packed bytes
    (a :class:`~tinyml.kernels.quant.QuantizedTensor`; shape-only for shape-only weights)."""

    qtensor: object = None
    source: str = ""                   # the fp16 weight it came from

    @property
    def nbytes(self) -> int:
        return int(self.qtensor.nbytes)


def is_shape_only(w) -> bool:
    """True for a weight without real data (``weights="meta"``: a zero-stride array)."""
    d = w.data
    return d.size > 1 and all(s == 0 for s in d.strides)


def _skipped(name: str, skip) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in skip if p != "lm_head")


def _target(graph, node):
    """(weight name, transposed) if ``node`` is a matmul reading a 2-D weight, else None."""
    if node.op != "matmul":
        return None
    b = node.inputs[1]
    if b in graph.weights and graph.weights[b].type.rank == 2:
        return b, False
    src = graph.node(b)
    if (src is not None and src.op == "transpose" and tuple(src.attr["perm"]) == (1, 0)
            and src.inputs[0] in graph.weights and graph.weights[src.inputs[0]].type.rank == 2):
        return src.inputs[0], True
    return None


def _quantize(w, name: str, transposed: bool, scheme):
    from ...kernels.quant import QuantizedTensor, get_scheme, quantize

    sch = get_scheme(scheme)
    k, n = w.type.shape[::-1] if transposed else w.type.shape
    dtype = "int8" if sch.bits == 8 else "int4"
    if is_shape_only(w):
        q = QuantizedTensor.meta((n, k), sch)
        data = np.broadcast_to(np.float32(0), (n, k))
    else:
        wt = w.data if transposed else w.data.T                                  # (N, K)
        try:
            q = quantize(wt, sch)
        except Exception as e:
            raise type(e)(f"quantize_weights: weight %{name} {w.type}: {e} (leave it in fp16 with "
                          f"skip=[{name!r}])") from None
        data = q.dequantize()                                                    # (N, K) float32
        data.flags.writeable = False
    return QuantizedWeight(TensorType.of((n, k), dtype), data, q, name)


def quantize_weights(graph, scheme="int4-g32", skip=DEFAULT_SKIP):
    """A copy of ``graph`` whose weight matmuls read quantized weights (see the module docstring)."""
    skip = tuple([skip] if isinstance(skip, str) else skip)
    outputs = set(graph.outputs)
    weights = dict(graph.weights)
    made: dict[tuple, str] = {}                 # (weight, transposed) -> quantized weight name
    report, nodes = [], []
    for node in graph.nodes:
        hit = _target(graph, node)
        if hit is None:
            nodes.append(node)
            continue
        wname, transposed = hit
        head = node.name in outputs
        if _skipped(wname, skip) or (head and "lm_head" in skip):
            nodes.append(node)
            continue
        key = (wname, transposed)
        if key not in made:
            qname = _fresh(weights, f"{wname}.q")
            qw = _quantize(graph.weights[wname], wname, transposed, scheme)
            weights[qname] = qw
            made[key] = qname
            n, k = qw.type.shape
            fp16 = n * k * 2
            report.append({"layer": wname, "shape": (n, k), "fp16_bytes": fp16, "quant_bytes": qw.nbytes,
                           "ratio": fp16 / qw.nbytes, "fmt": qw.qtensor.fmt, "lm_head": head})
        nodes.append(_node(graph, node, made[key], weights))
    used = {i for n in nodes for i in n.inputs}
    weights = {k: w for k, w in weights.items() if k in used}
    out = graph.replace(nodes=_drop_dead(nodes, outputs), weights=weights, groups=())
    out.quant_report = tuple(report)
    return out


def _fresh(weights, base: str) -> str:
    name, i = base, 1
    while name in weights:
        name, i = f"{base}{i}", i + 1
    return name


def _node(graph, node, qname: str, weights):
    """``%y = quantized_matmul(%x, %qname) {fmt}``, typed with the quantized weight's type."""
    from ..ops.quant import quantized_matmul_rule

    x = node.inputs[0]
    qw = weights[qname]
    attrs = {"fmt": qw.qtensor.fmt}
    out = quantized_matmul_rule((graph.type_of(x), qw.type), attrs)
    if tuple(out.shape) != tuple(node.type.shape):
        raise GraphError(f"quantize_weights: %{node.name} would change shape {node.type} -> {out}")
    return node.with_(op="quantized_matmul", inputs=(x, qname), attrs=tuple(sorted(attrs.items())), type=out)


def _drop_dead(nodes, outputs):
    """Drop layout nodes (the head's ``transpose(wte)``) nobody reads any more."""
    while True:
        used = {i for n in nodes for i in n.inputs} | outputs
        keep = [n for n in nodes if n.name in used or n.op not in ("transpose", "reshape")]
        if len(keep) == len(nodes):
            return keep
        nodes = keep


def quant_table(report) -> str:
    """The per-layer table: layer, shape (N, K), fp16 bytes, quantized bytes, ratio, and the total."""
    if not report:
        return "  (no weight was quantized)"
    rows = [("layer", "shape (N, K)", "fp16", "quantized", "ratio")]
    for r in report:
        rows.append((r["layer"] + (" (LM head)" if r["lm_head"] else ""), f"{r['shape'][0]} x {r['shape'][1]}",
                     fmt_bytes(r["fp16_bytes"]), fmt_bytes(r["quant_bytes"]), f"{r['ratio']:.2f}x"))
    f16 = sum(r["fp16_bytes"] for r in report)
    qb = sum(r["quant_bytes"] for r in report)
    rows.append((f"total ({len(report)} layers, {report[0]['fmt']})", "", fmt_bytes(f16), fmt_bytes(qb),
                 f"{f16 / qb:.2f}x"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                                      enumerate(zip(r, widths))) for r in rows)
