"""The simulated GPU: a frozen bundle of numbers, each with its source.

Presets are TOML files in ``tinyml/sim/presets/`` (data, not code). Every
number is written as ``key = { value = ..., source = "..." }`` so a reader can
check where it came from. A user file may also give plain numbers; their source
is then the file itself.

Schema (all sections and keys are required unless marked optional)::

    name = "a100-40gb"
    description = "..."
    [sm]            count, clock_hz, sram_bytes, max_blocks
    [sram]          bandwidth                     # bytes/s, whole chip
    [hbm]           capacity_bytes, bandwidth     # bytes, bytes/s
    [host]          bandwidth                     # bytes/s, host DRAM <-> HBM
    [launch]        overhead_s
    [matmul_flops]  fp16, bf16, fp32 (int8, fp8 optional)   # FLOP/s, tensor cores
    [vector_flops]  fp32 (fp16, bf16 optional)              # FLOP/s, CUDA cores
    [efficiency]    hbm, sram, matmul, vector     # achievable / spec, in (0, 1]

Optional (0 when absent)::

    [sm]            register_bytes                # register file per SM: accumulators live here
    [sm]            max_threads_per_block         # threads one block may have (0: CUDA's 1024)
    [sm]            max_threads_per_sm            # threads resident on one SM (0: 2048, CUDA's value for
                                                  # compute capability 8.0 and 9.0): limits occupancy
    [l2]            capacity_bytes                # last-level cache in front of HBM
    [sfu]           ops_per_s                     # special-function unit (exp2, rcp, ...) results/s
    [int32]         ops_per_s                     # INT32 pipe issued alongside FP32 (0: integer ops
                                                  # share the FP32 vector rate)
    [convert]       ops_per_s                     # type conversions (I2F, F2I, ...) results/s (0: one
                                                  # FP32-pipe instruction each)
    [mma_sync_flops] fp16, bf16, ...              # FLOP/s of Ampere-style warp-level mma.sync, where
                                                  # it is below [matmul_flops] (Hopper: only wgmma
                                                  # reaches the peak)

Instruction classes: ``matmul_rate(dtype, "mma_sync")`` is the ``[mma_sync_flops]`` rate when the
device lists one, else the peak; ``"wgmma"`` / ``"peak"`` (and None) are the peak. A kernel says which
class it issues (:class:`tinyml.sim.cost.Issue`).

Any other section or key is an error that suggests the closest known one
(:func:`tinyml.sim.sourced.check_keys`): a misspelt optional key would
otherwise silently change the cost model.

A device without a register file keeps every tile, accumulators included, in
SRAM; a device without an L2 capacity (``toy``, so its numbers can be checked
by hand) gets no reuse of re-read data (see :mod:`tinyml.sim.cost`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .dtypes import BITS, canonical
from .errors import DeviceConfigError
from .sourced import check_keys, closest, read_toml_text, sourced_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

DEFAULT_DEVICE = "a100-40gb"
#: resident threads per SM where a device gives no ``[sm] max_threads_per_sm``: CUDA's 2048 for
#: compute capability 8.0 and 9.0 (CUDA C++ Programming Guide, technical specifications table)
DEFAULT_THREADS_PER_SM = 2048

# (section, key, attribute, integer?)
_SCALARS = [
    ("sm", "count", "sm_count", True),
    ("sm", "clock_hz", "clock_hz", False),
    ("sm", "sram_bytes", "sram_per_sm", True),
    ("sm", "max_blocks", "max_blocks_per_sm", True),
    ("sram", "bandwidth", "sram_bandwidth", False),
    ("hbm", "capacity_bytes", "hbm_capacity", True),
    ("hbm", "bandwidth", "hbm_bandwidth", False),
    ("host", "bandwidth", "host_bandwidth", False),
    ("launch", "overhead_s", "launch_overhead_s", False),
    ("efficiency", "hbm", "eff_hbm", False),
    ("efficiency", "sram", "eff_sram", False),
    ("efficiency", "matmul", "eff_matmul", False),
    ("efficiency", "vector", "eff_vector", False),
]
# optional scalars: (section, key, attribute, integer?), 0 when absent
_OPTIONAL = [
    ("sm", "register_bytes", "register_bytes", True),
    ("sm", "max_threads_per_block", "max_threads_per_block", True),
    ("sm", "max_threads_per_sm", "max_threads_per_sm", True),
    ("l2", "capacity_bytes", "l2_bytes", True),
    ("sfu", "ops_per_s", "sfu_rate", False),
    ("int32", "ops_per_s", "int_rate", False),
    ("convert", "ops_per_s", "cvt_rate", False),
]
#: rate tables a device may leave out (no required keys)
_OPTIONAL_RATE_TABLES = ("mma_sync_flops",)
#: instruction classes a kernel may declare for its tensor-core work
MMA_CLASSES = ("peak", "mma_sync", "wgmma")
_RATE_TABLES = {"matmul_flops": ("fp16", "bf16", "fp32"), "vector_flops": ("fp32",)}

#: every name a device TOML may use: {top-level name: keys of its table (None: a string, or a
#: rate table whose keys are dtypes, checked by `canonical`)}. Anything else is refused.
_SCHEMA: dict = {"name": None, "description": None, **{sec: None for sec in _RATE_TABLES},
                 **{sec: None for sec in _OPTIONAL_RATE_TABLES},
                 **{sec: tuple(key for s, key, *_ in _SCALARS + _OPTIONAL if s == sec)
                    for sec, *_ in _SCALARS + _OPTIONAL}}


@dataclass(frozen=True, eq=False)
class Device:
    """A simulated accelerator. Build one with :func:`load_device`.

    Rates are spec numbers; the cost model multiplies each by its efficiency
    factor (``eff_*``) to get what a real kernel can reach.
    """

    name: str
    description: str
    sm_count: int
    clock_hz: float
    sram_per_sm: int
    max_blocks_per_sm: int
    sram_bandwidth: float
    hbm_capacity: int
    hbm_bandwidth: float
    host_bandwidth: float
    launch_overhead_s: float
    eff_hbm: float
    eff_sram: float
    eff_matmul: float
    eff_vector: float
    matmul_flops: Mapping[str, float]
    vector_flops: Mapping[str, float]
    register_bytes: int = 0         # register file per SM (0: accumulators live in SRAM)
    l2_bytes: int = 0               # L2 / last-level cache capacity (0: no capacity reuse)
    max_threads_per_block: int = 0  # threads per block (0: CUDA's and Metal's 1024)
    max_threads_per_sm: int = 0     # resident threads per SM (0: DEFAULT_THREADS_PER_SM)
    sfu_rate: float = 0.0           # special-function results/s, whole chip (0: exp costed as vector FLOPs only)
    int_rate: float = 0.0           # INT32 ops/s on their own pipe, whole chip (0: on the FP32 pipe)
    cvt_rate: float = 0.0           # int <-> float conversions/s, whole chip (0: on the FP32 pipe)
    mma_sync_flops: Mapping[str, float] = field(default_factory=dict)   # mma.sync FLOP/s below the peak
    sources: Mapping[str, str] = field(default_factory=dict)

    # ---- derived numbers -------------------------------------------------
    @property
    def sram_total(self) -> int:
        """SRAM bytes on the whole chip (SMs x SRAM per SM)."""
        return self.sm_count * self.sram_per_sm

    @property
    def threads_per_sm(self) -> int:
        """Threads resident on one SM at once (``[sm] max_threads_per_sm``, else :data:`DEFAULT_THREADS_PER_SM`)."""
        return self.max_threads_per_sm or DEFAULT_THREADS_PER_SM

    @property
    def has_wgmma(self) -> bool:
        """True if a tensor-core class beats Ampere-style mma.sync here (Hopper's wgmma: ``[mma_sync_flops]``
        lists a rate below the peak)."""
        return any(rate < self.matmul_flops.get(dt, 0.0) for dt, rate in self.mma_sync_flops.items())

    def matmul_rate(self, dtype: str, instruction: "str | None" = None) -> float:
        """Spec tensor-core FLOP/s for ``dtype`` issued as ``instruction`` (module doc: instruction classes)."""
        if instruction not in (None, *MMA_CLASSES):
            raise DeviceConfigError(f"unknown tensor-core instruction class {instruction!r}; "
                                    f"classes are {', '.join(MMA_CLASSES)}")
        peak = self._rate(self.matmul_flops, "matmul_flops", dtype)
        if instruction == "mma_sync":
            return min(peak, self.mma_sync_flops.get(canonical(dtype), peak))
        return peak

    def vector_rate(self, dtype: str = "fp32") -> float:
        """Spec CUDA-core (non-matmul) FLOP/s for ``dtype`` (falls back to fp32)."""
        dt = canonical(dtype)
        if dt not in self.vector_flops:
            dt = "fp32"
        return self._rate(self.vector_flops, "vector_flops", dt)

    def ridge_point(self, dtype: str = "fp16") -> float:
        """FLOPs per HBM byte above which a matmul kernel is compute-bound."""
        return (self.matmul_rate(dtype) * self.eff_matmul) / (self.hbm_bandwidth * self.eff_hbm)

    def _rate(self, table: Mapping[str, float], section: str, dtype: str) -> float:
        dt = canonical(dtype)
        if dt not in table:
            raise DeviceConfigError(
                f"device {self.name!r} has no {dt} rate in [{section}] "
                f"(it has {', '.join(table)}); add `{dt} = <FLOP/s>` to its TOML "
                f"or use a logical dtype it supports"
            )
        return table[dt]

    def replace(self, **changes: Any) -> "Device":
        """A copy with some numbers changed, e.g. ``dev.replace(hbm_bandwidth=3e12)``."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["matmul_flops"] = dict(self.matmul_flops)
        d["vector_flops"] = dict(self.vector_flops)
        d["mma_sync_flops"] = dict(self.mma_sync_flops)
        d["sources"] = dict(self.sources)
        d["sram_total"] = self.sram_total
        return d


# ---- loading ----------------------------------------------------------------

def list_presets() -> list[str]:
    """Names of the device presets shipped with tinyml."""
    folder = resources.files("tinyml.sim") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_device(spec: "str | Path | Device | None" = None) -> Device:
    """Return a :class:`Device` from a preset name, a TOML path or a Device.

    ``None`` gives the default (the FlashAttention paper's A100 40GB).
    """
    if isinstance(spec, Device):
        return spec
    if spec is None:
        spec = DEFAULT_DEVICE
    text_spec = str(spec)
    presets = list_presets()
    if not text_spec.strip():                    # Path("") is the working directory: say what is wrong
        raise DeviceConfigError(f"the device name is empty; give a preset ({', '.join(presets)}) or the path "
                                f"of your own .toml file (see `tinyml devices`)")
    if text_spec in presets:                     # a preset name always means the preset
        if text_spec not in _PRESET_CACHE:
            text = (resources.files("tinyml.sim") / "presets" / f"{text_spec}.toml").read_text()
            _PRESET_CACHE[text_spec] = _from_text(text, origin=f"preset {text_spec}", require_sources=True)
        return _PRESET_CACHE[text_spec]
    path = Path(text_spec)
    if text_spec.endswith(".toml") or path.exists():
        if path.is_dir():
            raise DeviceConfigError(f"device file {text_spec!r} is a directory; pass the path of a .toml file")
        if not path.is_file():
            raise DeviceConfigError(f"device file {text_spec!r} does not exist")
        # user files are read every time, so an edited file is picked up
        return _from_text(read_toml_text(path, "device", DeviceConfigError), origin=str(path),
                          require_sources=False)
    raise DeviceConfigError(
        f"unknown device {text_spec!r}; presets are {', '.join(presets)} "
        f"(or pass the path of your own .toml file; see `tinyml devices`)"
    )


_PRESET_CACHE: dict[str, Device] = {}


def _from_text(text: str, origin: str, require_sources: bool) -> Device:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeviceConfigError(f"{origin}: not valid TOML: {exc}") from None
    check_keys(data, _SCHEMA, origin=origin, error=DeviceConfigError)
    sources: dict[str, str] = {}

    def number(section: str, key: str, integer: bool) -> float:
        where = f"{origin}: [{section}] {key}"
        value = sourced_value(data, section, key, origin=origin, require_sources=require_sources,
                              sources=sources, error=DeviceConfigError)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DeviceConfigError(f"{where} must be a finite number, got {value!r}")
        if not value > 0:
            raise DeviceConfigError(f"{where} must be positive, got {value!r}")
        if section == "efficiency" and value > 1:
            raise DeviceConfigError(f"{where} is a fraction of spec in (0, 1], got {value!r}")
        if integer:
            if float(value) != int(value):
                raise DeviceConfigError(f"{where} must be a whole number, got {value!r}")
            value = int(value)
        return value

    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data.get(key):
            raise DeviceConfigError(f"{origin}: top-level `{key}` (a string) is missing")
    values = {attr: number(sec, key, integer) for sec, key, attr, integer in _SCALARS}
    for sec, key, attr, integer in _OPTIONAL:
        if isinstance(data.get(sec), dict) and key in data[sec]:
            values[attr] = number(sec, key, integer)
    tables = {}
    for section, required in {**_RATE_TABLES, **{sec: () for sec in _OPTIONAL_RATE_TABLES}}.items():
        table = data.get(section)
        if section in _OPTIONAL_RATE_TABLES and table is None:
            tables[section] = MappingProxyType({})
            continue
        if not isinstance(table, dict):
            raise DeviceConfigError(f"{origin}: missing section [{section}] (needs {', '.join(required)})")
        for key in required:
            if key not in table:
                raise DeviceConfigError(f"{origin}: [{section}] {key} is missing")
        rates = {}
        for key in table:
            try:
                name = canonical(key)
            except Exception:
                raise DeviceConfigError(f"{origin}: [{section}] {key} is not a known dtype"
                                        f"{closest(str(key), BITS)} (dtypes: {', '.join(BITS)})") from None
            rates[name] = float(number(section, key, False))
        tables[section] = MappingProxyType(rates)
    return Device(
        name=data["name"], description=data["description"], **values,
        matmul_flops=tables["matmul_flops"], vector_flops=tables["vector_flops"],
        mma_sync_flops=tables["mma_sync_flops"], sources=MappingProxyType(sources),
    )
