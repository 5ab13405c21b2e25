"""Mutation testing for one tinyml module: do the related tests fail when a number changes?

Usage (from the repository root)::

    python tools/mutate.py tinyml/sim/cost.py tests/test_cost.py tests/test_cost_mutants.py \\
        --sample 50 --seed 1 --json out/mutants-cost.json
    python tools/mutate.py tinyml/kernels/matmul/_tiled.py tests/test_byte_formulas.py \\
        --only expected_bytes,tile_panels          # mutate only these functions
    python tools/mutate.py tinyml/sim/cost.py --list           # the mutants, nothing run
    python tools/mutate.py tinyml/sim/cost.py tests/test_cost.py --ids 12,40   # rerun two
    python tools/mutate.py tinyml/sim/cost.py tests/test_cost.py tests/test_cost_mutants.py \
        --rerun out/mutants-cost.json --json out/mutants-cost-2.json   # only the survivors, again

What it does:

1. Parses the module with ``ast`` and lists every mutant, one small change each:

   ======== =====================================================================
   binop    ``+ -`` swapped, ``* /`` swapped, ``//`` -> ``/``, ``%`` -> ``//``,
            ``**`` -> ``*``, ``<< >>`` and ``& |`` swapped (also in ``x += y``)
   compare  ``<`` -> ``<=``, ``<=`` -> ``<``, ``>`` -> ``>=``, ``>=`` -> ``>``,
            ``==`` / ``!=``, ``is`` / ``is not``, ``in`` / ``not in`` swapped
   const    an int constant ``n`` -> ``n + 1``, a float ``f`` -> ``f + 1``,
            ``True`` / ``False`` swapped
   negate   the condition of ``if`` / ``while`` / ``... if ... else`` / ``assert``
            / a comprehension's ``if`` -> ``not (...)``
   boolop   ``and`` / ``or`` swapped;  unary: ``not x`` -> ``x``, ``-x`` -> ``x``
   minmax   ``min(...)`` / ``max(...)`` swapped
   return   ``return X`` -> ``return None``
   drop     a call statement, ``x += ...``, ``obj.attr = ...``, ``a[i] = ...``,
            ``raise ...``, ``break`` / ``continue`` -> ``pass``
   ======== =====================================================================

   Not mutated: docstrings, annotations, decorators, f-strings (message text), and
   any line marked ``# pragma: no mutate``.

2. Copies the working tree (git's tracked and untracked-not-ignored files) to a
   scratch folder once, and applies one mutant at a time to the *copy* (your files
   are never touched), splicing only the changed expression into the source so the
   rest of the file, its line numbers and comments, stays as it was.

3. Runs only the test files you name, ``python -m pytest FILES -x -q -p
   no:cacheprovider -n 0`` (one process, not pytest-xdist's workers), with
   ``PYTHONPATH`` at the copy, the hypothesis ``ci`` profile, no bytecode written,
   and a timeout per mutant (``--timeout``, default three times the unmutated run
   plus 20 s). Exit 0 = the mutant SURVIVED; a test
   failure, an import error or a crash = KILLED; the timeout = TIMEOUT.

Numba: the run pins ``NUMBA_CACHE_DIR`` to one folder (``--cache-dir``), so
Numba keys each cached kernel on its own file instead of tinyml's hash of every
kernel source (``tinyml/sim/jit.py``), which any mutant of ``tinyml/sim`` or
``tinyml/kernels`` would change and so recompile everything. A mutant inside a
non-jitted function of a file that also holds jitted kernels keeps that file's
size and modification time (a comment is trimmed or padded), so Numba keeps the
file's cached kernels, whose source did not change. A mutant inside a jitted
function cannot use a cached kernel at all: by default (``--jit auto``) such runs
set ``NUMBA_DISABLE_JIT=1`` (the kernels run as plain Python; the report says so),
which leaves untested any code that only runs jitted (a ``config.DISABLE_JIT``
branch). ``--jit on`` keeps Numba and gives the mutated file a new modification
time, so its kernels recompile for each mutant (slow); that is sound only when the
tests call the mutated file's functions directly, because a kernel in *another*
file keeps its cached machine code, with the unmutated helper inlined.

Score = (killed + timed out + equivalent) / mutants. A survivor counts as
equivalent only where a test module has a comment containing
``equivalent mutant`` followed by the survivor's key as this tool prints it
(``path:line: before -> after``), with the reason why no test can tell them apart.
"""

from __future__ import annotations

import argparse
import ast
import copy
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BINOP_SWAP = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
    ast.LShift: ast.RShift, ast.RShift: ast.LShift, ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd, ast.BitXor: ast.BitAnd,
}
COMPARE_SWAP = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In,
}


@dataclass
class Mutant:
    id: int
    line: int
    col: int
    kind: str
    before: str                  # source of the node as unparsed, one line
    after: str
    func: str                    # enclosing function qualname ("" at module level)
    jitted: bool
    status: str = "not run"      # killed / survived / timeout / equivalent / invalid
    seconds: float = 0.0
    detail: str = ""
    # where to splice (1-based lines, 0-based UTF-8 byte columns), not reported
    span: tuple = field(default=(0, 0, 0, 0), repr=False)
    new_text: str = field(default="", repr=False)

    def key(self, path: str) -> str:
        return f"{path}:{self.line}: {self.before} -> {self.after}"


def _short(node: ast.AST) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= 80 else text[:77] + "..."


def _is_jit_decorator(dec: ast.AST) -> bool:
    return "jit" in ast.unparse(dec)


class _Finder(ast.NodeVisitor):
    """Walks a module and collects (node, replacement node or text, kind) candidates."""

    def __init__(self, source_lines: list[str]):
        self.lines = source_lines
        self.found: list[tuple[ast.AST, ast.AST | str, str, str, bool]] = []
        self.stack: list[str] = []
        self.jit_depth = 0

    # --- context -----------------------------------------------------------------
    def _skip_line(self, node: ast.AST) -> bool:
        line = self.lines[node.lineno - 1] if 0 < node.lineno <= len(self.lines) else ""
        return "pragma: no mutate" in line

    def _add(self, node, replacement, kind):
        if self._skip_line(node):
            return
        self.found.append((node, replacement, kind, ".".join(self.stack), self.jit_depth > 0))

    def _visit_body(self, body):
        for i, stmt in enumerate(body):
            if i == 0 and isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) \
                    and isinstance(stmt.value.value, str):
                continue                                   # docstring
            self.visit(stmt)

    def visit_Module(self, node):
        self._visit_body(node.body)

    def _visit_function(self, node):
        jitted = any(_is_jit_decorator(d) for d in node.decorator_list)
        self.stack.append(node.name)
        self.jit_depth += jitted
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        self._visit_body(node.body)
        self.jit_depth -= jitted
        self.stack.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _visit_function

    def visit_ClassDef(self, node):
        self.stack.append(node.name)
        self._visit_body(node.body)
        self.stack.pop()

    def visit_AnnAssign(self, node):                       # the annotation is not code
        if node.value is not None:
            self.visit(node.value)

    def visit_JoinedStr(self, node):                       # message text: not mutated
        return

    def visit_If(self, node):
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        self._negate(node.test)
        self.generic_visit(node)

    # --- mutation sites ----------------------------------------------------------
    def _negate(self, test):
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return                                         # "not x" -> "x" is the unary mutant
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and \
                isinstance(test.ops[0], (ast.Eq, ast.NotEq, ast.Is, ast.IsNot, ast.In, ast.NotIn)):
            return                                         # the compare mutant is this negation
        self._add(test, ast.UnaryOp(op=ast.Not(), operand=copy.deepcopy(test)), "negate")

    def visit_While(self, node):
        self._negate(node.test)
        self.generic_visit(node)

    def visit_IfExp(self, node):
        self._negate(node.test)
        self.generic_visit(node)

    def visit_Assert(self, node):
        self._negate(node.test)
        self.generic_visit(node)

    def visit_comprehension(self, node):
        for cond in node.ifs:
            self._negate(cond)
        self.generic_visit(node)

    def visit_BinOp(self, node):
        new = BINOP_SWAP.get(type(node.op))
        if new is not None:
            m = copy.deepcopy(node)
            m.op = new()
            self._add(node, m, "binop")
        self.generic_visit(node)

    def visit_Compare(self, node):
        for i, op in enumerate(node.ops):
            new = COMPARE_SWAP.get(type(op))
            if new is not None:
                m = copy.deepcopy(node)
                m.ops[i] = new()
                self._add(node, m, "compare")
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        m = copy.deepcopy(node)
        m.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        self._add(node, m, "boolop")
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if isinstance(node.op, (ast.Not, ast.USub)):
            self._add(node, copy.deepcopy(node.operand), "unary")
        self.generic_visit(node)

    def visit_Constant(self, node):
        v = node.value
        if isinstance(v, bool):
            self._add(node, ast.Constant(value=not v), "const")
        elif isinstance(v, int):
            self._add(node, ast.Constant(value=v + 1), "const")
        elif isinstance(v, float):
            self._add(node, ast.Constant(value=v + 1.0), "const")

    def visit_Call(self, node):
        if isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
            m = copy.deepcopy(node)
            m.func.id = "max" if node.func.id == "min" else "min"
            self._add(node, m, "minmax")
        self.generic_visit(node)

    def visit_Return(self, node):
        v = node.value
        if v is not None and not (isinstance(v, ast.Constant) and v.value is None):
            self._add(v, ast.Constant(value=None), "return")
        self.generic_visit(node)

    def _drop(self, node):
        self._add(node, "pass", "drop")

    def visit_Expr(self, node):
        if isinstance(node.value, ast.Call):
            self._drop(node)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._drop(node)
        new = BINOP_SWAP.get(type(node.op))
        if new is not None:
            m = copy.deepcopy(node)
            m.op = new()
            self._add(node, m, "binop")
        self.generic_visit(node)

    def visit_Assign(self, node):
        if all(isinstance(t, (ast.Attribute, ast.Subscript)) for t in node.targets):
            self._drop(node)
        self.generic_visit(node)

    def visit_Raise(self, node):
        self._drop(node)
        self.generic_visit(node)

    def visit_Break(self, node):
        self._drop(node)

    def visit_Continue(self, node):
        self._drop(node)


def _byte_offsets(source: bytes) -> list[int]:
    starts, pos = [0], 0
    for line in source.splitlines(keepends=True):
        pos += len(line)
        starts.append(pos)
    return starts


def find_mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    finder = _Finder(source.splitlines())
    finder.visit(tree)
    out = []
    for node, repl, kind, func, jitted in finder.found:
        if isinstance(repl, str):
            after, new_text = repl, repl
        else:
            after = _short(repl)
            new_text = ast.unparse(repl)
            if not isinstance(node, ast.stmt):
                new_text = f"({new_text})"
        before = _short(node)
        out.append(Mutant(id=0, line=node.lineno, col=node.col_offset, kind=kind, before=before,
                          after=after, func=func, jitted=jitted,
                          span=(node.lineno, node.col_offset, node.end_lineno, node.end_col_offset),
                          new_text=new_text))
    out.sort(key=lambda m: (m.line, m.col, m.kind, m.after))
    for i, m in enumerate(out):
        m.id = i
    return out


def _comment_spans(source: bytes) -> list[tuple[int, int]]:
    """Byte ranges (start, end) of comment text after the '#', for keeping a file's size."""
    starts = _byte_offsets(source)
    lines = source.decode().splitlines(keepends=True)
    spans = []
    for tok in tokenize.tokenize(io.BytesIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.start[0] == tok.end[0] \
                and "noqa" not in tok.string and "pragma" not in tok.string:
            row, c0 = tok.start
            start = starts[row - 1] + len(lines[row - 1][:c0].encode()) + 1
            spans.append((start, start + len(tok.string[1:].encode())))
    return spans


def apply(source: bytes, m: Mutant, keep_size: bool) -> bytes | None:
    """The mutated file's bytes; None if it cannot be made (or, with keep_size, not at the same size)."""
    starts = _byte_offsets(source)
    l0, c0, l1, c1 = m.span
    a, b = starts[l0 - 1] + c0, starts[l1 - 1] + c1
    new = m.new_text.encode()
    out = source[:a] + new + source[b:]
    delta = len(out) - len(source)
    if keep_size and delta < 0:             # pad after the spliced text: spaces are harmless there
        out = source[:a] + new + b" " * (-delta) + source[b:]
    elif keep_size and delta > 0:           # trim the tail of the longest comment outside the splice
        spans = [(s, e) for s, e in _comment_spans(source) if e - s >= delta and (e <= a or s >= b)]
        if not spans:
            return None
        s, e = max(spans, key=lambda se: se[1] - se[0])
        trimmed = source[:e - delta] + source[e:]
        if e <= a:
            a, b = a - delta, b - delta
        out = trimmed[:a] + new + trimmed[b:]
    if keep_size and len(out) != len(source):
        return None
    try:
        compile(out, "<mutant>", "exec")
    except SyntaxError:
        return None
    return out


def expected_tree(source: str, m: Mutant) -> str:
    """ast.dump of the tree the mutant should give, to check that the splice gave it."""
    tree = ast.parse(source)
    finder = _Finder(source.splitlines())
    finder.visit(tree)
    for node, repl, kind, _func, _jit in finder.found:
        after = repl if isinstance(repl, str) else _short(repl)
        if (node.lineno, node.col_offset, node.end_lineno, node.end_col_offset) == m.span \
                and kind == m.kind and after == m.after:
            _replace(tree, node, ast.Pass() if isinstance(repl, str) else repl)
            return ast.dump(tree)
    raise LookupError(m)


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return
    raise LookupError(old)


def _tree_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if (ROOT / p).is_file()]


def _copy_tree(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    for rel in _tree_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)            # keeps mtimes: Numba's cache stays valid


def _run_tests(scratch: Path, tests: list[str], env: dict, timeout: float) -> tuple[str, float, str]:
    cmd = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider", "-n", "0"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "timeout", time.monotonic() - t0, ""
    dt = time.monotonic() - t0
    text = out.decode(errors="replace").strip().splitlines()
    last = text[-1] if text else ""
    return ("survived" if proc.returncode == 0 else "killed"), dt, f"rc={proc.returncode} {last}"[:200]


def _equivalent_keys(tests_dir: Path) -> list[str]:
    keys = []
    for path in sorted(tests_dir.glob("*.py")):
        for line in path.read_text().splitlines():
            if "equivalent mutant" in line:
                keys.append(line.split("equivalent mutant", 1)[1].strip(" :"))
    return keys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("module", help="the file to mutate, e.g. tinyml/sim/cost.py")
    p.add_argument("tests", nargs="*", help="the related test files to run per mutant")
    p.add_argument("--only", default="", help="comma-separated function names: mutate only inside these")
    p.add_argument("--sample", type=int, default=0, help="run a random sample of N mutants")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ids", default="", help="comma-separated mutant ids to run (see --list)")
    p.add_argument("--timeout", type=float, default=0.0, help="seconds per mutant (default: 3x baseline + 20)")
    p.add_argument("--json", default="", help="write the full report here")
    p.add_argument("--list", action="store_true", help="print the mutants and exit")
    p.add_argument("--scratch", default="", help="scratch folder (default: a fresh temporary one)")
    p.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                   help="auto: NUMBA_DISABLE_JIT=1 when a mutant lies in a jitted function; on: keep Numba "
                        "(the mutated file's kernels recompile per mutant); off: always disable it")
    p.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), f"tinyml-mutate-numba-{os.getuid()}"),
                   help="NUMBA_CACHE_DIR for the runs (reused across runs)")
    p.add_argument("--rerun", default="",
                   help="a JSON report of an earlier run: rerun only its survivors (with today's tests) and "
                        "report the whole set, the earlier kills kept")
    args = p.parse_args(argv)

    rel = Path(args.module).as_posix()
    source_bytes = (ROOT / rel).read_bytes()
    source = source_bytes.decode()
    mutants = find_mutants(source)
    if args.only:
        names = set(args.only.split(","))
        mutants = [m for m in mutants if names & set(m.func.split("."))]
    earlier: dict[int, dict] = {}
    if args.rerun:
        before = json.loads(Path(args.rerun).read_text())
        earlier = {r["id"]: r for r in before["results"]}
        by_id = {m.id: m for m in mutants}
        for i, r in earlier.items():            # the module must not have changed since
            if i not in by_id or (by_id[i].line, by_id[i].before, by_id[i].after) != (r["line"], r["before"], r["after"]):
                p.error(f"{args.rerun}: mutant #{i} is not the same in today's {rel}; run it afresh")
        args.ids = ",".join(str(i) for i, r in earlier.items() if r["status"] == "survived") or "-1"
        args.only, args.sample, args.seed = before["only"], before["sample"], before["seed"]
    if args.ids:
        wanted = {int(i) for i in args.ids.split(",")}
        mutants = [m for m in mutants if m.id in wanted]
    elif args.sample and args.sample < len(mutants):
        mutants = sorted(random.Random(args.seed).sample(mutants, args.sample), key=lambda m: m.id)

    if args.list:
        for m in mutants:
            print(f"{m.id:4d} {m.kind:8s} {m.key(rel)}  [{m.func or '<module>'}{', jitted' if m.jitted else ''}]")
        print(f"{len(mutants)} mutants")
        return 0
    if not args.tests:
        p.error("name the related test files to run (or use --list)")

    has_jit = "njit" in source or "numba.jit" in source
    no_jit = args.jit == "off" or (args.jit == "auto" and any(m.jitted for m in mutants))
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_DISABLE_JIT", "CI", "PYTHONPATH")}
    scratch_root = Path(args.scratch) if args.scratch else Path(tempfile.mkdtemp(prefix="tinyml-mutate-"))
    scratch = scratch_root / "tree"
    env.update(PYTHONPATH=str(scratch), PYTHONDONTWRITEBYTECODE="1", HYPOTHESIS_PROFILE="ci",
               NUMBA_CACHE_DIR=args.cache_dir)
    if no_jit:
        env["NUMBA_DISABLE_JIT"] = "1"
    print(f"{rel}: {len(mutants)} mutants; tests: {' '.join(args.tests)}; "
          f"{'NUMBA_DISABLE_JIT=1' if no_jit else 'Numba on'}", flush=True)

    _copy_tree(scratch)
    target = scratch / rel
    stat = target.stat()
    keep_size = has_jit and not no_jit          # for mutants outside jitted functions

    status, base_s, detail = _run_tests(scratch, args.tests, env, timeout=1800)
    if status != "survived":
        print(f"the unmutated tests do not pass in the copy ({detail}); fix that first", file=sys.stderr)
        return 2
    # a second run: the first one may have compiled kernels into the cache
    status, base_s, detail = _run_tests(scratch, args.tests, env, timeout=1800)
    timeout = args.timeout or 3 * base_s + 20
    print(f"baseline: tests pass in {base_s:.1f} s; timeout per mutant {timeout:.0f} s", flush=True)

    equivalents = _equivalent_keys(ROOT / "tests")
    t_start = time.monotonic()
    try:
        for n, m in enumerate(mutants, 1):
            mutated = apply(source_bytes, m, keep_size and not m.jitted)
            if mutated is not None:
                try:
                    ok = ast.dump(ast.parse(mutated)) == expected_tree(source, m)
                except (SyntaxError, LookupError):
                    ok = False
                if not ok:
                    mutated = None
            if mutated is None:
                m.status, m.detail = "invalid", "the splice did not give the intended tree"
            else:
                target.write_bytes(mutated)
                if keep_size and not m.jitted:          # Numba keeps this file's cached (unchanged) kernels
                    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
                elif m.jitted and not no_jit:           # a new stamp: Numba must recompile the mutated kernel
                    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + (m.id + 1) * 10 ** 9))
                m.status, m.seconds, m.detail = _run_tests(scratch, args.tests, env, timeout)
                target.write_bytes(source_bytes)
                os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
                if m.status == "survived" and any(m.key(rel) in k or k in m.key(rel) for k in equivalents if k):
                    m.status = "equivalent"
            print(f"[{n}/{len(mutants)}] {m.status:10s} #{m.id} {m.kind:7s} {m.key(rel)}  ({m.seconds:.1f} s)",
                  flush=True)
    finally:
        target.write_bytes(source_bytes)
        if not args.scratch:
            shutil.rmtree(scratch_root, ignore_errors=True)

    if earlier:                                 # the earlier run's other mutants, as they were
        rerun = {m.id for m in mutants}
        for i, r in sorted(earlier.items()):
            if i not in rerun:
                m = Mutant(**{k: v for k, v in r.items()})
                mutants.append(m)
        mutants.sort(key=lambda m: m.id)
    counts = {s: sum(m.status == s for m in mutants) for s in ("killed", "timeout", "survived", "equivalent", "invalid")}
    valid = len(mutants) - counts["invalid"]
    score = (counts["killed"] + counts["timeout"] + counts["equivalent"]) / valid if valid else 1.0
    print(f"\n{rel}: {valid} mutants: {counts['killed']} killed, {counts['timeout']} timed out, "
          f"{counts['survived']} survived, {counts['equivalent']} equivalent ({counts['invalid']} invalid, not counted); "
          f"score {100 * score:.1f}%  [{time.monotonic() - t_start:.0f} s]")
    for m in mutants:
        if m.status == "survived":
            print(f"  SURVIVED #{m.id} {m.kind:7s} {m.key(rel)}  [{m.func or '<module>'}]")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        report = {"module": rel, "tests": args.tests, "only": args.only, "sample": args.sample, "seed": args.seed,
                  "numba_disable_jit": no_jit, "baseline_s": base_s, "timeout_s": timeout,
                  "counts": counts, "mutants": valid, "score": score,
                  "results": [{k: v for k, v in asdict(m).items() if k not in ("span", "new_text")} for m in mutants]}
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
