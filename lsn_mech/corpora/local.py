"""Corpora from local files (text, JSON lines, Parquet) and from the Hugging Face hub."""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lsn_mech.corpora.corpus import CorpusArgumentError, MultilingualCorpus, column_list
from lsn_mech.errors import CorpusFileError, EmptyCorpusError, HubUnavailableError
from lsn_mech.hub import connection_problem
from lsn_mech.hub import is_connection_error as is_connection_error  # moved there

_FORMATS = ("text", "json", "parquet")
_SUFFIX_FORMATS = {
    ".txt": "text",
    ".text": "text",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".xz", ".zst", ".lz4"}
_TRUE = {"1", "ON", "YES", "TRUE"}


# ----- local files ----------------------------------------------------------------------
def _expand(language: str, spec: str | Path | Sequence[str | Path]) -> list[Path]:
    items = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if not items:
        raise CorpusFileError(f"No file given for language {language!r}.")
    paths: list[Path] = []
    for item in items:
        text = str(item)
        if any(ch in text for ch in "*?[") and not Path(text).exists():
            matches = sorted(glob.glob(os.path.expanduser(text)))
            if not matches:
                raise CorpusFileError(f"No file matches {text!r} (language {language!r}).")
            paths.extend(Path(m) for m in matches)
            continue
        path = Path(text).expanduser()
        if not path.exists():
            raise CorpusFileError(
                f"Corpus file for language {language!r} not found: {path}. "
                "Check the path (relative paths are taken from the working directory "
                f"{Path.cwd()})."
            )
        if not path.is_file():
            raise CorpusFileError(
                f"{path} (language {language!r}) is not a file; pass files or a glob "
                "pattern such as 'data/fr/*.txt'."
            )
        paths.append(path)
    return paths


def _infer_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
        suffixes.pop()
    fmt = _SUFFIX_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise CorpusArgumentError(
            f"Cannot tell the format of {path.name} from its suffix; pass format='text', "
            "'json' or 'parquet'."
        )
    return fmt


def from_files(
    paths_by_language: Mapping[str, str | Path | Sequence[str | Path]],
    *,
    format: str | None = None,
    text_column: str = "text",
    test_fraction: float = 0.1,
    seed: int = 0,
    sample_by: str = "line",
    name: str = "files",
) -> MultilingualCorpus:
    """A corpus from local files, one or more per language.

    Args:
        paths_by_language: ``{language: path | [paths] | glob}``.
        format: ``"text"`` (one row per line, see ``sample_by``), ``"json"`` (JSON or
            JSON lines) or ``"parquet"``; inferred from each file's suffix when ``None``
            (``.txt``, ``.json``/``.jsonl``, ``.parquet``, optionally compressed, e.g.
            ``.jsonl.gz``).
        text_column: the text field of JSON and Parquet files.
        test_fraction: expected share of rows in ``test``; the split is the
            deterministic hash split of `MultilingualCorpus.from_dataset`.
        seed: seed of that split.
        sample_by: for text files, ``"line"``, ``"paragraph"`` (blank-line separated)
            or ``"document"`` (whole file).
        name: the corpus name recorded in provenance.

    Blank rows are dropped. Files are read with ``datasets.load_dataset`` (and cached
    by it).

    Raises:
        CorpusFileError: a file does not exist (a ``FileNotFoundError``).
        EmptyCorpusError: a language holds no non-blank text.
    """
    import datasets

    if format is not None and format not in _FORMATS:
        raise CorpusArgumentError(f"format must be one of {_FORMATS} or None; got {format!r}.")
    if not paths_by_language:
        raise CorpusArgumentError("Give at least one language: from_files({'fr': 'fr.txt'}).")
    if sample_by not in _SAMPLE_BY:
        raise CorpusArgumentError(f"sample_by must be one of {_SAMPLE_BY}; got {sample_by!r}.")
    parts = []
    files_meta: dict[str, list[str]] = {}
    formats_meta: dict[str, list[str]] = {}
    for language, spec in paths_by_language.items():
        paths = _expand(language, spec)
        by_format: dict[str, list[str]] = {}
        for path in paths:
            by_format.setdefault(format or _infer_format(path), []).append(str(path))
        pieces = []
        for fmt, files in by_format.items():
            kwargs: dict[str, Any] = {"sample_by": sample_by} if fmt == "text" else {}
            ds = _load_files(language, fmt, files, kwargs)
            column = "text" if fmt == "text" else text_column
            if column not in ds.column_names:
                raise CorpusArgumentError(
                    f"{', '.join(Path(f).name for f in files)} ({language!r}) has no "
                    f"{column!r} field; its fields are {', '.join(ds.column_names)}. "
                    "Pass text_column=..."
                )
            ds = ds.select_columns([column])
            if column != "text":
                ds = ds.rename_column(column, "text")
            pieces.append(ds)
        ds = datasets.concatenate_datasets(pieces) if len(pieces) > 1 else pieces[0]
        texts = column_list(ds, "text")
        if not any(t is not None and str(t).strip() for t in texts):
            raise EmptyCorpusError(
                f"Language {language!r} has no non-blank text in "
                f"{', '.join(str(p) for p in paths)}."
            )
        parts.append(ds.add_column("language", [str(language)] * len(ds)))
        files_meta[str(language)] = [Path(p).name for p in paths]
        formats_meta[str(language)] = sorted(by_format)
    dataset = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    return MultilingualCorpus.from_dataset(
        dataset,
        name=name,
        test_fraction=test_fraction,
        seed=seed,
        languages=[str(lang) for lang in paths_by_language],
        metadata={"files": files_meta, "formats": formats_meta, "sample_by": sample_by},
    )


_SAMPLE_BY = ("line", "paragraph", "document")


def _load_files(language: str, fmt: str, files: list[str], kwargs: dict[str, Any]) -> Any:
    """``datasets.load_dataset`` of local files, with its generation errors (an empty or
    undecodable file) turned into errors that name the file."""
    import datasets

    names = ", ".join(files)
    if all(os.path.isfile(f) and os.path.getsize(f) == 0 for f in files):
        raise EmptyCorpusError(f"Language {language!r} has no text: {names} is empty.")
    try:
        return datasets.load_dataset(fmt, data_files=files, split="train", **kwargs)
    except datasets.exceptions.DatasetGenerationError as exc:
        cause = exc.__cause__ or exc
        raise CorpusArgumentError(
            f"{names} ({language!r}) cannot be read as {fmt} ({type(cause).__name__}: "
            f"{str(cause)[:120]}). Save it as UTF-8 {fmt}, or pass format=... for its kind."
        ) from None


# ----- the hub --------------------------------------------------------------------------
def hub_unavailable_error(name: str, reason: str) -> HubUnavailableError:
    """The error for "``name`` cannot be loaded because the hub is unreachable (``reason``)",
    naming the offline alternatives."""
    return HubUnavailableError(
        f"The Hugging Face hub is unreachable ({reason}), so {name!r} cannot be loaded. "
        "Use local files with lsn_mech.corpora.from_files({...}) or the embedded Bible "
        "with lsn_mech.corpora.bible([...]). If the dataset is already in your local "
        "cache, start Python with HF_HUB_OFFLINE=1 to load it from there."
    )


def offline_env_set() -> bool:
    """Whether ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set to a true value now."""
    return any(
        os.environ.get(var, "").strip().upper() in _TRUE
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def datasets_offline() -> bool:
    """Whether the ``datasets`` library runs offline (its config, fixed when it was imported)."""
    import datasets.config

    return bool(
        getattr(datasets.config, "HF_HUB_OFFLINE", False)
        or getattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    )


def probe_hub(name: str, timeout: float) -> None:
    """Raise `HubUnavailableError` fast (one TCP connect within ``timeout`` seconds) when
    the hub cannot be reached at all; do nothing behind a proxy (`lsn_mech.hub`)."""
    problem = connection_problem(timeout)
    if problem is not None:
        raise hub_unavailable_error(name, problem)


def load_hub_dataset(name: str, config: str | None, **kwargs: Any) -> Any:
    """``datasets.load_dataset(name, config, **kwargs)``, with connection failures raised
    as `HubUnavailableError`."""
    import datasets

    try:
        return datasets.load_dataset(name, config, **kwargs)
    except Exception as exc:
        if is_connection_error(exc):
            raise hub_unavailable_error(name, f"{type(exc).__name__}: {exc}") from exc
        raise


def _take_texts(
    data: Any, text_column: str, limit: int | None, name: str, config: str | None
) -> list[Any]:
    names = getattr(data, "column_names", None)
    if names is not None and text_column not in names:
        raise CorpusArgumentError(
            f"{name!r} ({config or 'default config'}) has no column {text_column!r}; its "
            f"columns are {', '.join(names)}. Pass text_column=..."
        )
    if limit is None:
        return column_list(data, text_column)
    return [row[text_column] for row in itertools.islice(iter(data), limit)]


def from_hub(
    name: str,
    *,
    languages: Mapping[str, str] | Sequence[str],
    config: str | None = None,
    split: str = "train",
    text_column: str = "text",
    language_column: str | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_rows_per_language: int | None = None,
    revision: str | None = None,
    probe_timeout: float = 3.0,
    **load_kwargs: Any,
) -> MultilingualCorpus:
    """A corpus from a dataset on the Hugging Face hub (or a local dataset directory).

    Two layouts are supported:

    * one subset (config) per language, ``language_column=None``: ``languages`` maps
      each language to its subset (``{"fr": "20231101.fr"}``), or is a list of
      languages and ``config`` is a pattern such as ``"20231101.{lang}"`` (or ``None``:
      the subset is named like the language);
    * one subset with a language column: pass ``language_column``; ``languages``
      maps each language to its value in that column (or lists the values).

    Args:
        name: hub id (``"wikimedia/wikipedia"``) or a local dataset directory.
        split: the hub split to read (slicing such as ``"train[:1%]"`` works).
        text_column: the text column.
        test_fraction: expected share of rows in ``test`` (hash split of each text).
        seed: seed of that split.
        max_rows_per_language: stream and keep only the first rows of each language
            (no full download).
        revision: a hub revision (branch, tag or commit) to pin.
        probe_timeout: seconds to wait for one TCP connection to the hub before
            concluding that it is unreachable.
        **load_kwargs: passed to ``datasets.load_dataset``.

    Raises:
        HubUnavailableError: the hub cannot be reached (no network, ``HF_HUB_OFFLINE``
            set and the dataset not cached).
    """
    if isinstance(languages, str):
        languages = [languages]
    if isinstance(languages, Mapping):
        targets = {str(k): str(v) for k, v in languages.items()}
    else:
        targets = {str(lang): str(lang) for lang in languages}
    if not targets:
        raise CorpusArgumentError("Give at least one language.")
    if max_rows_per_language is not None and max_rows_per_language < 1:
        raise CorpusArgumentError("max_rows_per_language must be positive or None.")

    local = Path(name).expanduser().exists()
    if not local:
        if offline_env_set() and not datasets_offline():
            raise hub_unavailable_error(name, "HF_HUB_OFFLINE is set")
        if not datasets_offline():
            probe_hub(name, probe_timeout)

    streaming = max_rows_per_language is not None
    kwargs = dict(split=split, revision=revision, streaming=streaming, **load_kwargs)
    texts: list[Any] = []
    langs: list[str] = []
    configs: dict[str, str | None] = {}
    if language_column is None:
        if not isinstance(languages, Mapping) and config is not None and "{lang}" not in config:
            raise CorpusArgumentError(
                f"config={config!r} would load the same subset for every language; use a "
                "pattern with '{lang}', a mapping {language: subset}, or language_column=..."
            )
        for lang, target in targets.items():
            subset = (
                target
                if isinstance(languages, Mapping)
                else (config.format(lang=lang) if config else lang)
            )
            configs[lang] = subset
            data = load_hub_dataset(name, subset, **kwargs)
            chunk = _take_texts(data, text_column, max_rows_per_language, name, subset)
            texts.extend(chunk)
            langs.extend([lang] * len(chunk))
    else:
        data = load_hub_dataset(name, config, **kwargs)
        names = getattr(data, "column_names", None)
        if names is not None and language_column not in names:
            raise CorpusArgumentError(
                f"{name!r} has no column {language_column!r}; its columns are {', '.join(names)}."
            )
        by_value = {v: k for k, v in targets.items()}
        counts = dict.fromkeys(targets, 0)
        rows = (
            iter(data)
            if streaming
            else zip(
                column_list(data, language_column), column_list(data, text_column), strict=True
            )
        )
        for row in rows:
            value, text = (row[language_column], row[text_column]) if streaming else row
            lang = by_value.get(str(value))
            if lang is None:
                continue
            if max_rows_per_language is not None and counts[lang] >= max_rows_per_language:
                if all(c >= max_rows_per_language for c in counts.values()):
                    break
                continue
            counts[lang] += 1
            texts.append(text)
            langs.append(lang)
        configs = dict.fromkeys(targets, config)

    import datasets

    dataset = datasets.Dataset.from_dict({"language": langs, "text": texts})
    return MultilingualCorpus.from_dataset(
        dataset,
        name=name,
        test_fraction=test_fraction,
        seed=seed,
        languages=list(targets),
        metadata={
            "hub": name,
            "configs": configs,
            "hub_split": split,
            "revision": revision,
            "language_column": language_column,
            "language_values": targets,
            "max_rows_per_language": max_rows_per_language,
        },
    )
