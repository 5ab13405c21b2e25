"""Reading ``key = { value = ..., source = "..." }`` entries: every number of a preset says where it came from.

Shared by the device presets (:mod:`.device`) and the model presets (:mod:`.models`):

    check_keys(data, schema, ...)     refuse a section, key or entry field the schema does not name
    sourced_value(data, section, key, ...)   one entry's value, its source recorded
    read_toml_text(path, what, error)        a user's file, or an error saying why it cannot be read

A typo in an optional key (``register_byte``) would otherwise be silently ignored and silently change
the numbers, so every unknown name is an error that names the file, the section and the key, and
suggests the closest known one.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Collection, Mapping

#: the fields of a sourced entry table
ENTRY_FIELDS = ("value", "source")


def closest(name: str, known: Collection[str]) -> str:
    """``"; did you mean `x`?"`` for the closest known name (difflib), or ``""`` if none is close."""
    match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean `{match[0]}`?" if match else ""


def check_keys(data: dict, schema: Mapping[str, "Collection[str] | None"], *, origin: str, error: type) -> None:
    """Raise ``error`` for a top-level name or a key of a section that ``schema`` does not list.

    ``schema`` maps each allowed top-level name to the keys its table may hold, or to None for a
    plain top-level value (``name``) or a table whose keys the caller checks itself.
    """
    for name, value in data.items():
        if name not in schema:
            kind = f"section [{name}]" if isinstance(value, dict) else f"top-level key `{name}`"
            raise error(f"{origin}: unknown {kind}{closest(name, schema)} "
                        f"(known: {', '.join(sorted(schema))}). Fix the spelling or remove it.")
    for section, keys in schema.items():
        table = data.get(section)
        if keys is None or not isinstance(table, dict):
            continue
        for key in table:
            if key in keys:
                continue
            elsewhere = [s for s, ks in schema.items() if ks is not None and key in ks]
            hint = f"; `{key}` belongs in [{elsewhere[0]}]" if elsewhere else closest(key, keys)
            raise error(f"{origin}: [{section}] unknown key `{key}`{hint} ([{section}] takes "
                        f"{', '.join(keys)}). Fix the spelling or remove it.")


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
        for field in raw:
            if field not in ENTRY_FIELDS:
                raise error(f"{where}: unknown field `{field}`{closest(field, ENTRY_FIELDS)} "
                            f"(an entry is {{ value = ..., source = \"...\" }})")
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
