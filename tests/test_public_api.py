"""The public names a reader imports: each package exports its entry points, and importing stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

ATTENTION = ["flash_attention", "flash_attention_backward", "flash_blocks", "standard_attention",
             "standard_attention_backward", "decode_attention", "KVCache", "bytes_per_token", "auto_splits"]


def test_attention_package_exports_its_entry_points():
    import tinyml.kernels.attention as att
    from tinyml.kernels.attention import decode, decode_split, flash, kv_cache, standard

    assert sorted(att.__all__) == sorted(ATTENTION)
    home = {"flash_attention": flash, "flash_attention_backward": flash, "flash_blocks": flash,
            "standard_attention": standard, "standard_attention_backward": standard,
            "decode_attention": decode, "KVCache": kv_cache, "bytes_per_token": kv_cache,
            "auto_splits": decode_split}
    for name in ATTENTION:                                    # the package name is the module's object
        assert getattr(att, name) is getattr(home[name], name), name


def test_import_tinyml_stays_light():
    code = "import sys, tinyml; print(sorted(m for m in ('numba', 'tinyml.kernels') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_flash_blocks_are_the_blocks_the_kernels_choose():
    from tinyml.kernels.attention import flash_attention, flash_blocks
    from tinyml.kernels.attention.flash1 import default_blocks
    from tinyml.sim import Profile, load_device, meta

    dev = load_device("a100-40gb")
    assert flash_blocks(dev, 1024, 1024, 64, version=1) == default_blocks(dev, 1024, 1024, 64, "fp16")
    assert flash_blocks("a100-40gb", 1024, 1024, 64, version=1) == (64, 384)   # Algorithm 1: B_c = ceil(M / 4d)
    for version in (1, 2):
        bq, bk = flash_blocks(dev, 300, 500, 64, version=version)
        assert 1 <= bq <= 300 and 1 <= bk <= 500
        records = []
        for blocks in ({}, {"block_q": bq, "block_k": bk}):   # the defaults == the blocks flash_blocks names
            with Profile(dev) as prof:
                q, k, v = meta((1, 2, 300, 64), "fp16"), meta((1, 2, 500, 64), "fp16"), meta((1, 2, 500, 64), "fp16")
                flash_attention(q, k, v, version=version, **blocks)
            r = prof.records[0]
            records.append((r.grid, r.hbm_read_bytes, r.hbm_write_bytes, r.sram_per_block_bytes))
        assert records[0] == records[1], version


def test_flash_blocks_bad_input_teaches():
    from tinyml.kernels.attention import flash_blocks
    from tinyml.sim import SramOverflowError, TileConfigError

    with pytest.raises(TileConfigError, match="version must be 1 or 2, got 3"):
        flash_blocks("a100-40gb", 128, 128, 64, version=3)
    for version in (1, 2):
        with pytest.raises(SramOverflowError, match="largest head"):
            flash_blocks("a100-40gb", 128, 128, 1 << 16, version=version)
