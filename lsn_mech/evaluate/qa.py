"""Extractive question answering: answer-only training batches, greedy answers, EM and F1.

The XQuAD task of Mondal et al. (2025) scores exact match and F1 (SQuAD v1.1
definitions) of the answer a model generates after `QA_TEMPLATE`:

```python
import lsn_mech as lm

task = lm.corpora.xquad(["vi", "hi", "zh"])             # needs the hub
batches = lm.evaluate.qa_batches(tokenizer, task.train, batch_size=4, max_length=512)
results = lm.evaluate.evaluate_qa(model, task)           # {"en": QAResult, "vi": ...}
print(results["vi"].scores)                              # "EM …, F1 …, n=1190"
print(results["vi"])                         # "vi: EM 40.1 [37.3, 42.9], F1 …" (95 % intervals)
test = lm.evaluate.compare_qa(steered["vi"], results["vi"])   # paired over the same questions
```

Each score's interval is a percentile bootstrap over the questions
(`lsn_mech.intervals`), and two runs on the same questions are compared by a paired
bootstrap test (`compare_qa`).

Training examples are ``prompt`` followed by the target ``" " + answer + "\\n"``, with
the loss on the target only (the format of `lsn_mech.corpora.tokenize_translation`);
decoding is `lsn_mech.evaluate.translate`'s: greedy, stopping at the end of the line.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from datasets import Dataset
from jaxtyping import Int64
from torch import Tensor

from lsn_mech import intervals
from lsn_mech._version import __version__
from lsn_mech.corpora.corpus import column_list
from lsn_mech.corpora.hub_tasks import QATask, collapse_whitespace, gold_answers, qa_prompt
from lsn_mech.corpora.prompt_target import (
    TextExample,
    encode_all,
    fit_prompt_target,
    target_only_example,
    warned_padded_batches,
)
from lsn_mech.errors import EmptyCorpusError, LsnMechError
from lsn_mech.intervals import Bootstrap, Estimate, PairedTest, interval_header
from lsn_mech.models.protocol import model_id
from lsn_mech.models.runtime import generate_lines
from lsn_mech.provenance import Provenance
from lsn_mech.results import PlainRecord, ResultTable, ScoredResult

__all__ = [
    "QAEvalError",
    "QAResult",
    "QAScores",
    "answer_questions",
    "compare_qa",
    "evaluate_qa",
    "qa_batches",
    "qa_scores",
    "qa_target",
    "tokenize_qa",
]


class QAEvalError(LsnMechError, ValueError):
    """Question-answering data, predictions or settings that cannot be used."""


def qa_target(answer: str) -> str:
    """The training target of one answer: ``" " + answer + "\\n"`` (the answer continues
    the ``"Answer:"`` line, and the newline is where decoding stops)."""
    return " " + collapse_whitespace(answer) + "\n"


# ----- rows -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _QARow:
    context: str
    question: str
    answer: str | None
    start: int | None  # character offset of ``answer`` in ``context``, when known


def _answer_start(context: str, answer: str, start: int) -> int | None:
    if start >= 0 and context[start : start + len(answer)] == answer:
        return start
    found = context.find(answer) if answer else -1
    return found if found >= 0 else None


def _qa_rows(data: Dataset | Sequence[Mapping[str, Any]], *, need_answer: bool) -> list[_QARow]:
    if isinstance(data, Dataset):
        if len(data) == 0:
            raise EmptyCorpusError("No questions: the dataset has no rows.")
        missing = [c for c in ("context", "question") if c not in data.column_names]
        if missing:
            raise QAEvalError(
                f"The dataset lacks {missing}; pass SQuAD-style rows (lsn_mech.corpora.xquad)."
            )
        names = [c for c in ("context", "question", "answer", "answers") if c in data.column_names]
        items: list[Mapping[str, Any]] = [
            dict(zip(names, v)) for v in zip(*(column_list(data, c) for c in names))
        ]
    else:
        items = list(data)
        if not items:
            raise EmptyCorpusError("No questions to tokenise or answer.")
    rows = []
    for item in items:
        if "context" not in item or "question" not in item:
            raise QAEvalError("Each row needs 'context' and 'question' (SQuAD columns).")
        context, question = str(item["context"]), str(item["question"])
        answer, start = None, None
        if item.get("answers") is not None:
            texts, starts = gold_answers(item["answers"])
            if texts:
                answer, start = texts[0], starts[0]
        if item.get("answer") is not None:
            answer = str(item["answer"])
            start = start if start is not None else -1
        if answer is not None:
            start = _answer_start(context, answer, start if start is not None else -1)
        elif need_answer:
            raise QAEvalError(
                f"A training row has no answer (question {question[:60]!r}); give an "
                "'answer' or a SQuAD 'answers' column."
            )
        rows.append(_QARow(context, question, answer, start))
    return rows


# ----- truncation ---------------------------------------------------------------------------
def _ids(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _token_spans(tokenizer: Any, context: str) -> list[tuple[int, int]] | None:
    """Character span of each context token (``None`` for tokenizers without offsets)."""
    try:
        encoded = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, ValueError, TypeError):
        return None
    spans = encoded.get("offset_mapping")
    return [(int(a), int(b)) for a, b in spans] if spans is not None else None


def _window(
    context: str, spans: list[tuple[int, int]] | None, n: int, row: _QARow, total: int
) -> str:
    """``n`` of the context's ``total`` tokens: around the answer when its position is
    known, else the first ones."""
    if n >= total:
        return context
    if n <= 0:
        return ""
    if spans is None:  # no offsets: cut by characters, in proportion
        chars = max(1, len(context) * n // total)
        first = 0
        if row.start is not None and row.answer is not None:
            middle = row.start + len(row.answer) // 2
            first = min(max(0, middle - chars // 2), max(0, len(context) - chars))
        return context[first : first + chars]
    first = 0
    if row.start is not None and row.answer is not None:
        end = row.start + len(row.answer)
        a0 = next((i for i, (_, b) in enumerate(spans) if b > row.start), 0)
        a1 = next((i for i in range(len(spans) - 1, -1, -1) if spans[i][0] < end), a0)
        first = (a0 + a1) // 2 - n // 2
        if a1 - a0 < n:  # the answer fits: make sure it is inside
            first = min(max(first, a1 - n + 1), a0)
        first = min(max(0, first), total - n)
    return context[spans[first][0] : spans[first + n - 1][1]]


def _fit_prompt(tokenizer: Any, row: _QARow, budget: int) -> tuple[str, list[int], bool]:
    """The prompt text and ids, of at most ``budget`` tokens, cutting the context only.

    The context is cut to a window of its tokens (around the answer when known, so that
    a training example keeps its answer; at the start otherwise) and the prompt
    re-rendered, so the question and the template stay whole. The ids are empty when
    even an empty context does not fit. The flag says whether the context was cut.
    """
    text = qa_prompt(row.context, row.question)
    ids = _ids(tokenizer, text, True)
    if len(ids) <= budget:
        return text, ids, False
    spans = _token_spans(tokenizer, row.context)
    total = len(spans) if spans is not None else len(_ids(tokenizer, row.context, False))
    n = total - (len(ids) - budget)
    while n > 0:
        text = qa_prompt(_window(row.context, spans, n, row, total), row.question)
        ids = _ids(tokenizer, text, True)
        if len(ids) <= budget:
            return text, ids, True
        n -= max(1, len(ids) - budget)
    text = qa_prompt("", row.question)
    ids = _ids(tokenizer, text, True)
    return text, (ids if len(ids) <= budget else []), True


def _encode(
    tokenizer: Any, rows: list[_QARow], max_length: int, append_eos: bool
) -> tuple[list[dict[str, Tensor]], int]:
    eos = getattr(tokenizer, "eos_token_id", None)
    if append_eos and eos is None:
        raise QAEvalError("append_eos=True but the tokenizer has no eos_token_id.")
    out, truncated = [], 0
    for row in rows:
        target = _ids(tokenizer, qa_target(row.answer or ""), False)
        if append_eos:
            target.append(int(eos))
        text, prompt, cut = _fit_prompt(tokenizer, row, max_length - len(target))
        if not prompt:  # the question and the answer alone are too long: cut them too
            plain = TextExample(text, qa_target(row.answer or ""), None, None, None, None)
            full = _ids(tokenizer, text, True)
            prompt, target, _ = fit_prompt_target(tokenizer, plain, full, target, max_length)
        truncated += cut
        out.append(target_only_example(prompt, target))
    return out, truncated


def tokenize_qa(
    tokenizer: Any,
    data: Dataset | Sequence[Mapping[str, Any]],
    *,
    max_length: int = 512,
    append_eos: bool = False,
) -> list[dict[str, Tensor]]:
    """Token ids of each question with labels on the answer only.

    Each item holds 1-D ``input_ids``, ``attention_mask`` and ``labels`` (int64): the
    prompt (`lsn_mech.corpora.qa_prompt`, with the tokenizer's special tokens, as at
    inference) followed by the target `qa_target` (without them); ``labels`` is
    ``-100`` on the prompt. The answer is the ``answer`` column, else the first of
    ``answers``. Examples longer than ``max_length`` lose context tokens, in a window
    that keeps the answer span (located by ``answer_start``, else by search), never the
    answer; a warning counts them.
    """
    return encode_all(
        tokenizer,
        _qa_rows(data, need_answer=True),
        _encode,
        max_length=max_length,
        append_eos=append_eos,
        error=QAEvalError,
        warning="{truncated} of {total} QA examples were longer than max_length="
        "{max_length} tokens; their contexts were cut around the answer.",
    )


def qa_batches(
    tokenizer: Any,
    data: Dataset | Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 4,
    max_length: int = 512,
    shuffle: bool = True,
    seed: int = 0,
    append_eos: bool = False,
) -> Iterator[dict[str, Int64[Tensor, "batch seq"]]]:
    """Right-padded training batches with the loss on the answer only (see `tokenize_qa`).

    Rows are tokenised one batch at a time; ``shuffle`` permutes them with
    ``random.Random(seed)``. Defaults follow Mondal et al. (batch 4, 512 tokens).
    """
    yield from warned_padded_batches(
        tokenizer,
        _qa_rows(data, need_answer=True),
        _encode,
        batch_size=batch_size,
        max_length=max_length,
        shuffle=shuffle,
        seed=seed,
        append_eos=append_eos,
        error=QAEvalError,
        warning="{truncated} of {total} QA examples were truncated to max_length="
        "{max_length} tokens (context cut around the answer).",
    )


# ----- answering --------------------------------------------------------------------------
def _tokenizer(model: Any, tokenizer: Any) -> Any:
    found = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if found is None:
        raise QAEvalError(
            "No tokenizer: pass tokenizer=... (a Hugging Face model has none attached)."
        )
    return found


def answer_questions(
    model: Any,
    data: Dataset | Sequence[Mapping[str, Any]],
    *,
    tokenizer: Any = None,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    max_length: int | None = 512,
    progress: bool = True,
) -> list[str]:
    """Greedy answers, one per row: the first generated line after each prompt.

    Decoding is `lsn_mech.models.runtime.generate_lines` (left-padded batches,
    stop at a newline or EOS), so hook-based interventions on a bridge apply. A prompt
    longer than ``max_length - max_new_tokens`` tokens keeps the start of its context
    (the gold answer's position is not used at test time); ``max_length=None`` never
    cuts.
    """
    tok = _tokenizer(model, tokenizer)
    rows = _qa_rows(data, need_answer=False)
    if max_length is not None and max_length - max_new_tokens < 2:
        raise QAEvalError(
            f"max_length={max_length} leaves no room for a prompt after {max_new_tokens} "
            "new tokens; raise max_length or lower max_new_tokens."
        )
    prompts = []
    for row in rows:
        prompt = qa_prompt(row.context, row.question)
        if max_length is not None:
            blind = dataclasses.replace(row, answer=None, start=None)
            prompt = _fit_prompt(tok, blind, max_length - max_new_tokens)[0]
        prompts.append(prompt)
    return generate_lines(
        model,
        tok,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )


# ----- scores -----------------------------------------------------------------------------
_CJK = re.compile("([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef])")


def _segment_cjk(text: str) -> str:
    """Each CJK ideograph or kana as its own word, Unicode punctuation removed."""
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return _CJK.sub(r" \1 ", text)


@dataclasses.dataclass(frozen=True)
class QAScores(PlainRecord):
    """SQuAD exact match and F1 (0–100) over ``n`` questions."""

    exact_match: float
    f1: float
    n: int

    def __str__(self) -> str:
        return f"EM {self.exact_match:.2f}, F1 {self.f1:.2f}, n={self.n}"


def _golds(references: Dataset | Sequence[Any]) -> list[list[str]]:
    if isinstance(references, Dataset):
        if "answers" in references.column_names:
            return [gold_answers(a)[0] for a in column_list(references, "answers")]
        if "answer" in references.column_names:
            return [[str(a)] for a in column_list(references, "answer")]
        raise QAEvalError("The dataset has neither 'answers' (SQuAD) nor 'answer'.")
    out = []
    for item in references:
        if isinstance(item, str):
            out.append([item])
        elif isinstance(item, Mapping) and "answers" in item:
            out.append(gold_answers(item["answers"])[0])
        elif isinstance(item, Mapping):
            out.append(gold_answers(item)[0])
        else:
            out.append([str(x) for x in item])
    return out


def _squad(
    predictions: Sequence[str], golds: Sequence[Sequence[str]], cjk_chars: bool
) -> dict[str, Tensor]:
    from torchmetrics.functional.text import squad

    prep = _segment_cjk if cjk_chars else str
    preds = [{"id": str(i), "prediction_text": prep(p)} for i, p in enumerate(predictions)]
    targets = [
        {"id": str(i), "answers": {"text": [prep(g) for g in gold], "answer_start": []}}
        for i, gold in enumerate(golds)
    ]
    return squad(preds, targets)


def qa_scores(
    predictions: Sequence[str],
    references: Dataset | Sequence[Any],
    *,
    cjk_chars: bool = False,
) -> QAScores:
    """SQuAD v1.1 exact match and F1 (``torchmetrics.functional.text.squad``), 0–100.

    Each prediction is scored against every gold answer of its row and the best counts.
    Normalisation is SQuAD's: lower case, ASCII punctuation and the English articles
    a/an/the removed, whitespace collapsed; F1 is over whitespace tokens. That is how
    XQuAD is usually scored in every language, so F1 in Chinese, which has no spaces,
    is close to exact match: ``cjk_chars=True`` makes each CJK character a token and
    drops Unicode punctuation first (as MLQA's evaluation does for Chinese).

    Args:
        predictions: one answer string per row.
        references: a dataset with ``answers`` (SQuAD) or ``answer``, or per row a gold
            string, a list of gold strings, or a SQuAD ``answers`` mapping.
        cjk_chars: segment CJK text into characters before scoring.
    """
    golds = _golds(references)
    if len(golds) != len(predictions):
        raise QAEvalError(
            f"{len(predictions)} predictions but {len(golds)} questions; pass one prediction "
            "per row, in order."
        )
    if not golds:
        raise EmptyCorpusError("No question to score.")
    if any(not gold for gold in golds):
        raise QAEvalError("A row has no gold answer; drop unanswerable rows first.")
    result = _squad([str(p) for p in predictions], golds, cjk_chars)
    return QAScores(exact_match=float(result["exact_match"]), f1=float(result["f1"]), n=len(golds))


# ----- evaluation -------------------------------------------------------------------------
@dataclasses.dataclass
class QAResult(ScoredResult):
    """Scores of one language with every question's id, prediction, golds and row scores."""

    scores_type = QAScores

    language: str
    scores: QAScores
    ids: list[str]
    predictions: list[str]
    references: list[list[str]]
    exact_match: list[float]
    f1: list[float]
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    def bootstrap_settings(self) -> Bootstrap:
        """The interval settings `evaluate_qa` recorded (``parameters["intervals"]``), else
        the defaults (results saved before intervals existed)."""
        return Bootstrap.from_dict(self.provenance.parameters.get("intervals"))

    def estimates(self, bootstrap: Bootstrap | None = None) -> dict[str, Estimate]:
        """``{"exact_match": …, "f1": …}``: each score (0–100, the mean of the per-question
        scores) with its percentile-bootstrap interval over the questions."""
        settings = bootstrap or self.bootstrap_settings()
        return {
            metric: intervals.mean(
                torch.tensor(getattr(self, metric), dtype=torch.float64), settings
            )
            for metric in QA_METRICS
        }

    def tabulate(self, *, view: str = "questions") -> ResultTable:
        """``view="questions"``: one row per question: id, prediction, gold answers, exact
        match, F1. ``view="scores"``: one row per metric, ``n`` and the score with its
        interval bounds (``score, score_low, score_high``)."""
        if view == "scores":
            rows_scores = [
                [metric, len(self.ids), *estimate.cells()]
                for metric, estimate in self.estimates().items()
            ]
            return ResultTable(["metric", "n", *interval_header("score")], rows_scores)
        if view != "questions":
            raise QAEvalError(f"QAResult has no {view!r} view; pass 'questions' or 'scores'.")
        header = ["id", "prediction", "references", "exact_match", "f1"]
        rows = zip(self.ids, self.predictions, self.references, self.exact_match, self.f1)
        return ResultTable(header, [list(r) for r in rows])

    def to_dict(self) -> dict[str, Any]:
        """The fields, plus ``"intervals"``: both scores with their bounds (derived from the
        per-question scores; recomputed, not read, on load)."""
        settings = self.bootstrap_settings()
        estimates = {k: e.to_dict() for k, e in self.estimates(settings).items()}
        return {**super().to_dict(), "intervals": {"bootstrap": settings.to_dict(), **estimates}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QAResult:
        """Inverse of `to_dict`; the derived ``"intervals"`` key is dropped (files written
        before intervals existed have none)."""
        return super().from_dict({k: v for k, v in data.items() if k != "intervals"})

    def __str__(self) -> str:
        if len(self.exact_match) != self.scores.n:  # per-question scores not kept
            return f"{self.language}: {self.scores}"
        e = self.estimates()
        level = self.bootstrap_settings().level
        return (
            f"{self.language}: EM {e['exact_match'].format('.2f')}, F1 {e['f1'].format('.2f')}, "
            f"n={self.scores.n} ({level:.0%} bootstrap intervals over questions)"
        )

    def _display_summary(self) -> str:
        return str(self)


QA_METRICS: tuple[str, ...] = ("exact_match", "f1")


def compare_qa(
    a: QAResult, b: QAResult, metric: str = "f1", *, bootstrap: Bootstrap | None = None
) -> PairedTest:
    """Score of ``a`` minus score of ``b`` (``metric``: ``"f1"`` or ``"exact_match"``) on
    the questions both answered (matched by id), with its paired-bootstrap interval and
    two-sided p-value (`lsn_mech.intervals.paired_test`); ``significant`` means the
    interval excludes 0. Use it for "the intervention changes QA"."""
    if metric not in QA_METRICS:
        raise QAEvalError(f"Unknown QA metric {metric!r}; pass 'f1' or 'exact_match'.")
    b_scores = dict(zip(b.ids, getattr(b, metric)))
    shared = [(i, v) for i, v in zip(a.ids, getattr(a, metric)) if i in b_scores]
    if not shared:
        raise QAEvalError(
            "The two QA results share no question id; compare runs on the same test set."
        )
    a_values = torch.tensor([v for _, v in shared], dtype=torch.float64)
    b_values = torch.tensor([b_scores[i] for i, _ in shared], dtype=torch.float64)
    test = intervals.paired_test(
        intervals.mean_of, [a_values], [b_values], bootstrap or a.bootstrap_settings()
    )
    return PairedTest(test.difference, test.p_value, "paired bootstrap over questions, two-sided")


def _language(data: Dataset, default: str) -> str:
    if "language" in data.column_names and len(data):
        values = set(column_list(data, "language"))
        if len(values) == 1:
            return str(values.pop())
    return default


def evaluate_qa(
    model: Any,
    task_or_dataset: QATask | Dataset,
    *,
    languages: Sequence[str] | None = None,
    tokenizer: Any = None,
    max_examples: int | None = None,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    max_length: int | None = 512,
    cjk_chars: bool = False,
    progress: bool = True,
    bootstrap: Bootstrap | None = None,
) -> dict[str, QAResult]:
    """Answer and score each test language: ``{language: QAResult}``.

    A `QATask` is evaluated on ``languages`` (default: all its test sets); a single
    dataset is one entry, keyed by its ``language`` column (or ``"test"``).
    ``max_examples`` keeps the first rows of each. Answers come from
    `answer_questions`, scores from `qa_scores`. ``bootstrap`` (default 1000
    resamples, 95 %, seed 0) sets the score intervals over questions; it is recorded in
    the provenance under ``"intervals"``.
    """
    if isinstance(task_or_dataset, QATask):
        keep = list(languages) if languages is not None else list(task_or_dataset.test)
        sets = {language: task_or_dataset.test_set(language) for language in keep}
    else:
        if not isinstance(task_or_dataset, Dataset) or len(task_or_dataset) == 0:
            raise EmptyCorpusError("Pass a QATask or a non-empty datasets.Dataset.")
        sets = {_language(task_or_dataset, "test"): task_or_dataset}
    results = {}
    for language, data in sets.items():
        if max_examples is not None:
            data = data.select(range(min(max_examples, len(data))))
        predictions = answer_questions(
            model,
            data,
            tokenizer=tokenizer,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            max_length=max_length,
            progress=progress,
        )
        golds = _golds(data)
        scores = qa_scores(predictions, golds, cjk_chars=cjk_chars)
        rows = [_squad([p], [g], cjk_chars) for p, g in zip(predictions, golds)]
        ids = column_list(data, "id") if "id" in data.column_names else range(len(data))
        results[language] = QAResult(
            language=language,
            scores=scores,
            ids=[str(i) for i in ids],
            predictions=predictions,
            references=golds,
            exact_match=[float(r["exact_match"]) for r in rows],
            f1=[float(r["f1"]) for r in rows],
            provenance=Provenance(
                model_id=model_id(model),
                method="qa",
                parameters={
                    "language": language,
                    "max_examples": max_examples,
                    "max_new_tokens": max_new_tokens,
                    "max_length": max_length,
                    "cjk_chars": cjk_chars,
                    "decoding": "greedy, stop at the first newline or EOS",
                    "metric": "SQuAD v1.1 exact match and F1 (torchmetrics)",
                    "intervals": (bootstrap or intervals.DEFAULT).to_dict(),
                },
                library_version=__version__,
            ),
        )
    return results
