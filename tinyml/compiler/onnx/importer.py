"""``from_onnx(path_or_model)``: an ONNX model as a tinyml :class:`~tinyml.compiler.Graph`.

The importer walks the ONNX nodes in order (ONNX graphs are topologically
sorted) and, for each one:

1. if every input is a constant, **folds** it (:mod:`.fold`): weights built by
   ``ConstantOfShape``, shape arithmetic from ``Shape(x)``, ``Unsqueeze`` of a
   parameter all become constants, never nodes;
2. otherwise runs the op's **converter** (:mod:`.convert_cnn`, :mod:`.convert_tensor`),
   which emits tinyml IR nodes: ops tinyml has kernels for (``matmul``, ``add``,
   ``softmax`` ...) or library ops (``conv2d``, ``max_pool2d`` ... see
   :mod:`tinyml.compiler.ops.library`);
3. checks the IR type of each output against ONNX's own shape inference
   (``onnx.shape_inference``): a disagreement is a bug and raises.

Graph inputs keep their symbolic dimensions: a ``dim_param`` such as ``batch``
becomes the symbol ``batch`` (``input_shapes=`` overrides a shape, e.g. to make
a fixed batch of 1 symbolic). Constants used as tensors become weights (float
data in the model's float dtype). A node that cannot be imported does not stop
the walk: every such node is collected, and one
:class:`~tinyml.compiler.onnx.errors.OnnxUnsupportedError` lists them all, by
op, with counts.
"""

from __future__ import annotations

import numpy as np

from ...sim.args import integer
from ..graph import Graph
from ..errors import GraphError
from ..symbolic import sym
from . import convert_cnn, convert_tensor  # noqa: F401  (registers the converters)
from .context import CONVERTERS, Context, Unavailable, Unsupported, ident, unsupported_error
from .errors import OnnxFileError, OnnxImportError, OnnxUnsupportedError
from .fold import fold, normalise
from .load import check, inferred_types, load_model, need_onnx, skeleton

NO_CONVERTER = "no converter (only constant inputs would let it fold)"

#: the default-domain opsets whose semantics the converters implement (every supported op keeps
#: its meaning from 13 to 28: the versions after 21 only add element types such as float4)
OPSETS = (7, 28)


def _float_dtypes():
    from onnx import TensorProto

    return {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16", TensorProto.BFLOAT16: "bf16"}


def _opset(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def _set_input_shapes(model, shapes: dict) -> None:
    """Give the graph inputs of ``model`` (a skeleton, changed in place) the shapes given (ints or symbols)."""
    names = {i.name: i for i in model.graph.input}
    for name, shape in shapes.items():
        if name not in names:
            raise OnnxImportError(f"input_shapes names {name!r}, which is not an input of the model; "
                                  f"its inputs are {sorted(names)}")
        dims = names[name].type.tensor_type.shape.dim
        if not isinstance(shape, (tuple, list)):
            raise OnnxImportError(f"input_shapes[{name!r}] must be a tuple such as ('n', 3, 224, 224), "
                                  f"got {shape!r}")
        if len(dims) != len(shape):
            raise OnnxImportError(f"input_shapes[{name!r}] = {tuple(shape)} has rank {len(shape)}, "
                                  f"but the model's input has rank {len(dims)}")
        for axis, (d, v) in enumerate(zip(dims, shape)):
            if not isinstance(v, str):       # a symbol, or a length >= 1 (-3 or 0 became a symbol before)
                v = integer(v, f"input_shapes[{name!r}][{axis}]", lo=1, error=OnnxImportError,
                            hint=f"each entry of {tuple(shape)} is a length >= 1 or a symbol such as 'n'")
            d.Clear()
            if isinstance(v, str):
                d.dim_param = v
            else:
                d.dim_value = v


def _input_type(vi, float_types):
    """(dims, dtype or None): ``dim_param`` -> symbol, unknown dim -> a symbol named after the input."""
    tt = vi.type.tensor_type
    dims = []
    for axis, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value") and d.dim_value < 1:
            shown = tuple(x.dim_value if x.HasField("dim_value") else (x.dim_param or "?") for x in tt.shape.dim)
            raise OnnxImportError(
                f"graph input {vi.name!r} has shape {shown}: dimension {d.dim_value} at axis {axis}; tinyml "
                f"tensors have dimensions >= 1 (as Graph.input requires). Give the shape you mean with "
                f"from_onnx(..., input_shapes={{{vi.name!r}: (...)}}), a symbol such as 'n' for a free dimension")
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(sym(ident(d.dim_param).replace(".", "_")))
        else:
            dims.append(sym(f"{ident(vi.name).replace('.', '_')}_d{axis}"))
    return dims, float_types.get(tt.elem_type)


def _check_inferred(node_name: str, onnx_name: str, t, inferred) -> None:
    info = inferred.get(onnx_name)
    if info is None or not info.HasField("shape"):
        return
    theirs = [d.dim_value if d.HasField("dim_value") else None for d in info.shape.dim]
    ours = list(t.shape)
    bad = len(theirs) != len(ours) or any(
        v is not None and isinstance(o, int) and o != v for o, v in zip(ours, theirs))
    if bad:
        shown = tuple("?" if v is None else v for v in theirs)
        raise OnnxImportError(
            f"node {node_name!r}: output {onnx_name!r} has the IR type {t}, but ONNX shape inference "
            f"says {shown}; this is a bug in tinyml's converter or shape rule, please report it")


def from_onnx(model, *, name: "str | None" = None, input_shapes: "dict | None" = None,
              fold_batchnorm: bool = True) -> Graph:
    """Import an ONNX model (a path, bytes or an ``onnx.ModelProto``) as a tinyml Graph.

    * ``input_shapes``: ``{input name: shape}`` overriding the model's input shapes;
      a string dimension is a symbol (``{"data": ("n", 3, 224, 224)}``);
    * ``fold_batchnorm``: fold BatchNormalization with constant statistics into a
      per-channel ``mul`` + ``add`` (TVM's SimplifyInference); else a ``batchnorm`` op.

    Raises :class:`OnnxFileError` for a missing or malformed file and
    :class:`OnnxUnsupportedError` listing every unsupported op / opset / dtype.
    """
    need_onnx()
    from onnx import numpy_helper

    full = load_model(model)
    proto = skeleton(full)                       # nodes, inputs, outputs, small constants
    if input_shapes:
        _set_input_shapes(proto, input_shapes)
    proto = check(proto)
    gname = ident(name or proto.graph.name or "onnx_model")
    opset = _opset(proto)
    if not OPSETS[0] <= opset <= OPSETS[1]:
        raise OnnxUnsupportedError(
            f"cannot import ONNX model {gname!r}: it uses opset {opset} of the default domain; tinyml supports "
            f"opsets {OPSETS[0]}..{OPSETS[1]}. Convert it first: "
            f"onnx.version_converter.convert_version(model, {min(max(opset, OPSETS[0]), OPSETS[1])})",
            [("<model>", "opset", f"opset {opset}")])
    try:
        inits = {t.name: normalise(numpy_helper.to_array(t)) for t in full.graph.initializer}
    except Exception as e:                                  # noqa: BLE001  (truncated raw_data ...)
        raise OnnxFileError(f"an initializer of the model cannot be read: {e}; is the file complete?") from None

    walk = _Walk(proto, inits, gname, opset, fold_batchnorm)
    for index, node in enumerate(proto.graph.node):
        walk.node(index, node)
    walk.outputs()
    if walk.problems:
        raise unsupported_error(gname, walk.problems, CONVERTERS, OPSETS)
    return walk.ctx.g


class _Walk:
    """One pass over the ONNX graph: inputs, then each node, then the outputs; problems collected."""

    def __init__(self, proto, inits: dict, gname: str, opset: int, fold_batchnorm: bool):
        from onnx import TensorProto

        self.opset = opset
        self.proto = proto
        self.inferred = inferred_types(proto)
        self.problems: list = []                 # (node or value, op, why)
        self.poisoned: set = set()               # ONNX values that depend on a problem
        float_types = _float_dtypes()
        typed = [(vi, *_input_type(vi, float_types)) for vi in proto.graph.input if vi.name not in inits]
        float_dtype = next((dt for _, _, dt in typed if dt), "fp32")
        self.ctx = ctx = Context(Graph(gname, dtype=float_dtype), opset, float_dtype, fold_batchnorm=fold_batchnorm)
        for vi, dims, dt in typed:
            if dt is None:
                elem = TensorProto.DataType.Name(vi.type.tensor_type.elem_type)
                self.problem(vi.name, "graph input", f"dtype {elem} (tinyml imports float, float16 and "
                                                     "bfloat16 inputs)", [vi.name])
            else:
                ctx.env[vi.name] = ctx.g.input(ctx.unique(vi.name), dims, dt).name
        ctx.env.update(inits)

    def problem(self, where: str, op: str, why: str, poisons) -> None:
        self.problems.append((where, op, why))
        self.poisoned.update(poisons)

    def node(self, index: int, node) -> None:
        """Fold, convert, or record why not; bind the node's outputs."""
        ctx = self.ctx
        label = node.name or f"#{index} ({node.op_type} -> {node.output[0] if node.output else '?'})"
        present = [i for i in node.input if i]
        known = node.op_type in CONVERTERS
        if any(i in self.poisoned for i in present):             # downstream of a problem: list only
            if known or node.op_type in ("Constant", "ConstantOfShape"):   # what is unsupported itself
                self.poisoned.update(node.output)
            else:
                self.problem(label, node.op_type, NO_CONVERTER, node.output)
            return
        missing = [i for i in present if i not in ctx.env]
        if missing:
            raise OnnxImportError(f"node {label!r} ({node.op_type}) reads {missing}, which nothing defines "
                                  "before it; the ONNX graph is not topologically sorted or is incomplete")
        dead = [(i, ctx.env[i]) for i in present if isinstance(ctx.env[i], Unavailable)]
        if dead:
            return self.problem(label, node.op_type, f"reads {dead[0][0]!r}: {dead[0][1].why}", node.output)
        if node.domain not in ("", "ai.onnx"):
            return self.problem(label, f"{node.domain}.{node.op_type}", f"domain {node.domain!r} is not supported",
                                node.output)
        values = [ctx.env[i] if i else None for i in node.input]
        outs = None
        if all(v is None or isinstance(v, np.ndarray) for v in values):
            outs = fold(node, values, self.opset)
        if outs is None:
            if not known:
                return self.problem(label, node.op_type, NO_CONVERTER, node.output)
            ctx.node, ctx.unchecked = node, False
            try:
                outs = CONVERTERS[node.op_type](ctx)
            except Unsupported as e:
                return self.problem(label, node.op_type, str(e), node.output)
            except GraphError as e:
                raise OnnxImportError(f"node {label!r} ({node.op_type}): {e}") from None
        for onnx_name, v in zip(node.output, outs):
            if not onnx_name:
                continue
            if not isinstance(v, (str, Unavailable)):
                v = normalise(v)
            ctx.env[onnx_name] = v
            if isinstance(v, str) and not ctx.unchecked:
                _check_inferred(label, onnx_name, ctx.g.type_of(v), self.inferred)

    def outputs(self) -> None:
        """Mark the graph outputs (a constant output becomes a weight)."""
        ctx = self.ctx
        for vi in self.proto.graph.output:
            if vi.name in self.poisoned:
                continue
            v = ctx.env.get(vi.name)
            if isinstance(v, Unavailable):
                self.problem(vi.name, "graph output", v.why, ())
                continue
            if v is None:
                raise OnnxImportError(f"graph output {vi.name!r} is not computed by any node")
            if not isinstance(v, str):
                try:
                    v = ctx.weight(v, vi.name)
                except Unsupported as e:
                    self.problem(vi.name, "graph output", str(e), ())
                    continue
            ctx.g.output(v)
