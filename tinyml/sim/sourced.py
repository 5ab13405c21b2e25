"""Reading ``key = { value = ..., source = "..." }`` entries: every number of a preset says where it came from.

Shared by the device presets (:mod:`.device`) and the model presets (:mod:`.models`).
"""

from __future__ import annotations

from pathlib import Path


def read_toml_text(path: Path, what: str, error: type) -> str:
    """The text of a user's ``.toml`` file, or ``error`` saying why it cannot be read (a binary
    file, no permission) rather than a UnicodeDecodeError or OSError from deep inside."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} file {str(path)!r} is not a text file (byte {exc.start} is not UTF-8); "
                    f"pass the path of a .toml file") from None
    except OSError as exc:
        raise error(f"cannot read {what} file {str(path)!r}: {exc.strerror or exc}") from None


def sourced_value(data: dict, section: str, key: str, *, origin: str, require_sources: bool,
                  sources: dict, error: type):
    """The value of ``[section] key`` in parsed TOML ``data``; records its source in ``sources``.

    A plain value (no table) is allowed only when ``require_sources`` is False; its
    source is then ``origin`` (the file itself). Problems raise ``error`` naming the entry.
    """
    where = f"{origin}: [{section}] {key}"
    table = data.get(section)
    if not isinstance(table, dict):
        raise error(f"{origin}: missing section [{section}] (needs `{key}`)")
    if key not in table:
        raise error(f"{where} is missing")
    raw = table[key]
    if isinstance(raw, dict):
        if "value" not in raw:
            raise error(f"{where} is a table without `value`")
        value, source = raw["value"], raw.get("source")
    else:
        value, source = raw, None
    if source is None:
        if require_sources:
            raise error(f"{where} has no source; write {key} = {{ value = {raw!r}, source = \"...\" }}")
        source = origin
    sources[f"{section}.{key}"] = str(source)
    return value
