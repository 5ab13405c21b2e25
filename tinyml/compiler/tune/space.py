"""A search space: a schedule *template* whose sampling instructions are the knobs.

A template is a function ``template(sch)`` that samples its decisions first
(``sample_perfect_tile``, ``sample_categorical``) and then applies primitives that use them;
:mod:`.templates` has the ones for matmul and conv2d. The space runs it once to find the
knobs, then a *candidate* is one decision per knob::

    space = Space(matmul(256, 256, 256), templates.matmul_gpu)
    space.knobs          # [Knob(index=0, kind='sample_perfect_tile', choices=[[256, 1], [128, 2], ...]), ...]
    space.size           # product of the choices: 9 * 9 * 8 * 2 * 2 * 2 = 5184
    d = space.sample(rng)            # one choice per knob, uniformly
    sch = space.schedule(d)          # replay the template with those decisions (may raise ScheduleError)

Neighbours differ in one knob (:meth:`Space.mutate`): what annealing and evolution walk.
Choices of a perfect tile are every ordered factorisation of the loop's extent into ``n``
factors with the innermost at most ``max_innermost`` (for ``n = 2``: one per divisor), and at
least the template's ``min_innermost[loop]`` where the extent allows (an MMA tile is at least
16 wide: smaller ones only waste trials).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..tensor import Schedule, ScheduleError
from ..tensor.sampling import divisors
from .errors import TuneError


@dataclass(frozen=True)
class Knob:
    """One sampling instruction of the template: its trace index and every decision it may take."""

    index: int
    kind: str
    label: str
    choices: tuple


def factorizations(extent: int, n: int, max_innermost: int) -> list:
    """Every list of ``n`` factors (outermost first) multiplying to ``extent``, innermost <= max."""
    if n == 1:
        return [[extent]] if extent <= max_innermost else []
    out = []
    for d in divisors(extent):
        for rest in factorizations(extent // d, n - 1, max_innermost):
            out.append([d] + rest)
    return out


#: random draws of the template tried to find one legal replay, whose trace shows the knobs
PROBES = 64


def _probe(func, template, name: str):
    """A schedule of ``template`` replayed legally with random decisions: its trace lists the knobs. Some
    draws can be illegal for a shape (small tiles of a long M bound to blockIdx.y: more than 65,535
    blocks), so a few seeds are tried before the shape is called untunable."""
    last = None
    for seed in range(PROBES):
        probe = Schedule(func, seed=seed)
        try:
            template(probe)
            return probe
        except ScheduleError as exc:
            last = exc
    raise TuneError(f"template {name}: none of {PROBES} random schedules of {func.name} is legal; the last "
                    f"said: {last}. Tune a smaller shape")


class Space:
    """The candidates of ``template`` on ``func`` (module docstring)."""

    def __init__(self, func, template, name: "str | None" = None):
        self.func = func
        self.template = template
        self.name = name or getattr(template, "__name__", "template")
        probe = _probe(func, template, self.name)
        knobs = []
        for i, ins in enumerate(probe.trace):
            if ins.kind == "sample_perfect_tile":
                loop, n, max_inner = ins.args
                extent = probe.func.block.axis(loop).extent if loop in [a.name for a in func.block.axes] else None
                if extent is None:
                    raise TuneError(f"template {self.name}: sample_perfect_tile({loop}) must sample an axis's "
                                    f"initial loop (before any split), so the choices do not depend on decisions")
                low = min(getattr(template, "min_innermost", {}).get(loop, 1), extent)
                fs = factorizations(extent, n, max_inner)
                fs = [f for f in fs if f[-1] >= low] or fs
                knobs.append(Knob(i, ins.kind, f"tile {loop}", tuple(tuple(f) for f in fs)))
            elif ins.kind == "sample_categorical":
                cands = ins.args[0]
                knobs.append(Knob(i, ins.kind, f"choice {i}", tuple(range(len(cands)))))
        if not knobs:
            raise TuneError(f"template {self.name} samples nothing: a space needs sample_perfect_tile or "
                            f"sample_categorical instructions")
        self.knobs = knobs

    # -- size and enumeration ---------------------------------------------------------------------
    @property
    def size(self) -> int:
        return math.prod(len(k.choices) for k in self.knobs)

    def all(self):
        """Every candidate, in a fixed order (exhaustive search on small spaces)."""
        import itertools

        for combo in itertools.product(*(k.choices for k in self.knobs)):
            yield tuple(combo)

    # -- candidates -----------------------------------------------------------------------------
    def sample(self, rng) -> tuple:
        """One choice per knob, uniformly (``rng``: a ``random.Random``)."""
        return tuple(k.choices[rng.randrange(len(k.choices))] for k in self.knobs)

    def mutate(self, decisions: tuple, rng) -> tuple:
        """A neighbour: one knob (with more than one choice) takes another of its choices."""
        free = [q for q, k in enumerate(self.knobs) if len(k.choices) > 1]
        if not free:
            return decisions
        q = free[rng.randrange(len(free))]
        options = [c for c in self.knobs[q].choices if c != decisions[q]]
        out = list(decisions)
        out[q] = options[rng.randrange(len(options))]
        return tuple(out)

    def crossover(self, a: tuple, b: tuple, rng) -> tuple:
        """Each knob from one of two parents, uniformly."""
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))

    def schedule(self, decisions: tuple) -> Schedule:
        """The template replayed with ``decisions`` (a ScheduleError if the result is illegal)."""
        forced = {k.index: (list(d) if isinstance(d, tuple) else d) for k, d in zip(self.knobs, decisions)}
        sch = Schedule(self.func, decisions=forced)
        self.template(sch)
        return sch

    @staticmethod
    def key(decisions: tuple) -> str:
        """A candidate as compact JSON text (the tuner's set of measured candidates)."""
        return json.dumps(to_json(decisions), separators=(",", ":"))


def to_json(decisions: tuple) -> list:
    return [list(d) if isinstance(d, tuple) else d for d in decisions]


def from_json(data: list) -> tuple:
    return tuple(tuple(d) if isinstance(d, list) else d for d in data)
