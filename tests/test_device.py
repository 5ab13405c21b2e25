"""Devices: presets load, every number is sourced, the A100 is the FlashAttention
paper's, user TOML files load, and malformed ones are refused with a message
naming the file and the field."""

from __future__ import annotations

import math
import sys
from importlib import resources

import pytest
from hypothesis import given

from strategies import PRESETS, preset_names
from tinyml.sim import Device, DeviceConfigError, TinymlError, list_presets, load_device

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# (section, key) -> Device attribute, written out from the schema in device.py's docstring
SCALAR_FIELDS = {
    ("sm", "count"): "sm_count",
    ("sm", "clock_hz"): "clock_hz",
    ("sm", "sram_bytes"): "sram_per_sm",
    ("sm", "max_blocks"): "max_blocks_per_sm",
    ("sram", "bandwidth"): "sram_bandwidth",
    ("hbm", "capacity_bytes"): "hbm_capacity",
    ("hbm", "bandwidth"): "hbm_bandwidth",
    ("host", "bandwidth"): "host_bandwidth",
    ("launch", "overhead_s"): "launch_overhead_s",
    ("efficiency", "hbm"): "eff_hbm",
    ("efficiency", "sram"): "eff_sram",
    ("efficiency", "matmul"): "eff_matmul",
    ("efficiency", "vector"): "eff_vector",
    ("sm", "register_bytes"): "register_bytes",          # optional
    ("l2", "capacity_bytes"): "l2_bytes",                # optional
    ("sfu", "ops_per_s"): "sfu_rate",                    # optional
    ("int32", "ops_per_s"): "int_rate",                  # optional
    ("sm", "max_threads_per_sm"): "max_threads_per_sm",  # optional
    ("convert", "ops_per_s"): "cvt_rate",                # optional
}
N_OPTIONAL = 6


def preset_toml(name: str) -> dict:
    return tomllib.loads((resources.files("tinyml.sim") / "presets" / f"{name}.toml").read_text())


# ---- presets ------------------------------------------------------------------------

def test_presets_listed():
    names = list_presets()
    assert names == sorted(names)
    for required in ("a100-40gb", "a100-80gb", "h100-sxm", "h200", "rtx-4090", "mi300x", "m2-max", "toy"):
        assert required in names


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_with_sources(name):
    dev = load_device(name)
    assert isinstance(dev, Device)
    assert dev.name == name
    assert dev.description
    raw = preset_toml(name)
    n_numbers = 0
    for section, table in raw.items():
        if not isinstance(table, dict):
            continue
        for key, entry in table.items():
            n_numbers += 1
            # every number in the file is a {value, source} table with a non-empty source ...
            assert isinstance(entry, dict) and entry.get("source"), f"{name}: [{section}] {key}"
            # ... and the Device carries both, unchanged
            assert dev.sources[f"{section}.{key}"] == entry["source"]
            if (section, key) in SCALAR_FIELDS:
                assert getattr(dev, SCALAR_FIELDS[section, key]) == entry["value"]
            elif section == "matmul_flops":
                assert dev.matmul_rate(key) == entry["value"]
            elif section == "vector_flops":
                assert dev.vector_rate(key) == entry["value"]
            elif section == "mma_sync_flops":      # an instruction class below the peak
                assert dev.matmul_rate(key, "mma_sync") == entry["value"] < dev.matmul_rate(key)
            else:
                pytest.fail(f"{name}: unexpected number [{section}] {key}")
    assert n_numbers >= len(SCALAR_FIELDS) - N_OPTIONAL + 4
    assert all(isinstance(s, str) and s.strip() for s in dev.sources.values())


@given(preset_names())
def test_preset_numbers_are_sane(name):
    dev = load_device(name)
    for attr in SCALAR_FIELDS.values():
        value = getattr(dev, attr)
        assert (value >= 0 if attr in ("register_bytes", "l2_bytes", "sfu_rate", "int_rate", "max_threads_per_sm", "cvt_rate") else value > 0) and math.isfinite(value), attr
    for attr in ("eff_hbm", "eff_sram", "eff_matmul", "eff_vector"):
        assert 0 < getattr(dev, attr) <= 1
    for attr in ("sm_count", "sram_per_sm", "max_blocks_per_sm", "hbm_capacity"):
        assert isinstance(getattr(dev, attr), int)
    assert dev.sram_total == dev.sm_count * dev.sram_per_sm
    for dt in ("fp16", "bf16", "fp32"):
        assert dev.matmul_rate(dt) > 0
    assert dev.vector_rate("fp32") > 0
    ridge = dev.matmul_rate("fp16") * dev.eff_matmul / (dev.hbm_bandwidth * dev.eff_hbm)
    assert dev.ridge_point("fp16") == pytest.approx(ridge)


def test_a100_matches_flashattention_paper():
    dev = load_device("a100-40gb")
    assert dev.sm_count == 108
    assert dev.sram_per_sm == 192 * 1024 == 196608
    assert dev.sram_total == 108 * 196608
    assert round(dev.sram_total / 2 ** 20) == 20          # "~20 MB" of SRAM in total
    assert dev.sram_bandwidth == 19e12
    assert dev.hbm_capacity == 40 * 10 ** 9
    assert dev.hbm_bandwidth == 1.5e12
    assert dev.host_bandwidth == 12.8e9
    assert dev.matmul_rate("fp16") == 312e12
    assert dev.vector_rate("fp32") == 19.5e12


def test_default_device_is_the_paper_a100():
    assert load_device() is load_device("a100-40gb")
    dev = load_device("toy")
    assert load_device(dev) is dev


def test_dtype_aliases_and_fallbacks():
    dev = load_device("a100-40gb")
    assert dev.matmul_rate("float16") == dev.matmul_rate("fp16")
    assert dev.vector_rate("bfloat16") == dev.vector_rate("fp32")  # no bf16 vector rate: fp32's


def test_missing_rate_raises_device_config_error():
    toy = load_device("toy")
    with pytest.raises(DeviceConfigError, match="int8"):
        toy.matmul_rate("int8")


def test_replace_changes_one_number_only():
    dev = load_device("a100-40gb")
    fast = dev.replace(hbm_bandwidth=3e12)
    assert fast.hbm_bandwidth == 3e12 and dev.hbm_bandwidth == 1.5e12
    assert fast.sm_count == dev.sm_count and fast.sram_per_sm == dev.sram_per_sm


def test_to_dict_has_every_field():
    d = load_device("toy").to_dict()
    assert d["sm_count"] == 4 and d["sram_total"] == 4 * 2048
    assert d["matmul_flops"]["fp16"] == 4e12
    assert "sm.count" in d["sources"]


# ---- user TOML files ----------------------------------------------------------------

def user_config() -> dict:
    """A complete device with plain numbers (no sources), as a user might write it."""
    return {
        "name": "my-gpu",
        "description": "a made-up accelerator",
        "sm": {"count": 10, "clock_hz": 1.5e9, "sram_bytes": 65536, "max_blocks": 8},
        "sram": {"bandwidth": 5e12},
        "hbm": {"capacity_bytes": 8 * 10 ** 9, "bandwidth": 5e11},
        "host": {"bandwidth": 16e9},
        "launch": {"overhead_s": 4e-6},
        "matmul_flops": {"fp16": 50e12, "bf16": 50e12, "fp32": 10e12},
        "vector_flops": {"fp32": 10e12},
        "efficiency": {"hbm": 0.9, "sram": 0.9, "matmul": 0.75, "vector": 0.5},
    }


def _value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def to_toml(cfg: dict) -> str:
    """A tiny TOML writer: top-level scalars, then one [section] per dict."""
    lines = [f"{k} = {_value(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for section, table in cfg.items():
        if isinstance(table, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def write(tmp_path, cfg_or_text, name="my-gpu.toml"):
    path = tmp_path / name
    path.write_text(cfg_or_text if isinstance(cfg_or_text, str) else to_toml(cfg_or_text))
    return path


def test_user_toml_with_plain_numbers_loads(tmp_path):
    cfg = user_config()
    path = write(tmp_path, cfg)
    dev = load_device(path)
    assert dev.name == "my-gpu"
    assert dev.sm_count == 10 and isinstance(dev.sm_count, int)
    assert dev.sram_per_sm == 65536
    assert dev.hbm_capacity == 8 * 10 ** 9 and isinstance(dev.hbm_capacity, int)
    assert dev.hbm_bandwidth == 5e11
    assert dev.launch_overhead_s == 4e-6
    assert dev.eff_matmul == 0.75
    assert dev.matmul_rate("bf16") == 50e12
    assert dev.vector_rate("fp32") == 10e12
    # plain numbers: the file itself is the source of each
    assert dev.sources["hbm.bandwidth"] == str(path)
    assert len(dev.sources) == len(SCALAR_FIELDS) - N_OPTIONAL + 4          # the optional ones are absent
    # also accepted as a string path
    assert load_device(str(path)).sm_count == 10


def test_user_toml_with_sourced_numbers(tmp_path):
    cfg = user_config()
    cfg["sm"]["count"] = None  # placeholder, written by hand below
    text = to_toml(cfg).replace("count = None", 'count = { value = 12, source = "my datasheet" }')
    dev = load_device(write(tmp_path, text))
    assert dev.sm_count == 12
    assert dev.sources["sm.count"] == "my datasheet"


def _drop(cfg, section, key=None):
    if key is None:
        del cfg[section]
    else:
        del cfg[section][key]
    return cfg


def _set(cfg, section, key, value):
    if section is None:
        cfg[key] = value
    else:
        cfg[section][key] = value
    return cfg


BAD_CONFIGS = {
    # id: (mutation, words the message must contain)
    "missing-section": (lambda c: _drop(c, "hbm"), ["[hbm]"]),
    "missing-key": (lambda c: _drop(c, "sm", "clock_hz"), ["[sm]", "clock_hz"]),
    "missing-rate": (lambda c: _drop(c, "matmul_flops", "bf16"), ["[matmul_flops]", "bf16"]),
    "missing-name": (lambda c: _drop(c, "name"), ["name"]),
    "negative": (lambda c: _set(c, "hbm", "bandwidth", -1.5e12), ["[hbm]", "bandwidth", "-1"]),
    "zero": (lambda c: _set(c, "sm", "count", 0), ["[sm]", "count"]),
    "fractional-count": (lambda c: _set(c, "sm", "count", 10.5), ["[sm]", "count", "10.5"]),
    "efficiency-above-1": (lambda c: _set(c, "efficiency", "hbm", 1.5), ["[efficiency]", "hbm", "1.5"]),
    "string-number": (lambda c: _set(c, "sm", "sram_bytes", "192KB"), ["[sm]", "sram_bytes", "192KB"]),
    "bool-number": (lambda c: _set(c, "launch", "overhead_s", True), ["[launch]", "overhead_s"]),
    "negative-rate": (lambda c: _set(c, "vector_flops", "fp32", -1.0), ["[vector_flops]", "fp32"]),
    "unknown-dtype-key": (lambda c: _set(c, "matmul_flops", "fp64", 1e12), ["[matmul_flops]", "fp64"]),
    "unknown-top-level-key": (lambda c: _set(c, None, "colour", "green"), ["colour"]),
    "unknown-section": (lambda c: _set(c, None, "tensor_cores", {"count": 4}), ["tensor_cores"]),
    # typos in optional keys used to be silently ignored (the cost model silently changed)
    "optional-key-typo": (lambda c: _set(c, "sm", "register_byte", 65536),
                          ["[sm]", "unknown key `register_byte`", "did you mean `register_bytes`?"]),
    "optional-section-key-typo": (lambda c: _set(c, None, "l2", {"capacity_byte": 2 ** 22}),
                                  ["[l2]", "unknown key `capacity_byte`", "did you mean `capacity_bytes`?"]),
    "unknown-key-in-known-section": (lambda c: _set(c, "sm", "warp_size", 32), ["[sm]", "`warp_size`"]),
    "required-key-typo": (lambda c: _set(_drop(c, "hbm", "capacity_bytes"), "hbm", "capacity_byte", 8e9),
                          ["[hbm]", "`capacity_byte`", "did you mean `capacity_bytes`?"]),
    "key-in-the-wrong-section": (lambda c: _set(c, None, "l2", {"register_bytes": 65536}),
                                 ["[l2]", "`register_bytes` belongs in [sm]"]),
    "section-typo": (lambda c: _set(c, None, "efficency", {"hbm": 0.5}),
                     ["unknown section [efficency]", "did you mean `efficiency`?"]),
    "dtype-typo": (lambda c: _set(c, "matmul_flops", "fp61", 1e12), ["[matmul_flops] fp61", "did you mean"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_user_toml_names_file_and_field(tmp_path, case):
    mutate, words = BAD_CONFIGS[case]
    path = write(tmp_path, mutate(user_config()), name=f"bad-{case}.toml")
    with pytest.raises(DeviceConfigError) as err:
        load_device(path)
    msg = str(err.value)
    assert str(path) in msg
    for word in words:
        assert word in msg, (word, msg)


def test_malformed_toml(tmp_path):
    path = write(tmp_path, 'name = "x"\n[sm\ncount = = 3\n', name="broken.toml")
    with pytest.raises(DeviceConfigError) as err:
        load_device(path)
    assert "broken.toml" in str(err.value)
    assert "TOML" in str(err.value)


def test_table_without_value(tmp_path):
    text = to_toml(user_config()).replace("count = 10", 'count = { source = "somewhere" }')
    with pytest.raises(DeviceConfigError, match=r"\[sm\] count"):
        load_device(write(tmp_path, text))


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "gpu.toml"
    with pytest.raises(DeviceConfigError) as err:
        load_device(path)
    assert str(path) in str(err.value)


def test_unknown_preset_lists_presets():
    with pytest.raises(DeviceConfigError) as err:
        load_device("a100-400gb")
    msg = str(err.value)
    assert "a100-400gb" in msg
    for name in PRESETS:
        assert name in msg


def test_device_config_error_is_a_tinyml_error():
    assert issubclass(DeviceConfigError, TinymlError)


def test_infinite_integer_field_is_a_config_error(tmp_path):
    text = to_toml(user_config()).replace("count = 10", "count = inf")
    with pytest.raises(DeviceConfigError, match=r"\[sm\] count"):
        load_device(write(tmp_path, text, name="inf.toml"))


def test_edited_user_file_is_reloaded(tmp_path):
    cfg = user_config()
    path = write(tmp_path, cfg, name="edited.toml")
    assert load_device(path).sm_count == 10
    cfg["sm"]["count"] = 20
    write(tmp_path, cfg, name="edited.toml")
    assert load_device(path).sm_count == 20


def test_preset_names_are_not_shadowed_by_the_working_directory(tmp_path, monkeypatch):
    import tinyml.sim.device as device_module

    monkeypatch.setattr(device_module, "_PRESET_CACHE", {})   # as in a fresh process
    (tmp_path / "h200").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_device("h200").name == "h200"


def test_infinite_bandwidth_is_a_config_error(tmp_path):
    cfg = user_config()
    text = to_toml(cfg).replace(f"bandwidth = {cfg['hbm']['bandwidth']!r}", "bandwidth = inf", 1)
    assert "inf" in text
    with pytest.raises(DeviceConfigError, match="finite"):
        load_device(write(tmp_path, text, name="inf_bw.toml"))


def test_directory_is_not_a_device_file(tmp_path):
    (tmp_path / "gpu.toml").mkdir()
    with pytest.raises(DeviceConfigError, match="is a directory"):
        load_device(tmp_path / "gpu.toml")


def test_register_file_and_l2_are_optional_and_present_on_real_gpus(tmp_path):
    for name in ("a100-40gb", "a100-80gb", "h100-sxm", "h200", "rtx-4090", "mi300x"):
        dev = load_device(name)
        assert dev.register_bytes >= 256 * 1024 and dev.l2_bytes >= 40 * 2**20, name
    toy = load_device("toy")
    assert toy.register_bytes == 2048 and toy.l2_bytes == 0       # no cache: L2 panels only, countable by hand
    assert load_device("m2-max").register_bytes == 0              # not published: accumulators count as SRAM
    text = (resources.files("tinyml.sim") / "presets" / "a100-40gb.toml").read_text()
    path = tmp_path / "regs.toml"
    path.write_text(text.replace("register_bytes = { value = 262144", "register_bytes = { value = -1"))
    with pytest.raises(DeviceConfigError, match="register_bytes must be positive"):
        load_device(str(path))


def test_every_shipped_preset_uses_only_known_keys():
    """The rule that refuses a typo must accept every preset as shipped (each number checked above)."""
    from tinyml.sim.device import _SCHEMA

    for name in list_presets():
        data = tomllib.loads((resources.files("tinyml.sim") / "presets" / f"{name}.toml").read_text())
        assert set(data) <= set(_SCHEMA), name
        assert load_device(name).name == name


def test_a_misspelt_field_of_a_sourced_entry_is_refused(tmp_path):
    text = to_toml(user_config()).replace("count = 10", 'count = { value = 10, sorce = "my datasheet" }')
    with pytest.raises(DeviceConfigError) as err:
        load_device(write(tmp_path, text))
    for word in ("[sm] count", "unknown field `sorce`", "did you mean `source`?"):
        assert word in str(err.value)
