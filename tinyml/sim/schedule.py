"""The block scheduler: each block goes to the first SM slot that frees up.

This is list scheduling on identical slots, what a GPU's block scheduler does:
a grid of uneven blocks (causal attention's diagonal, edge tiles) balances
across SMs instead of waiting at wave boundaries. Loaded only when block
durations differ; uniform grids use the closed form in :mod:`tinyml.sim.cost`.

Blocks come as *segments*: ``length[s]`` consecutive blocks that each take
``duration[s]`` and use ``times[s]`` of each resource (a run of one block
class, cut at wave boundaries). The loop still places every block, but memory stays
O(segments + slots), never O(blocks), and a block costs O(1) time while durations are
near-uniform (a sorted ring instead of a heap), otherwise O(log slots) plus moving the shorter
side of the ring by one.
"""

from __future__ import annotations

import numpy as np

from .jit import njit  # versioned Numba cache, one compile per argument type


@njit(cache=True)
def list_schedule(length, duration, times, n_slots):
    """(per-slot busy time, per-slot resource times (n_slots, 4)) of list scheduling: blocks in
    launch order, each to the earliest-free slot (the one that freed first, among equals).

    The slots' free times are kept sorted in a ring (``free[(head + i) % n_slots]`` ascending
    in i). The earliest-free slot is at ``head``; its new free time ``v`` goes back into the ring
    where it belongs, after the entries <= v. When v is the latest of all (always, while the block
    durations differ by less than the spread they leave) that is the back: advance ``head``, O(1).
    Otherwise the entries on the shorter side of the insertion point move by one: toward the
    head, into the slot just taken, or toward the back, where that slot also sits in a ring. A
    grid of one slow block per 31 fast ones (a per-row quantization scale) inserts near the back
    every time, so that side costs a few moves where the other cost hundreds (9.4 million blocks:
    seconds, not minutes).
    """
    free = np.zeros(n_slots)
    slot_id = np.arange(n_slots)
    used = np.zeros((n_slots, times.shape[1]))
    head = 0
    for s in range(len(length)):
        d = duration[s]
        for _ in range(length[s]):
            slot = slot_id[head]
            for r in range(times.shape[1]):   # (a scalar loop: a row slice would allocate per block)
                used[slot, r] += times[s, r]
            v = free[head] + d
            if v >= free[(head + n_slots - 1) % n_slots]:      # the latest: to the back of the ring
                free[head] = v
                head = (head + 1) % n_slots
                continue
            lo, hi = 0, n_slots - 1           # the last ring position i with free <= v (i >= 0)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if free[(head + mid) % n_slots] <= v:
                    lo = mid
                else:
                    hi = mid - 1
            if lo <= n_slots - 1 - lo:        # shift positions 1 .. lo toward the head by one
                for i in range(lo):
                    a = (head + i) % n_slots
                    b = (a + 1) % n_slots
                    free[a] = free[b]
                    slot_id[a] = slot_id[b]
                a = (head + lo) % n_slots
            else:                             # shift positions lo+1 .. n-1 toward the back, into head
                for i in range(n_slots - 1, lo, -1):
                    a = (head + i) % n_slots
                    b = (a + 1) % n_slots
                    free[b] = free[a]
                    slot_id[b] = slot_id[a]
                a = (head + lo + 1) % n_slots
                head = (head + 1) % n_slots
            free[a] = v
            slot_id[a] = slot
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
