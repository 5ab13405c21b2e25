"""Symbolic dimensions at their edges (pinned by mutation testing, tools/mutate.py).

Every public helper of tinyml.compiler.symbolic checked against integer arithmetic:
exact division, solving for the one symbol, printing inside a shape, the collapse of a
symbol-free expression to an ``int``, and the refusals with what they say.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinyml.compiler import Affine, BindingError, SymbolicError, dim, sym
from tinyml.compiler.symbolic import dim_str, evaluate, parse, solve, symbols_of

n, m = sym("n"), sym("m")

# Equivalent mutants (tools/mutate.py counts them as such):
#
# equivalent mutant tinyml/compiler/symbolic.py:139: c > 0 -> c >= 0
# equivalent mutant tinyml/compiler/symbolic.py:141: c > 0 -> c >= 0
#   __str__ picks the sign of each term's coefficient, and a term never has coefficient 0: the
#   constructor drops zero coefficients (test_zero_coefficients_are_dropped... pins that).
# equivalent mutant tinyml/compiler/symbolic.py:143: self.const > 0 -> self.const >= 0
#   inside ``if self.const:``: a constant of 0 never reaches the sign test.
# equivalent mutant tinyml/compiler/symbolic.py:199: 1 -> 2
#   parse's ``sign = 1`` after a term: the next piece is an operator with expect_term False, which
#   sets sign afresh (1 or -1), or the end of the text; the reset value is never read.


def test_zero_coefficients_are_dropped_and_constants_collapse_to_int():
    e = Affine({"n": 0, "m": 2}, 3)
    assert e.terms == (("m", 2),) and e.const == 3 and e.symbols == {"m"}
    assert Affine({"n": 1, "m": 1}).terms == (("m", 1), ("n", 1))            # sorted by name
    z = (n + 5) - n
    assert z == 5 and type(z) is int
    assert (2 * n) * 0 == 0 and type((2 * n) * 0) is int
    assert -(n - 3) == 3 - n and str(-(n - 3)) == "-n + 3"


def test_reflected_arithmetic():
    assert 10 - n == Affine({"n": -1}, 10) and (10 - n).evaluate({"n": 4}) == 6
    assert 3 + n == n + 3 and 3 * n == n * 3
    assert n - np.int64(2) == n - 2
    with pytest.raises(TypeError):
        n + 1.5
    with pytest.raises(TypeError):
        n - 1.5
    with pytest.raises(TypeError):
        1.5 - n
    with pytest.raises(TypeError):
        n * 1.5


def test_bool_is_not_a_dimension():
    with pytest.raises(TypeError):
        n + True
    with pytest.raises(SymbolicError, match="a dimension is an int"):
        dim(True)
    assert dim(np.int32(7)) == 7 and type(dim(np.int32(7))) is int


def test_immutable():
    with pytest.raises(AttributeError, match="immutable"):
        n.const = 3


def test_exact_div():
    assert (6 * n + 4).exact_div(2) == 3 * n + 2
    assert (6 * n + 3).exact_div(2) is None                  # the constant does not divide
    assert (3 * n + 4).exact_div(2) is None                  # a coefficient does not divide
    assert (4 * n).exact_div(4) == n
    assert (4 * n + 8).exact_div(4) == n + 2
    # integer coefficients and constant, not floats that compare equal: the text shows them
    q = (6 * n + 4).exact_div(2)
    assert str(q) == "3*n + 2" and all(type(c) is int for _, c in q.terms) and type(q.const) is int
    big = 2 ** 60 + 2                                        # exact in integers, not in a float64 division
    q = (big * n + big).exact_div(2)
    assert q.terms == (("n", 2 ** 59 + 1),) and q.const == 2 ** 59 + 1


@given(a=st.integers(-6, 6).filter(bool), c=st.integers(-20, 20), k=st.integers(1, 6), nv=st.integers(1, 50))
def test_exact_div_matches_integers(a, c, k, nv):
    q = (a * n + c).exact_div(k)
    if a % k == 0 and c % k == 0:
        assert evaluate(q, {"n": nv}) * k == a * nv + c
    else:
        assert q is None


def test_evaluate_and_missing_binding_message():
    assert (3 * n - 2 * m + 1).evaluate({"n": 5, "m": 2}) == 12
    assert evaluate(7, {}) == 7 and evaluate(n + 1, {"n": 1}) == 2
    with pytest.raises(BindingError, match=r"symbol 'm' of the dimension m \+ n has no binding; "
                                           r"pass bindings=\{'m': <int>\}"):
        (n + m).evaluate({"n": 1})


def test_symbols_of():
    assert symbols_of(n + 2 * m) == {"n", "m"} and symbols_of(12) == frozenset()


def test_printing_signs_and_magnitudes():
    assert str(n) == "n" and str(-n) == "-n" and str(2 * n) == "2*n" and str(-2 * n) == "-2*n"
    assert str(n - 2 * m) == "-2*m + n" and str(m - n) == "m - n" and str(m + n) == "m + n"
    assert str(n + 1) == "n + 1" and str(n - 1) == "n - 1"
    assert repr(2 * n - 1) == "Affine('2*n - 1')"


def test_dim_str_parenthesises_all_but_atoms():
    assert (n.is_atom, (3 * n).is_atom, (n + 1).is_atom, (n + m).is_atom) == (True, True, False, False)
    assert dim_str(n) == "n" and dim_str(3 * n) == "3*n" and dim_str(768) == "768"
    assert dim_str(n + 1) == "(n + 1)" and dim_str(n + m) == "(m + n)"


def test_solve_for_the_one_symbol():
    assert solve(n, 1) == ("n", 1)
    assert solve(3 * n - 2, 10) == ("n", 4)
    assert solve(3 * n - 2, 11) is None                       # 13 / 3 is not an integer
    assert solve(-n + 10, 4) == ("n", 6)
    assert solve(2 * n + 1, 1) == ("n", 0)                    # the arithmetic answer, the caller checks n >= 1
    assert solve(n + m, 5) is None


def test_sym_refuses_non_identifiers():
    for bad in ("", "2n", "n-1", "a b", 3, None):
        with pytest.raises(SymbolicError, match="a symbol name must be an identifier"):
            sym(bad)
    assert sym("seq_len2").terms == (("seq_len2", 1),)


@pytest.mark.parametrize("text, expect", [("-n", -n), ("- -n", n), ("n - -1", n + 1), ("3 * n", 3 * n),
                                          ("n * 3 + 2", 3 * n + 2), ("10 - 2*n - 3", 7 - 2 * n),
                                          ("m + n - m", n), ("0", 0), ("+n", n)])
def test_parse_signs(text, expect):
    assert parse(text) == expect and dim(text) == expect


@pytest.mark.parametrize("bad, message", [("   ", "empty dimension string"),
                                          ("n -", "it ends with an operator"),
                                          ("n n", "'n n' is not a term"),
                                          ("2*n 3", "'2\\*n 3' is not a term")])
def test_parse_refusals_say_what(bad, message):
    with pytest.raises(SymbolicError, match=message):
        parse(bad)


def test_dim_passes_affine_through_and_refuses_other_types():
    e = 2 * n
    assert dim(e) is e
    with pytest.raises(SymbolicError, match=r"got 1\.5"):
        dim(1.5)


def test_equality_and_hash():
    assert n + 1 != n + 2 and n + 1 != m + 1 and (n == "n") is False
    assert len({n + 1, 1 + n, Affine({"n": 1}, 1)}) == 1
