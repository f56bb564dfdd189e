"""Save and load a RunConfig as TOML: one `key = value` line per field.

Reading uses the standard library's tomllib; writing is done here (flat keys,
no dependency), with each field's documentation as a trailing comment, so a
saved file explains itself. A file may name a `preset` to start from and set
only the keys it changes; keys it leaves out keep their defaults. Every problem
is a ConfigError naming the field (or "config" for the file as a whole).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from engine.atomic import write_text_atomically
from engine.config import FIELD_TYPES, ConfigError, RunConfig, field_comment

try:  # Python 3.11+; tomli is the same parser for 3.10
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

PRESET_KEY = "preset"  # optional: the preset whose config the file's keys change


def config_to_toml(config: RunConfig, title: str | None = None) -> str:
    """The config as TOML text: every field, in declaration order, documented.

    TOML has no null: a None (`init_seed`) is written as the string "none",
    which reads back as None whatever the base config.
    """
    lines = [f"# {title}" if title else "# gradtui run configuration"]
    lines.append("# Load with: gradtui --config FILE (keys left out keep their defaults)")
    for name, value in config.to_dict().items():
        comment = field_comment(name)
        tail = f"  # {comment}" if comment else ""
        text = '"none"' if value is None else _toml_value(value)
        lines.append(f"{name} = {text}{tail}")
    return "\n".join(lines) + "\n"


def config_from_toml(text: str, base: RunConfig | None = None) -> RunConfig:
    """Parse TOML text into a validated RunConfig (ConfigError on any problem).

    Keys the file leaves out come from `base` (default: RunConfig()), or from
    the preset the file names.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"not valid TOML: {exc}") from None
    base = base or RunConfig()
    if PRESET_KEY in data:
        from engine.presets import get_preset

        name = data.pop(PRESET_KEY)
        if not isinstance(name, str):
            raise ConfigError(PRESET_KEY, f"expected a preset name, got {_kind(name)} {name!r}")
        base = get_preset(name).config
    changes = {key: _checked(key, value) for key, value in data.items()}
    return base.replace(**changes)


def save_config(config: RunConfig, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the config to `path` atomically (a reader never sees half a file)."""
    target = Path(path)
    text = config_to_toml(config, title)
    try:
        write_text_atomically(target, text)
    except OSError as exc:
        raise ConfigError("config", f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def load_config(path: str | os.PathLike, base: RunConfig | None = None) -> RunConfig:
    """Read a config saved by `save_config` (or written by hand) on top of `base`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError("config", f"cannot read {path}: {reason}") from None
    return config_from_toml(text, base)


def _checked(key: str, value: Any) -> Any:
    """The value for field `key`, converted where TOML and Python differ; else ConfigError."""
    if key not in FIELD_TYPES:
        known = ", ".join([PRESET_KEY, *FIELD_TYPES])
        raise ConfigError(key, f"unknown key (known: {known})")
    kind = FIELD_TYPES[key]
    if kind.endswith("None") and isinstance(value, str) and value.lower() == "none":
        return None
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # `lr = 1` is a fine way to write 1.0
    ok = {
        "bool": isinstance(value, bool),
        "float": isinstance(value, float),
        "str": isinstance(value, str),
    }.get(kind, isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise ConfigError(key, f"expected {_expected(kind)}, got {_kind(value)} {value!r}")
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest round-tripping form: 0.01, 1e-05, 1.0
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _expected(kind: str) -> str:
    return {
        "bool": "true or false",
        "float": "a number",
        "str": "a string",
        "int": "an integer",
        "int | None": 'an integer or "none"',
    }.get(kind, kind)


def _kind(value: Any) -> str:
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "table",
    }.get(type(value), type(value).__name__)
