"""Tuning logs: JSON lines, one record per trial, keyed by workload hash and device hash.

Each line is one trial, complete in itself (so appending a trial invalidates nothing)::

    {"version": 1, "workload": "3f1c...", "workload_key": "matmul:fp16:A(4096,4096),B(4096,4096)->C(4096,4096)",
     "device": "a91e...", "device_name": "a100-40gb", "measurer": "simulated", "space": "matmul_gpu",
     "run": {"strategy": "evolutionary", "model": "xgboost", "features": "nest", "seed": 0, "batch": 16,
             "epsilon": 0.1},
     "batch": 3, "trial": 52, "decisions": [[32, 128], [16, 256], [128, 32], 0, 0, 1],
     "trace": {"version": 1, "workload": {...}, "instructions": [...]},     # null when the schedule was refused
     "result": {"status": "ok", "time_s": 0.00071, "profile": {...}}}

The workload hash is :func:`tinyml.compiler.lowering.scheduled.workload_hash` (what the graph
compiler looks schedules up by); the device hash covers every number of the preset (or the
CPU's model and core count), so a log made on an edited preset does not pass for the
original. Lines are written with sorted keys and no wall-clock times: the same seed gives a
byte-identical log. A :class:`TuningLog` is also a schedule table for
:func:`tinyml.compiler.compile` (``schedules=TuningLog("tune.jsonl")``): each matmul or conv2d
node runs the best schedule the log holds for its workload.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import TuneLogError

VERSION = 1


def dumps(record: dict) -> str:
    """One record as one line of canonical JSON (sorted keys, no spaces)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def read_records(path) -> list:
    """Every record of a log file, each checked to be a trial record."""
    path = Path(path).expanduser()
    if not path.exists():
        raise TuneLogError(f"no tuning log at {path}; write one with tinyml tune ... --log {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TuneLogError(f"{path} is not a text file (byte {e.start} is not UTF-8); a tuning log is the JSON "
                           f"lines that tinyml tune ... --log FILE writes") from None
    except OSError as e:
        raise TuneLogError(f"cannot read the tuning log {path}: {e.strerror}; pass a log file that "
                           f"tinyml tune ... --log FILE wrote") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise TuneLogError(f"{path}, line {n}: not JSON ({e}); a tuning log has one JSON record per "
                               f"line") from None
        out.append(check_record(rec, f"{path}, line {n}"))
    return out


#: a trial record's fields and what each holds (:func:`check_record`)
FIELDS = {"workload": str, "workload_key": str, "device": str, "device_name": str, "measurer": str, "space": str,
          "run": dict, "batch": int, "trial": int, "decisions": list, "result": dict}
STATUSES = ("ok", "illegal", "failed", "wrong")
_TYPE_NAMES = {str: "a string", dict: "an object", int: "an integer >= 0", list: "a list"}


def check_record(rec, where: str) -> dict:
    """``rec`` if it is a whole trial record (the module docstring's fields, each of its type; a result
    whose status is one of ``ok illegal failed wrong``, with a finite positive ``time_s`` exactly when it
    is ok); else a :class:`TuneLogError` naming ``where``, the field, what it holds and what it must.

    Every reader (resume, transfer, ``TuningLog``, ``tinyml tune show``, ``compile --tune-log``) goes
    through here, so a log edited by hand or written by another tool is refused at the line that is
    wrong, never as a ``KeyError`` deep in the tuner."""
    fix = "; a tuning log holds the records that tinyml tune ... --log FILE writes (re-run it, or remove the line)"
    if not isinstance(rec, dict) or rec.get("version") != VERSION:
        got = f"version {rec.get('version')!r}" if isinstance(rec, dict) else f"a {type(rec).__name__}"
        raise TuneLogError(f"{where}: not a version-{VERSION} trial record (got {got}; it needs \"version\": "
                           f"{VERSION}, \"workload\", \"device\", \"result\", ...){fix}")
    for name, kind in FIELDS.items():
        value = rec.get(name)
        bad = (value is None or not isinstance(value, kind) or isinstance(value, bool)
               or (kind is int and value < 0))
        if bad:
            got = "missing" if name not in rec else f"{value!r} ({type(value).__name__})"
            raise TuneLogError(f"{where}: field \"{name}\" must be {_TYPE_NAMES[kind]}, got {got}{fix}")
    trace = rec.get("trace", "missing")
    if trace is not None and not (isinstance(trace, dict) and isinstance(trace.get("workload"), dict)
                                  and isinstance(trace.get("instructions"), list)):
        got = "missing" if trace == "missing" else repr(trace)[:80]
        raise TuneLogError(f"{where}: field \"trace\" must be a trace (an object with \"workload\" and "
                           f"\"instructions\") or null for a refused schedule, got {got}{fix}")
    res = rec["result"]
    status, time_s = res.get("status"), res.get("time_s")
    if status not in STATUSES:
        raise TuneLogError(f"{where}: result status {status!r} is not one of {', '.join(STATUSES)}{fix}")
    if status == "ok":
        real = isinstance(time_s, (int, float)) and not isinstance(time_s, bool)
        if not (real and math.isfinite(time_s) and time_s > 0):
            raise TuneLogError(f"{where}: an ok result needs a time: \"time_s\" must be a finite number > 0 "
                               f"(seconds), got {time_s!r}{fix}")
        if trace is None:
            raise TuneLogError(f"{where}: an ok result needs the trace it timed, got null{fix}")
    elif time_s is not None:
        raise TuneLogError(f"{where}: a {status} trial has no time (\"time_s\": null), got {time_s!r}; a failure "
                           f"is never a time{fix}")
    return rec


def append_to(path):
    """The log file opened for appending, or a :class:`TuneLogError` saying why it cannot be (checked
    before the first trial is measured, so no work is lost)."""
    path = Path(path).expanduser()
    try:
        return path.open("a", encoding="utf-8")
    except OSError as e:
        why = ("its folder does not exist; create it first (mkdir -p " + str(path.parent) + ")"
               if not path.parent.is_dir() else f"{e.strerror}; choose a writable place")
        raise TuneLogError(f"cannot append to the tuning log {path}: {why}") from None


def ok(rec: dict) -> bool:
    return rec["result"].get("status") == "ok" and rec["result"].get("time_s") is not None


def best_record(records: list, workload: "str | None" = None, device: "str | None" = None) -> "dict | None":
    """The fastest successful record (for a workload hash / device hash or name, if given)."""
    cands = [r for r in records if ok(r) and (workload is None or r["workload"] == workload)
             and (device is None or device in (r["device"], r.get("device_name")))]
    return min(cands, key=lambda r: (r["result"]["time_s"], r["trial"])) if cands else None


class TuningLog:
    """A log's records, with the best schedule per workload (``lookup`` for the graph compiler)."""

    def __init__(self, source, device: "str | None" = None):
        if not isinstance(source, (list, str, Path)):
            raise TuneLogError(f"TuningLog takes a log's path or a list of its records, got {source!r} "
                               f"({type(source).__name__})")
        if device is not None and not isinstance(device, str):
            raise TuneLogError(f"device is a device name (or hash) to pick trials by, got {device!r}")
        self.path = None if isinstance(source, list) else Path(source).expanduser()
        self.records = ([check_record(r, f"record {q}") for q, r in enumerate(source)] if isinstance(source, list)
                        else read_records(self.path))
        self.device = device
        if device is not None and not any(device in (r["device"], r.get("device_name")) for r in self.records):
            names = sorted({r.get("device_name") for r in self.records})
            raise TuneLogError(f"the tuning log {self.path or ''} has no trial on device {device!r}; it holds "
                               f"{names}. Tune for {device} first, or pick one of those devices")

    def workloads(self) -> dict:
        """workload hash -> workload key, for every workload in the log."""
        return {r["workload"]: r["workload_key"] for r in self.records}

    def best(self, workload: "str | None" = None) -> "dict | None":
        return best_record(self.records, workload, self.device)

    def lookup(self, node, func):
        """The best schedule the log holds for ``func``'s workload (None: lower as by default)."""
        from ..lowering.scheduled import workload_hash
        from ..tensor import replay

        rec = self.best(workload_hash(func))
        return None if rec is None else replay(func, rec["trace"])
