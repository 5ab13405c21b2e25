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
        if not isinstance(rec, dict) or rec.get("version") != VERSION or "result" not in rec:
            raise TuneLogError(f"{path}, line {n}: not a version-{VERSION} trial record (it needs "
                               f"\"version\": {VERSION}, \"workload\", \"device\", \"result\")")
        out.append(rec)
    return out


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
        self.path = None if isinstance(source, list) else Path(source).expanduser()
        self.records = list(source) if isinstance(source, list) else read_records(self.path)
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
