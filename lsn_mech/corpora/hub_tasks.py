"""XNLI and XQuAD from the Hugging Face hub, shaped for zero-shot cross-lingual transfer.

Mondal et al. (2025, §4 and App. B) train on English and test on other languages:

* XNLI: `xnli` gives a `ClassificationTask` (``text`` = `XNLI_TEMPLATE`, ``label`` in
  `XNLI_LABELS`), 100,000 English training pairs (25 %) by default, tests in vi, hi, ur;
* XQuAD: `xquad` gives a `QATask` (SQuAD columns plus ``prompt`` = `QA_TEMPLATE` and
  ``answer``), trained on the whole English SQuAD v1.1 training split, tests in vi, hi,
  zh. `lsn_mech.evaluate.qa` tokenises and scores it (exact match and F1).

Hub ids, configurations, splits and columns (as on the dataset cards):

* XNLI: ``facebook/xnli``, configuration = the language (``"en"``, ``"vi"``, ...),
  splits train / validation / test, columns premise, hypothesis, label;
* XQuAD: ``google/xquad``, configuration ``"xquad.{lang}"``, one split (validation),
  columns id, context, question, answers;
* SQuAD v1.1: ``rajpurkar/squad``, default configuration (``plain_text``), splits
  train / validation, columns id, title, context, question, answers.

Everything is loaded through an injectable ``loader(path, name, split)`` (default:
``datasets.load_dataset``), so local copies or test fixtures fit without the hub. When
the hub cannot be reached, a `HubTaskError` says so and names the offline alternative,
``lsn_mech.corpora.bible_genre_task``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import Dataset

from lsn_mech.corpora.corpus import column_list
from lsn_mech.corpora.tasks import ClassificationTask, TaskDataError
from lsn_mech.errors import HubUnavailableError

__all__ = [
    "QA_COLUMNS",
    "QA_TEMPLATE",
    "SQUAD_HUB",
    "XNLI_HUB",
    "XNLI_LABELS",
    "XNLI_TEMPLATE",
    "XQUAD_CONFIG",
    "XQUAD_HUB",
    "XQUAD_LANGUAGES",
    "HubTaskError",
    "QATask",
    "qa_prompt",
    "xnli",
    "xnli_text",
    "xquad",
]

#: Hub id of XNLI (one configuration per language, e.g. ``"vi"``).
XNLI_HUB = "facebook/xnli"
#: XNLI's label names in the order of the hub's ``ClassLabel`` (``-1`` marks no label).
#: Mondal et al. App. B.1.1 lists them as entailment (0), contradiction (1), neutral (2);
#: we keep the hub's order, so that the ``label`` column needs no remapping.
XNLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")
#: How a premise and a hypothesis become the classifier's input ``text``.
XNLI_TEMPLATE = "Premise: {premise}\nHypothesis: {hypothesis}\nRelation:"

#: Hub id of XQuAD (configurations ``xquad.{lang}``, one ``validation`` split).
XQUAD_HUB = "google/xquad"
#: Configuration name of one XQuAD language.
XQUAD_CONFIG = "xquad.{lang}"
#: The languages XQuAD has (11 translations of 1,190 SQuAD v1.1 questions, plus English).
XQUAD_LANGUAGES: tuple[str, ...] = (
    "ar",
    "de",
    "el",
    "en",
    "es",
    "hi",
    "ro",
    "ru",
    "th",
    "tr",
    "vi",
    "zh",
)
#: Hub id of SQuAD v1.1 (English training data of the XQuAD task).
SQUAD_HUB = "rajpurkar/squad"
#: How a context and a question become the model's prompt; the answer follows
#: ``"Answer:"`` after a space, on the same line, and ends with a newline.
QA_TEMPLATE = "Context: {context}\nQuestion: {question}\nAnswer:"
#: Columns of every `QATask` split.
QA_COLUMNS = ("id", "context", "question", "answers", "prompt", "answer", "language")

#: ``(path, name, split) -> Dataset``: how hub data is read (``datasets.load_dataset``-like).
Loader = Callable[[str, str | None, str], Dataset]


class HubTaskError(HubUnavailableError):
    """A hub task (XNLI, XQuAD) could not be loaded because the hub is unreachable."""


# ----- loading --------------------------------------------------------------------------
def _default_loader(path: str, name: str | None, split: str) -> Dataset:
    """``datasets.load_dataset`` after a quick reachability probe (fails in seconds)."""
    import datasets

    from lsn_mech.corpora.local import datasets_offline, offline_env_set, probe_hub

    if offline_env_set() and not datasets_offline():
        raise ConnectionError("HF_HUB_OFFLINE was set after datasets was imported")
    if not datasets_offline():
        try:
            probe_hub(path, 3.0)
        except HubUnavailableError as exc:
            from huggingface_hub import constants

            endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
            raise ConnectionError(f"cannot connect to {endpoint}: {exc.__cause__}") from exc
    return datasets.load_dataset(path, name, split=split)


def _load(loader: Loader | None, task: str, path: str, name: str | None, split: str) -> Dataset:
    """Call the loader; turn "the hub is unreachable" into a `HubTaskError` that names the fix."""
    from lsn_mech.corpora.local import is_connection_error

    try:
        data = (loader or _default_loader)(path, name, split)
    except Exception as exc:
        if not isinstance(exc, OSError) and not is_connection_error(exc):
            raise
        where = f"{path!r} (configuration {name!r}, split {split!r})"
        raise HubTaskError(
            f"{task} needs the Hugging Face hub, and loading {where} failed "
            f"({type(exc).__name__}: {exc}). Connect to the internet, or download the data "
            "once into the Hugging Face cache and set HF_HUB_OFFLINE=1, or pass "
            "loader=lambda path, name, split: ... that reads a local copy. Without the hub, "
            "use the offline task lsn_mech.corpora.bible_genre_task(...) instead."
        ) from exc
    if not isinstance(data, Dataset):
        raise TaskDataError(
            f"The loader returned a {type(data).__name__} for {path!r} ({name}, {split}); "
            "it must return one datasets.Dataset (call load_dataset with split=...)."
        )
    return data


def _require(data: Dataset, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in data.column_names]
    if missing:
        raise TaskDataError(
            f"{what} lacks the column(s) {missing}; it has {data.column_names}. Pass data with "
            "the hub's schema (or rename the columns first)."
        )


def _subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Positions of a seeded random subset of ``limit`` of ``n`` rows, in their original order.

    The draw depends only on ``n``, ``limit`` and ``seed``, so parallel test sets of the
    same length (XNLI and XQuAD are translations row by row) keep the same rows.
    """
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise TaskDataError(f"{name} must be a positive number of rows or None; got {value}.")


def _languages(targets: str | Sequence[str], source: str, include_source: bool) -> list[str]:
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets and not include_source:
        raise TaskDataError("Give at least one target language.")
    out = [source] if include_source else []
    return out + [t for t in targets if t not in out]


def _flat(text: str) -> str:
    """``text`` with line breaks turned into spaces, character for character (so that
    SQuAD's ``answer_start`` offsets stay valid)."""
    return re.sub(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]", " ", text)


def collapse_whitespace(text: str) -> str:
    """``str(text)`` on one line: each run of whitespace (line breaks too) becomes one
    space, and leading and trailing whitespace is dropped."""
    return " ".join(str(text).split())


# ----- XNLI -----------------------------------------------------------------------------
def xnli_text(premise: str, hypothesis: str) -> str:
    """One XNLI input as `XNLI_TEMPLATE` renders it (each side on one line)."""
    return XNLI_TEMPLATE.format(
        premise=collapse_whitespace(premise), hypothesis=collapse_whitespace(hypothesis)
    )


def _xnli_rows(
    data: Dataset, language: str, limit: int | None, seed: int, what: str
) -> tuple[Dataset, dict[str, int]]:
    _require(data, ("premise", "hypothesis", "label"), what)
    feature = data.features.get("label")
    names = getattr(feature, "names", None)
    if names is not None and tuple(names) != XNLI_LABELS:
        raise TaskDataError(
            f"{what} labels are {names}, expected {list(XNLI_LABELS)} in this order; map the "
            "label column to XNLI's order first."
        )
    labels = np.asarray(column_list(data, "label"), dtype=np.int64)
    labelled = np.flatnonzero(labels >= 0)
    keep = labelled[_subset(len(labelled), limit, seed)]
    rows = data.select(keep.tolist()) if len(keep) < len(data) else data
    premises = [str(p) for p in column_list(rows, "premise")]
    hypotheses = [str(h) for h in column_list(rows, "hypothesis")]
    out = Dataset.from_dict(
        {
            "text": [xnli_text(p, h) for p, h in zip(premises, hypotheses)],
            "label": labels[keep].tolist(),
            "premise": premises,
            "hypothesis": hypotheses,
            "language": [language] * len(keep),
            "index": keep.tolist(),
        }
    )
    counts = {"rows": len(data), "unlabelled": len(data) - len(labelled), "kept": len(keep)}
    return out, counts


def xnli(
    source: str = "en",
    targets: str | Sequence[str] = ("vi", "hi", "ur"),
    *,
    max_train: int | None = 100_000,
    max_test: int | None = None,
    split_test: str = "test",
    include_source: bool = True,
    seed: int = 0,
    loader: Loader | None = None,
) -> ClassificationTask:
    """XNLI as a `ClassificationTask`: train in ``source``, test in ``targets``.

    Training rows are the ``train`` split of ``source`` (MNLI; the other languages'
    ``train`` splits are machine translations), test rows the ``split_test`` split of
    each target (and of ``source`` too when ``include_source``). Rows labelled ``-1``
    (no gold label) are dropped first; then ``max_train`` / ``max_test`` keep a seeded
    random subset (``numpy`` permutation with ``seed``), in hub order. The default
    100,000 training rows are Mondal et al.'s 25 % of the 392,702.

    Each split has the columns ``text`` (`XNLI_TEMPLATE`), ``label`` (index into
    `XNLI_LABELS`: entailment, neutral, contradiction), ``premise``, ``hypothesis``,
    ``language`` and ``index`` (the row's position in the hub split, so test sets of
    different languages can be aligned).

    Args:
        source: training language (an XNLI configuration name).
        targets: test languages.
        max_train: training rows to keep (``None``: all).
        max_test: test rows per language to keep (``None``: all 5,010).
        split_test: ``"test"`` or ``"validation"``.
        include_source: also build a test set in ``source``.
        seed: seed of the subsets.
        loader: ``(path, name, split) -> Dataset``; defaults to ``datasets.load_dataset``.

    Raises:
        HubTaskError: the hub cannot be reached (use ``lsn_mech.corpora.bible_genre_task``
            offline).
        TaskDataError: a split lacks a column, has other label names, or no labelled row.
    """
    _check_limit("max_train", max_train)
    _check_limit("max_test", max_test)
    languages = _languages(targets, source, include_source)
    train_raw = _load(loader, "XNLI", XNLI_HUB, source, "train")
    train, train_counts = _xnli_rows(train_raw, source, max_train, seed, f"XNLI train ({source})")
    test: dict[str, Dataset] = {}
    counts: dict[str, dict[str, int]] = {}
    for language in languages:
        raw = _load(loader, "XNLI", XNLI_HUB, language, split_test)
        what = f"XNLI {split_test} ({language})"
        test[language], counts[language] = _xnli_rows(raw, language, max_test, seed, what)
    return ClassificationTask(
        name="xnli",
        labels=XNLI_LABELS,
        source=source,
        train=train,
        test=test,
        metadata={
            "hub": XNLI_HUB,
            "configs": {"train": source, "test": languages},
            "splits": {"train": "train", "test": split_test},
            "template": XNLI_TEMPLATE,
            "max_train": max_train,
            "max_test": max_test,
            "seed": seed,
            "subset": "seeded numpy permutation of the labelled rows, kept in hub order",
            "rows": {"train": train_counts, "test": counts},
        },
    )


# ----- XQuAD ----------------------------------------------------------------------------
def qa_prompt(context: str, question: str) -> str:
    """One question as `QA_TEMPLATE` renders it.

    Line breaks in the context become spaces character for character (so SQuAD's
    ``answer_start`` offsets still point into the prompt's context); the question is
    put on one line.
    """
    return QA_TEMPLATE.format(context=_flat(str(context)), question=collapse_whitespace(question))


def gold_answers(value: Any) -> tuple[list[str], list[int]]:
    """The gold answer texts and their character starts in one ``answers`` cell.

    The cell is SQuAD's dict of lists or a list of ``{"text", "answer_start"}`` dicts;
    a missing start is ``-1``. Raises `TaskDataError` for any other value.
    """
    if isinstance(value, Mapping):
        texts = [str(t) for t in value.get("text") or []]
        starts = list(value.get("answer_start") or [])
    elif isinstance(value, Sequence) and not isinstance(value, str):
        texts = [str(a["text"]) for a in value]
        starts = [a.get("answer_start", -1) for a in value]
    else:
        raise TaskDataError(
            f"An 'answers' cell must be {{'text': [...], 'answer_start': [...]}} (SQuAD); "
            f"got {type(value).__name__}."
        )
    starts = [int(s) if s is not None else -1 for s in starts]
    return texts, (starts + [-1] * len(texts))[: len(texts)]


def _qa_rows(
    data: Dataset, language: str, limit: int | None, seed: int, what: str
) -> tuple[Dataset, dict[str, int]]:
    _require(data, ("context", "question", "answers"), what)
    answers = [gold_answers(a) for a in column_list(data, "answers")]
    answered = np.asarray([i for i, (texts, _) in enumerate(answers) if texts], dtype=np.int64)
    keep = answered[_subset(len(answered), limit, seed)].tolist()
    rows = data.select(keep) if len(keep) < len(data) else data
    ids = column_list(rows, "id") if "id" in data.column_names else [str(i) for i in keep]
    contexts = [str(c) for c in column_list(rows, "context")]
    questions = [str(q) for q in column_list(rows, "question")]
    golds = [answers[i] for i in keep]
    out = Dataset.from_dict(
        {
            "id": [str(i) for i in ids],
            "context": contexts,
            "question": questions,
            "answers": [{"text": t, "answer_start": s} for t, s in golds],
            "prompt": [qa_prompt(c, q) for c, q in zip(contexts, questions)],
            "answer": [t[0] for t, _ in golds],
            "language": [language] * len(keep),
        }
    )
    counts = {"rows": len(data), "unanswered": len(data) - len(answered), "kept": len(keep)}
    return out, counts


def _check_qa(rows: Any, what: str) -> None:
    if not isinstance(rows, Dataset):
        raise TaskDataError(f"{what}: expected a datasets.Dataset; got {type(rows).__name__}.")
    _require(rows, QA_COLUMNS[:6], what)
    if len(rows) == 0:
        raise TaskDataError(f"{what}: no rows. Loosen max_train / max_test.")


@dataclass
class QATask:
    """Extractive question answering for transfer: English training data, per-language tests.

    Every split has the SQuAD columns ``id``, ``context``, ``question``, ``answers``
    (``{"text": [...], "answer_start": [...]}``) plus ``prompt`` (`QA_TEMPLATE`),
    ``answer`` (the first gold answer, the training target) and ``language``.

    Attributes:
        name: what the task is (``"xquad"``).
        source: language of ``train``.
        train: source-language training rows.
        test: ``{language: rows}``.
        metadata: provenance (hub ids, splits, sizes, template, seed).
    """

    name: str
    source: str
    train: Dataset
    test: dict[str, Dataset]
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_qa(self.train, f"{self.name} train ({self.source})")
        for language, rows in self.test.items():
            _check_qa(rows, f"{self.name} test ({language})")

    @property
    def targets(self) -> list[str]:
        """Test languages other than the source."""
        return [language for language in self.test if language != self.source]

    def test_set(self, language: str) -> Dataset:
        """The test rows of ``language``, with an error that lists the available ones."""
        if language not in self.test:
            raise TaskDataError(
                f"The task {self.name!r} has no test set for {language!r}; it has "
                f"{', '.join(self.test)}. Build it with that target language."
            )
        return self.test[language]

    def subset(
        self, *, train: int | None = None, test: int | None = None, languages: Sequence[str] = ()
    ) -> QATask:
        """The first ``train`` / ``test`` rows (and only ``languages``' test sets if given)."""
        keep = list(languages) or list(self.test)
        for language in keep:
            self.test_set(language)

        def head(rows: Dataset, n: int | None) -> Dataset:
            return rows if n is None or n >= len(rows) else rows.select(range(n))

        return QATask(
            name=self.name,
            source=self.source,
            train=head(self.train, train),
            test={language: head(self.test[language], test) for language in keep},
            metadata={**self.metadata, "subset": {"train": train, "test": test}},
        )

    def summary(self) -> dict[str, Any]:
        """Row counts of each split."""
        return {
            "name": self.name,
            "source": self.source,
            "train": len(self.train),
            "test": {language: len(rows) for language, rows in self.test.items()},
        }


def xquad(
    targets: str | Sequence[str] = ("vi", "hi", "zh"),
    *,
    train: str | Dataset = "squad",
    max_train: int | None = None,
    max_test: int | None = None,
    include_source: bool = True,
    seed: int = 0,
    loader: Loader | None = None,
) -> QATask:
    """XQuAD as a `QATask`: train on English SQuAD v1.1, test on XQuAD in ``targets``.

    Test rows are the ``validation`` split (XQuAD's only one, 1,190 questions) of
    ``google/xquad`` configuration ``xquad.{lang}`` for each target (and ``en`` when
    ``include_source``). Training rows are the whole ``train`` split of
    ``rajpurkar/squad`` (87,599 questions; Mondal et al. use all of it), another hub id
    (its ``train`` split), or a SQuAD-schema ``Dataset``. XQuAD's questions come from
    SQuAD v1.1's *validation* split, so they never overlap the training data. Rows
    without an answer are dropped; ``max_train`` / ``max_test`` keep a seeded random
    subset in hub order (the same rows in every language, as XQuAD is parallel).

    Raises:
        HubTaskError: the hub cannot be reached (use ``lsn_mech.corpora.bible_genre_task``
            offline).
        TaskDataError: a language XQuAD lacks, a split without the SQuAD columns, or no rows.
    """
    _check_limit("max_train", max_train)
    _check_limit("max_test", max_test)
    languages = _languages(targets, "en", include_source)
    unknown = [language for language in languages if language not in XQUAD_LANGUAGES]
    if unknown and loader is None:
        raise TaskDataError(
            f"XQuAD has no {unknown}; its languages are {', '.join(XQUAD_LANGUAGES)}."
        )
    if isinstance(train, Dataset):
        train_raw, train_id = train, "dataset"
    else:
        train_id = SQUAD_HUB if train == "squad" else train
        train_raw = _load(loader, "XQuAD (SQuAD training data)", train_id, None, "train")
    train_rows, train_counts = _qa_rows(train_raw, "en", max_train, seed, "SQuAD train (en)")
    test: dict[str, Dataset] = {}
    counts: dict[str, dict[str, int]] = {}
    for language in languages:
        config = XQUAD_CONFIG.format(lang=language)
        raw = _load(loader, "XQuAD", XQUAD_HUB, config, "validation")
        test[language], counts[language] = _qa_rows(
            raw, language, max_test, seed, f"XQuAD ({language})"
        )
    return QATask(
        name="xquad",
        source="en",
        train=train_rows,
        test=test,
        metadata={
            "hub": {"train": train_id, "test": XQUAD_HUB},
            "configs": {lang: XQUAD_CONFIG.format(lang=lang) for lang in languages},
            "splits": {"train": "train", "test": "validation"},
            "template": QA_TEMPLATE,
            "max_train": max_train,
            "max_test": max_test,
            "seed": seed,
            "subset": "seeded numpy permutation of the answered rows, kept in hub order",
            "rows": {"train": train_counts, "test": counts},
        },
    )
