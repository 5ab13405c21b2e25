"""The ``tinyml`` command line: tables for people, ``--json`` for machines.

Bad input never ends in a traceback: an argument the parser can check (a size, a
seed, a probability, a folder to write into: :mod:`._args`) is refused before any
work, and a ``TinymlError`` raised later (an unknown device, a shape the kernels
refuse) or a file that cannot be written is printed as one line; both exit with
status 2. Kernel commands that run several variants report a variant that fails
(out of HBM, tiles overflowing SRAM) as a result with an ``error`` field, print
the rest, and exit with status 1.
"""

from __future__ import annotations

import sys

from ..sim.errors import TinymlError
from ._args import Parser

EPILOG = """examples:
  tinyml tour                                  the guided demo
  tinyml devices                               every simulated GPU
  tinyml devices a100-40gb                     one GPU, each number with its source
  tinyml matmul --m 4096 --n 4096 --k 4096     naive vs tiled matmul on the A100
  tinyml attention --paper fig2                the FlashAttention paper's Figure 2, reproduced
  tinyml fuse --ops mul,add,gelu               one op chain, unfused vs fused
  tinyml compile gpt2_block --explain          GPT-2's block through the compiler, pass by pass
  tinyml schedule matmul --m 4096 --n 4096 --k 4096 --example mma   a loop nest, scheduled by hand
  tinyml tune matmul --m 4096 --n 4096 --k 4096 --trials 64   search the schedule space with a cost model
  tinyml quant --model llama-2-7b --device a100-80gb   model size, fit and tokens/s per weight format
  tinyml decode --model llama-2-7b --context 4096      one decode step's kernels, KV cache, split-KV
  tinyml ssm --seq 4096                        a selective scan: naive vs IO-aware vs parallel, and FA2
  tinyml lab list                              the course labs
"""


def build_parser() -> Parser:
    from . import attention, compile, decode, devices, fuse, kernels, lab, quant, schedule, ssm, tour, tune

    parser = Parser(prog="tinyml", description="See the GPU memory hierarchy at work, on a laptop CPU.",
                    epilog=EPILOG)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (tour, devices, kernels, attention, fuse, compile, schedule, tune, quant, decode, ssm, lab):
        module.register(sub)
    parser.commands = sub.choices           # name -> its parser (_parse asks the command about unknown options)
    return parser


def _version() -> str:
    from .. import __version__

    return f"tinyml {__version__}"


def main(argv: "list[str] | None" = None) -> int:
    parser = build_parser()
    try:                             # a bad argument: one line and exit 2 (Parser.error); --help: 0
        argv = sys.argv[1:] if argv is None else list(argv)
        if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
            argv = ["tour", *argv]   # the tour is the default command, options and all: tinyml --size 2048
        args = _parse(parser, argv)
        if args.command is None:
            args = _parse(parser, ["tour"])
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(args.func(args) or 0)
    except TinymlError as exc:       # one line, even for a message written over several (out of HBM ...)
        print("error: " + " ".join(part.strip() for part in str(exc).splitlines() if part.strip()), file=sys.stderr)
        return 2
    except OSError as exc:           # a file to read or write (the parser checked what it could)
        if isinstance(exc, BrokenPipeError):
            return _quiet_pipe()
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot access{where}: {exc.strerror or exc}; check the path and its permissions",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _parse(parser: Parser, argv):
    """``parser.parse_args``, but an unknown option is refused by its command's parser, which names the
    command and the option it probably meant (``tinyml tour: unrecognized arguments: --sizee 3; did you
    mean --size?``)."""
    import difflib

    args, extra = parser.parse_known_args(argv)
    if extra:
        owner = parser.commands.get(args.command, parser)
        known = [opt for action in owner._actions for opt in action.option_strings]
        guesses = {g for word in extra if word.startswith("-")
                   for g in difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.7)}
        hint = f"; did you mean {', '.join(sorted(guesses))}?" if guesses else ""
        owner.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def _quiet_pipe() -> int:
    """`tinyml ... --json | head`: the reader left; not an error."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
