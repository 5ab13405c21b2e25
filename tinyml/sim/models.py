"""Model configs: the shapes of a transformer, each number with its source. No weights, ever.

Presets are TOML files in ``tinyml/sim/model_presets/`` (data, not code), in
the style of the device presets: every entry is ``key = { value = ..., source
= "..." }``. A user file may give plain values. Schema (all required)::

    name = "llama-2-7b"
    description = "..."
    [arch]       layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, max_context
    [design]     mlp ("swiglu" | "gelu"), norm ("rmsnorm" | "layernorm"),
                 position ("rotary" | "learned"), tied_embeddings, bias (true | false)
    [published]  params        # the total the model's authors give, to check the count against

Any other section or key is refused, naming the closest known one.

Parameter count (``ModelConfig.param_breakdown``), with ``h`` = hidden,
``H`` = heads, ``KVH`` = kv_heads, ``d`` = head_dim, ``I`` = intermediate,
``V`` = vocab, ``L`` = layers, ``b`` = 1 with biases (else 0), ``n`` = 1 for
RMSNorm (a weight) or 2 for LayerNorm (weight and bias)::

    embedding   V h                                   (+ max_context h learned positions)
    attention   L (h H d + 2 h KVH d + H d h  + b (H d + 2 KVH d + h))     q, k, v, o (GQA: KVH < H)
    mlp         L (3 h I + b (2 I + h))               SwiGLU: gate, up, down
                L (2 h I + b (I + h))                 GeLU: up, down
    norms       (2 L + 1) n h                         two per layer and a final one
    lm_head     V h, or 0 when tied to the embedding
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .errors import TinymlError
from .sourced import check_keys, read_toml_text, sourced_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ModelConfigError(TinymlError, ValueError):
    """A model preset or user TOML file is unknown, malformed or inconsistent."""


_INTS = ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "max_context")
_CHOICES = {"mlp": ("swiglu", "gelu"), "norm": ("rmsnorm", "layernorm"), "position": ("rotary", "learned")}
_BOOLS = ("tied_embeddings", "bias")
#: every name a model TOML may use (anything else is refused, with the closest known name)
_SCHEMA = {"name": None, "description": None, "arch": _INTS, "design": (*_CHOICES, *_BOOLS),
           "published": ("params",)}


@dataclass(frozen=True, eq=False)
class ModelConfig:
    """A decoder-only transformer's shapes. Build one with :func:`load_model`."""

    name: str
    description: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_context: int
    mlp: str = "swiglu"
    norm: str = "rmsnorm"
    position: str = "rotary"
    tied_embeddings: bool = False
    bias: bool = False
    published_params: float = 0.0
    sources: Mapping[str, str] = field(default_factory=dict)

    # ---- the weight matrices -------------------------------------------------------
    def layer_matrices(self) -> dict[str, tuple[int, int]]:
        """The 2-D weights of one layer as ``{name: (out, in)}`` (PyTorch's Linear layout)."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        mats = {"q": (q, h), "k": (kv, h), "v": (kv, h), "o": (h, q)}
        if self.mlp == "swiglu":
            mats.update(gate=(self.intermediate, h), up=(self.intermediate, h), down=(h, self.intermediate))
        else:
            mats.update(up=(self.intermediate, h), down=(h, self.intermediate))
        return mats

    def layer_vector_params(self) -> int:
        """1-D parameters of one layer: its two norms and (GPT-2) the biases."""
        per_norm = self.hidden * (1 if self.norm == "rmsnorm" else 2)
        biases = 0
        if self.bias:
            biases = sum(out for out, _ in self.layer_matrices().values())
        return 2 * per_norm + biases

    def param_breakdown(self) -> dict[str, int]:
        """Parameters by part (see the module docstring); ``total`` is their sum."""
        mats = self.layer_matrices()
        attn = sum(math.prod(mats[k]) for k in ("q", "k", "v", "o"))
        mlp = sum(math.prod(s) for k, s in mats.items() if k not in ("q", "k", "v", "o"))
        per_norm = self.hidden * (1 if self.norm == "rmsnorm" else 2)
        if self.bias:
            attn += sum(mats[k][0] for k in ("q", "k", "v", "o"))
            mlp += sum(s[0] for k, s in mats.items() if k not in ("q", "k", "v", "o"))
        parts = {
            "embedding": self.vocab * self.hidden,
            "positions": self.max_context * self.hidden if self.position == "learned" else 0,
            "attention": self.layers * attn,
            "mlp": self.layers * mlp,
            "norms": (2 * self.layers + 1) * per_norm,
            "lm_head": 0 if self.tied_embeddings else self.vocab * self.hidden,
        }
        parts["total"] = sum(parts.values())
        return parts

    @property
    def n_params(self) -> int:
        return self.param_breakdown()["total"]

    @property
    def group(self) -> int:
        """Query heads per kv head (1: multi-head attention; heads: multi-query)."""
        return self.heads // self.kv_heads

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("name", "description", *_INTS, *_CHOICES, *_BOOLS,
                                          "published_params")}
        d["params"] = self.param_breakdown()
        d["sources"] = dict(self.sources)
        return d


# ---- loading ------------------------------------------------------------------------------

def list_models() -> list[str]:
    """Names of the model presets shipped with tinyml."""
    folder = resources.files("tinyml.sim") / "model_presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


_CACHE: dict[str, ModelConfig] = {}


def load_model(spec: "str | Path | ModelConfig") -> ModelConfig:
    """A :class:`ModelConfig` from a preset name (``"llama-2-7b"``), a TOML path or a config."""
    if isinstance(spec, ModelConfig):
        return spec
    text = str(spec)
    names = list_models()
    key = text.lower()
    if key in names:
        if key not in _CACHE:
            raw = (resources.files("tinyml.sim") / "model_presets" / f"{key}.toml").read_text()
            _CACHE[key] = _from_text(raw, f"model preset {key}", require_sources=True)
        return _CACHE[key]
    path = Path(text)
    if text.endswith(".toml") or path.exists():
        if not path.is_file():
            raise ModelConfigError(f"model file {text!r} does not exist (or is not a file)")
        return _from_text(read_toml_text(path, "model", ModelConfigError), str(path), require_sources=False)
    raise ModelConfigError(f"unknown model {text!r}; presets are {', '.join(names)} "
                           f"(or pass the path of your own .toml file)")


def _from_text(text: str, origin: str, require_sources: bool) -> ModelConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"{origin}: not valid TOML: {exc}") from None
    check_keys(data, _SCHEMA, origin=origin, error=ModelConfigError)
    sources: dict[str, str] = {}

    def entry(section: str, key: str):
        return sourced_value(data, section, key, origin=origin, require_sources=require_sources,
                             sources=sources, error=ModelConfigError)

    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ModelConfigError(f"{origin}: top-level `{key}` (a string) is missing")
    values: dict = {}
    for key in _INTS:
        v = entry("arch", key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ModelConfigError(f"{origin}: [arch] {key} must be a positive integer, got {v!r}")
        values[key] = v
    for key, choices in _CHOICES.items():
        v = entry("design", key)
        if v not in choices:
            raise ModelConfigError(f"{origin}: [design] {key} must be one of {', '.join(choices)}, got {v!r}")
        values[key] = v
    for key in _BOOLS:
        v = entry("design", key)
        if not isinstance(v, bool):
            raise ModelConfigError(f"{origin}: [design] {key} must be true or false, got {v!r}")
        values[key] = v
    published = entry("published", "params")
    if isinstance(published, bool) or not isinstance(published, (int, float)) or not published > 0:
        raise ModelConfigError(f"{origin}: [published] params must be a positive number, got {published!r}")
    if values["heads"] % values["kv_heads"]:
        raise ModelConfigError(f"{origin}: heads={values['heads']} is not a multiple of "
                               f"kv_heads={values['kv_heads']}; grouped-query attention needs it to be")
    return ModelConfig(name=data["name"], description=data["description"], published_params=float(published),
                       sources=MappingProxyType(sources), **values)
