"""The block scheduler: each block goes to the first SM slot that frees up.

This is list scheduling on identical slots, what a GPU's block scheduler does:
a grid of uneven blocks (causal attention's diagonal, edge tiles) balances
across SMs instead of waiting at wave boundaries. Loaded only when block
durations differ; uniform grids use the closed form in :mod:`tinyml.sim.cost`.

Blocks come as *segments*: ``length[s]`` consecutive blocks that each take
``duration[s]`` and use ``times[s]`` of each resource (a run of one block
class, cut at wave boundaries). The loop still places every block (the heap
decides), but memory stays O(segments + slots), never O(blocks).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import jit  # noqa: F401  (versioned Numba cache; before any @njit)


@njit(cache=True)
def list_schedule(length, duration, times, n_slots):
    """(per-slot busy time, per-slot resource times (n_slots, 4)) of list scheduling: blocks in
    launch order, each to the earliest-free slot (the lowest heap entry on ties)."""
    free = np.zeros(n_slots)              # a binary min-heap of slot free times ...
    slot_id = np.arange(n_slots)          # ... and which slot each heap entry is
    used = np.zeros((n_slots, times.shape[1]))
    for s in range(len(length)):
        d = duration[s]
        for _ in range(length[s]):
            used[slot_id[0]] += times[s]
            free[0] += d                  # the root (earliest free) takes the block
            i = 0                         # sift it down
            while True:
                left = 2 * i + 1
                if left >= n_slots:
                    break
                child = left
                if left + 1 < n_slots and free[left + 1] < free[left]:
                    child = left + 1
                if free[child] >= free[i]:
                    break
                free[i], free[child] = free[child], free[i]
                slot_id[i], slot_id[child] = slot_id[child], slot_id[i]
                i = child
    busy = np.empty(n_slots)
    for i in range(n_slots):
        busy[slot_id[i]] = free[i]
    return busy, used


@njit(cache=True)
def panel_repeats(start, length, wave, col, panel, n_waves):
    """(n_waves,) bytes of each wave's panel reads that repeat a panel already read in that wave.

    Segment ``s`` is blocks ``start[s] .. start[s] + length[s] - 1``, all in wave ``wave[s]``,
    each reading ``col[s]`` bytes of the operand; ``panel[b]`` is block b's panel (>= 0).
    """
    last = np.full(panel.max() + 1 if len(panel) else 1, -1)   # the last wave that read each panel
    saved = np.zeros(n_waves)
    for s in range(len(start)):
        w = wave[s]
        for b in range(start[s], start[s] + length[s]):
            p = panel[b]
            if last[p] == w:
                saved[w] += col[s]            # a repeat read hits in L2
            else:
                last[p] = w
    return saved
