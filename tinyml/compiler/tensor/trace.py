"""Traces: a schedule as data (instructions + decisions, JSON) that replays deterministically.

    {"version": 1,
     "workload": {"name": "matmul", "buffers": [["A", [64, 32], "fp16"], ...], "axes": [...]},
     "instructions": [
        {"kind": "sample_perfect_tile", "args": ["i", 2, 16], "outputs": ["t0.0", "t0.1"], "decision": [4, 16]},
        {"kind": "split", "args": ["i", [{"var": "t0.0"}, {"var": "t0.1"}]], "outputs": ["i_0", "i_1"]},
        ...]}

A split that took sampled factors refers to them by name, so replaying with another
decision (``decisions={0: [2, 32]}``) gives the neighbouring schedule: this is how a search
walks the space (issue 14).
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import TensorProgramError, TraceError
from .ir import PrimFunc
from .schedule import Instruction, Schedule

VERSION = 1
_PRIMITIVES = {"split", "reorder", "fuse", "bind", "parallel", "vectorize", "unroll", "cache_read",
               "cache_write", "compute_at", "reverse_compute_at", "decompose_reduction", "tensorize",
               "sample_perfect_tile", "sample_categorical"}


def to_json(sch: Schedule, indent: "int | None" = None) -> str:
    """The schedule's trace as JSON text."""
    if not isinstance(sch, Schedule):
        raise TraceError(f"to_json takes a Schedule, got {sch!r} ({type(sch).__name__})")
    return json.dumps({"version": VERSION, "workload": sch.func.to_dict(),
                       "instructions": [ins.to_dict() for ins in sch.trace]}, indent=indent)


def decisions(sch: Schedule) -> dict:
    """{instruction index: decision} of the sampling instructions."""
    return {i: ins.decision for i, ins in enumerate(sch.trace) if ins.decision is not None}


def _kind(workload: dict) -> dict:
    """A workload without its sizes: name, buffer names and dtypes, axis names and kinds."""
    return {"name": workload.get("name"),
            "buffers": [[b[0], len(b[1]), b[2]] for b in workload.get("buffers", [])],
            "axes": [[a[0], a[2]] for a in workload.get("axes", [])], "update": workload.get("update")}


def replay(func: PrimFunc, trace: "str | dict | list", *, decisions: "dict | None" = None,
           seed: int = 0, same_shapes: bool = True) -> Schedule:
    """Apply a trace (JSON text, its dict, or a list of :class:`Instruction`) to ``func``.

    Sampling instructions take the decision recorded in the trace, or ``decisions[index]``
    where given. The workload must be the one the trace was made on; with
    ``same_shapes=False`` only its kind must match (name, buffers, axes), so a schedule made
    for one matmul applies to another size; a split or a sampled tile that no longer fits
    the new extents is refused as in any schedule.
    """
    if isinstance(trace, str):
        try:
            trace = json.loads(trace)
        except json.JSONDecodeError as e:
            raise TraceError(f"the trace is not valid JSON: {e}") from None
    if isinstance(trace, dict):
        if trace.get("version") != VERSION:
            got = f"version {trace['version']!r}" if "version" in trace else "no \"version\""
            raise TraceError(f"the trace has {got}; this tinyml reads version {VERSION} (a trace is what "
                             f"tinyml schedule ... --write-trace FILE.json or tinyml.compiler.tensor.to_json "
                             f"writes; start from one of those)")
        wl = trace.get("workload", {})
        mine = func.to_dict()
        if (wl != mine) if same_shapes else (_kind(wl) != _kind(mine)):
            raise TraceError(f"the trace was made on workload {wl} but is replayed on {mine}"
                             + ("" if not same_shapes or _kind(wl) != _kind(mine) else
                                "; pass same_shapes=False to apply it to another size"))
        items = _instructions(trace.get("instructions", []))
    elif not isinstance(trace, list) or not all(isinstance(i, Instruction) for i in trace):
        raise TraceError(f"a trace is a JSON object {{\"version\": {VERSION}, \"workload\": ..., "
                         f"\"instructions\": [...]}}, got a {type(trace).__name__}")
    else:
        items = list(trace)
    if decisions is not None and not isinstance(decisions, dict):
        raise TraceError(f"decisions map instruction indices to decisions, e.g. {{0: [4, 16]}}, got "
                         f"{decisions!r} ({type(decisions).__name__})")
    forced = {i: ins.decision for i, ins in enumerate(items) if ins.decision is not None}
    forced.update(decisions or {})
    sch = Schedule(func, seed=seed, decisions=forced)
    env: dict = {}
    for i, ins in enumerate(items):
        if ins.kind not in _PRIMITIVES:
            raise TraceError(f"instruction {i}: unknown primitive {ins.kind!r}")
        args = _resolve(ins.args, env, i)
        try:
            out = getattr(sch, ins.kind)(*args)
        except TensorProgramError as e:             # a ScheduleError, or a loop or stage the nest lacks
            raise type(e)(f"replaying instruction {i} ({ins.kind}): {e}") from None
        except TypeError as e:
            raise TraceError(f"instruction {i} ({ins.kind}) has arguments {ins.args!r} that do not fit: {e}") from None
        made = sch.trace[-1].outputs
        if ins.outputs and made != ins.outputs:
            raise TraceError(f"instruction {i} ({ins.kind}) made {made}, the trace says {ins.outputs}")
        if ins.kind.startswith("sample"):
            for v in (out if isinstance(out, list) else [out]):
                env[v.var] = v
    return sch


def read(path) -> dict:
    """The trace in a JSON file (as :func:`to_json` writes it), or a :class:`TraceError` saying why not:
    missing, unreadable, not text, not JSON, not an object."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TraceError(f"{path} is not a text file (byte {e.start} is not UTF-8); a trace is the JSON that "
                         f"tinyml schedule ... --write-trace FILE.json or tinyml.compiler.tensor.to_json "
                         f"writes") from None
    except OSError as e:
        raise TraceError(f"cannot read the trace {path}: {e.strerror}; pass a trace file written by "
                         f"tinyml schedule ... --write-trace FILE.json") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TraceError(f"{path} is not JSON ({e}); write it with --write-trace or "
                         f"tinyml.compiler.tensor.to_json") from None
    if not isinstance(data, dict):       # [] would replay as an empty schedule: nothing applied, no word said
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(data), "a number")
        raise TraceError(f"{path} holds {kind}, not a trace: a trace is a JSON object {{\"version\": {VERSION}, "
                         f"\"workload\": ..., \"instructions\": [...]}} as tinyml schedule ... --write-trace "
                         f"FILE.json or tinyml.compiler.tensor.to_json writes it")
    return data


def _instructions(data) -> list:
    """The trace's instruction list, each entry checked to be {"kind": str, "args": list, ...}."""
    if not isinstance(data, list):
        raise TraceError(f"the trace's \"instructions\" must be a list, got {type(data).__name__}")
    items = []
    for i, d in enumerate(data):
        if not isinstance(d, dict) or not isinstance(d.get("kind"), str) or not isinstance(d.get("args"), list):
            raise TraceError(f"instruction {i} is {d!r}; each instruction is an object with a \"kind\" "
                             f"(a primitive's name) and \"args\" (a list)")
        outputs = d.get("outputs", [])
        if not isinstance(outputs, list):
            raise TraceError(f"instruction {i} ({d['kind']}): \"outputs\" must be a list, got {outputs!r}")
        items.append(Instruction(d["kind"], d["args"], outputs, d.get("decision")))
    return items


def _resolve(args, env: dict, i: int):
    if isinstance(args, list):
        return [_resolve(a, env, i) for a in args]
    if isinstance(args, dict):
        if set(args) != {"var"} or args["var"] not in env:
            raise TraceError(f"instruction {i}: {args!r} refers to no sampled value made before it")
        return env[args["var"]]
    return args
