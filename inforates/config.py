"""Configuration: dataclass defaults < YAML file < command line, unknown keys rejected.

Each command owns one dataclass (its fields are the only keys it accepts). :func:`resolve`
layers a YAML mapping and explicit overrides over the defaults, converting and checking
types, and :func:`dump` writes the resolved config next to the results.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar

import yaml

from inforates._io import atomic_write_text

C = TypeVar("C")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key and value."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _coerce(key: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(map(str, args))
            raise ConfigError(f"{key} ({value!r}) must be one of: {choices}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} ({value!r}) must be a list")
        inner = args[0] if args else Any
        items = [_coerce(key, v, inner) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
            return value.lower() in {"true", "1", "yes", "on"}
        raise ConfigError(f"{key} ({value!r}) must be true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} ({value!r}) must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} ({value!r}) must be an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} ({value!r}) must be a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} ({value!r}) must be a number") from None
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} ({value!r}) must be a string")
    if tp is Path:
        if isinstance(value, (str, os.PathLike)):
            return Path(value).expanduser()
        raise ConfigError(f"{key} ({value!r}) must be a path")
    return value


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}".splitlines()[0]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of keys to values")
    return data


# Every key a project config file may hold belongs to a section (a command's dataclass).
# A command resolves its own section and leaves keys of the other sections alone, so one
# config.yaml (like the seed's) can configure data, training and evaluation together; a key
# that belongs to no section is an error, so a typo never passes silently.
SECTIONS: dict[str, str] = {
    "data": "inforates.data.config:DataConfig",
    "run": "inforates.cli:RunConfig",
    "train": "inforates.train:TrainConfig",
    "sweep": "inforates.sweep:SweepConfig",
}


@dataclasses.dataclass(frozen=True)
class EvalInputs:
    """What ``run`` and ``sweep`` evaluate, and with what: the keys their sections share."""

    manifest: Path | None = None  # None: the embedded synthetic test split
    checkpoint: str | None = None  # None: the embedded tiny model (trained on first use)
    loader: str = "dali"
    device: Literal["auto", "cpu", "gpu"] = "auto"
    batch_size: int = 8
    num_threads: int = 2
    cache_dir: Path | None = None
    measure_loader: bool = True  # the loader-only pass behind loader_clips_per_s


def _section_keys(exclude: type) -> set[str]:
    import importlib

    keys: set[str] = set()
    for target in SECTIONS.values():
        module, _, name = target.partition(":")
        try:
            section = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue  # a section not installed in this build accepts nothing
        if section is exclude:
            continue
        keys |= {f.name for f in dataclasses.fields(section)} | set(getattr(section, "ALIASES", {}))
    return keys


def resolve(
    cls: type[C],
    yaml_data: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    aliases: Mapping[str, str] | None = None,
    source: str = "config",
) -> C:
    """Defaults of ``cls`` < ``yaml_data`` < ``overrides`` (``None`` overrides are ignored).

    ``aliases`` (default: ``cls.ALIASES``) maps accepted legacy key names (e.g. the seed's
    ``config.yaml`` keys) to field names. In the file layer, keys of other sections
    (:data:`SECTIONS`) are left to their commands; any other unknown key raises
    :class:`ConfigError` naming it.
    """
    ftypes = _field_types(cls)
    aliases = dict(aliases if aliases is not None else getattr(cls, "ALIASES", {}))
    values: dict[str, Any] = {}
    others: set[str] | None = None
    for layer_name, layer in ((source, yaml_data or {}), ("override", overrides or {})):
        for raw_key, value in layer.items():
            key = aliases.get(raw_key, raw_key)
            if key not in ftypes:
                if layer_name == source:
                    others = _section_keys(cls) if others is None else others
                    if raw_key in others:
                        continue
                valid = ", ".join(sorted(set(ftypes) | set(aliases)))
                raise ConfigError(f"unknown {layer_name} key {raw_key!r}; valid keys: {valid}")
            if value is None and layer_name == "override":
                continue
            values[key] = _coerce(raw_key, value, ftypes[key])
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def parse_set(items: typing.Iterable[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` (from ``--set``) to a mapping; values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key.strip()] = yaml.safe_load(raw) if raw else ""
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def dump(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
