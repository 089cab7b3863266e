"""Shared plumbing of result objects (experiments, detectors): lossless JSON files and
plain-text tables."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from lsn_mech.errors import LsnMechError
from lsn_mech.provenance import Provenance

T = TypeVar("T")


class ResultFormatError(LsnMechError, ValueError):
    """A result file is not of the expected kind, or not a lsn_mech result at all."""


def canonical(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, keys strings…), so that a
    result compares equal to itself after `save_json` / `load_json`."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def json_path(path: str | Path) -> Path:
    """``path`` with a ``.json`` suffix added when it has none."""
    target = Path(path)
    return target if target.suffix == ".json" else target.with_name(target.name + ".json")


def save_json(result: Any, path: str | Path) -> Path:
    """Write a dataclass result as JSON; floats round-trip exactly (``repr``)."""
    target = json_path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(result)
    data["provenance"] = result.provenance.to_dict()
    data["format"] = f"lsn_mech.{type(result).__name__}"
    target.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return target


def load_json(
    cls: type[T], path: str | Path, prepare: Callable[[dict[str, Any]], None] | None = None
) -> T:
    """Read a result written by `save_json`, checking that it is a ``cls``.

    ``prepare`` may rebuild nested objects in the field dict before ``cls(**fields)``.
    """
    source = Path(path)
    if not source.exists() and json_path(source).exists():
        source = json_path(source)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultFormatError(f"{source} is not a JSON result file: {exc}") from None
    expected = f"lsn_mech.{cls.__name__}"
    found = data.pop("format", None) if isinstance(data, dict) else None
    if found != expected:
        raise ResultFormatError(
            f"{source} holds {found or 'no lsn_mech result'}, not a {cls.__name__}; load it "
            f"with the class that wrote it."
        )
    data["provenance"] = Provenance.from_dict(data.get("provenance"))
    if prepare is not None:
        prepare(data)
    return cls(**data)


def write_csv(path: str | Path, header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> Path:
    """A CSV file; floats are written with ``repr`` (exact)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(header))
        for row in rows:
            writer.writerow([repr(v) if isinstance(v, float) else v for v in row])
    return target


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, digits: int = 3) -> str:
    """A right-aligned plain-text table (first column left-aligned)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "nan" if math.isnan(value) else f"{value:.{digits}f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(str(h))] + [len(r[i]) for r in cells]) for i, h in enumerate(header)]
    lines = [
        "  ".join(
            str(h).ljust(w) if i == 0 else str(h).rjust(w)
            for i, (h, w) in enumerate(zip(header, widths))
        )
    ]
    for row in cells:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
        )
    return "\n".join(lines)
