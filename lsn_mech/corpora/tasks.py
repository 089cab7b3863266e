"""Labelled data for zero-shot cross-lingual transfer: train in one language, test in others.

A task is plain ``datasets.Dataset`` objects with a ``text`` column (the model's whole
input, already formatted) and an integer ``label`` column, one training set in the
source language and one test set per target language. The classifier and the
intervention tables (`lsn_mech.training.classifier`, `lsn_mech.experiments.transfer`)
read nothing else, so any local or hub data set fits once mapped to these columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset

from lsn_mech.errors import LsnMechError

__all__ = ["ClassificationTask", "TaskDataError"]

REQUIRED_COLUMNS = ("text", "label")


class TaskDataError(LsnMechError, ValueError):
    """A task's data set lacks a column, a split, a language or a label."""


@dataclass
class ClassificationTask:
    """A source-language training set and per-language test sets with shared labels.

    Attributes:
        name: what the task is (``"bible-genre"``, ``"xnli"``, ...).
        labels: label names; ``label`` column values index into them.
        source: language of ``train``.
        train: source-language rows (``text``, ``label``, any other columns).
        test: ``{language: rows}``; the source language may be among them.
        metadata: provenance (editions, split rule, sizes, ...), saved with results.
    """

    name: str
    labels: tuple[str, ...]
    source: str
    train: Dataset
    test: dict[str, Dataset]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        if len(self.labels) < 2:
            raise TaskDataError(f"A task needs at least two labels; got {self.labels}.")
        check_rows(self.train, len(self.labels), f"{self.name} train ({self.source})")
        for language, rows in self.test.items():
            check_rows(rows, len(self.labels), f"{self.name} test ({language})")

    @property
    def targets(self) -> list[str]:
        """Test languages other than the source."""
        return [language for language in self.test if language != self.source]

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def test_set(self, language: str) -> Dataset:
        """The test rows of ``language``, with an error that lists the available ones."""
        if language not in self.test:
            raise TaskDataError(
                f"The task {self.name!r} has no test set for {language!r}; "
                f"it has {', '.join(self.test)}. Build it with that target language."
            )
        return self.test[language]

    def subset(
        self, *, train: int | None = None, test: int | None = None, languages: Sequence[str] = ()
    ) -> ClassificationTask:
        """The first ``train`` / ``test`` rows (and only ``languages``' test sets if given)."""
        keep = list(languages) or list(self.test)
        for language in keep:
            self.test_set(language)
        return ClassificationTask(
            name=self.name,
            labels=self.labels,
            source=self.source,
            train=_head(self.train, train),
            test={language: _head(self.test[language], test) for language in keep},
            metadata={**self.metadata, "subset": {"train": train, "test": test}},
        )

    def summary(self) -> dict[str, Any]:
        """Row and per-label counts of each split (what a report table shows)."""
        return {
            "name": self.name,
            "labels": list(self.labels),
            "source": self.source,
            "train": label_counts(self.train, self.labels),
            "test": {lang: label_counts(rows, self.labels) for lang, rows in self.test.items()},
        }


def _head(rows: Dataset, n: int | None) -> Dataset:
    return rows if n is None or n >= len(rows) else rows.select(range(n))


def label_counts(rows: Dataset, labels: Sequence[str]) -> dict[str, int]:
    """``{label name: rows}`` in label order."""
    counts = dict.fromkeys(labels, 0)
    for value in rows["label"]:
        counts[labels[int(value)]] += 1
    return counts


def check_rows(rows: Any, num_labels: int, what: str) -> None:
    """Raise `TaskDataError` unless ``rows`` is a Dataset with text and in-range labels."""
    if not isinstance(rows, Dataset):
        raise TaskDataError(f"{what}: expected a datasets.Dataset; got {type(rows).__name__}.")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.column_names]
    if missing:
        raise TaskDataError(
            f"{what}: missing column(s) {missing}; a task needs 'text' (the formatted input) "
            "and 'label' (an integer index into the task's labels). Map your data with "
            "Dataset.map / rename_column first."
        )
    if len(rows) == 0:
        raise TaskDataError(f"{what}: no rows. Loosen the filters or pick another language.")
    bad = sorted({int(v) for v in rows["label"] if not 0 <= int(v) < num_labels})
    if bad:
        raise TaskDataError(
            f"{what}: labels {bad[:5]} are outside 0..{num_labels - 1}; drop unlabelled rows "
            "(XNLI uses -1 for none) or pass the full label list."
        )
