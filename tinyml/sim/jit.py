"""How tinyml jits its kernels: where Numba caches them, which build, one compile per argument type.

Numba's ``cache=True`` keys a cached kernel on its *own* source file, so an
edit to a helper it calls from another file (``load_tile``, ``mma_acc``) would
leave the stale machine code in use. tinyml therefore keeps its cache in a
folder named after a hash of all its kernel sources (and the Numba version):
any edit to any of them starts a fresh cache.

The folder is ``numba-<hash>`` inside the first of these that can be written
(a user's own ``NUMBA_CACHE_DIR`` always wins)::

    $TINYML_CACHE_DIR            if set
    ~/.cache/tinyml              the user's cache folder
    <temp dir>/tinyml-cache-<user>   a read-only install with an unwritable home
    none: no caching             one warning; every run compiles again, but tinyml runs

Without the last step, a read-only install (no ``__pycache__`` next to the
sources) with an unwritable home made every ``@njit(cache=True)`` fail at
import with Numba's "cannot cache function ...: no locator available".
Import this module before defining any jitted function (``tinyml.sim.tiles``
and ``tinyml.kernels`` do).

Every jitted function in tinyml is decorated with this module's :func:`njit`:
``numba.njit``, except that a call from one jitted function to another compiles
the callee once per argument *type*. Numba types a constant argument by its
value (``load_tile(..., OP_Q, 16)`` passes ``Literal[int](1)`` and
``Literal[int](16)``) and compiles the callee again for every new value: the
tile helpers were compiled 27-36 times each (88 compiles where 8 do, a third
of the first tour's compile time).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numba
from numba.core import errors, types
from numba.core.registry import CPUDispatcher

_ROOT = Path(__file__).resolve().parents[1]          # the tinyml package


class NoCacheWarning(UserWarning):
    """No folder could hold Numba's cache: kernels compile again in every process."""


def hashed_sources() -> list[Path]:
    """The files whose edits start a fresh cache: every file that defines a jitted function."""
    paths = [p for folder in ("sim", "kernels") for p in sorted((_ROOT / folder).rglob("*.py"))]
    paths.append(_ROOT / "compiler" / "tensor" / "counting.py")    # the helpers generated kernels call
    return paths


def source_hash() -> str:
    """Hash of every source file whose functions get jitted, plus Numba's version."""
    h = hashlib.sha256(numba.__version__.encode())
    for path in hashed_sources():
        h.update(path.relative_to(_ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def candidate_bases() -> list[Path]:
    """The folders to try for the cache, in order (see the module docstring)."""
    bases = []
    if os.environ.get("TINYML_CACHE_DIR"):
        bases.append(Path(os.environ["TINYML_CACHE_DIR"]))
    try:
        bases.append(Path.home() / ".cache" / "tinyml")
    except (RuntimeError, KeyError):          # no home directory at all
        pass
    try:
        user = getpass.getuser()
    except Exception:                         # no user name (a container without /etc/passwd entry)
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    bases.append(Path(tempfile.gettempdir()) / f"tinyml-cache-{user}")
    return bases


def _writable(folder: Path) -> bool:
    """Create ``folder`` if needed and prove a file can be written in it (what Numba will do)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def parallel_kernels() -> bool:
    """Whether tinyml's kernels run their blocks on every core (``@njit(parallel=PARALLEL)``, ``prange``):
    only when ``TINYML_PARALLEL_KERNELS=1`` is set before tinyml is imported. By default each kernel is
    built serial (``prange`` runs as ``range``).

    Almost everything tinyml does is counting (``meta`` tensors: the tour, the CLI, the docs, the labs,
    the tests), where a kernel walks a handful of block classes and gains nothing from threads, and a
    serial kernel compiles about 3x faster on a cold cache (Numba's parfor passes are the slow part):
    one build, compiled once, serves all of them. Turn the parallel build on where kernels *execute* at
    size and their wall-clock time is the point (the CPU benchmarks in ``benchmarks/`` do). The loops,
    answers and counters are the same either way (each block writes its own output tile and counter
    row); tests/test_parallel_kernels.py checks that bit for bit. Each build is cached in its own folder
    (``numba-<hash>-serial``, ``numba-<hash>-parallel``): Numba's cache does not key on ``parallel``."""
    value = os.environ.get("TINYML_PARALLEL_KERNELS", "0")
    if value not in ("0", "1"):
        from .errors import ArgumentError

        raise ArgumentError(f"TINYML_PARALLEL_KERNELS={value!r}: expected 0 (serial kernels, the default) or 1 "
                            f"(every kernel runs its blocks on all cores with prange). Unset it or set 0 or 1.")
    return value == "1"


#: ``parallel=`` for every tiled kernel's ``@njit`` (read once, at import)
PARALLEL = parallel_kernels()


def configure_cache() -> str | None:
    """Point Numba's cache at the versioned folder; returns it (None: the user's NUMBA_CACHE_DIR, or
    no writable folder at all, in which case caching is off and :class:`NoCacheWarning` says so)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    tag = f"numba-{source_hash()}-" + ("parallel" if PARALLEL else "serial")
    bases = candidate_bases()
    for base in bases:
        folder = base / tag
        if _writable(folder):
            numba.config.CACHE_DIR = str(folder)
            _prune(base, keep=folder)
            return str(folder)
    _disable_caching()
    warnings.warn(f"tinyml: no writable folder for Numba's cache (tried {', '.join(map(str, bases))}); kernels "
                  f"compile again in every process. Set TINYML_CACHE_DIR to a writable folder to cache them.",
                  NoCacheWarning, stacklevel=2)
    return None


def _disable_caching() -> None:
    """Let ``@njit(cache=True)`` compile without caching when no locator can be found.

    Numba raises "cannot cache function ...: no locator available" from
    ``Dispatcher.enable_caching`` when no folder is writable; a dispatcher keeps
    its initial ``NullCache`` (compile, never save) if that call fails, so the
    failure is caught there. Installed only when every candidate folder failed.
    """
    from numba.core.dispatcher import Dispatcher

    enable = Dispatcher.enable_caching
    if getattr(enable, "_tinyml_no_cache", False):
        return

    def enable_caching(self):
        try:
            enable(self)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise

    enable_caching._tinyml_no_cache = True
    Dispatcher.enable_caching = enable_caching


def _prune(base: Path, keep: Path, newest: int = 4) -> None:
    """Delete all but the ``newest`` other cache folders (old versions' machine code)."""
    import shutil

    old = sorted((p for p in base.glob("numba-*") if p != keep), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in old[newest:]:
        shutil.rmtree(path, ignore_errors=True)


CACHE_DIR = configure_cache()


class TypedCallsDispatcher(CPUDispatcher):
    """A Numba dispatcher whose callers from jitted code get one compile per argument type (see the module
    docstring). Calls from Python are unchanged (their arguments never carry a value in their type)."""

    def get_call_template(self, args, kws):
        plain = tuple(types.unliteral(a) for a in args)
        plain_kws = {k: types.unliteral(v) for k, v in kws.items()}
        if plain == tuple(args) and plain_kws == kws:
            return super().get_call_template(args, kws)
        try:
            return super().get_call_template(plain, plain_kws)
        except errors.TypingError:               # a callee that needs the constant's value to type at all
            return super().get_call_template(args, kws)


def njit(*args, **options):
    """``numba.njit`` (same options, same result) whose function compiles once per argument type when
    another jitted function calls it, not once per constant value (see the module docstring)."""

    def decorate(func):
        dispatcher = numba.njit(**options)(func)
        if type(dispatcher) is CPUDispatcher:    # not with NUMBA_DISABLE_JIT (a plain function comes back)
            dispatcher.__class__ = TypedCallsDispatcher
        return dispatcher

    if args and callable(args[0]) and not options and len(args) == 1:
        return decorate(args[0])
    if args:
        raise TypeError("tinyml.sim.jit.njit takes keyword options only (cache=True, parallel=..., fastmath=...)")
    return decorate
