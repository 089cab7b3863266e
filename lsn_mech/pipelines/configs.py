"""A job's config dataclass ⇄ ``config.json``: one conversion for every job, so a result
folder always says how it was made and ``lsn-mech JOB --config OUTPUT/config.json``
replays it exactly.

Field types are read from the dataclass annotations: ``tuple[X, ...]`` fields are JSON
lists, ``Path`` fields strings, ``dict[str, str]`` fields objects; ``X | None`` allows
``null``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from lsn_mech.errors import CorruptFileError, LsnMechError
from lsn_mech.files import atomic_write_json, read_json
from lsn_mech.intervals import Bootstrap

__all__ = [
    "INTERVAL_FIELDS",
    "IntervalSettings",
    "JobConfigError",
    "coerce",
    "config_from_dict",
    "config_to_dict",
    "field_types",
    "read_config",
    "write_config",
]

Config = TypeVar("Config")


class JobConfigError(LsnMechError, ValueError):
    """A job config (file or value) that does not fit the job's config dataclass."""


INTERVAL_FIELDS = ("resamples", "confidence", "bootstrap_seed")
"""The config fields behind `IntervalSettings.bootstrap` (``--resamples --confidence
--bootstrap-seed``)."""


class IntervalSettings:
    """Mixin of the job configs whose results carry intervals.

    Each such config declares the `INTERVAL_FIELDS` itself (so its flags and their help
    are its own); this is the one place they become a `lsn_mech.intervals.Bootstrap`.
    """

    resamples: int
    confidence: float
    bootstrap_seed: int

    def bootstrap(self) -> Bootstrap:
        """The settings of every interval and paired test the job reports."""
        return Bootstrap(self.resamples, self.confidence, self.bootstrap_seed)


@functools.cache
def field_types(config_type: type) -> dict[str, Any]:
    """Each field's resolved annotation (``from __future__ import annotations`` safe)."""
    hints = typing.get_type_hints(config_type)
    return {field.name: hints[field.name] for field in dataclasses.fields(config_type)}


def split_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` → ``(X, True)``; anything else → ``(hint, False)``."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) < len(typing.get_args(hint)):
            inner = args[0] if len(args) == 1 else Union[tuple(args)]  # noqa: UP007
            return inner, True
    return hint, False


def paths_from_strings(config: Any) -> None:
    """Turn the strings a Python caller passed for ``Path`` fields of ``config`` into
    ``Path`` (the command line already builds them), so jobs can use ``/`` on them."""
    for name, hint in field_types(type(config)).items():
        value = getattr(config, name)
        if value is not None and split_optional(hint)[0] is Path:
            setattr(config, name, Path(value))


def coerce(hint: Any, value: Any, name: str = "value") -> Any:
    """``value`` (from JSON or the command line) as the type ``hint`` asks for."""
    inner, optional = split_optional(hint)
    if value is None:
        if optional:
            return None
        raise JobConfigError(f"{name} cannot be null; give a value or leave it out.")
    origin = typing.get_origin(inner)
    if origin is tuple:
        element = typing.get_args(inner)[0] if typing.get_args(inner) else Any
        if isinstance(value, str):
            raise JobConfigError(f"{name} must be a list, got the string {value!r}.")
        return tuple(coerce(element, item, name) for item in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise JobConfigError(f"{name} must be a mapping such as {{'fr': 'fr.txt'}}.")
        return {str(k): str(v) for k, v in value.items()}
    if origin is Literal:
        if value not in typing.get_args(inner):
            raise JobConfigError(f"{name} must be one of {list(typing.get_args(inner))}.")
        return value
    if origin in (Union, types.UnionType):  # e.g. float | int: keep a number as it is
        numbers = tuple(a for a in typing.get_args(inner) if a in (int, float))
        if isinstance(value, numbers) and not isinstance(value, bool):
            return value
        return coerce(float if float in numbers else typing.get_args(inner)[0], value, name)
    if inner is Path:
        return Path(value)
    if inner is bool:
        if not isinstance(value, bool):
            raise JobConfigError(f"{name} must be true or false, got {value!r}.")
        return value
    if inner in (int, float, str):
        try:
            return inner(value)
        except (TypeError, ValueError) as error:
            raise JobConfigError(f"{name} must be {inner.__name__}, got {value!r}.") from error
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as JSON-ready values (tuples as lists, paths as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def config_from_dict(config_type: type[Config], values: dict[str, Any]) -> Config:
    """Build ``config_type`` from JSON-like ``values``; missing fields keep their defaults."""
    types_ = field_types(config_type)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise JobConfigError(
            f"{config_type.__name__} has no field {', '.join(unknown)}; its fields are "
            f"{', '.join(types_)}."
        )
    converted = {name: coerce(types_[name], value, name) for name, value in values.items()}
    return config_type(**converted)


def read_config(config_type: type[Config], path: str | Path) -> dict[str, Any]:
    """The field values saved in a job's ``config.json``, checked against ``config_type``."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise JobConfigError(
            f"No config file at {path}; pass the config.json a job wrote into its output folder."
        )
    try:
        values = read_json(path, fix="Pass the config.json a job wrote into its output folder.")
    except CorruptFileError as error:
        raise JobConfigError(str(error)) from None
    config_from_dict(config_type, values)  # refuse unknown fields and bad values now
    return values


def write_config(config: Any, output: str | Path) -> Path:
    """Write ``output/config.json`` (the config's ``to_dict()`` where it has one)."""
    path = Path(output) / "config.json"
    data = config.to_dict() if hasattr(config, "to_dict") else config_to_dict(config)
    return atomic_write_json(path, data)
