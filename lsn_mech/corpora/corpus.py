"""``MultilingualCorpus``: monolingual text in several languages, split into train and test.

A corpus is a thin wrapper around one `datasets.Dataset` with (at least) the
columns ``language``, ``text`` and ``split`` (``"train"`` or ``"test"``). Everything a
statistics run or an evaluation needs (the texts of one language in one split, a
content fingerprint for provenance) is computed from that dataset and cached.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from datasets import Dataset

from lsn_mech.errors import EmptyCorpusError, LsnMechError, MissingLanguageError
from lsn_mech.provenance import stable_hash

SPLITS = ("train", "test")

#: How `MultilingualCorpus.from_dataset` assigns rows to splits when it has to.
HASH_SPLIT_RULE = (
    "A row is in 'test' iff u < test_fraction, where u is the first 8 bytes of "
    "blake2b(f'{seed}\\x00{key}'.encode('utf-8'), digest_size=8), read as a big-endian "
    "integer and divided by 2**64; key is str(group value) when a group column is given, "
    "else the row's text. Equal keys always land in the same split, whatever the row order."
)


class CorpusArgumentError(LsnMechError, ValueError):
    """An argument of a corpus or tokenisation function is out of range or inconsistent."""


def hash_unit(seed: int, key: str) -> float:
    """A stable pseudo-random number in ``[0, 1)`` for ``key`` (see `HASH_SPLIT_RULE`)."""
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def column_list(dataset: Dataset, column: str) -> list[Any]:
    """One column of a dataset as a plain list (fast: no per-row Python objects)."""
    values = dataset[column]
    return values if isinstance(values, list) else values[:]


def _group_rows(dataset: Dataset) -> tuple[dict[tuple[str, str], list[int]], list[str]]:
    """Row indices per (language, split), and the languages in order of first appearance."""
    import numpy as np

    table = dataset.select_columns(["language", "split"]).with_format("arrow")[:]
    codes, values = {}, {}
    for name in ("language", "split"):
        column = table.column(name).combine_chunks()
        if column.null_count:
            raise CorpusArgumentError(f"The {name} column has missing values; fill them first.")
        encoded = column.cast("string").dictionary_encode()
        codes[name] = encoded.indices.to_numpy(zero_copy_only=False)
        values[name] = [str(v) for v in encoded.dictionary.to_pylist()]
    bad = sorted(set(values["split"]) - set(SPLITS))
    if bad:
        raise CorpusArgumentError(
            f"The split column holds {bad}; it may only hold 'train' or 'test'."
        )
    index: dict[tuple[str, str], list[int]] = {}
    for li, language in enumerate(values["language"]):
        in_language = codes["language"] == li
        for si, split in enumerate(values["split"]):
            rows = np.flatnonzero(in_language & (codes["split"] == si))
            if len(rows):
                index[(language, split)] = rows.tolist()
    _, first = np.unique(codes["language"], return_index=True)
    present = [values["language"][i] for i in np.argsort(first, kind="stable")]
    return index, present


def _new_dataset(table: Any, features: Any) -> Dataset:
    from datasets import DatasetInfo
    from datasets.fingerprint import generate_random_fingerprint

    # An explicit fingerprint: datasets would otherwise pickle the whole table to make one.
    return Dataset(
        table, info=DatasetInfo(features=features), fingerprint=generate_random_fingerprint()
    )


def _flat(dataset: Dataset) -> Dataset:
    """``dataset`` without a lazy row selection (reading a selection row by row is slow)."""
    if getattr(dataset, "_indices", None) is None:
        return dataset
    table = dataset.with_format("arrow")[:].replace_schema_metadata(None)
    return _new_dataset(table, dataset.features)


def _take(dataset: Dataset, rows: list[int]) -> Dataset:
    """Rows of a flat dataset, gathered in Arrow (much faster than ``Dataset.select``)."""
    import pyarrow as pa

    table = dataset.data.table.take(pa.array(rows, type=pa.int64()))
    return _new_dataset(table.replace_schema_metadata(None), dataset.features)


def _with_columns(dataset: Dataset, keep: list[str], strings: dict[str, list[str]]) -> Dataset:
    """``dataset``'s columns ``keep`` (its row selection applied) plus new string columns.

    Built directly in Arrow: ``Dataset.add_column`` would hash every value to make a
    fingerprint, and fails on a selection whose columns were all removed.
    """
    import pyarrow as pa
    from datasets import Features, Value

    new = {name: pa.array(values, type=pa.string()) for name, values in strings.items()}
    if keep:
        table = dataset.select_columns(keep).with_format("arrow")[:]
        table = table.replace_schema_metadata(None)
        for name, column in new.items():
            table = table.append_column(name, column)
    else:
        table = pa.table(new)
    features = Features(
        {**{c: dataset.features[c] for c in keep}, **{n: Value("string") for n in strings}}
    )
    return _new_dataset(table, features)


def check_fraction(test_fraction: float) -> float:
    """Validate a test fraction (``0 <= f < 1``)."""
    value = float(test_fraction)
    if not 0.0 <= value < 1.0:
        raise CorpusArgumentError(
            f"test_fraction must lie in [0, 1); got {test_fraction!r}. "
            "Use e.g. test_fraction=0.1 for a 90/10 train/test split."
        )
    return value


class MultilingualCorpus:
    """Texts in several languages, each row in the ``train`` or the ``test`` split.

    Build one with `lsn_mech.corpora.bible`, `lsn_mech.corpora.from_files`,
    `lsn_mech.corpora.from_hub` or `MultilingualCorpus.from_dataset`.

    Attributes:
        dataset: the underlying ``datasets.Dataset`` (columns ``language``, ``text``,
            ``split`` and whatever else the source provides, e.g. ``book``/``chapter``/
            ``verse``/``edition`` for the Bible).
        name: a short name of the source (``"bible"``, ``"files"``, a hub id…).
        languages: the languages, in the order they were asked for.
        metadata: JSON-serialisable facts about how the corpus was built (editions,
            skipped rows, split rule, test books…); part of the fingerprint.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        name: str,
        languages: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        missing = [c for c in ("language", "text", "split") if c not in dataset.column_names]
        if missing:
            raise CorpusArgumentError(
                f"A MultilingualCorpus dataset needs the columns language, text and split; "
                f"{', '.join(missing)} missing (it has {', '.join(dataset.column_names)}). "
                "Use MultilingualCorpus.from_dataset(ds, language_column=..., text_column=...) "
                "to rename columns and add a split."
            )
        self.dataset = _flat(dataset)
        self.name = str(name)
        self._index, present = _group_rows(self.dataset)
        if languages is None:
            languages = present
        else:
            languages = [str(lang) for lang in languages]
            unknown = [lang for lang in present if lang not in languages]
            if unknown:
                raise CorpusArgumentError(
                    f"The dataset holds languages {unknown} that are not in languages={languages}."
                )
        self.languages: list[str] = list(languages)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._fingerprint: str | None = None
        self._texts: list[str] | None = None

    # ----- construction -------------------------------------------------------------
    @classmethod
    def from_dataset(
        cls,
        dataset: Dataset,
        *,
        name: str = "dataset",
        language_column: str = "language",
        text_column: str = "text",
        split_column: str | None = None,
        group_column: str | None = None,
        test_fraction: float = 0.1,
        seed: int = 0,
        languages: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> MultilingualCorpus:
        """Wrap any ``datasets.Dataset`` that has a language and a text column.

        Args:
            dataset: the rows, one text each.
            name: short name recorded in provenance.
            language_column: column holding the language code of each row.
            text_column: column holding the text.
            split_column: an existing column with values ``"train"``/``"test"``. When
                ``None`` (and no ``split`` column exists), a deterministic split is added:
                see `HASH_SPLIT_RULE`.
            group_column: when adding a split, rows with equal values here (e.g. a
                document or verse id) go to the same split.
            test_fraction: expected share of rows in ``test`` when adding a split.
            seed: seed of the added split.
            languages: the language order (default: order of first appearance); rows of
                other languages are dropped.
            metadata: extra JSON-serialisable facts to record.

        Rows whose text is missing or blank are dropped (their count is recorded in
        ``metadata["dropped_blank"]``).
        """
        if not isinstance(dataset, Dataset):
            raise CorpusArgumentError(
                f"from_dataset expects a datasets.Dataset, got {type(dataset).__name__}. "
                "For a DatasetDict pick one split first (dd['train']) or pass split_column."
            )
        test_fraction = check_fraction(test_fraction)
        for column, role in ((language_column, "language"), (text_column, "text")):
            if column not in dataset.column_names:
                raise CorpusArgumentError(
                    f"The dataset has no {role} column {column!r}; its columns are "
                    f"{', '.join(dataset.column_names)}. Pass {role}_column=..."
                )
        meta: dict[str, Any] = dict(metadata or {})

        raw_texts = column_list(dataset, text_column)
        raw_langs = column_list(dataset, language_column)
        wanted = None if languages is None else {str(x) for x in languages}
        blank = [t is None or not str(t).strip() for t in raw_texts]
        keep = [
            i
            for i, lang in enumerate(raw_langs)
            if not blank[i] and (wanted is None or str(lang) in wanted)
        ]
        if sum(blank):
            meta["dropped_blank"] = sum(blank)
        if not keep:
            raise EmptyCorpusError(
                "The dataset holds no non-blank text"
                + (f" in languages {sorted(wanted)}." if wanted else ".")
                + " Check the text column and the language codes."
            )
        if len(keep) != len(dataset):
            dataset = dataset.select(keep)
        texts = [str(raw_texts[i]) for i in keep]
        langs = [str(raw_langs[i]) for i in keep]

        if split_column is not None and split_column not in dataset.column_names:
            raise CorpusArgumentError(
                f"split_column {split_column!r} is not a column "
                f"({', '.join(dataset.column_names)})."
            )
        if split_column is None and "split" in dataset.column_names:
            split_column = "split"
        if split_column is not None:
            splits = [str(s) for s in column_list(dataset, split_column)]
            bad = sorted(set(splits) - set(SPLITS))
            if bad:
                raise CorpusArgumentError(
                    f"Column {split_column!r} holds {bad}; only 'train' and 'test' are allowed. "
                    "Map your split names first, or pass split_column=None to add a split."
                )
            meta.setdefault("split_rule", f"given by column {split_column!r}")
        else:
            if group_column is not None and group_column not in dataset.column_names:
                raise CorpusArgumentError(
                    f"group_column {group_column!r} is not a column "
                    f"({', '.join(dataset.column_names)})."
                )
            keys = texts if group_column is None else column_list(dataset, group_column)
            splits = [
                "test" if hash_unit(seed, str(key)) < test_fraction else "train" for key in keys
            ]
            meta.setdefault("split_rule", HASH_SPLIT_RULE)
            meta.setdefault("test_fraction", test_fraction)
            meta.setdefault("seed", seed)
            if group_column is not None:
                meta.setdefault("split_group_column", group_column)

        # Replace the language/text/split columns by canonical ones (plain strings).
        drop = {language_column, text_column, split_column, "language", "text", "split"}
        others = [c for c in dataset.column_names if c not in drop]
        dataset = _with_columns(
            dataset, others, {"language": langs, "text": texts, "split": splits}
        )

        order = [str(x) for x in languages] if languages is not None else list(dict.fromkeys(langs))
        present = set(langs)
        absent = [lang for lang in order if lang not in present]
        if absent:
            raise EmptyCorpusError(
                f"No non-blank text for language(s) {absent} in the dataset "
                f"(it has {sorted(present)})."
            )
        return cls(dataset, name=name, languages=order, metadata=meta)

    # ----- access -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.dataset)

    def __contains__(self, language: object) -> bool:
        return language in self.languages

    def _check_language(self, language: str) -> None:
        if language not in self.languages:
            raise MissingLanguageError(
                f"Language {language!r} is not in the {self.name!r} corpus; it has "
                f"{', '.join(self.languages)}. Build the corpus with that language "
                "(e.g. lsn_mech.corpora.bible([..., " + repr(language) + "]))."
            )

    def indices(self, language: str | None = None, split: str | None = "train") -> list[int]:
        """Row indices of ``language`` (all when ``None``) in ``split`` (both when ``None``)."""
        if split is not None and split not in SPLITS:
            raise CorpusArgumentError(f"split must be 'train', 'test' or None; got {split!r}.")
        if language is not None:
            self._check_language(language)
        langs = self.languages if language is None else [language]
        splits = SPLITS if split is None else (split,)
        rows = [i for lang in langs for s in splits for i in self._index.get((lang, s), [])]
        if not rows:
            what = f"language {language!r}" if language is not None else "the corpus"
            where = f"the {split!r} split" if split is not None else "any split"
            raise EmptyCorpusError(
                f"{what} has no rows in {where} of the {self.name!r} corpus "
                f"({self._counts_text()}). Use a larger test_fraction, other books, or more text."
            )
        return sorted(rows) if len(langs) * len(splits) > 1 else rows

    def split(self, split: str, language: str | None = None) -> Dataset:
        """Rows of ``language`` (all languages when ``None``) in ``split``."""
        return _take(self.dataset, self.indices(language, split))

    def train(self, language: str | None = None) -> Dataset:
        """Training rows of one language (or of all languages when ``None``)."""
        return self.split("train", language)

    def test(self, language: str | None = None) -> Dataset:
        """Held-out rows of one language (or of all languages when ``None``)."""
        return self.split("test", language)

    def texts(self, language: str, split: str | None = "train") -> list[str]:
        """The texts of one language in ``split`` (``None``: both splits), in corpus order."""
        rows = self.indices(language, split)
        if self._texts is None:
            self._texts = column_list(self.dataset, "text")
        return [self._texts[i] for i in rows]

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per language and split: ``{"en": {"train": 27000, "test": 3000}, ...}``."""
        return {
            lang: {s: len(self._index.get((lang, s), [])) for s in SPLITS}
            for lang in self.languages
        }

    def select_languages(self, languages: Iterable[str]) -> MultilingualCorpus:
        """A corpus holding only ``languages`` (in that order); splits are unchanged."""
        languages = list(languages)
        for lang in languages:
            self._check_language(lang)
        if not languages:
            raise CorpusArgumentError("select_languages needs at least one language.")
        rows = sorted(
            i for lang in languages for s in SPLITS for i in self._index.get((lang, s), [])
        )
        meta = copy.deepcopy(self.metadata)
        for key, value in list(meta.items()):
            # Per-language facts (editions, skipped rows…) keep only the chosen languages.
            if isinstance(value, dict) and value and set(value) <= set(self.languages):
                meta[key] = {k: v for k, v in value.items() if k in languages}
        meta["selected_from"] = self.fingerprint
        return MultilingualCorpus(
            _take(self.dataset, rows), name=self.name, languages=languages, metadata=meta
        )

    # ----- identity -----------------------------------------------------------------
    @property
    def text_hash(self) -> str:
        """SHA-256 over every row's language, split and text, in dataset order.

        Computed per batch of 50,000 rows: for each of the three columns, its name and
        its values joined by NUL.
        """
        digest = hashlib.sha256()
        columns = self.dataset.select_columns(["language", "split", "text"])
        for batch in columns.iter(batch_size=50_000):
            for name in ("language", "split", "text"):
                digest.update(name.encode() + b"\x01")
                digest.update("\x00".join(batch[name]).encode() + b"\x02")
        return digest.hexdigest()

    @property
    def fingerprint(self) -> str:
        """A stable content hash: name, languages, metadata and every text (cached)."""
        if self._fingerprint is None:
            self._fingerprint = stable_hash(
                self.name, self.languages, self.metadata, self.text_hash
            )
        return self._fingerprint

    def _counts_text(self) -> str:
        return ", ".join(
            f"{lang}: {c['train']} train / {c['test']} test" for lang, c in self.counts().items()
        )

    def __repr__(self) -> str:
        counts = self.counts()
        width = max([len(lang) for lang in self.languages] + [8])
        lines = [
            f"MultilingualCorpus({self.name!r}, {len(self.languages)} "
            f"language{'' if len(self.languages) == 1 else 's'}, {len(self)} rows)",
            f"  {'language':<{width}} {'train':>8} {'test':>8}",
        ]
        for lang, c in counts.items():
            lines.append(f"  {lang:<{width}} {c['train']:>8} {c['test']:>8}")
        return "\n".join(lines)
