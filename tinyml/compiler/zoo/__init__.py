"""The model zoo: graphs with seeded random weights (no downloads).

>>> from tinyml.compiler import zoo
>>> zoo.names()
['gpt2_block', 'mlp', 'tiny_gpt']
>>> g = zoo.get("gpt2_block", d_model=64, n_heads=4)

Every model takes keyword arguments for its sizes (small ones for tests) and
``dtype``/``seed``/``weights`` (``"random"``, or ``"meta"``: shape-only weights that
cost no memory, to count GPT-2 small in seconds); the sequence length is always the symbol ``n``.
"""

from __future__ import annotations

from ..errors import GraphError
from .gpt2 import add_gpt2_block, gpt2_block, tiny_gpt
from .mlp import mlp

_MODELS = {"mlp": mlp, "gpt2_block": gpt2_block, "tiny_gpt": tiny_gpt}

#: the model names, for ``zoo.get(name)``
NAMES = tuple(sorted(_MODELS))


def names() -> list[str]:
    return sorted(_MODELS)


def get(name: str, **kw):
    """Build model ``name`` with keyword arguments ``kw`` (see each builder's signature)."""
    if name not in _MODELS:
        raise GraphError(f"unknown model {name!r}; the zoo has {', '.join(names())}")
    try:
        return _MODELS[name](**kw)
    except TypeError as e:
        raise GraphError(f"zoo.get({name!r}, ...): {e}") from None


__all__ = ["NAMES", "add_gpt2_block", "get", "gpt2_block", "mlp", "names", "tiny_gpt"]
