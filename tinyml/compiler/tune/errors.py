"""The errors of auto-tuning, all under :class:`~tinyml.sim.errors.TinymlError`."""

from __future__ import annotations

from ...sim.errors import TinymlError


class TuneError(TinymlError, ValueError):
    """A tuning request that cannot run (an unknown strategy or model, a budget below one batch ...)."""


class TuneLogError(TuneError):
    """A tuning log that is not JSON lines of trial records, or has no record for what was asked."""


class MissingDependencyError(TuneError, ImportError):
    """An optional package the request needs (XGBoost for ``model="xgboost"``) is not installed."""
