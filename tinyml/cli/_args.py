"""What every command's arguments share: the parser, the help layout, and the argument types.

A bad value is refused while the command line is parsed, before any work, as one line
on stderr and exit status 2, never a traceback::

    $ tinyml attention --dropout 1.5
    error: tinyml attention: argument --dropout: must be a probability in [0, 1), got '1.5' (see tinyml attention --help)

The types (``type=`` of ``add_argument``) check what can be checked from the text alone:
positive integers (sizes, block sizes, layers), seeds, probabilities, comma-separated
choices, and files to write (their folder must exist and be writable). What needs the
device or the model (a tile that overflows SRAM, a shape out of HBM) is checked by the
kernels and reported as their ``TinymlError``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from ..sim.errors import TinymlError


class UsageError(TinymlError, ValueError):
    """Options that each parse but do not go together (``compile --out`` without ``--explain``)."""


#: the largest seed: the dropout hash (tinyml.kernels.attention.rng) takes it as a 64-bit integer
MAX_SEED = 2 ** 63 - 1


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (what was wrong, and where the help is)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Examples (the epilog) as written, and every option's default after its help.

    An option whose help already says its default (``default: chosen from SRAM``) is left
    as it is; flags (off unless given) and hidden aliases get nothing appended.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or not action.option_strings or any(
                action.default is none for none in (None, False, argparse.SUPPRESS)):
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._VersionAction, argparse._HelpAction)):
            return text
        return f"{text} (default: %(default)s)"


def hidden_alias(parser, old: str, dest: str, **kwargs) -> None:
    """Keep an old spelling of an option working without showing it in --help."""
    parser.add_argument(old, dest=dest, help=argparse.SUPPRESS, default=argparse.SUPPRESS, **kwargs)


# ---- argument types -------------------------------------------------------------------------------

def _int(text: str, what: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def positive_int(text: str) -> int:
    """A size, a block size, a count: an integer >= 1."""
    value = _int(text, "an integer >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """A padding, an offset: an integer >= 0."""
    value = _int(text, "an integer >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def seed(text: str) -> int:
    """A random seed: an integer in [0, 2^63)."""
    value = _int(text, "an integer seed in [0, 2^63)")
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer seed in [0, 2^63), got {text!r}")
    return value


def probability(text: str) -> float:
    """A dropout probability: a number in [0, 1) (1 would drop everything)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value < 1.0:           # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a probability in [0, 1), got {text!r}")
    return value


def comma_items(text: str, what: str, *, flag: "str | None" = None, error=argparse.ArgumentTypeError,
                example: str = "") -> list:
    """The comma-separated items of ``text``, stripped. An empty item (two commas in a row, or one at an
    end) is refused with ``error``, never dropped; no item at all is the caller's to refuse."""
    items = [t.strip() for t in text.split(",")]
    if any(items) and not all(items):
        i = items.index("") + 1
        where = f"{flag} {text!r}: {what} {i}" if flag else f"{what} {i} of {text!r}"
        raise error(f"{where} is empty (two commas in a row, or one at an end?)" + (f"; e.g. {example}" if example
                                                                                   else ""))
    return [t for t in items if t]


def choices(names, what: str, allow_all: bool = True):
    """A type for a comma-separated subset of ``names`` (``all`` for every one), in the order given."""
    names = tuple(names)

    def parse(text: str) -> list:
        picked = comma_items(text, what)
        if allow_all and picked == ["all"]:
            return list(names)
        bad = [t for t in picked if t not in names]
        if bad or not picked:
            known = ", ".join(names) + (" (comma-separated), or all" if allow_all else "")
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(map(repr, bad)) or '(none given)'}; "
                                             f"choose from {known}")
        return list(dict.fromkeys(picked))
    parse.__name__ = what                # argparse names the type in some messages
    return parse


def _check_folder(folder: Path, for_what: str) -> None:
    if not folder.exists():
        raise argparse.ArgumentTypeError(f"the folder {str(folder)!r} for {for_what} does not exist; "
                                         f"create it first (mkdir -p {folder})")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{str(folder)!r} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"the folder {str(folder)!r} is not writable; choose another place")


def writable_file(text: str, suffixes: "tuple[str, ...] | None" = None) -> str:
    """A file to write: its folder exists and is writable, and it is not a folder itself."""
    path = Path(text).expanduser()
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name, e.g. {Path(text) / 'out.json'}")
    if suffixes and path.suffix.lower() not in suffixes:
        raise argparse.ArgumentTypeError(f"{text!r}: write a {', '.join(suffixes)} file (the suffix picks the "
                                         f"format), e.g. {path.with_suffix(suffixes[0])}")
    _check_folder(path.parent, text)
    if path.exists() and not os.access(path, os.W_OK):
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not writable")
    return text


def json_file(text: str) -> str:
    """A JSON file to write (a trace, a report): a writable file whose name ends in .json."""
    return writable_file(text, (".json",))


def image_file(text: str) -> str:
    """A figure to write: .png, .svg or .pdf."""
    return writable_file(text, (".png", ".svg", ".pdf"))


def output_folder(text: str) -> str:
    """A folder to write into, created if missing: it is a folder (or nothing yet) under a writable one."""
    path = Path(text).expanduser()
    if path.exists():
        _check_folder(path, text)
        return text
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create the folder {text!r}: {str(parent)!r} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot create the folder {text!r}: {str(parent)!r} is not writable")
    return text


def readable_file(text: str) -> str:
    """A file to read: it exists, is a file, and can be read."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text!r} does not exist; check the path")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text!r} is not readable")
    return text
