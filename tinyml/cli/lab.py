"""``tinyml lab list | run N | check N``: the course labs."""

from __future__ import annotations

import argparse

from ._out import console, emit_json, table

HELP = """examples:
  tinyml lab list                        the labs and their files
  tinyml lab run 1                       run lab 1 as a script
  tinyml lab run 2 --smoke               small shapes, a few seconds
  tinyml lab check 2                     check your answers in labs/lab02_tiled_matmul.py
  tinyml lab check 2 --file my_lab2.py   check another copy
"""


def register(sub) -> None:
    p = sub.add_parser("lab", help="list, run and check the course labs", epilog=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    lab_sub = p.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    p_list = lab_sub.add_parser("list", help="list the labs")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_list.set_defaults(func=run_list)
    p_run = lab_sub.add_parser("run", help="run a lab script")
    p_run.add_argument("number", type=int)
    p_run.add_argument("--smoke", action="store_true", help="small shapes (what CI runs)")
    p_run.set_defaults(func=run_run)
    p_check = lab_sub.add_parser("check", help="check a lab's exercise answers")
    p_check.add_argument("number", type=int)
    p_check.add_argument("--file", default=None, help="the lab file to check (default: the one in labs/)")
    p_check.add_argument("--json", action="store_true", help="print JSON")
    p_check.set_defaults(func=run_check)


def run_list(args) -> int:
    from ..labs import list_labs

    labs = list_labs()
    if args.json:
        emit_json({"labs": [{"number": lab.number, "title": lab.title, "path": str(lab.path)} for lab in labs]})
        return 0
    console().print(table("Labs (tinyml lab run N, tinyml lab check N)", ["lab", "title", "file"],
                          [[str(lab.number), lab.title, str(lab.path)] for lab in labs]))
    return 0


def run_run(args) -> int:
    from ..labs import run_lab

    return run_lab(args.number, smoke=args.smoke)


def run_check(args) -> int:
    from ..labs import check_lab

    report = check_lab(args.number, path=args.file)
    if args.json:
        emit_json(report.to_dict())
    else:
        print(report.render())
    return 0 if report.passed else 1
