"""Command-line flags generated from a job's config dataclass, one flag per field.

Every ``lsn-mech`` job gets its flags here, so flags, defaults, choices and
``config.json`` never drift apart:

* ``field_name`` → ``--field-name`` (plus any old spellings the job lists as aliases);
* ``bool`` → ``--x`` / ``--no-x``;
* ``tuple[str, ...]`` → a list, comma-separated (``--targets vi,hi``); values separated
  by spaces (``--targets vi hi``) and mixtures are accepted too; an empty value
  (``--setups ""`` or a bare ``--setups``) gives an empty tuple;
* ``dict[str, str]`` → ``LANG=PATH`` items (``--text-files en=en.txt fr=fr.txt``);
* ``int`` / ``float`` / ``str`` / ``Path`` (``| None``) → one typed value;
* choices come from a ``Literal[...]`` annotation or the job's ``choices`` table.

``--help`` shows each field's default and choices. With ``defaults=False`` the parser
leaves out every flag that was not given (``argparse.SUPPRESS``), which is how
``lsn-mech JOB --config FILE`` knows which values the command line overrides.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from lsn_mech.pipelines.configs import coerce, field_types, split_optional

__all__ = ["add_config_flags", "flag_values", "format_default"]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def format_default(value: Any) -> str:
    """A default as ``--help`` shows it (lists comma-separated, as they are typed)."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) if value else "(empty)"
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items()) if value else "(empty)"
    return str(value)


def _split_list(tokens: Sequence[str]) -> list[str]:
    """``["vi,hi", "zh"]`` → ``["vi", "hi", "zh"]``: commas and spaces both separate."""
    return [item.strip() for token in tokens for item in token.split(",") if item.strip()]


class _ListAction(argparse.Action):
    """Collects comma- and/or space-separated values, converted and checked one by one."""

    def __init__(self, *args: Any, element: Any = str, **kwargs: Any) -> None:
        self.element = element
        self.allowed = kwargs.pop("choices", None)
        super().__init__(*args, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = []
        for item in _split_list(values):
            try:
                converted = self.element(item)
            except ValueError as error:
                raise argparse.ArgumentError(self, f"invalid value {item!r}") from error
            if self.allowed is not None and converted not in self.allowed:
                choices = ", ".join(map(str, self.allowed))
                raise argparse.ArgumentError(
                    self, f"invalid choice {item!r} (choose from {choices})"
                )
            items.append(converted)
        setattr(namespace, self.dest, items)


class _MappingAction(argparse.Action):
    """Collects ``KEY=VALUE`` items (space- or comma-separated) into a dict."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        mapping: dict[str, str] = {}
        for token in values:
            pieces = token.split(",")
            for item in pieces if all("=" in p for p in pieces) else [token]:
                key, sep, value = item.partition("=")
                if not sep or not key.strip():
                    raise argparse.ArgumentError(
                        self, f"{item!r} is not KEY=VALUE; write e.g. fr=fr.txt"
                    )
                mapping[key.strip()] = value
        setattr(namespace, self.dest, mapping)


def _scalar(hint: Any) -> Any:
    """The argparse ``type`` of a one-value field."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        numbers = [a for a in typing.get_args(hint) if a in (int, float)]
        return float if float in numbers else str
    return hint if hint in (int, float, str, Path) else str


def _help_text(text: str, default: Any, element: Any, allowed: Sequence[Any] | None) -> str:
    """``text (comma-separated; default: ...; choices: ...)``, escaped for argparse."""
    text += " (comma-separated; " if element is not None else " ("
    text += f"default: {format_default(default)}"
    if allowed is not None:
        text += "; choices: " + ", ".join(map(str, allowed))
    return (text + ")").replace("%", "%%")


def add_config_flags(
    parser: argparse.ArgumentParser,
    config_type: type,
    *,
    help: Mapping[str, str] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
    aliases: Mapping[str, Sequence[str]] | None = None,
    metavars: Mapping[str, str] | None = None,
    defaults: bool = True,
) -> None:
    """Add one flag per field of the dataclass ``config_type`` to ``parser``.

    ``help`` and ``choices`` map field names to their text and allowed values;
    ``aliases`` to extra flag spellings (e.g. ``{"random_seed": ["--seed"]}``);
    ``metavars`` to the placeholder ``--help`` shows for the value. With
    ``defaults=False`` a flag that is not given is left out of the parsed namespace.
    """
    help, choices, aliases, metavars = help or {}, choices or {}, aliases or {}, metavars or {}
    instance = config_type()
    for field in dataclasses.fields(config_type):
        name = field.name
        default = getattr(instance, name)
        hint, _ = split_optional(field_types(config_type)[name])
        allowed = choices.get(name)
        if typing.get_origin(hint) is Literal:
            allowed = typing.get_args(hint)
        element = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else None
        if element is not None and typing.get_origin(element) is Literal:
            allowed = typing.get_args(element)
        text = _help_text(help.get(name, name.replace("_", " ")), default, element, allowed)
        flags = [_flag(name), *aliases.get(name, ())]
        kwargs: dict[str, Any] = {"dest": name, "help": text}
        if defaults:
            kwargs["default"] = list(default) if isinstance(default, tuple) else default
        else:
            kwargs["default"] = argparse.SUPPRESS
        metavar = metavars.get(name, name.upper())
        if hint is bool:
            action = parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
            action.help = text  # BooleanOptionalAction would append its own default
        elif element is not None:
            parser.add_argument(
                *flags,
                action=_ListAction,
                nargs="*",
                element=_scalar(element),
                choices=allowed,
                metavar=metavar,
                **kwargs,
            )
        elif typing.get_origin(hint) is dict:
            parser.add_argument(*flags, action=_MappingAction, nargs="*", metavar=metavar, **kwargs)
        else:
            parser.add_argument(
                *flags, type=_scalar(hint), choices=allowed, metavar=metavar, **kwargs
            )


def flag_values(namespace: argparse.Namespace, config_type: type) -> dict[str, Any]:
    """The config fields present in ``namespace``, converted to the fields' types."""
    types_ = field_types(config_type)
    given = vars(namespace)
    return {name: coerce(hint, given[name], name) for name, hint in types_.items() if name in given}
