"""The baseline a tuned schedule must beat: the library's hand-picked tiles.

* matmul on a simulated device: matmul v3's structure with matmul v3's tiles
  (:func:`tinyml.compiler.tensor.examples.example` ``"mma"``, tiles from
  :func:`tinyml.kernels.matmul.choose_tiles`), the same launch as matmul v3;
* matmul on the CPU: matmul v3 itself (its tiles for the A100, fp32), timed like a trial;
* conv2d: the best of the blocked convolution's hand tiles (BF, BY) in :data:`CONV_TILES`
  that fits the device (the walkthrough's schedule, then smaller ones).
"""

from __future__ import annotations

from ...sim import TinymlError
from ..tensor import ScheduleError
from ..tensor.examples import blocked_conv2d, example
from .measure import failure

CONV_TILES = ((64, 8), (32, 8), (32, 4), (16, 4), (16, 2), (8, 2), (8, 1), (4, 1))


def hand_schedules(func, device: str) -> list:
    """(label, build) of the hand-picked schedules for ``func`` on ``device``: ``build()`` makes the
    Schedule, or raises the ScheduleError that says why the shape makes it illegal."""
    if func.block.name == "matmul":
        dev = "a100-40gb" if device == "cpu" else device
        return [("matmul v3 tiles", lambda: example("mma", func, dev))]
    if func.block.name == "conv2d":
        ext = {a.name: a.extent for a in func.block.axes}
        seen, out = set(), []
        for bf, by in CONV_TILES:
            t = (min(bf, ext["f"]), min(by, ext["y"]))
            if t not in seen:
                seen.add(t)
                out.append((f"blocked conv2d BF={t[0]} BY={t[1]}", lambda t=t: blocked_conv2d(func, *t)))
        return out
    raise TinymlError(f"no hand schedule for workload {func.name!r}")


def hand_baseline(func, measurer) -> tuple:
    """(label, Result) of the best hand-picked schedule measured on ``measurer``. A hand schedule that is
    illegal for this shape (matmul v3's grid binds M's tiles to blockIdx.y, at most 65,535 of them) is an
    "illegal" result the table shows, not an error that stops the tuning."""
    if measurer.kind == "cpu" and func.block.name == "matmul":
        return "matmul v3", matmul_v3_on_cpu(func, measurer)
    best = None
    for label, build in hand_schedules(func, measurer.name):
        try:
            res = measurer.measure(build())
        except ScheduleError as exc:
            res = failure("illegal", exc)
        if best is None or (res.ok and (not best[1].ok or res.time_s < best[1].time_s)):
            best = (label, res)
    return best


def matmul_v3_on_cpu(func, measurer):
    """matmul v3 (fp32, its A100 tiles) on the CPU measurer's inputs, timed as a trial."""
    from ...kernels.matmul import choose_tiles, matmul_v3
    from ...sim import Profile, load_device
    from .cpu import time_runs

    (a, b), _ = measurer.inputs(func)
    m, n, k = (x.extent for x in func.block.axes)
    t = choose_tiles(load_device("a100-40gb"), m, n, k, "fp32")
    run = lambda: matmul_v3(a, b, dtype="fp32", block_m=t.block_m, block_n=t.block_n, block_k=t.block_k)  # noqa
    with Profile(measurer.device):
        run()                                      # warm-up
    return time_runs(run, measurer.device, measurer.repeats)
