"""SRAM capacity: tile sets that do not fit one SM are refused, with a way out."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import DTYPE_BITS, ELEM_BYTES, devices, logical_dtypes, tile_sram_bytes
from tinyml.kernels.matmul import choose_tiles, matmul
from tinyml.kernels.reference import matmul as ref_matmul
from tinyml.sim import Profile, SramOverflowError, TinymlError, check_tiles, load_device, tiles_bytes


def plain(msg: str) -> str:
    """The message with thousands separators removed, so numbers can be searched for."""
    return re.sub(r"(?<=\d),(?=\d{3})", "", msg)


def test_tiles_bytes_by_hand():
    tiles = {"Q": ((16, 64), "fp16"), "S": ((16, 16), "fp32"), "W": ((3, 3), "int4")}
    assert tiles_bytes(tiles) == 16 * 64 * 2 + 16 * 16 * 4 + 5   # 9 nibbles -> 5 bytes


@given(dev=devices(), rows=st.integers(1, 512), cols=st.integers(1, 512),
       dtype=st.sampled_from(sorted(DTYPE_BITS)))
def test_check_tiles_accepts_exactly_what_fits(dev, rows, cols, dtype):
    tiles = {"T": ((rows, cols), dtype), "acc": ((rows, 8), "fp32")}
    need = -(-rows * cols * DTYPE_BITS[dtype] // 8) + rows * 8 * 4
    if need <= dev.sram_per_sm:
        assert check_tiles(dev, tiles, kernel="k") == need
    else:
        with pytest.raises(SramOverflowError):
            check_tiles(dev, tiles, kernel="k")


def test_check_tiles_boundary_on_toy():
    toy = load_device("toy")
    assert check_tiles(toy, {"Q": ((32, 32), "fp16")}, kernel="k") == 2048 == toy.sram_per_sm
    with pytest.raises(SramOverflowError):
        check_tiles(toy, {"Q": ((32, 32), "fp16"), "m": ((1,), "int8")}, kernel="k")


def test_overflow_message_names_shapes_bytes_and_budget():
    toy = load_device("toy")
    tiles = {"Q tile": ((32, 33), "fp16"), "K tile": ((8, 4), "fp32")}
    with pytest.raises(SramOverflowError) as err:
        check_tiles(toy, tiles, kernel="my_kernel", suggest=lambda: "Try block_n=16")
    msg = plain(str(err.value))
    assert "my_kernel" in msg and "toy" in msg
    assert "Q tile" in msg and "32x33" in msg and "K tile" in msg and "8x4" in msg
    assert "2112" in msg and "128" in msg            # bytes of each tile
    assert str(32 * 33 * 2 + 8 * 4 * 4) in msg        # total needed
    assert "2048" in msg                              # the budget
    assert "Try block_n=16" in msg
    assert isinstance(err.value, TinymlError)


def _suggested(msg: str) -> tuple[int, int, int]:
    found = re.search(r"block_m=(\d+), block_n=(\d+), block_k=(\d+)", msg)
    assert found, msg
    return tuple(int(g) for g in found.groups())


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("dtype", ["fp16", "fp32"])
def test_oversized_blocks_suggest_blocks_that_fit(warm_kernels, version, dtype):
    toy = load_device("toy")
    rng = np.random.default_rng(version)
    m, n, k = 37, 29, 45
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    with Profile(toy):
        with pytest.raises(SramOverflowError) as err:
            matmul(a, b, version=version, dtype=dtype, block_m=64, block_n=64, block_k=64)
    msg = plain(str(err.value))
    assert "64x64" in msg
    assert str(tile_sram_bytes(64, 64, 64, dtype)) in msg and "2048" in msg
    bm, bn, bk = _suggested(msg)
    assert tile_sram_bytes(bm, bn, bk, dtype) <= toy.sram_per_sm
    # ... and the suggestion really runs, and is right
    with Profile(toy) as prof:
        c = matmul(a, b, version=version, dtype=dtype, block_m=bm, block_n=bn, block_k=bk)
    np.testing.assert_allclose(c, ref_matmul(a, b), rtol=1e-4, atol=1e-4)
    assert prof.records[0].sram_per_block_bytes == tile_sram_bytes(bm, bn, bk, dtype)


def test_device_whose_sram_cannot_hold_any_tile():
    tiny = load_device("toy").replace(sram_per_sm=256)
    with Profile(tiny):
        with pytest.raises(SramOverflowError):
            matmul(np.ones((4, 4), np.float32), np.ones((4, 4), np.float32), version=2)


@given(dev=devices(), m=st.integers(1, 5000), n=st.integers(1, 5000), k=st.integers(1, 5000),
       dtype=logical_dtypes())
def test_chosen_tiles_fit_every_preset(dev, m, n, k, dtype):
    t = choose_tiles(dev, m, n, k, dtype)
    assert min(t.block_m, t.block_n, t.block_k) >= 1
    need = tile_sram_bytes(t.block_m, t.block_n, t.block_k, dtype)
    assert t.sram_bytes(dtype) == need
    assert need <= dev.sram_per_sm
    # the chosen tiles pass the kernel's own SRAM check
    assert check_tiles(dev, t.sram_tiles(dtype), kernel="matmul") == need


@pytest.mark.parametrize("name", ["a100-40gb", "toy", "h100-sxm", "m2-max"])
@pytest.mark.parametrize("dtype", list(ELEM_BYTES))
def test_default_tiles_fit_in_a_launch(warm_kernels, name, dtype):
    from tinyml.sim import meta

    dev = load_device(name)
    with Profile(dev) as prof:
        matmul(meta((300, 200), dtype), meta((200, 100), dtype), version=3)
    rec = prof.records[0]
    assert 0 < rec.sram_per_block_bytes <= dev.sram_per_sm
    assert rec.blocks_per_sm == min(dev.max_blocks_per_sm, dev.sram_per_sm // rec.sram_per_block_bytes)


def test_register_tiles_leave_sram_on_devices_with_a_register_file():
    from tinyml.sim import tile_budget, tiles_fit

    tiles = {"A": ((64, 64), "fp16"), "acc": ((128, 64), "fp32", "reg")}     # m2-max: 8 + 32 KB > 32 KB
    a100, m2 = load_device("a100-40gb"), load_device("m2-max")
    assert tile_budget(a100, tiles) == (64 * 64 * 2, 128 * 64 * 4)
    assert tile_budget(m2, tiles) == (64 * 64 * 2 + 128 * 64 * 4, 0)        # no register file: all SRAM
    assert check_tiles(a100, tiles, kernel="k") == 64 * 64 * 2
    assert tiles_fit(a100, tiles) and not tiles_fit(m2, tiles)
    big = {"A": ((8, 8), "fp16"), "acc": ((512, 256), "fp32", "reg")}      # 512 KB of accumulators
    with pytest.raises(SramOverflowError) as err:
        check_tiles(a100, big, kernel="k", suggest=lambda: "use smaller blocks")
    msg = plain(str(err.value))
    assert "registers" in msg and "524288" in msg and "262144" in msg and "acc 512x256 fp32" in msg
