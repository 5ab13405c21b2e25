"""Say what Numba is compiling, so a first run is never silent.

tinyml's kernels are compiled by Numba the first time they run and then load
from a disk cache (``tinyml/sim/jit.py``): the first ``tinyml tour`` on a fresh
machine compiles a few dozen kernel bodies, later runs take seconds. Numba
announces every real compile (never a cache load) as a ``numba:compile``
event; :func:`compile_progress` listens for the top-level ones and shows them
on stderr: a live status line on a terminal, one plain line per kernel
otherwise (CI logs). A run whose kernels are all cached shows nothing.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager

FIRST_RUN = "first run only: Numba caches the machine code, later runs take seconds"
HEADER = f"Compiling tinyml's kernels with Numba ({FIRST_RUN}):"
_said = {"header": False}


def _plain(stream, line: str) -> None:
    """One line of progress for a log (not a terminal); the header goes first, once per process."""
    if not _said["header"]:
        _said["header"] = True
        print(HEADER, file=stream, flush=True)
    print(f"  {line}", file=stream, flush=True)


def kernel_name(dispatcher) -> str:
    """``tinyml.kernels.attention.flash1.fwd.fwd_body`` -> ``attention.flash1.fwd.fwd_body``."""
    fn = dispatcher.py_func
    module = fn.__module__
    for prefix in ("tinyml.kernels.", "tinyml."):
        if module.startswith(prefix):
            module = module[len(prefix):]
            break
    return f"{module}.{fn.__qualname__}"


class CompileListener:
    """Counts top-level compiles of functions from modules under ``prefix`` and reports each to ``report(name)``.

    Top-level: the helpers a kernel body calls (``load_tile`` ...) compile inside it and are not reported.
    """

    def __init__(self, report, prefix: str = "tinyml."):
        from numba.core import event

        class _Listener(event.Listener):
            def on_start(inner, ev):           # noqa: N805  (``self`` is the CompileListener)
                self.depth += 1
                fn = ev.data["dispatcher"].py_func
                if self.depth == 1 and fn.__module__.startswith(prefix):
                    self.count += 1
                    report(kernel_name(ev.data["dispatcher"]))

            def on_end(inner, ev):             # noqa: N805
                self.depth -= 1

        self.depth = 0
        self.count = 0
        self.listener = _Listener()

    def __enter__(self):
        from numba.core import event

        event.register("numba:compile", self.listener)
        return self

    def __exit__(self, *exc):
        from numba.core import event

        event.unregister("numba:compile", self.listener)
        return False


@contextmanager
def compile_progress(what: str, stream=None, prefix: str = "tinyml."):
    """While the block runs, show on ``stream`` (stderr) each kernel Numba compiles for ``what``.

    On a terminal a status line: ``stop 3 of 6: compiling attention.flash1.fwd.fwd_body (4 kernels,
    21 s; first run only ...)``; elsewhere a header once, then one line per kernel. Nothing when every
    kernel is cached.
    """
    stream = sys.stderr if stream is None else stream
    tty = hasattr(stream, "isatty") and stream.isatty()
    state = {"status": None, "t0": time.perf_counter()}

    def report(name: str) -> None:
        elapsed = time.perf_counter() - state["t0"]
        if not tty:
            _plain(stream, f"{what}: {name}")
            return
        text = (f"[bold]{what}[/bold]: compiling [cyan]{name}[/cyan] "
                f"({listener.count} kernel{'s' if listener.count > 1 else ''}, {elapsed:.0f} s; {FIRST_RUN})")
        if state["status"] is None:
            from rich.console import Console

            state["status"] = Console(file=stream, highlight=False).status(text)
            state["status"].start()
        else:
            state["status"].update(text)

    with CompileListener(report, prefix) as listener:
        try:
            yield listener
        finally:
            if state["status"] is not None:
                state["status"].stop()


# ---- compiling ahead, in a second process ----------------------------------------------------

MARKER = "tinyml-tour-complete"


def cache_is_warm() -> "bool | None":
    """Whether a tour has completed with this Numba cache (None: no cache folder to tell by)."""
    from pathlib import Path

    import numba

    folder = numba.config.CACHE_DIR
    return (Path(folder) / MARKER).exists() if folder else None


def mark_cache_warm() -> None:
    from pathlib import Path

    import numba

    if numba.config.CACHE_DIR:
        try:
            (Path(numba.config.CACHE_DIR) / MARKER).touch()
        except OSError:
            pass


def ahead_wanted() -> bool:
    """Compile ahead only on a cold cache, with a spare core, with the JIT on, and unless
    ``TINYML_COMPILE_AHEAD=0`` (the tests set it: their workers already use every core)."""
    import os

    return (cache_is_warm() is False and (os.cpu_count() or 1) >= 2
            and os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0")
            and os.environ.get("TINYML_COMPILE_AHEAD", "1") != "0")


def _warm(target: str, args: tuple, queue) -> None:
    """Worker: run ``target(*args)`` (module:function), putting each kernel it compiles on ``queue``."""
    import importlib

    module, _, name = target.partition(":")
    try:
        with CompileListener(queue.put):
            getattr(importlib.import_module(module), name)(*args)
    except BaseException:            # the main process runs the same code and reports any error itself
        pass
    queue.put(None)


class AheadOfTime:
    """Compile the kernels of later stops in a second process while this one runs the earlier stops.

    Numba's cache is on disk, so what the second process compiles, this one loads.
    Started only on a cold cache and with a spare core; :meth:`wait` shows what it
    is compiling until it is done.
    """

    def __init__(self, target: str, *args):
        import multiprocessing as mp

        self.proc = None
        self.last = None
        if not ahead_wanted():
            return
        ctx = mp.get_context("spawn")
        self.queue = ctx.Queue()
        self.proc = ctx.Process(target=_warm, args=(target, args, self.queue), daemon=True)
        self.proc.start()

    def _drain(self) -> None:
        import queue as q

        while True:
            try:
                item = self.queue.get_nowait()
            except q.Empty:
                return
            if item is not None:
                self.last = item

    def wait(self, what: str, stream=None) -> None:
        """Block until the second process is done, saying what it compiles."""
        if self.proc is None:
            return
        stream = sys.stderr if stream is None else stream
        tty = hasattr(stream, "isatty") and stream.isatty()
        t0 = time.perf_counter()
        status = None
        shown = None
        while self.proc.is_alive():
            self.proc.join(0.25)
            self._drain()
            if self.last is None or self.last == shown:
                continue
            shown = self.last
            text = (f"[bold]{what}[/bold]: a second process is compiling [cyan]{shown}[/cyan] "
                    f"({time.perf_counter() - t0:.0f} s; {FIRST_RUN})")
            if not tty:
                _plain(stream, f"{what}: {shown} (in a second process)")
            elif status is None:
                from rich.console import Console

                status = Console(file=stream, highlight=False).status(text)
                status.start()
            else:
                status.update(text)
        if status is not None:
            status.stop()
        self.proc = None
