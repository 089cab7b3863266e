"""The persistence contract every result object shares: lossless JSON with a checked
format tag, a declared table (CSV, pandas, HTML) and provenance.

A result is a dataclass that inherits `Result` and declares its table once:

```python
@dataclasses.dataclass
class LayerCounts(Result):
    languages: list[str]
    counts: list[int]
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    def tabulate(self) -> ResultTable:
        rows = [[language, n] for language, n in zip(self.languages, self.counts)]
        return ResultTable(["language", "neurons"], rows)

counts.save("counts.json")           # {"languages": ..., "format": "lsn_mech.LayerCounts"}
LayerCounts.load("counts.json")      # checks the tag; ResultFormatError names the class to use
counts.to_csv("counts.csv"); counts.to_pandas()
```

Nested objects (scores, steps) are written through their own ``to_dict`` (or as plain
dataclasses) and rebuilt by overriding `Result._revive`. The functions below
(`save_json`, `load_json`, `write_result_json`, ...) are the same contract for code that
does not inherit `Result`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

from lsn_mech import display
from lsn_mech.errors import CorruptFileError, LsnMechError, MissingFileError
from lsn_mech.files import atomic_write, atomic_write_text, read_json
from lsn_mech.provenance import Provenance

T = TypeVar("T")
R = TypeVar("R", bound="Result")

#: Every `Result` subclass by its format tag, to name the class that reads a file.
_RESULT_CLASSES: dict[str, type[Result]] = {}


class ResultFormatError(CorruptFileError):
    """A result file is not of the expected kind, or not a lsn_mech result at all (a
    `CorruptFileError`, so also a `LsnMechError` and a ``ValueError``)."""


class ResultFileMissingError(ResultFormatError, MissingFileError):
    """A result file that was asked for is not there (or is a folder)."""


class ResultOperationError(LsnMechError, NotImplementedError):
    """A result was asked for a view it does not have (a table, a plot)."""


class ResultTable(NamedTuple):
    """The rows a result writes to CSV, pandas and HTML, under one header."""

    header: Sequence[str]
    rows: Sequence[Sequence[Any]]


def canonical(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, keys strings…), so that a
    result compares equal to itself after `save_json` / `load_json`."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


def json_path(path: str | Path) -> Path:
    """``path`` with a ``.json`` suffix added when it has none."""
    target = Path(path)
    return target if target.suffix == ".json" else target.with_name(target.name + ".json")


def format_tag_of(cls: type) -> str:
    """The format tag a class writes into its JSON files: ``lsn_mech.<ClassName>``."""
    return getattr(cls, "format_tag", None) or f"lsn_mech.{cls.__name__}"


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: objects through their own ``to_dict``, other
    dataclasses field by field, mappings and sequences element-wise."""
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def result_fields(result: Any) -> dict[str, Any]:
    """A dataclass result's fields as JSON-ready data (see `plain`)."""
    return {f.name: plain(getattr(result, f.name)) for f in dataclasses.fields(result)}


def write_result_json(data: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``data`` as indented UTF-8 JSON to ``path`` (``.json`` appended when it has
    another suffix or none, parent folders created); the path written. Floats round-trip
    exactly (``repr``). The write is atomic: a killed process leaves the old file or the
    new one, never a truncated one."""
    target = json_path(path)
    return atomic_write_text(target, json.dumps(data, indent=1, ensure_ascii=False))


def _reader_of(tag: object) -> str:
    owner = _RESULT_CLASSES.get(tag) if isinstance(tag, str) else None
    if owner is None:
        return "the class that wrote it"
    return f"{owner.__module__}.{owner.__qualname__}.load"


def read_result_json(path: str | Path, expected: str | type | None = None) -> dict[str, Any]:
    """The fields of a result JSON file, without its ``format`` tag.

    ``expected`` (a format tag, or the class whose tag it is) is checked against the
    file's tag: a file of another kind, or with none, raises `ResultFormatError` naming
    the class that reads it. ``path`` may omit the ``.json`` suffix.
    """
    source = Path(path)
    if not source.exists() and json_path(source).exists():
        source = json_path(source)
    fix = "Pass a file a result's save() wrote, or run the step that writes it again."
    if not source.is_file():
        problem = "is a folder" if source.is_dir() else "does not exist"
        raise ResultFileMissingError(f"{source} {problem}. {fix}")
    try:
        data = read_json(source, fix=fix, kind=object)
    except CorruptFileError as exc:
        raise ResultFormatError(f"{source} is not a JSON result file: {exc}") from None
    if not isinstance(data, dict):
        raise ResultFormatError(f"{source} holds a JSON {type(data).__name__}, not a result.")
    found = data.pop("format", None)
    if expected is None:
        return data
    tag = expected if isinstance(expected, str) else format_tag_of(expected)
    name = tag.removeprefix("lsn_mech.")
    if found is None:
        raise ResultFormatError(
            f"{source} has no 'format' tag, so it was not written by {name}.save(); "
            f"load only files that {name}.save() wrote."
        )
    if found != tag:
        raise ResultFormatError(
            f"{source} holds a {found!r} file, not {_article(name)} {name}; load it with "
            f"{_reader_of(found)}."
        )
    return data


def build_from_file(path: str | Path, cls: type, build: Callable[[], T]) -> T:
    """``build()`` (a result made from the fields of ``path``), with every failure of the
    fields (a missing or renamed field, a value of the wrong type after a hand edit)
    turned into a `ResultFormatError` naming the file, instead of a ``TypeError`` or
    ``KeyError`` from the constructor."""
    try:
        return build()
    except (LsnMechError, TypeError, KeyError, ValueError, AttributeError, IndexError) as exc:
        if isinstance(exc, ResultFormatError) and str(path) in str(exc):
            raise
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ResultFormatError(
            f"{path} does not hold the fields of {_article(cls.__name__)} {cls.__name__} "
            f"({type(exc).__name__}: {detail}); it was damaged or edited by hand. Save the "
            f"result again, or run the step that writes it again."
        ) from None


def _article(word: str) -> str:
    """ "an" before a vowel, else "a" (error messages name result classes)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def write_csv(path: str | Path, header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> Path:
    """A CSV file, written atomically; floats are written with ``repr`` (exact)."""

    def write(temporary: Path) -> None:
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(list(header))
            for row in rows:
                writer.writerow([repr(v) if isinstance(v, float) else v for v in row])

    return atomic_write(path, write)


def markdown_cell(value: Any) -> str:
    """A Markdown table cell: JSON for anything not a string, ``|`` escaped, one line."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (reports, model cards): the ``header`` row, a separator, then one
    line per row, each cell through `markdown_cell`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


class PlainRecord:
    """Mixin for a flat dataclass of plain values (a set of scores) nested in a result:
    ``to_dict`` / ``from_dict`` through its fields (extra keys are ignored)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        missing = [name for name in names if name not in data]
        if missing:
            raise ResultFormatError(
                f"{cls.__name__} needs the keys {missing}; pass the dict its to_dict() wrote."
            )
        return cls(**{name: data[name] for name in names})


class Result:
    """Mixin of the result contract for dataclasses: ``save`` / ``load`` (JSON with the
    format tag ``lsn_mech.<ClassName>``), ``to_dict`` / ``from_dict``, and from the table
    a subclass declares in `tabulate`: ``to_csv``, ``to_pandas`` and ``_repr_html_``.

    Subclasses carry a ``provenance: Provenance`` field, override `_revive` when a field
    holds objects that JSON turns into dicts, and may override ``plot``.
    """

    format_tag: ClassVar[str] = "lsn_mech.Result"
    provenance: Provenance

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        """Register ``cls`` by its format tag; ``abstract=True`` marks a shared base that
        is never saved itself (so it needs no tag)."""
        super().__init_subclass__(**kwargs)
        if abstract:
            return
        if "format_tag" not in cls.__dict__:
            cls.format_tag = f"lsn_mech.{cls.__name__}"
        _RESULT_CLASSES[cls.format_tag] = cls

    # ----- JSON -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-ready data (nested objects through their ``to_dict``)."""
        return result_fields(self)

    @classmethod
    def _revive(cls, fields: dict[str, Any]) -> dict[str, Any]:
        """Rebuild the nested objects of ``fields`` read from JSON (``provenance`` is
        already a `Provenance`); override when a field holds more than plain data."""
        return fields

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """Inverse of `to_dict` (a ``format`` key is ignored)."""
        fields = {key: value for key, value in data.items() if key != "format"}
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(fields) - names)
        if unknown:
            raise ResultFormatError(
                f"Fields {unknown} are not fields of {cls.__name__} ({', '.join(sorted(names))}); "
                "the file comes from another lsn_mech version or class: load it there."
            )
        if "provenance" in names:
            fields["provenance"] = Provenance.from_dict(fields.get("provenance"))
        return cls(**cls._revive(fields))

    def save(self, path: str | Path) -> Path:
        """Lossless JSON (``.json`` is added when missing); the path written."""
        return write_result_json({**self.to_dict(), "format": self.format_tag}, path)

    @classmethod
    def load(cls: type[R], path: str | Path) -> R:
        """Read a result written by `save`; a file of another kind raises
        `ResultFormatError` naming the class that reads it, and so does one whose fields
        were damaged or edited by hand."""
        data = read_result_json(path, cls.format_tag)
        return build_from_file(path, cls, lambda: cls.from_dict(data))

    # ----- table ----------------------------------------------------------------------
    table_forms: ClassVar[tuple[str, ...]] = ("long",)
    """The forms of the table (``to_pandas(form=...)``), its default first. ``"long"``: one
    row per item or cell; ``"wide"``: a matrix, one column per language (or intervention,
    value…). With more than one, `tabulate` takes ``form=``."""

    def tabulate(self, *args: Any, **options: Any) -> ResultTable:
        """The result as one table (header and rows); options choose a view."""
        raise ResultOperationError(
            f"{type(self).__name__} declares no table; save() it as JSON or read its fields."
        )

    def _table(self, args: tuple[Any, ...], form: str | None, options: dict[str, Any]) -> Any:
        """`tabulate` in ``form`` (default: the first of `table_forms`), or a refusal that
        names the forms there are."""
        forms = type(self).table_forms
        if form is not None and form not in forms:
            raise ResultOperationError(
                f"{type(self).__name__} has no {form!r} table; pass form= one of "
                f"{', '.join(repr(f) for f in forms)} (docs/dataframes.md lists each)."
            )
        if form is not None and len(forms) > 1:
            options = {**options, "form": form}
        return self.tabulate(*args, **options)

    def to_csv(self, path: str | Path, *args: Any, form: str | None = None, **options: Any) -> Path:
        """Write `tabulate` (with the same options and ``form``) as CSV; floats exact."""
        header, rows = self._table(args, form, options)
        return write_csv(path, header, rows)

    def to_pandas(self, *args: Any, form: str | None = None, **options: Any) -> Any:
        """`tabulate` as a ``pandas.DataFrame`` with a plain index, label columns first.

        ``form`` picks one of `table_forms` (``"long"`` or ``"wide"``; each class's
        docstring and docs/dataframes.md say what its rows are); other options (``kind``,
        ``metric``) choose the values, as for `to_csv`.
        """
        import pandas as pd

        header, rows = self._table(args, form, options)
        return pd.DataFrame([list(row) for row in rows], columns=list(header))

    def _display_summary(self) -> str:
        """The one line above the notebook table (sizes, headline numbers)."""
        header, rows = self.tabulate()
        return f"{display.plural(len(rows), 'row')} × {len(header)} columns"

    def _display_table(self) -> display.Table:
        """The table the notebook shows (default: `tabulate`, uncoloured); matrices
        override this to colour their cells."""
        header, rows = self.tabulate()
        return display.Table(header, rows)

    def _repr_html_(self) -> str | None:
        """Notebook view: class, method and model, a one-line summary, a compact table."""
        if type(self).tabulate is Result.tabulate:
            return None
        title = display.title_of(type(self).__name__, getattr(self, "provenance", None))
        return display.render(title, self._display_summary(), self._display_table())

    def plot(self, *args: Any, **options: Any) -> Any:
        """A plotly figure of the result (subclasses that have one override this)."""
        raise ResultOperationError(
            f"{type(self).__name__} has no plot; plot to_pandas() or its fields yourself."
        )


class ScoredResult(Result, abstract=True):
    """A `Result` with a ``scores`` field of ``scores_type`` (a `PlainRecord`) and one
    table row per example: the shape of the evaluation results (translation, QA), so
    reviving the scores and ``table()`` have one owner."""

    scores_type: ClassVar[Any]
    """The class of the ``scores`` field; its ``from_dict`` revives it on load."""

    @classmethod
    def _revive(cls, fields: dict[str, Any]) -> dict[str, Any]:
        fields["scores"] = cls.scores_type.from_dict(fields["scores"])
        return fields

    def table(self) -> Any:
        """One row per example (a ``pandas.DataFrame``; columns as in `tabulate`)."""
        return self.to_pandas()


# ----- functions for results that do not inherit `Result` ---------------------------------
def save_json(result: Any, path: str | Path) -> Path:
    """Write a dataclass result as JSON tagged ``lsn_mech.<ClassName>``; floats round-trip
    exactly (``repr``)."""
    return write_result_json({**result_fields(result), "format": format_tag_of(type(result))}, path)


def load_json(
    cls: type[T], path: str | Path, prepare: Callable[[dict[str, Any]], None] | None = None
) -> T:
    """Read a result written by `save_json`, checking that it is a ``cls``.

    ``prepare`` may rebuild nested objects in the field dict before ``cls(**fields)``.
    """
    data = read_result_json(path, format_tag_of(cls))

    def build() -> T:
        data["provenance"] = Provenance.from_dict(data.get("provenance"))
        if prepare is not None:
            prepare(data)
        return cls(**data)

    return build_from_file(path, cls, build)


def scored_result_fields(result: Any) -> dict[str, Any]:
    """A result dataclass as plain data: ``dataclasses.asdict``, with its ``scores`` and
    ``provenance`` through their own ``to_dict`` (kept for imports; `Result.to_dict`
    does this for every field)."""
    return result_fields(result)


def read_scored_result_fields(
    path: str | Path, scores_type: Any, expected: str | type | None = None
) -> dict[str, Any]:
    """The constructor arguments of a result saved from `scored_result_fields`: the JSON
    file's fields without ``format`` (checked when ``expected`` is given), ``scores``
    rebuilt by ``scores_type.from_dict`` and ``provenance`` by `Provenance.from_dict`."""
    data = read_result_json(path, expected)

    def build() -> dict[str, Any]:
        data["scores"] = scores_type.from_dict(data["scores"])
        data["provenance"] = Provenance.from_dict(data.get("provenance"))
        return data

    return build_from_file(path, scores_type, build)


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
