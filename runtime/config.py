"""Typed, validated YAML configs (torch-free), shared by every model variant.

A variant describes its ``config.yaml`` as nested frozen dataclasses whose fields have the YAML's
names and nesting; :func:`parse_dataclass` turns a loaded mapping into them, and a missing field or
a field of the wrong type is a :class:`ConfigError` naming the dotted path and the file. Fields
with a default are optional (sizes upstream hard-codes, which tiny test configs shrink) and are
not written into a released-format file (``to_dict(include_optional=False)``).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError


class ConfigError(UserError, ValueError):
    """A config file or field is missing, malformed or inconsistent."""


def _type_ok(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return False


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def parse_dataclass(cls: type, data: Any, src: str, path: str = "", warnings: list[str] | None = None) -> Any:
    """``data`` (a loaded YAML mapping) → an instance of the dataclass ``cls``, recursively.
    Unknown keys are reported in ``warnings`` (upstream's loaders ignore them too)."""
    warnings = [] if warnings is None else warnings
    if not isinstance(data, dict):
        raise ConfigError(f"{src}: '{path or '<root>'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    known = set()
    for f in fields(cls):
        known.add(f.name)
        dotted = f"{path}.{f.name}" if path else f.name
        tp = hints[f.name]
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{src}: missing field '{dotted}'")
            continue
        value = data[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = parse_dataclass(tp, value, src, dotted, warnings)
            continue
        # released files write ``version: 2.0`` (a YAML float); keep versions as strings
        if tp is str and f.name == "version" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not _type_ok(value, tp):
            raise ConfigError(f"{src}: field '{dotted}' must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
        kwargs[f.name] = value
    for extra in sorted(set(data) - known):
        warnings.append(f"{src}: unknown field '{path + '.' if path else ''}{extra}' ignored")
    return cls(**kwargs)


def to_dict(obj: Any, include_optional: bool = True) -> Any:
    """A config dataclass back to plain YAML data; ``include_optional=False`` leaves out the
    fields with defaults, so a full-size file has exactly the released keys."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in fields(obj):
            optional = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if optional and not include_optional:
                continue
            out[f.name] = to_dict(getattr(obj, f.name), include_optional)
        return out
    if isinstance(obj, list):
        return [to_dict(v, include_optional) for v in obj]
    return obj


def read_yaml(path: str | Path) -> dict:
    """``config.yaml`` (or a directory holding one) as a mapping, with errors that name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def write_yaml(data: dict, path: str | Path) -> None:
    from .files import atomic_write

    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


__all__ = ["ConfigError", "parse_dataclass", "to_dict", "read_yaml", "write_yaml"]
