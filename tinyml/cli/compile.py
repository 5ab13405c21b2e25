"""``tinyml compile MODEL``: a zoo model (or an ``.onnx`` file) through the compiler's passes.

After every pass the graph is lowered (op by op before ``fuse``, one kernel
per fused group after) and counted on the simulated device at ``--seq`` tokens:
kernels, HBM bytes, time (and, once memory is planned, the arena and peak HBM).
``--passes all`` is the whole pipeline: shapes -> fusion -> attention rewrite ->
quantization (``--scheme``, ``--skip``) -> memory plan (for ``--bound n=...``,
default ``--seq``) -> lowering. ``--explain`` prints each step (with the bytes
per quantized layer and the memory plan) and also writes, per pass, the IR
text and its drawing (``NN-<pass>.txt``, ``NN-<pass>.svg``, or ``.dot`` where
Graphviz's ``dot`` is missing) and an ``index.md`` that links them.
"""

from __future__ import annotations

from pathlib import Path

from ._args import UsageError, output_folder, positive_int, readable_file
from ._out import console, emit_json, table

HELP = """examples:
  tinyml compile gpt2_block                         GPT-2 small's block at 1024 tokens, pass by pass
  tinyml compile gpt2_block --seq 4096 --device h100-sxm
  tinyml compile mlp --passes fuse                  only fusion
  tinyml compile gpt2_block --explain --out build   IR text and drawings after every pass, and an index.md
  tinyml compile tiny_gpt --json                    per-step numbers and the final profile as JSON
  tinyml compile tiny_gpt --layers 12 --seq 2048 --bound n=2048 --passes all --explain
  tinyml compile tiny_gpt --layers 12 --seq n --bound n=2048 --passes all   n symbolic, up to 2048
                                                    GPT-2 small: fusion, FlashAttention, int4, memory plan
  tinyml compile model.onnx --passes fuse,plan_memory   an ONNX file (needs the onnx package)
  tinyml compile mlp --dtype fp32 --schedule mm.json    matmul nodes of mm.json's workload run its schedule
                                                    (write one with tinyml schedule ... --write-trace mm.json)
  tinyml compile mlp --tune-log tune.jsonl          matmul nodes run the best schedules of a tuning log
"""


#: what the groups and kernels columns mean, printed under the table
LEGEND = "groups = fused groups (0 before fuse); kernels = launches (a group of only views, e.g. a reshape, launches none)"


def register(sub) -> None:
    from ..compiler.zoo import NAMES

    p = sub.add_parser("compile", help="compile a zoo model pass by pass: kernels, HBM bytes, time", epilog=HELP)
    p.add_argument("model", help=f"a model of tinyml.compiler.zoo ({', '.join(NAMES)}) or a path to an .onnx file")
    p.add_argument("--seq", default="1024",
                   help="sequence length n (default 1024), or the symbol n itself: keep n symbolic, plan memory "
                        "for every n up to --bound n=N and count the steps at N")
    p.add_argument("--layers", type=positive_int, default=None, help="transformer blocks of tiny_gpt (default 2)")
    p.add_argument("--bound", action="append", default=[], metavar="SYM=N",
                   help="largest value of a symbol for the memory plan, e.g. n=2048 (default: --seq)")
    p.add_argument("--scheme", default="int4-g32", help="weight format for quantize_weights (default int4-g32)")
    p.add_argument("--skip", default="", help="comma-separated weights (fnmatch patterns, or lm_head) "
                                              "quantize_weights leaves in fp16")
    p.add_argument("--device", default="a100-40gb", help="preset name or .toml file (default a100-40gb)")
    p.add_argument("--dtype", default="fp16", help="logical dtype bytes are counted in (default fp16)")
    p.add_argument("--passes", default=None,
                   help="comma-separated passes (default: cse,dead_code,rewrite_attention,fuse), "
                        "or 'all' for the whole pipeline")
    p.add_argument("--explain", action="store_true", help="print each pass's summary and write its IR and drawing")
    p.add_argument("--out", type=output_folder, default=None,
                   help="folder for --explain's files, created if missing (default compile-MODEL)")
    p.add_argument("--json", action="store_true", help="print every step's numbers as JSON instead of a table")
    p.add_argument("--schedule", type=readable_file, action="append", default=[], metavar="FILE.json",
                   help="lower matmul/conv2d nodes with a schedule: a trace (the nodes of exactly its workload) or "
                        "an object mapping node names, workload keys or op kinds to traces; repeatable "
                        "(default: hand-written kernels and library calls)")
    p.add_argument("--tune-log", type=readable_file, default=None, metavar="LOG.jsonl",
                   help="lower each matmul/conv2d node with the best schedule a tuning log (tinyml tune --log) holds "
                        "for its workload on --device (default: none)")
    p.set_defaults(func=run)


def load_schedules(paths: list) -> "dict | None":
    """The ``--schedule`` files as one schedules dict (None without any); a key given twice is refused."""
    from ..compiler.lowering.scheduled import table_from_json
    from ..compiler.tensor.trace import read

    if not paths:
        return None
    out: dict = {}
    for path in paths:
        data = read(path)                # a TraceError for a file that is not a JSON text
        for key, trace in table_from_json(data, f"--schedule {path}").items():
            if key in out:
                raise UsageError(f"--schedule {path}: {key!r} already has a schedule from an earlier file")
            out[key] = trace
    return out


def _check_scheduled(prof, schedules: "dict | None", graph) -> list:
    """The generated kernels' names; refuses schedules that lowered no node (nothing silently ignored)."""
    if not schedules:
        return []
    names = [r.name for r in prof.records if r.name.endswith("_scheduled")]
    if not names:
        can = sorted(n.name for n in graph.nodes if n.op in ("matmul", "conv2d"))
        if not isinstance(schedules, dict):          # a tuning log
            raise UsageError(f"--tune-log: the log holds no schedule for any matmul/conv2d node of {graph.name!r} "
                             f"on this device (its workloads: {sorted(schedules.workloads().values())}); tune "
                             f"the nodes' shapes and --dtype with tinyml tune; schedulable nodes: {can}")
        raise UsageError(f"--schedule: no node of {graph.name!r} matched {sorted(schedules)}; a trace lowers the "
                         f"nodes of exactly its workload (shapes and --dtype); key it by node name or op kind "
                         f"to apply it elsewhere; schedulable nodes: {can}")
    return names


def _passes(text: "str | None", bounds: dict, scheme: str, skip: tuple):
    """The pass list: names, with plan_memory bound to ``bounds`` and quantize_weights to ``scheme``."""
    import functools

    from ..compiler.compile import DEFAULT_PASSES
    from ..compiler.errors import GraphError
    from ..compiler.passes import plan_memory, quantize_weights

    if text is None:
        return list(DEFAULT_PASSES)
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not names:
        raise GraphError(f"--passes {text!r} names no pass; e.g. --passes rewrite_attention,fuse")
    if names == ["all"]:
        return "all"
    out = []
    for name in names:
        if name == "plan_memory":
            fn = functools.partial(plan_memory, bounds=bounds)
        elif name == "quantize_weights":
            fn = functools.partial(quantize_weights, scheme=scheme, skip=skip)
        else:
            out.append(name)
            continue
        fn.__name__ = name
        out.append(fn)
    return out


def _bounds(items: list, n: int) -> dict:
    from ..compiler.errors import BindingError

    out = {"n": n}
    for item in items:
        sym, _, value = item.partition("=")
        try:
            out[sym.strip()] = int(value)
        except ValueError:
            raise BindingError(f"--bound {item!r}: write SYMBOL=INT, e.g. --bound n=2048") from None
        if not sym.strip() or out[sym.strip()] < 1:
            raise BindingError(f"--bound {item!r}: write SYMBOL=INT with INT >= 1, e.g. --bound n=2048")
    if out["n"] < n:
        raise BindingError(f"--bound n={out['n']} is below --seq {n}: the plan must hold the sequence it runs; "
                           f"use --bound n={n} or more")
    return out


def load_model(model: str, layers: "int | None" = None, weights: str = "random"):
    """A zoo model by name (``tiny_gpt`` with ``layers``) or an ONNX file (``*.onnx``) by path."""
    from ..compiler import zoo
    from ..compiler.errors import GraphError

    if model.endswith(".onnx"):
        from ..compiler.onnx import from_onnx

        return from_onnx(model)
    if model not in zoo.NAMES:
        raise GraphError(f"unknown model {model!r}; choose one of {', '.join(zoo.NAMES)} or an .onnx file path")
    kw = {"weights": weights}
    if layers is not None:
        if model != "tiny_gpt":
            raise GraphError(f"--layers is for tiny_gpt, not {model!r}")
        kw["layers"] = layers
    return zoo.get(model, **kw)


def _seq(text: str, bound_items: list) -> "tuple[int, bool]":
    """(n to count the steps at, whether n stays symbolic) from ``--seq`` and ``--bound``."""
    from ..compiler.errors import BindingError

    text = str(text).strip()
    if text == "n":                  # symbolic: the plan must hold for every n up to the bound
        bound = [b for b in bound_items if b.partition("=")[0].strip() == "n"]
        if not bound:
            raise BindingError("--seq n keeps the sequence length symbolic, so the memory plan needs its largest "
                               "value: add --bound n=N (e.g. --bound n=2048); the steps are counted at n = N")
        try:
            return int(bound[-1].partition("=")[2]), True
        except ValueError:
            raise BindingError(f"--bound {bound[-1]!r}: write SYMBOL=INT, e.g. --bound n=2048") from None
    try:
        n = int(text)
    except ValueError:
        raise BindingError(f"--seq {text!r}: give a sequence length (an integer >= 1) or the symbol n") from None
    if n < 1:
        raise BindingError(f"--seq must be >= 1, got {n}")
    return n, False


def _cells(s: dict) -> str:
    """nodes | groups | kernels | HBM | time, for index.md."""
    from ..sim.units import fmt_bytes

    if s.get("time_s") is None:
        return f"{s.get('nodes', '')} | {s.get('groups', '')} | - | - | {'out of HBM' if s.get('error') else '-'}"
    return (f"{s['nodes']} | {s['groups']} | {s['kernels']} | {fmt_bytes(s['hbm_bytes'])} | "
            f"{s['time_s'] * 1e6:,.1f} us")


def write_explain(compiled, out: Path) -> dict:
    """``NN-<pass>.txt`` and ``.svg`` (or ``.dot``) per step and an ``index.md``; returns what was written."""
    from ..viz import MISSING, has_dot

    out.mkdir(parents=True, exist_ok=True)
    rows, files, missing_dot = [], [], not has_dot()
    for i, step in enumerate(compiled.steps):
        stem = f"{i:02d}-{step.name}"
        (out / f"{stem}.txt").write_text(str(step) + "\n")
        if missing_dot:
            (out / f"{stem}.dot").write_text(step.dot or step.graph.to_dot())
            drawing = f"{stem}.dot"
        else:
            step.draw(out / f"{stem}.svg")
            drawing = f"{stem}.svg"
        files += [f"{stem}.txt", drawing]
        rows.append(f"| {i:02d} | {step.name} | {_cells(step.summary)} | [IR]({stem}.txt) | [drawing]({drawing}) |")
    b = compiled.bindings
    lines = [f"# {compiled.graph.name} on {compiled.device}, {compiled.dtype}, "
             f"{', '.join(f'{k} = {v}' for k, v in b.items()) or 'no symbols'}", "",
             "| step | pass | nodes | groups | kernels | HBM | time | IR | drawing |",
             "|---|---|---|---|---|---|---|---|---|", *rows]
    if missing_dot:
        lines += ["", MISSING]
    (out / "index.md").write_text("\n".join(lines) + "\n")
    return {"dir": str(out), "files": files + ["index.md"], "svg": not missing_dot}


def _row(step, fmt_bytes, fmt_time) -> list:
    s = step.summary
    if s.get("time_s") is None:
        return [step.name, str(s["nodes"]), str(s["groups"]), "-", "-", "out of HBM" if s.get("error") else "-",
                "-", "-"]
    return [step.name, str(s["nodes"]), str(s["groups"]), str(s["kernels"]), fmt_bytes(s["hbm_bytes"]),
            fmt_time(s["time_s"]), fmt_bytes(s["arena_bytes"]) if "arena_bytes" in s else "-",
            fmt_bytes(s["peak_hbm_bytes"]) if "peak_hbm_bytes" in s else "-"]


def run(args) -> int:
    from ..compiler import compile
    from ..compiler.compile import memory_numbers
    from ..sim.units import fmt_bytes, fmt_time

    if args.out is not None and not args.explain:
        raise UsageError(f"--out {args.out} is where --explain writes its files; add --explain "
                         f"(nothing else is written)")
    n, symbolic = _seq(args.seq, args.bound)
    bounds = _bounds(args.bound, n)
    skip = tuple(x.strip() for x in args.skip.split(",") if x.strip())
    # shape-only weights (nothing is executed here: every step is counted), so GPT-2 small builds in ms
    graph = load_model(args.model, args.layers, weights="meta")
    bindings = {s: (n if s == "n" else bounds.get(s, 1)) for s in graph.symbols}
    schedules = load_schedules(args.schedule)
    if args.tune_log:
        from ..compiler.tune import TuningLog

        if schedules:
            raise UsageError("give either --schedule files or --tune-log, not both")
        schedules = TuningLog(args.tune_log, device=args.device)
    compiled = compile(graph, device=args.device, passes=_passes(args.passes, bounds, args.scheme, skip),
                       dtype=args.dtype, bindings=bindings, bounds=bounds, scheme=args.scheme, skip=skip,
                       schedules=schedules)
    prof = compiled.profile()
    scheduled = _check_scheduled(prof, schedules, compiled.graph)
    written = write_explain(compiled, Path(args.out or f"compile-{Path(args.model).stem}")) if args.explain else None
    first, last = compiled.steps[0].summary, compiled.steps[-1].summary
    memory = memory_numbers(compiled.graph, bindings)
    if args.json:
        payload = {"model": args.model, "device": compiled.device, "dtype": args.dtype, "bindings": bindings,
                   "bounds": bounds, "steps": [s.to_dict() for s in compiled.steps], **memory,
                   "peak_hbm_bytes": int(prof.peak_hbm_bytes), "profile": prof.to_dict()}
        if written:
            payload["explain"] = written
        if schedules:
            payload["scheduled"] = scheduled
        emit_json(payload)
        return 0
    c = console()
    if args.explain:
        for step in compiled.steps:
            c.print(step.headline())
            more = step.details()
            if more:
                c.print(more)
        c.print()
    rows = [_row(s, fmt_bytes, fmt_time) for s in compiled.steps]
    at = f"n symbolic (plan valid for every n <= {bounds['n']}), counted at n = {n}" if symbolic else f"n = {n}"
    c.print(table(f"{args.model}, {at}, {args.dtype}, {compiled.device}: every step lowered and counted",
                  ["after pass", "nodes", "groups", "kernels", "HBM bytes", "time", "arena", "peak HBM"], rows,
                  {"nodes", "groups", "kernels", "HBM bytes", "time", "arena", "peak HBM"}))
    c.print(LEGEND)
    c.print(f"intermediates: {memory['intermediates']}, {fmt_bytes(memory['naive_bytes'])} one allocation each, "
            f"arena {fmt_bytes(memory['arena_bytes'])}, LOAD {fmt_bytes(memory['load_bytes'])} (LOAD = the most bytes "
            f"live at one launch, which no arena can beat)"
            + ("" if getattr(compiled.graph, "memory_plan", None) else " (a plan made at --seq; add plan_memory "
               "to the passes to run with it)"))
    if first.get("time_s") is not None and last.get("time_s") is not None:
        c.print(f"input -> {compiled.steps[-1].name}: {first['kernels']} -> {last['kernels']} kernels, "
                f"{first['hbm_bytes'] / max(last['hbm_bytes'], 1):.1f}x fewer HBM bytes, "
                f"{first['time_s'] / max(last['time_s'], 1e-30):.1f}x less time")
    if scheduled:
        c.print(f"--schedule: {len(scheduled)} generated kernel(s) ({', '.join(sorted(set(scheduled)))}): "
                f"{len(prof.records)} kernels, {fmt_bytes(prof.hbm_bytes)} HBM, {fmt_time(prof.time_s)} "
                f"(every step of the table above runs them too)")
    errors: dict = {}
    for s in compiled.steps:
        if s.summary.get("error"):
            errors.setdefault(s.summary["error"], []).append(s.name)
    for msg, names in errors.items():
        c.print(f"after {', '.join(names)}: {msg}")
    if written:
        c.print(f"wrote {len(written['files'])} files to {written['dir']} (open {written['dir']}/index.md)")
        if not written["svg"]:
            from ..viz import MISSING

            c.print(MISSING, markup=False)
    return 0
