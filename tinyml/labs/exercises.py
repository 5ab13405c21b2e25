"""Every lab's exercises, by lab number: the registry the checker reads.

Each ``labNN`` module holds its lab's ``EXERCISES`` and imports its helpers
from :mod:`.checks`; this module sits above them all.
"""

from __future__ import annotations

from . import lab01, lab02, lab03, lab04, lab05, lab06, lab07, lab08, lab09, lab10, lab11, lab12, lab13
from .checks import Exercise

EXERCISES: dict[int, tuple[Exercise, ...]] = {
    1: lab01.EXERCISES, 2: lab02.EXERCISES, 3: lab03.EXERCISES, 4: lab04.EXERCISES, 5: lab05.EXERCISES,
    6: lab06.EXERCISES, 7: lab07.EXERCISES, 8: lab08.EXERCISES, 9: lab09.EXERCISES, 10: lab10.EXERCISES,
    11: lab11.EXERCISES, 12: lab12.EXERCISES, 13: lab13.EXERCISES,
}


def exercises_for(number: int) -> tuple[Exercise, ...]:
    """The exercises of lab ``number`` (empty if the lab has none)."""
    return EXERCISES.get(number, ())
