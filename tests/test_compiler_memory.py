"""Static memory planning: liveness, greedy-by-size arena, LOAD, symbolic plans with proved reuse.

The backbone is a *memory simulator written in this file*, independent of the
planner: it walks the launches of a graph, stamps every byte a launch writes
with the value's name, and checks that every value a launch reads still
carries its own stamp, before and after the launch writes (a kernel reads
while it writes). A plan that lets two live values share a byte, or an
interval that ends too early, fails it. LOAD is recomputed here from the
graph, not taken from the planner.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies_graph import random_graphs
from tinyml.compiler import BindingError, Graph, Node, cse, fuse, rewrite_attention, run_passes, zoo
from tinyml.compiler.memory import MemoryPlanError, MissingBoundError, arena_offsets, liveness
from tinyml.compiler.memory.greedy import greedy_by_size
from tinyml.compiler.passes.plan_memory import build_plan, plan_memory
from tinyml.compiler.sizes import Poly
from tinyml.compiler.validate import group_io
from tinyml.sim.errors import TinymlError

n = Poly.symbol("n")


# ---- an independent memory simulator ----------------------------------------------------------------


def launches(graph, fused: bool) -> list:
    """(reads, writes) per launch: a fused group, or one node."""
    groups = [list(grp.nodes) for grp in graph.groups] if fused else [[x.name] for x in graph.nodes]
    out = []
    for members in groups:
        reads, writes = group_io(graph, members)
        out.append((reads, writes or (members[-1],)))
    return out


def nbytes(graph, name, bindings) -> int:
    return graph.type_of(name).nbytes.evaluate(bindings)


def check_views(graph, plan) -> None:
    """A view is a layout op (not a graph output) over the value it aliases, through layout ops."""
    for v, root in plan.aliases.items():
        node = graph.node(v)
        assert node is not None and node.op in ("reshape", "transpose", "slice") and v not in graph.outputs
        src = node.inputs[0]
        while src != root and src not in plan.aliases and graph.node(src) is not None \
                and graph.node(src).op in ("reshape", "transpose", "slice"):
            src = graph.node(src).inputs[0]
        assert plan.aliases.get(src, src) == root
        assert root not in plan.aliases


def simulate(graph, plan, bindings, fused: bool) -> int:
    """Run the plan's placement at ``bindings``; assert no live value is clobbered. Returns LOAD."""
    check_views(graph, plan)
    external = set(graph.inputs) | set(graph.weights) | set(graph.outputs)
    root = lambda v: plan.aliases.get(v, v)                                    # noqa: E731
    offs = arena_offsets(plan, bindings)
    size = plan.arena_at(bindings)
    owner = np.full(size, -1, dtype=np.int32)
    ids: dict = {}
    steps = launches(graph, fused)
    last: dict = {}
    first: dict = {}
    for p, (reads, writes) in enumerate(steps):
        for w in writes:
            first.setdefault(root(w), p)
        for r in reads:
            last[root(r)] = p
    planned = {root(w) for _, writes in steps for w in writes if root(w) not in external}
    assert planned == {b.name for b in plan.buffers}, "the arena must hold exactly the intermediates"

    def check(values):
        for r in values:
            if root(r) in external:
                continue
            o, s = offs[r], nbytes(graph, r, bindings)
            assert o % plan.alignment == 0
            assert o + s <= size, f"%{r} at {o}+{s} runs past the arena ({size} B)"
            held = owner[o:o + s]
            # every byte still carries r's stamp (compared in NumPy: a GPT-2 block at n = 1024 has
            # values of tens of MB, too many bytes for a Python set; the set is built only to say why)
            assert s > 0 and (held == ids[root(r)]).all(), \
                f"%{r} was overwritten (bytes now hold {set(np.unique(held).tolist())})"

    for p, (reads, writes) in enumerate(steps):
        check(reads)
        for w in writes:
            if root(w) in external or w in plan.aliases:
                continue
            ids.setdefault(w, len(ids))
            o, s = offs[w], nbytes(graph, w, bindings)
            owner[o:o + s] = ids[w]
        check(reads)
        check(writes)
    live = [sum(nbytes(graph, v, bindings) for v in planned if first[v] <= p <= max(first[v], last.get(v, -1)))
            for p in range(len(steps))]
    return max(live, default=0)


def check_plan(graph, plan, bindings, fused):
    load = simulate(graph, plan, bindings, fused)
    assert plan.load_at(bindings) == load
    assert plan.arena_at(bindings) >= load
    assert all(o % plan.alignment == 0 for o in arena_offsets(plan, bindings).values())
    return load


# ---- properties on random graphs ------------------------------------------------------------------------


@given(case=random_graphs(), fused=st.booleans(), alignment=st.sampled_from((1, 8, 256)),
       bound=st.integers(1, 12), data=st.data())
def test_concrete_plan_is_safe_at_every_n_up_to_the_bound(case, fused, alignment, bound, data):
    g, _, _ = case
    g = fuse(g) if fused else g
    plan = build_plan(g, {"n": bound}, alignment=alignment)
    # a graph without nodes (outputs are inputs) fuses to no groups: nothing marks it fused, and with
    # no program point the two plans are the same (the deep profile found this case)
    assert plan.mode == "concrete" and plan.fused == (fused and bool(g.nodes))
    load = check_plan(g, plan, {"n": bound}, fused)
    assert plan.load_bytes == load and plan.arena_bytes >= plan.load_bytes
    assert plan.ratio >= 1.0
    check_plan(g, plan, {"n": data.draw(st.integers(1, bound), label="n")}, fused)


@given(case=random_graphs(), fused=st.booleans(), alignment=st.sampled_from((1, 8, 256)),
       bound=st.integers(1, 64), data=st.data())
def test_symbolic_plan_is_safe_at_random_n(case, fused, alignment, bound, data):
    g, _, _ = case
    g = fuse(g) if fused else g
    plan = build_plan(g, {"n": bound}, symbolic=True, alignment=alignment)
    assert plan.mode == "symbolic"
    for x in data.draw(st.lists(st.integers(1, bound), min_size=1, max_size=4), label="ns"):
        check_plan(g, plan, {"n": x}, fused)
    check_plan(g, plan, {"n": bound}, fused)
    # every placement is proved: buffers live at the same point never share a byte, at any n
    bufs = plan.buffers
    for x in range(1, bound + 1):
        offs = arena_offsets(plan, {"n": x})
        for i, a in enumerate(bufs):
            for b in bufs[:i]:
                if a.start <= b.end and b.start <= a.end:
                    ea, eb = offs[a.name] + a.size.evaluate({"n": x}), offs[b.name] + b.size.evaluate({"n": x})
                    assert ea <= offs[b.name] or eb <= offs[a.name], (a.name, b.name, x)


@given(sizes=st.lists(st.integers(1, 3000), min_size=0, max_size=12), data=st.data(),
       alignment=st.sampled_from((1, 16, 256)))
def test_greedy_by_size_never_overlaps_live_buffers(sizes, data, alignment):
    ivs = [tuple(sorted(data.draw(st.tuples(st.integers(0, 8), st.integers(0, 8))))) for _ in sizes]
    offsets, arena = greedy_by_size(sizes, ivs, alignment)
    load = max((sum(s for s, (a, b) in zip(sizes, ivs) if a <= p <= b) for p in range(9)), default=0)
    assert arena >= load
    for i in range(len(sizes)):
        assert offsets[i] % alignment == 0 and offsets[i] + sizes[i] <= arena
        for j in range(i):
            if ivs[i][0] <= ivs[j][1] and ivs[j][0] <= ivs[i][1]:
                assert offsets[i] + sizes[i] <= offsets[j] or offsets[j] + sizes[j] <= offsets[i]


# ---- small graphs, planned by hand ------------------------------------------------------------------------


def chain():
    """x -> a -> b -> c -> d (output), every value 8 x 32 fp32 = 1024 bytes."""
    g = Graph("chain", dtype="fp32")
    a = g.relu(g.input("x", (8, 32)))
    b = g.tanh(a)
    c = g.gelu(b)
    g.output(g.relu(c))
    return g


def diamond():
    """a feeds b and c, which meet in d: at c's launch a, b and c are all live."""
    g = Graph("diamond", dtype="fp32")
    a = g.relu(g.input("x", (8, 32)))        # point 0
    b = g.tanh(a)                            # point 1
    c = g.gelu(a)                            # point 2: a, b, c live
    d = g.add(b, c)                          # point 3
    g.output(g.relu(d))                      # point 4
    return g


@pytest.mark.parametrize("symbolic", [False, True])
def test_chain_needs_two_buffers(symbolic):
    plan = build_plan(chain(), symbolic=symbolic)
    assert [b.interval for b in plan.buffers] == [(0, 1), (1, 2), (2, 3)]
    assert plan.load_bytes == 2 * 1024 and plan.arena_bytes == 2 * 1024
    assert plan.ratio == 1.0 and plan.reuses == 1
    offs = arena_offsets(plan)
    assert offs["0"] == offs["2"] != offs["1"]


@pytest.mark.parametrize("symbolic", [False, True])
def test_diamond_needs_three_buffers(symbolic):
    plan = build_plan(diamond(), symbolic=symbolic)
    assert [b.interval for b in plan.buffers] == [(0, 2), (1, 3), (2, 3), (3, 4)]
    assert plan.load_bytes == 3 * 1024 and plan.arena_bytes == 3 * 1024
    assert len(set(arena_offsets(plan).values())) == 3


def test_alignment_pads_offsets_not_sizes():
    g = Graph("small", dtype="fp32")                 # every value 1 x 3 fp32 = 12 bytes
    g.output(g.relu(g.gelu(g.tanh(g.relu(g.input("x", (1, 3)))))))
    plan = build_plan(g, alignment=256)
    # a [0,1] at 0; b [1,2] after a at align_up(12) = 256; c [2,3] back at 0
    assert [b.offset for b in plan.buffers] == [0, 256, 0]
    assert plan.arena_bytes == 256 + 12 and plan.load_bytes == 24
    assert build_plan(g, alignment=4).arena_bytes == 24


def test_fused_chain_has_no_intermediates():
    plan = build_plan(fuse(chain()))
    assert plan.fused and len(plan.points) == 1
    assert plan.buffers == () and plan.arena_bytes == 0 and plan.load_bytes == 0 and plan.ratio == 1.0
    roles = {x.name: x.role for x in plan.externals}
    assert roles == {"x": "input", "3": "output"}


def test_views_alias_their_input_and_extend_its_life():
    g = Graph("view", dtype="fp32")
    x = g.input("x", (8, 32))
    a = g.relu(x)                                      # point 0
    v = g.reshape(a, (32, 8))                          # point 1: a view of a
    b = g.tanh(x)                                      # point 2
    c = g.relu(v)                                      # point 3: reads a's bytes
    g.output(g.add(g.reshape(c, (8, 32)), b))          # points 4 (view of c), 5
    plan = build_plan(g)
    assert plan.aliases == {"1": "0", "4": "3"}
    assert {b.name: b.interval for b in plan.buffers} == {"0": (0, 3), "2": (2, 5), "3": (3, 5)}
    offs = arena_offsets(plan)
    assert offs["1"] == offs["0"] and offs["4"] == offs["3"]
    assert plan.load_bytes == 3 * 1024 == plan.arena_bytes
    check_plan(g, plan, {}, fused=False)


def test_a_reshaped_output_is_its_own_tensor():
    g = Graph("out", dtype="fp32")
    a = g.relu(g.input("x", (8, 32)))
    g.output(g.reshape(a, (256,)))
    plan = build_plan(g)
    assert plan.aliases == {} and [b.name for b in plan.buffers] == ["0"]
    assert {x.name for x in plan.externals if x.role == "output"} == {"1"}


# ---- symbolic sizes and proved reuse ------------------------------------------------------------------------


def widen_narrow():
    """a (n x 3, 12n B) -> b = [a a] (24n) -> c (24n) -> d = c[:, :3] (12n) -> output."""
    g = Graph("widen", dtype="fp32")
    a = g.relu(g.input("x", ("n", 3)))               # [0, 1]
    b = g.concat([a, a], axis=1)                     # [1, 2]
    c = g.tanh(b)                                    # [2, 3]
    d = g.slice(c, 1, 0, 3)                          # [3, 4]
    g.output(g.relu(d))
    return g


def test_reuse_of_bytes_freed_by_a_larger_buffer_is_proved():
    plan = build_plan(widen_narrow(), {"n": 4096}, symbolic=True, alignment=1)
    by = {b.name: b for b in plan.buffers}
    assert [str(by[k].size) for k in "0123"] == ["12*n", "24*n", "24*n", "12*n"]
    # b at 0, c on top of it (24 n); a (12 n <= 24 n for every n) where c will be, d where b was
    assert [str(by[k].offset_expr) for k in "1203"] == ["0", "24*n", "24*n", "0"]
    assert plan.reuses == 2 and plan.refusals == ()
    assert plan.arena_expr == 48 * n
    for x in (1, 5, 4096):
        assert plan.arena_at({"n": x}) == plan.load_at({"n": x}) == 48 * x
        check_plan(widen_narrow(), plan, {"n": x}, fused=False)


def scores_then_rows():
    """t (n x 192, 768n B), s = t x^T (n x n, 4n^2 B), p = softmax(s), o = p x (768n B)."""
    g = Graph("scores", dtype="fp32")
    x = g.input("x", ("n", 192))
    t = g.relu(x)                                    # %0 [0, 2]
    s = g.matmul(t, g.transpose(x))                  # %1 is a view of x (read transposed); %2 [2, 3]
    p = g.softmax(s)                                 # %3 [3, 4]
    o = g.matmul(p, x)                               # %4 [4, 5]
    g.output(g.relu(o))
    return g


def test_reuse_is_refused_when_it_fails_for_small_n():
    plan = build_plan(scores_then_rows(), {"n": 1024}, symbolic=True, alignment=1)
    by = {b.name: b for b in plan.buffers}
    assert plan.aliases == {"1": "x"}
    assert {k: str(b.size) for k, b in by.items()} == {"0": "768*n", "2": "4*n^2", "3": "4*n^2", "4": "768*n"}
    # s at 0, p on top (4 n^2), t beside p's bytes (p is not live yet); o would fit where s was at
    # n = 1024 (768 n <= 4 n^2 from n = 192 on) but not at n = 1: it goes on top of p
    assert [str(by[k].offset_expr) for k in "2304"] == ["0", "4*n^2", "4*n^2", "8*n^2"]
    assert [(r.value, str(r.offset), r.blocker, r.at) for r in plan.refusals] == [("4", "0", "3", {"n": 1})]
    assert plan.reuses == 1
    assert "collides with %3 (4*n^2 B) at n=1" in plan.explain()
    assert (768 * n).counterexample(4 * n * n, {"n": 1024}) == {"n": 1}
    assert (12 * n).le_for_all(2 * n * 12, {"n": 1024}) and not (2 * n * 12).le_for_all(12 * n, {"n": 1024})


def test_concrete_plan_reuses_at_the_bound_what_symbolic_cannot_prove():
    g = scores_then_rows()
    conc = build_plan(g, {"n": 1024}, alignment=1)
    sym = build_plan(g, {"n": 1024}, symbolic=True, alignment=1)
    assert conc.arena_bytes == conc.load_bytes == 2 * 4 * 1024 ** 2          # s and p side by side
    assert sym.arena_bytes == 2 * 4 * 1024 ** 2 + 768 * 1024                  # plus o, on top of p
    for x in (1, 3, 191, 192, 1024):
        check_plan(g, conc, {"n": x}, fused=False)
        check_plan(g, sym, {"n": x}, fused=False)


def test_symbolic_offsets_are_aligned_polynomials():
    g = widen_narrow()
    plan = build_plan(g, {"n": 100}, symbolic=True, alignment=256)
    # 24 n is not a multiple of 256 for every n: it enters offsets padded by 255 bytes
    assert [str(b.offset_expr) for b in plan.buffers] == ["24*n + 255", "0", "24*n + 255", "0"]
    assert arena_offsets(plan, {"n": 3}) == {"0": 512, "1": 0, "2": 512, "3": 0}      # align_up(72 + 255)
    assert arena_offsets(plan, {"n": 32}) == {"0": 1024, "1": 0, "2": 1024, "3": 0}   # align_up(768 + 255)
    check_plan(g, plan, {"n": 3}, fused=False)


def test_a_size_that_shrinks_with_n_needs_the_symbolic_planner():
    g = Graph("shrink", dtype="fp32")
    a = g.slice(g.input("x", (10, 4)), 0, "n", 10)    # (10 - n) x 4: 160 - 16n bytes
    g.output(g.relu(g.tanh(a)))
    with pytest.raises(MemoryPlanError, match=r"%0 has -16\*n \+ 160 bytes, more at n=1.*symbolic=True"):
        build_plan(g, {"n": 9})
    plan = build_plan(g, {"n": 9}, symbolic=True)
    for x in range(1, 10):
        check_plan(g, plan, {"n": x}, fused=False)
    with pytest.raises(MemoryPlanError, match=r"dimension -n \+ 10 of %\d+ is 0 at n=10.*lower the bound"):
        build_plan(g, {"n": 10}, symbolic=True)


# ---- errors -----------------------------------------------------------------------------------------------


def test_missing_bound_names_the_symbol_and_the_values():
    with pytest.raises(MissingBoundError, match=r"symbol 'n' has no upper bound.*%x \(12\*n B\).*bounds="):
        build_plan(widen_narrow())
    with pytest.raises(BindingError):
        build_plan(widen_narrow(), {"m": 3})
    assert build_plan(widen_narrow(), 7).bounds == {"n": 7}                   # one int bounds every symbol


def test_untyped_graph_is_refused():
    g = Graph("untyped", dtype="fp32")
    g.input("x", (4, 4))
    g.nodes.append(Node("0", "relu", ("x",)))
    g.outputs.append("0")
    with pytest.raises(MemoryPlanError, match=r"not shape-inferred: %0 = relu\(\.\.\.\).*infer_shapes"):
        build_plan(g)


@pytest.mark.parametrize("alignment", [0, -256, 1.5, True])
def test_bad_alignment(alignment):
    with pytest.raises(MemoryPlanError, match="alignment"):
        build_plan(chain(), alignment=alignment)


def test_bindings_outside_the_bounds():
    plan = build_plan(widen_narrow(), {"n": 64}, symbolic=True)
    with pytest.raises(BindingError, match=r"n=65 is outside 1..64.*bounds=\{'n': 65\}"):
        arena_offsets(plan, {"n": 65})
    with pytest.raises(BindingError, match="needs a value for symbol 'n'"):
        plan.arena_at({})
    assert issubclass(MissingBoundError, TinymlError) and issubclass(MemoryPlanError, TinymlError)


def test_fused_true_on_an_unfused_graph():
    with pytest.raises(MemoryPlanError, match="run the 'fuse' pass"):
        build_plan(chain(), fused=True)


# ---- the pass, the zoo ------------------------------------------------------------------------------------


def test_plan_memory_is_a_pass_that_attaches_the_plan():
    g = fuse(chain())
    before = str(g)
    out = run_passes(g, [functools.partial(plan_memory, bounds={"n": 8})]).graph
    assert str(g) == before and not hasattr(g, "memory_plan")
    assert str(out) == before and out.memory_plan.graph_name == "chain"
    assert set(out.memory_plan.summary()) == {"arena_bytes", "load_bytes", "arena/load"}


def gpt2(fused):
    g = zoo.get("gpt2_block")
    return fuse(rewrite_attention(cse(g))) if fused else g


#: greedy by size at the bound: within 20% of LOAD (Pisarchyk & Lee measure it within a few
#: percent of LOAD on real networks; here it lands on LOAD). The symbolic planner may not reuse
#: bytes across sizes that compare only for large n (768n vs 12n^2: a proof for every n fails
#: at n = 1), so it gets 50% (the zoo today: at most 1.35, tiny_gpt small op by op, n <= 64).
RATIO = {False: 1.2, True: 1.5}


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("symbolic", [False, True])
def test_gpt2_block_at_n_up_to_1024(fused, symbolic):
    g = gpt2(fused)
    plan = build_plan(g, {"n": 1024}, symbolic=symbolic)
    assert 1.0 <= plan.ratio <= RATIO[symbolic]
    for x in (1, 77, 1024):
        check_plan(g, plan, {"n": x}, fused)
    # LOAD by hand, fused: the largest point is the MLP up-projection: it reads h = ln_2(x1) (n x 768)
    # and writes gelu(h w_fc + b) (n x 3072) while the residual x1 (n x 768) waits for the last add:
    # (768 + 3072 + 768) n fp16 elements, 2 bytes each
    if fused:
        assert plan.load_bytes == max(plan.live_bytes()) == 2 * (768 + 3072 + 768) * 1024


def test_tiny_gpt_small():
    g = zoo.get("tiny_gpt", layers=2, vocab=64, d_model=32, n_heads=4, n_ctx=64)
    for fused in (False, True):
        gg = fuse(rewrite_attention(cse(g))) if fused else g
        for symbolic in (False, True):
            plan = build_plan(gg, {"n": 64}, symbolic=symbolic)
            assert 1.0 <= plan.ratio <= RATIO[symbolic]
            for x in (1, 13, 64):
                check_plan(gg, plan, {"n": x}, fused)


def test_explain_and_to_dict():
    plan = build_plan(gpt2(True), {"n": 1024}, symbolic=True)
    text = plan.explain()
    assert "arena/LOAD" in text and "offset (symbolic)" in text and "1536*n" in text
    d = plan.to_dict()
    assert d["arena_bytes"] == plan.arena_bytes and len(d["buffers"]) == len(plan.buffers)
    lv = liveness(gpt2(True))
    assert lv.fused and len(lv.points) == len(gpt2(True).groups)


# ---- pictures -----------------------------------------------------------------------------------------------


def test_drawings():
    pytest.importorskip("matplotlib")
    from matplotlib.patches import Rectangle

    plan = build_plan(diamond())
    fig = plan.draw()
    rects = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert len(rects) == len(plan.buffers) == 4
    for r, b in zip(rects, plan.buffers):                      # x: the interval; y: offset, size (KiB here)
        assert r.get_x() == pytest.approx(b.start - 0.42) and r.get_width() == pytest.approx(b.end - b.start + 0.84)
    fig = plan.draw_liveness()
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == pytest.approx([v / 1024 for v in plan.live_bytes()])
    svg = build_plan(widen_narrow(), {"n": 64}, symbolic=True).svg({"n": 9})
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg


def test_a_graph_without_nodes_plans_empty_fused_or_not():
    """Outputs that are inputs: no launch, no program point, an empty arena; asking for the fused
    plan is not an error ("run the fuse pass first" would send the user after nothing)."""
    g = Graph("identity", dtype="fp32")
    x = g.input("x", (1, 3))
    g.output(x)
    for graph in (g, fuse(g)):
        for fused in (None, False, True):
            plan = build_plan(graph, {}, fused=fused)
            assert (plan.points, plan.buffers, plan.arena_bytes, plan.load_bytes) == ((), (), 0, 0)
            assert plan.fused is bool(fused)
    with pytest.raises(MemoryPlanError, match="has no fused groups"):
        build_plan(_one_relu(), {}, fused=True)                     # a node, not fused: refused


def _one_relu():
    g = Graph("one", dtype="fp32")
    g.output(g.relu(g.input("x", (1, 3))))
    return g
