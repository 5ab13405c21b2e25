"""The registry of weight formats: a name -> its Scheme (``quantize(w, "q4_0")``).

The built-in schemes (:mod:`.int8`, :mod:`.int4`, :mod:`.gguf`) are registered
here; ``register`` adds your own (see :mod:`.scheme` for how to write one).
"""

from __future__ import annotations

import re

from .errors import SchemeDefinitionError, UnknownFormatError
from .gguf import Q4_0, Q8_0
from .int4 import Int4Grouped
from .int4_asym import Int4GroupedZero
from .int8 import Int8PerChannel
from .scheme import Scheme

SCHEMES: dict[str, Scheme] = {}


def register(scheme: Scheme, *, replace: bool = False) -> Scheme:
    """Make ``scheme`` available by name to ``quantize(w, name)``; returns it."""
    if not isinstance(scheme, Scheme):
        raise SchemeDefinitionError(f"register() takes a Scheme instance, got {type(scheme).__name__}")
    scheme.check()
    if scheme.name in SCHEMES and not replace and SCHEMES[scheme.name] is not scheme:
        raise SchemeDefinitionError(f"a scheme named {scheme.name!r} is already registered; "
                                    f"pick another name or pass replace=True")
    SCHEMES[scheme.name] = scheme
    return scheme


_INT4_G = re.compile(r"int4-(asym-)?g(\d+)$")


def get_scheme(fmt) -> Scheme:
    """A Scheme from a name ('q4_0', 'int4-g32', any 'int4-g<N>' or 'int4-asym-g<N>' with N even) or a Scheme."""
    if isinstance(fmt, Scheme):
        fmt.check()
        return fmt
    if isinstance(fmt, type) and issubclass(fmt, Scheme):
        raise SchemeDefinitionError(f"pass an instance of {fmt.__name__}, e.g. {fmt.__name__}(), not the class")
    if not isinstance(fmt, str):
        raise UnknownFormatError(f"a format is a name such as 'q4_0' or a Scheme instance, got {fmt!r}")
    name = fmt.lower()
    if name in SCHEMES:
        return SCHEMES[name]
    m = _INT4_G.match(name)
    if m and int(m.group(2)) >= 2 and int(m.group(2)) % 2 == 0:
        return (Int4GroupedZero if m.group(1) else Int4Grouped)(int(m.group(2)))
    raise UnknownFormatError(
        f"unknown weight format {fmt!r}; choose one of {', '.join(sorted(SCHEMES))}, "
        f"'int4-g<N>' or 'int4-asym-g<N>' with N even, or pass your own Scheme instance")


for _scheme in (Int8PerChannel(), Int4Grouped(32), Int4Grouped(64), Int4Grouped(128), Int4GroupedZero(32),
                Int4GroupedZero(64), Int4GroupedZero(128), Q8_0(), Q4_0()):
    register(_scheme)
