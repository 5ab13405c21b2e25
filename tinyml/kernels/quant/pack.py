"""Codes and scales <-> the packed bytes of :mod:`.scheme`'s layout (NumPy, vectorised).

``pack`` turns codes ``(N, G, g)`` and fp16 scales (and mins) ``(N, G)`` into
``(N, G * block_bytes)`` uint8; ``unpack`` is its inverse. Sub-byte codes go
low bits first; see the module docstring of :mod:`.scheme` for the two orders.
"""

from __future__ import annotations

import numpy as np

from .scheme import Layout


def pack(codes: np.ndarray, scale: np.ndarray, minimum, lay: Layout, split: bool) -> np.ndarray:
    n, groups, g = codes.shape                                    # (N, G, g)
    per = lay.codes_per_byte
    codes = codes.astype(np.uint8)
    if per == 1:
        body = codes                                              # (N, G, g)
    else:
        # (N, G, per, g/per): split -> element t*g/per + j; interleaved -> element j*per + t
        parts = codes.reshape(n, groups, per, g // per) if split else \
            np.swapaxes(codes.reshape(n, groups, g // per, per), 2, 3)
        body = np.zeros((n, groups, g // per), np.uint8)          # (N, G, g*bits/8)
        for t in range(per):
            body |= (parts[:, :, t, :] << (lay.bits * t)).astype(np.uint8)
    heads = [_half_bytes(scale)]
    if minimum is not None:
        heads.append(_half_bytes(minimum))
    blocks = np.concatenate(heads + [body], axis=2)               # (N, G, block_bytes)
    return np.ascontiguousarray(blocks.reshape(n, groups * lay.block_bytes))


def unpack(data: np.ndarray, lay: Layout, split: bool, has_min: bool):
    """(codes (N, G, g) uint8, scale (N, G) float32, min (N, G) float32 or None)."""
    n = data.shape[0]
    blocks = data.reshape(n, lay.groups_per_row, lay.block_bytes)    # (N, G, block_bytes)
    scale = _half_values(blocks[:, :, 0:2])
    minimum = _half_values(blocks[:, :, 2:4]) if has_min else None
    body = blocks[:, :, lay.header_bytes:]                          # (N, G, g*bits/8)
    per = lay.codes_per_byte
    if per == 1:
        return body.copy(), scale, minimum
    mask = (1 << lay.bits) - 1
    parts = np.stack([(body >> (lay.bits * t)) & mask for t in range(per)], axis=2)   # (N, G, per, g/per)
    codes = parts if split else np.swapaxes(parts, 2, 3)
    return codes.reshape(n, lay.groups_per_row, lay.group).astype(np.uint8), scale, minimum


def _half_bytes(values: np.ndarray) -> np.ndarray:
    """fp16 values (N, G) -> their little-endian bytes (N, G, 2)."""
    half = np.ascontiguousarray(np.asarray(values, np.float32).astype("<f2"))
    return half.view(np.uint8).reshape(half.shape + (2,))


def _half_values(two: np.ndarray) -> np.ndarray:
    """Little-endian fp16 bytes (N, G, 2) -> float32 (N, G)."""
    return np.ascontiguousarray(two).view("<f2")[..., 0].astype(np.float32)
