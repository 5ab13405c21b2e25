"""The block scheduler: each block goes to the first SM slot that frees up.

This is list scheduling on identical slots, what a GPU's block scheduler does:
a grid of uneven blocks (causal attention's diagonal, edge tiles) balances
across SMs instead of waiting at wave boundaries. Loaded only when block
durations differ; uniform grids use the closed form in :mod:`tinyml.sim.cost`.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def list_schedule(durations, n_slots):
    """(makespan, slot of each block): blocks in launch order, each to the earliest-free slot."""
    free = np.zeros(n_slots)              # a binary min-heap of slot free times ...
    slot_id = np.arange(n_slots)          # ... and which slot each heap entry is
    where = np.empty(len(durations), dtype=np.int64)
    for b in range(len(durations)):
        where[b] = slot_id[0]
        free[0] += durations[b]           # the root (earliest free) takes the block
        i = 0                             # sift it down
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
    return free.max(), where
