"""``tinyml lab list | run N | check N``: the course labs."""

from __future__ import annotations

from ._args import positive_int, readable_file
from ._out import console, emit_json, table

HELP = """examples:
  tinyml lab list                        the labs and their files
  tinyml lab run 1                       run lab 1 as a script
  tinyml lab run 2 --smoke               small shapes, a few seconds
  tinyml lab check 2                     check your answers in labs/lab02_tiled_matmul.py
  tinyml lab check 2 --file my_lab2.py   check another copy
  tinyml lab run 2 --file my_lab2.py     run another copy
"""


def register(sub) -> None:
    p = sub.add_parser("lab", help="list, run and check the course labs", epilog=HELP)
    lab_sub = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    p_list = lab_sub.add_parser("list", help="list the labs", epilog=HELP)
    p_list.add_argument("--json", action="store_true", help="print the labs as JSON instead of a table")
    p_list.set_defaults(func=run_list)
    p_run = lab_sub.add_parser("run", help="run a lab script", epilog=HELP)
    p_run.add_argument("number", type=positive_int, help="the lab's number (tinyml lab list)")
    p_run.add_argument("--file", type=readable_file, default=None,
                       help="the lab file to run (default: the one in labs/)")
    p_run.add_argument("--smoke", action="store_true", help="small shapes, a few seconds (what CI runs)")
    p_run.set_defaults(func=run_run)
    p_check = lab_sub.add_parser("check", help="check a lab's exercise answers", epilog=HELP)
    p_check.add_argument("number", type=positive_int, help="the lab's number (tinyml lab list)")
    p_check.add_argument("--file", type=readable_file, default=None,
                         help="the lab file to check (default: the one in labs/)")
    p_check.add_argument("--json", action="store_true", help="print the report as JSON instead of text")
    p_check.set_defaults(func=run_check)


def run_list(args) -> int:
    from ..labs import list_labs

    labs = list_labs()
    if args.json:
        emit_json({"labs": [{"number": lab.number, "title": lab.title, "path": str(lab.path)} for lab in labs]})
        return 0
    console().print(table("Labs (tinyml lab run N, tinyml lab check N)", ["lab", "title", "file"],
                          [[str(lab.number), lab.title, _shown(lab.path)] for lab in labs]))
    return 0


def run_run(args) -> int:
    from ..labs import run_lab

    return run_lab(args.number, smoke=args.smoke, path=args.file)


def run_check(args) -> int:
    from ..labs import check_lab

    report = check_lab(args.number, path=args.file)
    if args.json:
        emit_json(report.to_dict())
    else:
        print(report.render())
    return 0 if report.passed else 1


def _shown(path) -> str:
    """A lab's path relative to the working directory when it is below it (labs/lab01_...py), else absolute."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
