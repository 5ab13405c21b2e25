"""MemoryPlan's numbers and text, pinned: what mutation testing (tools/mutate.py) found unpinned.

Each test builds a tiny graph whose plan is worked out by hand in the comments, then checks
the plan's public numbers (live bytes per point, LOAD, arena, the ratio, bytes outside the
arena), the binding checks at their edges (0, 1, the bound, the bound + 1), and the numbers
in ``explain()`` / ``table()`` line by line, not only that the text is there.
"""

from __future__ import annotations

import dataclasses

import pytest

from tinyml.compiler import BindingError, Graph
from tinyml.compiler.memory import arena_offsets
from tinyml.compiler.passes.plan_memory import build_plan
from tinyml.compiler.sizes import Poly

n = Poly.symbol("n")


def chain():
    """x -> a -> b -> c -> output, every value 8 x 32 fp32 = 1024 B: a [0, 1], b [1, 2], c [2, 3]."""
    g = Graph("chain", dtype="fp32")
    g.output(g.relu(g.gelu(g.tanh(g.relu(g.input("x", (8, 32)))))))
    return g


def small():
    """The same chain at 1 x 3 fp32 = 12 B per value (alignment then dominates the arena)."""
    g = Graph("small", dtype="fp32")
    g.output(g.relu(g.gelu(g.tanh(g.relu(g.input("x", (1, 3)))))))
    return g


def linear():
    """x (n x 4) -> a = relu(x) (16n B) [0, 1] -> b = a @ w (32n B) [1, 2] -> relu(b) (output, 32n B); w 4 x 8."""
    g = Graph("lin", dtype="fp32")
    x = g.input("x", ("n", 4))
    w = g.weight("w", (4, 8))
    g.output(g.relu(g.matmul(g.relu(x), w)))
    return g


def scores_then_rows():
    """t (768n B), s = t x^T (4n^2 B), p = softmax(s), o = p x: one placement refused at n = 1."""
    g = Graph("scores", dtype="fp32")
    x = g.input("x", ("n", 192))
    t = g.relu(x)
    s = g.matmul(t, g.transpose(x))
    p = g.softmax(s)
    o = g.matmul(p, x)
    g.output(g.relu(o))
    return g


# ---- numbers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbolic", [False, True])
def test_live_bytes_per_point_of_a_chain(symbolic):
    plan = build_plan(chain(), symbolic=symbolic)
    # point 0 writes a; 1 reads a, writes b; 2 reads b, writes c; 3 reads c (writes the output)
    assert plan.live_bytes() == [1024, 2048, 2048, 1024]
    assert plan.load_at() == 2048 == plan.load_bytes


def test_live_bytes_and_load_follow_n():
    plan = build_plan(linear(), {"n": 16}, symbolic=True)
    for x in (1, 7, 16):
        # a [0, 1] 16n, b [1, 2] 32n: live 16n, 48n, 32n
        assert plan.live_bytes({"n": x}) == [16 * x, 48 * x, 32 * x]
        assert plan.load_at({"n": x}) == 48 * x


def test_ratio_is_arena_over_load_and_one_without_intermediates():
    plan = build_plan(small(), alignment=256)
    # a at 0, b at align_up(12) = 256, c back at 0: arena 256 + 12 = 268, LOAD 2 * 12 = 24
    assert (plan.arena_bytes, plan.load_bytes) == (268, 24)
    assert plan.ratio == 268 / 24
    assert plan.summary() == {"arena_bytes": 268, "load_bytes": 24, "arena/load": 11.167}   # rounded to 3 places
    g = Graph("direct", dtype="fp32")
    g.output(g.relu(g.input("x", (2, 2))))
    empty = build_plan(g)
    assert empty.buffers == () and empty.load_bytes == 0 and empty.ratio == 1.0
    g = Graph("nothing", dtype="fp32")
    g.output(g.input("x", (2, 2)))                     # no node at all: no program point
    nothing = build_plan(g)
    assert nothing.points == () and nothing.live_bytes() == [] and nothing.load_at() == 0


def test_external_bytes_by_role_at_the_bound_and_at_bindings():
    plan = build_plan(linear(), {"n": 16}, symbolic=True)
    # x: 16n, w: 4 * 8 * 4 = 128, output relu(b): 32n
    assert plan.external_bytes() == {"input": 256, "weight": 128, "output": 512}
    assert plan.external_bytes({"n": 3}) == {"input": 48, "weight": 128, "output": 96}
    assert build_plan(chain()).external_bytes() == {"input": 1024, "weight": 0, "output": 1024}


def test_arena_at_concrete_is_the_bound_arena_symbolic_follows_n():
    conc = build_plan(linear(), {"n": 16}, alignment=1)
    assert conc.arena_at({"n": 1}) == conc.arena_at() == conc.arena_bytes == 48 * 16
    sym = build_plan(linear(), {"n": 16}, symbolic=True, alignment=1)
    assert str(sym.arena_expr) == "48*n"
    assert [sym.arena_at({"n": x}) for x in (1, 2, 16)] == [48, 96, 768]


def test_offsets_of_views_are_their_roots():
    g = Graph("view", dtype="fp32")
    x = g.input("x", (8, 32))
    a = g.relu(x)                                      # %0
    v = g.reshape(a, (32, 8))                          # %1: a view of %0
    b = g.tanh(x)                                      # %2
    g.output(g.add(g.reshape(g.relu(v), (8, 32)), b))
    for symbolic in (False, True):
        plan = build_plan(g, symbolic=symbolic)
        offs = plan.offsets_at()
        assert offs["1"] == offs["0"] and set(offs) == {"0", "1", "2", "3", "4"}
        assert arena_offsets(plan) == offs
        assert plan.buffer("%1") is plan.buffer("0") is plan.buffer("%0")    # a view finds its root


def test_buffer_lookup_by_name_with_or_without_percent():
    plan = build_plan(chain())
    assert plan.buffer("%1").name == "1" and plan.buffer("1").interval == (1, 2)
    assert plan.buffer("%2").interval == (2, 3)
    with pytest.raises(KeyError, match="%x is not an intermediate"):
        plan.buffer("%x")
    with pytest.raises(KeyError, match="%3 is not an intermediate"):
        plan.buffer("3")                                 # the output lives outside the arena


# ---- bindings at their edges -------------------------------------------------------------------------------


def test_bindings_accept_one_and_the_bound_and_refuse_zero_and_the_bound_plus_one():
    plan = build_plan(linear(), {"n": 16}, symbolic=True)
    assert plan.check_bindings(None) == {"n": 16}
    assert plan.check_bindings({"n": 1}) == {"n": 1}
    assert plan.check_bindings({"n": 16}) == {"n": 16}
    with pytest.raises(BindingError, match=r"must be an integer, got 16\.0"):
        plan.check_bindings({"n": 16.0})                                 # a float is never truncated
    with pytest.raises(BindingError, match=r"bindings\['n'\] must be an integer >= 1, got 0"):
        plan.check_bindings({"n": 0})                                    # the shared integer check
    with pytest.raises(BindingError, match=r"n=17 is outside 1\.\.16.*bounds=\{'n': 17\}"):
        plan.arena_at({"n": 17})
    with pytest.raises(BindingError, match=r"needs a value for symbol 'n'; pass bindings=\{'n': <1\.\.16>\}"):
        plan.live_bytes({"m": 3})


# ---- the text ---------------------------------------------------------------------------------------------------


def test_table_rows_concrete():
    plan = build_plan(small(), alignment=256)
    assert plan.table().splitlines() == [
        "  value    shape            size (bytes)       at bound  live          offset",
        "  %0       1 x 3            12                     12 B  [0, 1]             0",
        "  %1       1 x 3            12                     12 B  [1, 2]           256",
        "  %2       1 x 3            12                     12 B  [2, 3]             0",
    ]


def test_explain_concrete_numbers():
    lines = build_plan(small(), alignment=256).explain().splitlines()
    assert lines[0] == ("memory plan of 'small': 4 program points (nodes, op by op), greedy by size, "
                        "at fixed shapes, offsets aligned to 256 B")
    assert lines[1] == "  arena 268 B (268 B)   LOAD 24 B (24 B)   arena/LOAD 11.167"
    assert lines[2] == "  3 intermediates, 1 placed on bytes freed by an earlier one"
    assert lines[3] == "  outside the arena: inputs 12 B, weights 0 B, outputs 12 B"
    assert lines[4] == "" and lines[5:] == build_plan(small(), alignment=256).table().splitlines()
    assert str(build_plan(small(), alignment=256)) == "\n".join(lines)


def test_explain_symbolic_numbers_and_table_column():
    plan = build_plan(linear(), {"n": 16}, symbolic=True)
    lines = plan.explain().splitlines()
    assert lines[0] == ("memory plan of 'lin': 3 program points (nodes, op by op), greedy by size on symbolic "
                        "sizes (every placement proved), at n=16, offsets aligned to 256 B")
    # arena: b (32n = 512 B) at 0, a (16n) at align_up(32n + 255) = 768 at n = 16: 768 + 256 = 1 KiB
    assert lines[1] == "  arena 1 KiB (1,024 B)   LOAD 768 B (768 B)   arena/LOAD 1.333"
    assert lines[2] == ("  2 intermediates, 0 placed on bytes freed by an earlier one "
                        "(each fit proved for every value up to the bound)")
    assert lines[3] == "  outside the arena: inputs 256 B, weights 128 B, outputs 512 B"
    assert lines[5].endswith("offset  offset (symbolic)")
    assert lines[6].split() == ["%0", "n", "x", "4", "16*n", "256", "B", "[0,", "1]", "768", "32*n", "+", "255"]
    assert lines[7].split() == ["%1", "n", "x", "8", "32*n", "512", "B", "[1,", "2]", "0", "0"]
    assert lines[-1] == ("  arena <= 48*n + 510 bytes for every value up to the bound; "
                         "a buffer sits at align_up(offset(n))")
    assert "refused" not in plan.explain() and "views" not in plan.explain()


def test_explain_symbolic_without_an_arena_bound():
    plan = dataclasses.replace(build_plan(linear(), {"n": 16}, symbolic=True), arena_expr=None)
    assert plan.explain().splitlines()[-1] == (
        "  no single buffer provably ends last: arena(n) = the highest end at n; "
        "a buffer sits at align_up(offset(n))")
    assert plan.to_dict()["arena_expr"] is None


def test_explain_lists_views():
    g = Graph("view", dtype="fp32")
    a = g.relu(g.input("x", (8, 32)))
    g.output(g.relu(g.reshape(a, (32, 8))))
    text = build_plan(g).explain()
    assert text.splitlines()[-1] == "  views (no bytes of their own): %1 -> %0"
    assert "views" not in build_plan(chain()).explain()


def refusals_explained(count: int) -> list[str]:
    plan = build_plan(scores_then_rows(), {"n": 1024}, symbolic=True, alignment=1)
    (r,) = plan.refusals
    many = dataclasses.replace(plan, refusals=(r,) * count)
    return many.explain().splitlines()


def test_explain_lists_refusals_up_to_eight():
    lines = refusals_explained(1)
    i = lines.index("  1 placement(s) fitted at the bound but were refused, the proof failed:")
    assert lines[i + 1:] == ["    %4 (768*n B) at offset 0: collides with %3 (4*n^2 B) at n=1"]
    lines = refusals_explained(8)
    i = lines.index("  8 placement(s) fitted at the bound but were refused, the proof failed:")
    assert len(lines[i + 1:]) == 8 and not any("more" in x for x in lines)


@pytest.mark.parametrize("count", [9, 11])
def test_explain_cuts_refusals_after_eight(count):
    lines = refusals_explained(count)
    i = lines.index(f"  {count} placement(s) fitted at the bound but were refused, the proof failed:")
    assert lines[i + 1:i + 9] == ["    %4 (768*n B) at offset 0: collides with %3 (4*n^2 B) at n=1"] * 8
    assert lines[i + 9:] == [f"    ... and {count - 8} more"]


def test_to_dict_concrete_has_no_expressions():
    d = build_plan(small(), alignment=256).to_dict()
    assert d["arena_expr"] is None and d["mode"] == "concrete" and d["ratio"] == 268 / 24
    assert [b["offset_expr"] for b in d["buffers"]] == [None, None, None]
    assert [b["offset"] for b in d["buffers"]] == [0, 256, 0]
    assert [b["interval"] for b in d["buffers"]] == [[0, 1], [1, 2], [2, 3]]
    d = build_plan(linear(), {"n": 16}, symbolic=True).to_dict()
    assert [b["offset_expr"] for b in d["buffers"]] == ["32*n + 255", "0"] and d["arena_expr"] == "48*n + 510"


def test_pictures_are_returned():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = build_plan(chain())
    assert plan.draw() is not None and plan.draw_liveness() is not None
    svg = plan.svg()
    assert isinstance(svg, str) and "<svg" in svg
    plt.close("all")
