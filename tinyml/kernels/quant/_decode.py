"""Numba helpers the quantized kernels share: read fp16 scales, decode codes, count raw bytes.

All of them read the packed bytes of one weight row (``row``: uint8, the
layout of :mod:`.scheme`); ``cbase`` is the index of a block's first code
byte, ``e`` an element's index inside its group.
"""

from __future__ import annotations

import numpy as np

from ...sim.jit import njit  # versioned Numba cache, one compile per argument type
from ...sim.counters import FIRST_OPERAND, HBM_READ, SRAM_WRITE


@njit(cache=True)
def count_load_bytes(n_bytes, counters, blk, operand):
    """Count ``n_bytes`` of packed data moved HBM -> SRAM (raw bytes, no logical dtype)."""
    counters[blk, HBM_READ] += n_bytes
    counters[blk, SRAM_WRITE] += n_bytes
    counters[blk, FIRST_OPERAND + operand] += n_bytes


@njit(cache=True)
def half(lo, hi):
    """The fp16 number whose little-endian bytes are ``lo``, ``hi``, as float32 (exact)."""
    h = np.int32(lo) | (np.int32(hi) << 8)
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    if e == 0:
        v = m * 5.9604644775390625e-08                 # subnormal: m * 2**-24
    elif e == 31:
        v = np.inf if m == 0 else np.nan
    else:
        v = (1024 + m) * 2.0 ** (e - 25)
    if h & 0x8000:
        v = -v
    return np.float32(v)


@njit(cache=True)
def code_at(row, cbase, e, g, bits, split):
    """The raw code of element ``e`` of the group whose codes start at ``row[cbase]``."""
    if bits == 8:
        return np.int64(row[cbase + e])
    per = 8 // bits
    if split:
        plane = g // per
        b = np.int64(row[cbase + e % plane])
        shift = bits * (e // plane)
    else:
        b = np.int64(row[cbase + e // per])
        shift = bits * (e % per)
    return (b >> shift) & ((1 << bits) - 1)


@njit(cache=True)
def group_dot(row, cbase, lo, hi, g, bits, split, levels, xs, xo):
    """``(sum x[e] * levels[code(e)], sum x[e])`` over elements ``lo <= e < hi`` of one group;
    ``x[e]`` is ``xs[xo + e]``. Split-halves groups are always whole (lo = 0, hi = g)."""
    s = np.float32(0.0)
    sx = np.float32(0.0)
    if bits == 8:
        for e in range(lo, hi):
            xv = xs[xo + e]
            s += xv * levels[row[cbase + e]]
            sx += xv
    elif bits == 4 and split:
        h = g // 2
        for j in range(h):                         # byte j: element j (low), j + g/2 (high)
            b = row[cbase + j]
            x0 = xs[xo + j]
            x1 = xs[xo + j + h]
            s += x0 * levels[b & 15] + x1 * levels[b >> 4]
            sx += x0 + x1
    elif bits == 4:
        for j in range(lo // 2, hi // 2):          # byte j: element 2j (low), 2j + 1 (high)
            b = row[cbase + j]
            x0 = xs[xo + 2 * j]
            x1 = xs[xo + 2 * j + 1]
            s += x0 * levels[b & 15] + x1 * levels[b >> 4]
            sx += x0 + x1
    else:
        for e in range(lo, hi):
            xv = xs[xo + e]
            s += xv * levels[code_at(row, cbase, e, g, bits, split)]
            sx += xv
    return s, sx


@njit(cache=True)
def decode_into(row, cbase, lo, hi, g, bits, split, levels, scale, mn, out, j, off, transposed):
    """Dequantize elements ``lo <= e < hi`` of one group into ``out[off + e, j]``
    (``transposed``) or ``out[j, off + e]``: ``scale * levels[code] + mn``."""
    for e in range(lo, hi):
        v = scale * levels[code_at(row, cbase, e, g, bits, split)] + mn
        if transposed:
            out[off + e, j] = v
        else:
            out[j, off + e] = v


@njit(cache=True)
def tile_groups(k0, depth, g):
    """(first group, last group, headers read) of the K tile ``[k0, k0 + depth)``: a group's
    header (scale, min) is read by the tile holding its first element."""
    first = k0 // g
    last = (k0 + depth - 1) // g
    headers = last - (k0 + g - 1) // g + 1
    return first, last, headers
