"""The scheme interface at its edges (pinned by mutation testing, tools/mutate.py): the
numbers in the fp16-overflow message, the layout of per-row and grouped schemes by hand,
bits per weight with and without a minimum, and the limits of what ``check()`` accepts."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml.kernels.quant import Scheme, SchemeDefinitionError, ScaleOverflowError, get_scheme, quantize
from tinyml.kernels.quant.scheme import FP16_MAX, Layout, to_fp16

F32 = np.float32

# Equivalent mutants (tools/mutate.py counts them as such):
#
# equivalent mutant tinyml/kernels/quant/scheme.py:75: 8 -> 9
# equivalent mutant tinyml/kernels/quant/scheme.py:111: 8 -> 9
# equivalent mutant tinyml/kernels/quant/scheme.py:143: 8 -> 9
#   codes per byte, 8 // bits: bits is 2, 4 or 8 (check() refuses anything else before these lines
#   matter, and a Layout only comes from a checked scheme), and 9 // b == 8 // b for each of them
#   (4, 2, 1).


def test_scale_overflow_message_numbers():
    w = np.ones((3, 64), F32)
    w[2, 40] = 1e9                 # row 2, group 1 (elements 32..63): scale 1e9 / 7
    w[0, 3] = 2e9                  # row 0, group 0: the first overflowing group, scale 2e9 / 7
    with pytest.raises(ScaleOverflowError) as err:
        quantize(w, "int4-g32")
    msg = str(err.value)
    assert msg.startswith("int4-g32: the scale of group 0 of row 0 is 2.85714e+08, beyond fp16's largest "
                          "value 65504 (the group's largest |w| is 2e+09); 2 group(s) overflow.")
    w[0, 3] = 1.0
    with pytest.raises(ScaleOverflowError, match=r"group 1 of row 2 is 1\.42857e\+08.*1 group\(s\) overflow"):
        quantize(w, "int4-g32")
    assert FP16_MAX == float(np.finfo(np.float16).max)


def test_fp16_rounding_edges():
    assert to_fp16([65504.0, 65519.0])[1] == 65504.0 and np.isinf(to_fp16([65520.0])[0])
    assert to_fp16([1 + 2 ** -11])[0] == 1.0                  # a tie rounds to even


class Custom(Scheme):
    name = "custom-test"

    def __init__(self, bits=4, group_size=32, has_min=False, split_halves=False):
        self.bits, self.group_size, self.has_min, self.split_halves = bits, group_size, has_min, split_halves

    def quantize_groups(self, groups):
        codes = np.zeros(groups.shape, np.int64)
        scale = np.ones(len(groups), F32)
        return codes, scale, (np.zeros(len(groups), F32) if self.has_min else None)


@pytest.mark.parametrize("bits, g, has_min, k, layout", [
    # (k, group, groups per row, header, block bytes, bits, per_row)
    (4, 32, False, 100, Layout(100, 32, 4, 2, 2 + 16, 4, False)),
    (4, 32, True, 64, Layout(64, 32, 2, 4, 4 + 16, 4, False)),
    (2, 8, False, 9, Layout(9, 8, 2, 2, 2 + 2, 2, False)),
    (8, 1, False, 3, Layout(3, 1, 3, 2, 2 + 1, 8, False)),
    (4, None, False, 7, Layout(7, 8, 1, 2, 2 + 4, 4, True)),     # one group per row, padded to whole bytes
    (2, None, True, 5, Layout(5, 8, 1, 4, 4 + 2, 2, True)),
    (8, None, False, 5, Layout(5, 5, 1, 2, 2 + 5, 8, True)),
])
def test_layout_by_hand(bits, g, has_min, k, layout):
    lay = Custom(bits, g, has_min).layout(k)
    assert lay == layout
    assert lay.padded_k == lay.groups_per_row * lay.group and lay.row_bytes == lay.groups_per_row * lay.block_bytes
    assert lay.codes_per_byte == 8 // bits


def test_bits_per_weight_with_and_without_a_minimum():
    assert Custom(4, 32).bits_per_weight() == 4 + 16 / 32
    assert Custom(4, 32, has_min=True).bits_per_weight() == 4 + 32 / 32
    assert Custom(2, 8, has_min=True).bits_per_weight() == 2 + 32 / 8
    assert Custom(4, None).bits_per_weight() == 4.0 and Custom(4, None, has_min=True).bits_per_weight() == 4.0
    # exact for k: 8 * row bytes / k
    assert Custom(4, 32, has_min=True).bits_per_weight(100) == 8 * 4 * (4 + 16) / 100
    assert Custom(4, None).bits_per_weight(7) == 8 * (2 + 4) / 7


def test_default_levels_are_offset_codes():
    np.testing.assert_array_equal(Custom(4).levels(), np.arange(16) - 8)
    np.testing.assert_array_equal(Custom(2, 8).levels(), [-2, -1, 0, 1])
    np.testing.assert_array_equal(Custom(8, 1).levels(), np.arange(256) - 128)
    assert Custom(4).levels().dtype == np.float32


def test_check_accepts_the_smallest_legal_groups_and_refuses_the_rest():
    Custom(8, 1).check()                     # 1 code per byte: a group of 1 is legal
    Custom(4, 2).check()
    Custom(2, 4).check()
    for bits, g in ((4, 1), (2, 2), (2, 6), (8, 0), (4, -2), (4, True), (4, 2.0), (4, "32")):
        with pytest.raises(SchemeDefinitionError, match="group_size must be None or a positive multiple of"):
            Custom(bits, g).check()
    for bits in (1, 3, 16, 0):
        with pytest.raises(SchemeDefinitionError, match=f"bits must be 2, 4 or 8, got {bits}"):
            Custom(bits, 32).check()
    Custom(4, np.int64(32)).check()
    with pytest.raises(SchemeDefinitionError, match=r"a positive multiple of 2 \(2 codes of 4 bits share a byte\), "
                                                    r"got 1$"):
        Custom(4, 1).check()
    with pytest.raises(SchemeDefinitionError, match=r"a positive multiple of 4 \(4 codes of 2 bits share a byte\)"):
        Custom(2, 6).check()
    with pytest.raises(SchemeDefinitionError, match="bits must be 2, 4 or 8, got 3"):
        Custom(3, 32).layout(64)                # layout() checks the scheme first
    with pytest.raises(SchemeDefinitionError, match="group_size"):
        Custom(4, 3).bits_per_weight(64)


def test_check_refuses_bad_levels():
    class Short(Custom):
        def levels(self):
            return np.zeros(15, F32)

    class NotFinite(Custom):
        def levels(self):
            v = np.zeros(16, F32)
            v[3] = np.nan
            return v

    with pytest.raises(SchemeDefinitionError, match=r"levels\(\) must return 16 finite values, got shape \(15,\)"):
        Short().check()
    with pytest.raises(SchemeDefinitionError, match=r"must return 16 finite values, got shape \(16,\)"):
        NotFinite().check()


def test_repr_and_quantize_groups_contract():
    assert repr(get_scheme("q4_0")) == "Q4_0(name='q4_0', bits=4, group_size=32, bits_per_weight=4.5)"
    with pytest.raises(NotImplementedError, match="'plain' must implement quantize_groups"):
        type("Plain", (Scheme,), {"name": "plain"})().quantize_groups(np.zeros((1, 32)))


def test_int4_group_names():
    assert get_scheme("int4-g2").group_size == 2 and get_scheme("INT4-G64").group_size == 64
    for bad in ("int4-g0", "int4-g1", "int4-g3", "int4-g"):
        with pytest.raises(Exception, match="unknown weight format"):
            get_scheme(bad)


class Ramp(Scheme):
    """Codes 0, 1, ..., 15, 0, 1, ... along each group; scale 1. Sets nothing but its name and codes."""

    name = "ramp-test"

    def quantize_groups(self, groups):
        codes = np.tile(np.arange(groups.shape[1]) % 16, (len(groups), 1))
        return codes, np.ones(len(groups), F32), None


def test_scheme_defaults_and_their_byte_order():
    s = Ramp()
    assert (s.bits, s.group_size, s.has_min, s.split_halves, s.pad_rows) == (4, 32, False, False, True)
    q = quantize(np.ones((1, 40), F32), s)                   # K = 40 pads to 64: two groups
    data = q.data.tobytes()
    assert len(data) == 2 * (2 + 16)
    # interleaved (the default): element 2i in the low nibble of byte i, 2i + 1 in the high one
    assert data[2:18] == bytes((2 * i % 16) | ((2 * i + 1) % 16) << 4 for i in range(16))
    assert Layout(8, 8, 1, 2, 6, 4).per_row is False


def test_register_refuses_what_is_not_a_scheme_and_returns_what_it_registers():
    from tinyml.kernels.quant import SCHEMES, register

    for bad, kind in (("q4_0", "str"), (Ramp, "type"), (None, "NoneType")):
        with pytest.raises(SchemeDefinitionError, match=f"register\\(\\) takes a Scheme instance, got {kind}"):
            register(bad)
    with pytest.raises(SchemeDefinitionError, match="bits must be 2, 4 or 8, got 3"):
        register(Custom(3, 32))                                    # checked before it is registered
    assert "custom-test" not in SCHEMES
    s = Ramp()
    try:
        assert register(s) is s and SCHEMES["ramp-test"] is s
        assert register(s) is s                                   # the same instance again: fine
        t = Ramp()
        with pytest.raises(SchemeDefinitionError, match="already registered"):
            register(t)
        assert register(t, replace=True) is t and get_scheme("ramp-test") is t
    finally:
        SCHEMES.pop("ramp-test", None)


def test_get_scheme_checks_instances_and_refuses_other_types():
    from tinyml.kernels.quant import UnknownFormatError

    with pytest.raises(SchemeDefinitionError, match="bits must be 2, 4 or 8, got 3"):
        get_scheme(Custom(3, 32))
    s = Ramp()
    assert get_scheme(s) is s
    for bad in (4, None, 3.5):
        with pytest.raises(UnknownFormatError, match=f"a format is a name such as 'q4_0' or a Scheme instance, "
                                                     f"got {bad!r}"):
            get_scheme(bad)
    with pytest.raises(SchemeDefinitionError, match=r"pass an instance of Ramp, e\.g\. Ramp\(\), not the class"):
        get_scheme(Ramp)
