"""tinyml.sim: a cycle-approximate GPU memory-hierarchy simulator.

It imports nothing else of tinyml. Kernels report per-block counters
(:mod:`tinyml.sim.counters`, filled through :mod:`tinyml.sim.tiles`); the cost
model (:mod:`tinyml.sim.cost`) turns them into seconds; a :class:`Profile`
collects the launches.
"""

from .cost import Cost, Issue, Reuse, kernel_cost, occupancy, waves_for
from .device import DEFAULT_DEVICE, Device, list_presets, load_device
from .dtypes import FLOAT_DTYPES, bits, canonical, nbytes
from .errors import (DeviceConfigError, DTypeError, HbmOutOfMemoryError, HostMemoryError, LabError,
                     NonFiniteError, SramOverflowError, ShapeError, TileConfigError, TinymlError)
from .host import check_host_memory, host_empty
from .memory import HbmLedger
from .models import ModelConfig, ModelConfigError, list_models, load_model
from .meta import MetaTensor, meta
from .profile import KernelRecord, Profile, active_profile, current_profile
from .sram import check_registers, check_tiles, tile_budget, tiles_bytes, tiles_fit

__all__ = [
    "Cost", "Issue", "Reuse", "kernel_cost", "occupancy", "waves_for", "DEFAULT_DEVICE", "Device", "list_presets",
    "load_device", "FLOAT_DTYPES", "bits", "canonical", "nbytes", "DeviceConfigError", "DTypeError",
    "HbmOutOfMemoryError", "HostMemoryError", "LabError", "NonFiniteError", "SramOverflowError", "ShapeError",
    "TileConfigError", "TinymlError", "HbmLedger", "MetaTensor", "meta", "KernelRecord", "Profile",
    "active_profile", "current_profile", "check_registers", "check_tiles", "tile_budget", "tiles_bytes",
    "tiles_fit", "check_host_memory", "host_empty", "ModelConfig", "ModelConfigError", "list_models", "load_model",
]
