"""Machine translation evaluation: greedy decoding of one target line, sacreBLEU and chrF.

The LANDeRMT baselines (§4.2) are the instruction alone (0-shot) and 5 random
in-context demonstrations from the training data; scores are sacreBLEU (§4.3):

```python
import lsn_mech as lm

test = lm.corpora.translation_examples(lm.corpora.bible_pairs("en", "fr", split="test"), template=0)
train = lm.corpora.bible_pairs("en", "fr", split="train")
zero = lm.evaluate.evaluate_translation(model, None, test, max_examples=200)
five = lm.evaluate.evaluate_translation(model, None, test, shots=5, train_examples=train)
print(zero.scores, five.scores.bleu_signature)
```
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Mapping, Sequence
from typing import Any

from datasets import Dataset

from lsn_mech import display
from lsn_mech._version import __version__
from lsn_mech.corpora.corpus import column_list
from lsn_mech.corpora.translation import (
    PAIR_COLUMNS,
    TRANSLATION_TEMPLATES,
    one_line,
    render_prompt,
    translation_examples,
)
from lsn_mech.errors import EmptyCorpusError, LsnMechError
from lsn_mech.evaluate.mt_significance import (
    METRICS,
    compare_systems,
    metric_intervals,
    sacrebleu_metrics,
)
from lsn_mech.intervals import DEFAULT as DEFAULT_BOOTSTRAP
from lsn_mech.intervals import Bootstrap, Estimate, PairedTest, interval_header
from lsn_mech.models.protocol import model_id
from lsn_mech.models.runtime import generate as runtime_generate
from lsn_mech.models.runtime.generate import GenerationError
from lsn_mech.provenance import Provenance
from lsn_mech.results import PlainRecord, Result, ResultTable, ScoredResult
from lsn_mech.results import read_scored_result_fields as read_scored_result_fields
from lsn_mech.results import scored_result_fields as scored_result_fields
from lsn_mech.results import write_result_json as write_result_json

#: sacreBLEU tokenizer per target language; every other language uses ``"13a"``.
#: Chinese uses sacreBLEU's ``"zh"`` tokenizer (the WMT convention). Japanese, Korean and
#: the Southeast Asian scripts written without spaces use ``"char"``: the standard
#: ``"ja-mecab"``/``"ko-mecab"`` need MeCab and its dictionaries (not installed, not
#: bundled), and ``"13a"`` would treat a whole unspaced sentence as one word.
BLEU_TOKENIZERS: dict[str, str] = {
    "zh": "zh",
    "ja": "char",
    "ko": "char",
    "th": "char",
    "my": "char",
    "km": "char",
    "lo": "char",
}


class TranslationEvalError(LsnMechError, ValueError):
    """A translation evaluation got a model, inputs or results it cannot use."""


# ----- scores -----------------------------------------------------------------------------
def _interval_provenance(bootstrap: Bootstrap) -> dict[str, Any]:
    """What a result records of its intervals: the settings, and sacreBLEU's seed."""
    from lsn_mech.evaluate.mt_significance import sacrebleu_seed

    return {
        **bootstrap.to_dict(),
        "method": "sacreBLEU bootstrap resampling of sentences, percentile interval",
        "sacrebleu_seed": sacrebleu_seed(bootstrap),
    }


def bleu_tokenizer(target_language: str) -> str:
    """The sacreBLEU tokenizer used for a target language (see `BLEU_TOKENIZERS`)."""
    base = target_language.lower().replace("_", "-").split("-")[0]
    return BLEU_TOKENIZERS.get(base, "13a")


@dataclasses.dataclass(frozen=True)
class TranslationScores(PlainRecord):
    """Corpus BLEU and chrF of ``n`` sentences, each with its sacreBLEU signature.

    The ``*_low`` / ``*_high`` bounds are the interval at ``level`` from sacreBLEU's
    bootstrap over the sentences (`lsn_mech.evaluate.mt_significance`); ``None`` when no
    interval was asked for (and in files written before intervals existed)."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    n: int
    bleu_low: float | None = None
    bleu_high: float | None = None
    chrf_low: float | None = None
    chrf_high: float | None = None
    level: float = 0.95

    @property
    def has_interval(self) -> bool:
        return self.bleu_low is not None and self.chrf_low is not None

    def estimate(self, metric: str) -> Estimate:
        """``"bleu"`` or ``"chrf"`` as an `Estimate` (NaN bounds without an interval)."""
        if metric not in METRICS:
            raise TranslationEvalError(f"metric must be 'bleu' or 'chrf', got {metric!r}.")
        low, high = getattr(self, f"{metric}_low"), getattr(self, f"{metric}_high")
        if low is None or high is None:
            return Estimate.point(getattr(self, metric), self.level)
        return Estimate(getattr(self, metric), low, high, self.level)

    @property
    def bleu_interval(self) -> Estimate:
        return self.estimate("bleu")

    @property
    def chrf_interval(self) -> Estimate:
        return self.estimate("chrf")

    def to_dict(self) -> dict[str, Any]:
        """The fields; the bounds and level only when there is an interval (so scores
        without one write what they wrote before intervals existed)."""
        data = dataclasses.asdict(self)
        if not any(data[f"{m}_{side}"] is not None for m in METRICS for side in ("low", "high")):
            for key in ("bleu_low", "bleu_high", "chrf_low", "chrf_high", "level"):
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TranslationScores:
        """Like `PlainRecord.from_dict`; files from before intervals lack the bounds."""
        optional = {"bleu_low", "bleu_high", "chrf_low", "chrf_high", "level"}
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.name in optional}
        return super().from_dict({**defaults, **data})

    def __str__(self) -> str:
        return (
            f"BLEU {self.bleu_interval.format()} ({self.bleu_signature}), "
            f"chrF {self.chrf_interval.format()}, n={self.n}"
        )


def translation_scores(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    target_language: str,
    tokenize: str | None = None,
    smooth_method: str = "none",
    bootstrap: Bootstrap | None = None,
) -> TranslationScores:
    """sacreBLEU corpus BLEU and chrF (one reference per sentence).

    ``tokenize`` defaults to `bleu_tokenizer` of the target language. ``smooth_method``
    defaults to the LANDeRMT footnote's ``smooth.none`` (sacreBLEU's own default is
    ``"exp"``, which differs only when some n-gram order has no match at all: then
    ``"none"`` gives 0 — small models on short test sets can hit this). chrF is
    sacreBLEU's default (character 6-grams, no word n-grams) and needs no tokenizer.
    ``bootstrap`` (e.g. ``intervals.Bootstrap()``) adds each score's interval from
    sacreBLEU's bootstrap resampling of the sentences; ``None`` (default): scores only.
    """
    if len(hypotheses) != len(references):
        raise TranslationEvalError(
            f"{len(hypotheses)} hypotheses but {len(references)} references; pass one "
            "hypothesis per reference, in the same order."
        )
    if not hypotheses:
        raise EmptyCorpusError("No sentence to score: pass at least one hypothesis.")
    hyps, refs = [str(h) for h in hypotheses], [str(r) for r in references]
    metrics = sacrebleu_metrics(tokenize or bleu_tokenizer(target_language), smooth_method)
    bleu, chrf = metrics["bleu"], metrics["chrf"]
    scores = TranslationScores(
        bleu=float(bleu.corpus_score(hyps, [refs]).score),
        chrf=float(chrf.corpus_score(hyps, [refs]).score),
        bleu_signature=str(bleu.get_signature()),
        chrf_signature=str(chrf.get_signature()),
        n=len(hyps),
    )
    if bootstrap is None:
        return scores
    found = metric_intervals(hyps, refs, metrics, bootstrap)
    bounds: dict[str, Any] = {"level": float(bootstrap.level)}
    for name, estimate in found.items():
        if estimate.has_interval:
            bounds |= {f"{name}_low": estimate.low, f"{name}_high": estimate.high}
    return dataclasses.replace(scores, **bounds)


# ----- prompts ----------------------------------------------------------------------------
def _pattern(example: Mapping[str, Any]) -> str:
    pattern = example.get("template")
    if pattern:
        return str(pattern)
    index = example.get("template_id")
    return TRANSLATION_TEMPLATES[int(index) if index is not None else 0].prompt


def _query_prompt(example: Mapping[str, Any]) -> str:
    if example.get("prompt"):
        return str(example["prompt"])
    _check_pair(example, "The query")
    return render_prompt(
        _pattern(example), one_line(example["src_text"]), example["src_lang"], example["tgt_lang"]
    )


def _check_pair(example: Mapping[str, Any], what: str) -> None:
    missing = [c for c in PAIR_COLUMNS if c not in example]
    if missing:
        raise TranslationEvalError(
            f"{what} lacks {missing}; pass rows of lsn_mech.corpora.bible_pairs / "
            "parallel_dataset / translation_examples."
        )


def few_shot_prompt(
    example: Mapping[str, Any], shots: Sequence[Mapping[str, Any]], *, separator: str = "\n"
) -> str:
    """The query's prompt after ``len(shots)`` demonstrations in the query's template.

    Each demonstration is the template rendered on a shot's source followed by its
    target line (``tgt + "\\n"``); demonstrations and query are joined by
    ``separator`` (a blank line). With no shots this is the query's prompt alone
    (0-shot).
    """
    pattern = _pattern(example)
    demos = []
    for shot in shots:
        _check_pair(shot, "A shot")
        src, tgt = one_line(str(shot["src_text"])), one_line(str(shot["tgt_text"]))
        demos.append(render_prompt(pattern, src, shot["src_lang"], shot["tgt_lang"]) + tgt + "\n")
    return separator.join([*demos, _query_prompt(example)])


def _seed_of(seed: int, exclude: Mapping[str, Any] | None) -> int:
    key = f"{seed}\x00icl"
    if exclude is not None:
        key += f"\x00{exclude.get('src_text')}\x00{exclude.get('tgt_text')}"
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _same_pair(row: Mapping[str, Any], query: Mapping[str, Any] | None) -> bool:
    if query is None:
        return False
    return row.get("src_text") == query.get("src_text") or row.get("tgt_text") == query.get(
        "tgt_text"
    )


def icl_shots(
    train_examples: Dataset | Sequence[Mapping[str, Any]],
    k: int = 5,
    seed: int = 0,
    *,
    exclude: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """``k`` random in-context demonstrations from the training pairs.

    The draw is seeded by ``seed`` and, when ``exclude`` (the query) is given, by the
    query's texts, so each query gets its own demonstrations, reproducibly. A row with
    the query's source or target text is never drawn. Rows must be from the training
    split (a ``split`` column other than ``"train"`` is an error).
    """
    if k < 0:
        raise TranslationEvalError(f"k must be 0 or more; got {k}.")
    n = len(train_examples)
    if k == 0:
        return []
    if n == 0:
        raise EmptyCorpusError("No training pairs to draw in-context demonstrations from.")
    rng = random.Random(_seed_of(seed, exclude))
    candidates = rng.sample(range(n), min(n, k + 8))
    if n > len(candidates):  # rarely needed: more than 8 rows equal to the query
        rest = sorted(set(range(n)) - set(candidates))
        rng.shuffle(rest)
        candidates += rest
    shots: list[dict[str, Any]] = []
    for index in candidates:
        row = dict(train_examples[index])
        if row.get("split", "train") != "train":
            raise TranslationEvalError(
                "In-context demonstrations must come from the training split; pass "
                "bible_pairs(..., split='train') (got a row with split="
                f"{row['split']!r})."
            )
        if not _same_pair(row, exclude):
            shots.append(row)
            if len(shots) == k:
                return shots
    raise TranslationEvalError(
        f"Only {len(shots)} training pairs differ from the query; cannot draw k={k} shots."
    )


# ----- generation -------------------------------------------------------------------------
# Greedy decoding lives in `lsn_mech.models.runtime`; its old names stay importable here.
first_line = runtime_generate.first_line
left_pad = runtime_generate.left_pad
newline_token_ids = runtime_generate.newline_token_ids


def generate_lines(model: Any, tokenizer: Any, prompts: Sequence[str], **options: Any) -> list[str]:
    """`lsn_mech.models.runtime.generate_lines` (same keyword options), raising
    `TranslationEvalError` as before."""
    try:
        return runtime_generate.generate_lines(model, tokenizer, prompts, **options)
    except GenerationError as error:
        raise TranslationEvalError(str(error)) from error


def _as_rows(examples_or_prompts: Any) -> list[str] | list[dict[str, Any]]:
    if isinstance(examples_or_prompts, str):
        return [examples_or_prompts]
    if isinstance(examples_or_prompts, Dataset):
        if len(examples_or_prompts) == 0:
            raise EmptyCorpusError("No examples to translate.")
        if "prompt" not in examples_or_prompts.column_names:
            examples_or_prompts = translation_examples(examples_or_prompts, template=0)
        names = examples_or_prompts.column_names
        columns = [column_list(examples_or_prompts, c) for c in names]
        return [dict(zip(names, values)) for values in zip(*columns)]
    items = list(examples_or_prompts)
    if items and not all(isinstance(x, str) for x in items):
        return [dict(x) for x in items]
    return [str(x) for x in items]


def translate(
    model: Any,
    tokenizer: Any,
    examples_or_prompts: Dataset | Sequence[str] | Sequence[Mapping[str, Any]] | str,
    *,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    shots: Sequence[Mapping[str, Any]] | Dataset | None = None,
    progress: bool = True,
) -> list[str]:
    """Greedy translations: the first generated line after each prompt.

    ``examples_or_prompts`` are prompt strings, rows with a ``prompt`` (from
    `lsn_mech.corpora.translation_examples`), or pairs (rendered with template 0).
    ``shots`` are demonstrations put in front of every example (see
    `few_shot_prompt`). ``model`` is a Hugging Face ``PreTrainedModel`` or a
    TransformerLens 4 bridge (its booted Hugging Face model generates, so hook-based
    interventions on the bridge apply). ``tokenizer=None`` takes ``model.tokenizer``.

    Decoding is `lsn_mech.models.runtime.generate_lines`: greedy with a KV cache on
    left-padded batches; a row stops at EOS or at the first token that contains a
    newline, and its text is cut at the first newline and stripped.
    """
    rows = _as_rows(examples_or_prompts)
    if not rows:
        raise EmptyCorpusError("No examples to translate.")
    if rows and isinstance(rows[0], str):
        if shots:
            raise TranslationEvalError(
                "shots need examples (rows with src_text/tgt_text/template), not prompt "
                "strings; pass translation_examples(pairs) or build the prompts with "
                "few_shot_prompt."
            )
        prompts = [str(r) for r in rows]
    else:
        demos = [dict(s) for s in shots] if shots is not None else []
        prompts = [few_shot_prompt(r, demos) for r in rows]  # type: ignore[arg-type]
    return generate_lines(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )


# ----- results ----------------------------------------------------------------------------
# The JSON helpers that lived here (write_result_json, scored_result_fields,
# read_scored_result_fields) are `lsn_mech.results`'s; they stay importable from here.
@dataclasses.dataclass
class TranslationResult(ScoredResult):
    """Scores of one translation direction with every prompt, hypothesis and reference."""

    scores_type = TranslationScores

    src_lang: str
    tgt_lang: str
    shots: int
    scores: TranslationScores
    prompts: list[str]
    hypotheses: list[str]
    references: list[str]
    sources: list[str]
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    @property
    def direction(self) -> str:
        return f"{self.src_lang}-{self.tgt_lang}"

    def _metric_options(self) -> tuple[str, str]:
        """The BLEU tokenizer and smoothing these scores used, read back from the signature."""
        fields = dict(
            part.split(":", 1) for part in self.scores.bleu_signature.split("|") if ":" in part
        )
        return fields.get("tok", bleu_tokenizer(self.tgt_lang)), fields.get("smooth", "none")

    def metrics(self) -> dict[str, Any]:
        """The sacreBLEU metrics these scores came from, to re-score or resample the same way."""
        return sacrebleu_metrics(*self._metric_options())

    def with_intervals(self, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> TranslationResult:
        """A copy whose scores carry BLEU/chrF intervals (sacreBLEU's bootstrap over the
        sentences), the settings recorded in provenance under ``"intervals"``."""
        scores = translation_scores(
            self.hypotheses,
            self.references,
            target_language=self.tgt_lang,
            tokenize=self._metric_options()[0],
            smooth_method=self._metric_options()[1],
            bootstrap=bootstrap,
        )
        parameters = {**self.provenance.parameters, "intervals": _interval_provenance(bootstrap)}
        return dataclasses.replace(
            self, scores=scores, provenance=self.provenance.replace(parameters=parameters)
        )

    def compare(
        self, baseline: TranslationResult, bootstrap: Bootstrap = DEFAULT_BOOTSTRAP
    ) -> dict[str, PairedTest]:
        """This system against ``baseline`` on the same test sentences: ``{"bleu": ...,
        "chrf": ...}``, each the difference (this − baseline) with its paired interval and
        sacreBLEU's paired-bootstrap p-value (`mt_significance.compare_systems`)."""
        if self.references != baseline.references:
            raise TranslationEvalError(
                f"{self.direction} and {baseline.direction} were scored on different "
                "references; compare two systems' translations of the same test set."
            )
        return compare_systems(
            self.hypotheses, baseline.hypotheses, self.references, self.metrics(), bootstrap
        )

    def tabulate(self) -> ResultTable:
        """One row per sentence: source, reference, hypothesis, prompt."""
        rows = zip(self.sources, self.references, self.hypotheses, self.prompts)
        return ResultTable(["source", "reference", "hypothesis", "prompt"], [list(r) for r in rows])

    def __str__(self) -> str:
        return f"{self.direction} ({self.shots}-shot): {self.scores}"

    def _display_summary(self) -> str:
        return str(self)


def _direction(examples: Dataset) -> tuple[str, str]:
    pairs = set(zip(column_list(examples, "src_lang"), column_list(examples, "tgt_lang")))
    if len(pairs) != 1:
        raise TranslationEvalError(
            f"The examples hold several directions {sorted(pairs)}; evaluate one direction "
            "at a time (examples.filter(...)) or use evaluate_directions."
        )
    src, tgt = pairs.pop()
    return str(src), str(tgt)


def evaluate_translation(
    model: Any,
    tokenizer: Any,
    examples: Dataset,
    *,
    shots: int = 0,
    train_examples: Dataset | Sequence[Mapping[str, Any]] | None = None,
    max_examples: int | None = None,
    seed: int = 0,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    tokenize: str | None = None,
    progress: bool = True,
    bootstrap: Bootstrap | None = DEFAULT_BOOTSTRAP,
) -> TranslationResult:
    """Translate one direction's test examples and score them.

    ``examples`` are pairs (prompted with template 0) or `translation_examples`
    (their own prompts). ``shots > 0`` puts that many demonstrations from
    ``train_examples`` (drawn per query with `icl_shots`, seeded by ``seed``) before
    each prompt: the paper's in-context baseline uses 5. ``max_examples`` keeps the
    first rows. References are the ``tgt_text`` column. ``bootstrap`` (e.g.
    ``intervals.Bootstrap(resamples=1000, level=0.95, seed=0)``) adds BLEU/chrF intervals
    from sacreBLEU's bootstrap over the sentences (the default settings unless given);
    ``None`` scores only.
    """
    if not isinstance(examples, Dataset) or len(examples) == 0:
        raise EmptyCorpusError("Pass a non-empty datasets.Dataset of test examples.")
    missing = [c for c in PAIR_COLUMNS if c not in examples.column_names]
    if missing:
        raise TranslationEvalError(
            f"The examples lack {missing}; build them with bible_pairs, parallel_dataset "
            "or translation_examples."
        )
    if max_examples is not None:
        examples = examples.select(range(min(max_examples, len(examples))))
    if shots > 0 and train_examples is None:
        raise TranslationEvalError(
            f"shots={shots} needs train_examples=... (e.g. bible_pairs(src, tgt, "
            "split='train')); the demonstrations must not come from the test set."
        )
    src_lang, tgt_lang = _direction(examples)
    names = examples.column_names
    rows = [dict(zip(names, v)) for v in zip(*(column_list(examples, c) for c in names))]
    if "prompt" not in names:
        rows = [{**r, "template_id": 0} for r in rows]
    prompts = [
        few_shot_prompt(r, icl_shots(train_examples, shots, seed, exclude=r) if shots else [])
        for r in rows
    ]
    hypotheses = generate_lines(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress=progress,
    )
    references = [one_line(str(r["tgt_text"])) for r in rows]
    scores = translation_scores(
        hypotheses, references, target_language=tgt_lang, tokenize=tokenize, bootstrap=bootstrap
    )
    extra = {"intervals": _interval_provenance(bootstrap)} if bootstrap is not None else {}
    return TranslationResult(
        src_lang=src_lang,
        tgt_lang=tgt_lang,
        shots=shots,
        scores=scores,
        prompts=prompts,
        hypotheses=hypotheses,
        references=references,
        sources=[one_line(str(r["src_text"])) for r in rows],
        provenance=Provenance(
            model_id=model_id(model),
            method="translation",
            parameters={
                "shots": shots,
                "seed": seed,
                "max_examples": max_examples,
                "max_new_tokens": max_new_tokens,
                "decoding": "greedy, stop at the first newline or EOS",
                "bleu_signature": scores.bleu_signature,
                "chrf_signature": scores.chrf_signature,
                **extra,
            },
            library_version=__version__,
        ),
    )


@dataclasses.dataclass
class TranslationTable(Result):
    """Scores per direction (``"en-fr"`` → `TranslationScores`) for one setting."""

    scores: dict[str, TranslationScores]
    setting: str = ""
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    @classmethod
    def from_results(
        cls, results: Mapping[str, TranslationResult] | Sequence[TranslationResult]
    ) -> TranslationTable:
        """Collect the scores of several `TranslationResult`s."""
        items = list(results.values()) if isinstance(results, Mapping) else list(results)
        if not items:
            raise EmptyCorpusError("No result to put in a table.")
        shots = sorted({r.shots for r in items})
        return cls(
            scores={r.direction: r.scores for r in items},
            setting=", ".join(f"{s}-shot" for s in shots),
            provenance=items[0].provenance.replace(method="translation_table"),
        )

    def rows(self) -> list[dict[str, Any]]:
        """One dict per direction: direction, src, tgt, n, bleu, chrf and signatures."""
        out = []
        for direction, s in self.scores.items():
            src, _, tgt = direction.partition("-")
            out.append({"direction": direction, "src": src, "tgt": tgt, **s.to_dict()})
        return out

    table_forms = ("long", "wide")

    def tabulate(self, metric: str = "bleu", *, form: str = "long") -> ResultTable:
        """``form="long"``: `rows` as a table: direction, src, tgt, n, bleu, chrf and
        both signatures (``metric`` is not needed there). ``form="wide"``: one row per
        source language, one column per target language, holding ``metric``
        (``"bleu"`` or ``"chrf"``); empty for a direction not evaluated."""
        if metric not in ("bleu", "chrf"):
            raise TranslationEvalError(f"metric must be 'bleu' or 'chrf', got {metric!r}.")
        if form == "wide":
            rows = self.rows()
            sources = list(dict.fromkeys(r["src"] for r in rows))
            targets = list(dict.fromkeys(r["tgt"] for r in rows))
            values = {(r["src"], r["tgt"]): r[metric] for r in rows}
            matrix = [[s, *(values.get((s, t)) for t in targets)] for s in sources]
            return ResultTable(["src", *targets], matrix)
        if not self.has_intervals:  # the columns files had before intervals existed
            fields = ["direction", "src", "tgt", "n", "bleu", "chrf"]
            fields += ["bleu_signature", "chrf_signature"]
            return ResultTable(fields, [[row[f] for f in fields] for row in self.rows()])
        header = ["direction", "src", "tgt", "n", *interval_header("bleu")]
        header += [*interval_header("chrf"), "level", "bleu_signature", "chrf_signature"]
        rows = []
        for row, scores in zip(self.rows(), self.scores.values()):
            rows.append(
                [
                    *(row["direction"], row["src"], row["tgt"], row["n"]),
                    *scores.bleu_interval.cells(),
                    *scores.chrf_interval.cells(),
                    *(scores.level, row["bleu_signature"], row["chrf_signature"]),
                ]
            )
        return ResultTable(header, rows)

    @property
    def has_intervals(self) -> bool:
        """Whether any direction's scores carry intervals."""
        return any(s.has_interval for s in self.scores.values())

    @classmethod
    def _revive(cls, fields: dict[str, Any]) -> dict[str, Any]:
        fields["scores"] = {k: TranslationScores.from_dict(v) for k, v in fields["scores"].items()}
        return fields

    def _display_summary(self) -> str:
        n = len(self.scores)
        bleu = sum(s.bleu for s in self.scores.values()) / n if n else float("nan")
        chrf = sum(s.chrf for s in self.scores.values()) / n if n else float("nan")
        setting = f" ({self.setting})" if self.setting else ""
        return (
            f"{display.plural(n, 'direction')}{setting}; mean BLEU {bleu:.2f}, mean chrF {chrf:.2f}"
        )

    def _display_table(self) -> display.Table:
        """BLEU per source (rows) and target (columns)."""
        header, rows = self.tabulate(form="wide")
        return display.Table(header, rows, heat=display.numeric_heat(rows), legend="colour: BLEU")

    def plot(self, metric: str = "bleu", kind: str = "bar") -> Any:
        """A plotly bar chart per direction, or a source × target heatmap."""
        if metric not in ("bleu", "chrf") or kind not in ("bar", "heatmap"):
            raise TranslationEvalError("metric must be 'bleu' or 'chrf'; kind 'bar' or 'heatmap'.")
        label = "BLEU" if metric == "bleu" else "chrF"
        title = f"{label} per direction" + (f" ({self.setting})" if self.setting else "")
        rows = self.rows()
        if kind == "bar":
            import plotly.graph_objects as go

            estimates = [s.estimate(metric) for s in self.scores.values()]
            error = None
            if self.has_intervals:  # asymmetric bars; NaN where a direction has none
                error = {
                    "type": "data",
                    "symmetric": False,
                    "array": [e.high - e.value for e in estimates],
                    "arrayminus": [e.value - e.low for e in estimates],
                }
            figure = go.Figure(
                go.Bar(
                    x=[r["direction"] for r in rows],
                    y=[r[metric] for r in rows],
                    error_y=error,
                    hovertext=[e.format() for e in estimates],
                )
            )
            figure.update_layout(title=title, xaxis_title="direction", yaxis_title=label)
            return figure
        from lsn_mech.plots import heatmap

        sources = sorted({r["src"] for r in rows})
        targets = sorted({r["tgt"] for r in rows})
        values = {(r["src"], r["tgt"]): float(r[metric]) for r in rows}
        matrix = [[values.get((s, t), float("nan")) for t in targets] for s in sources]
        figure = heatmap(
            matrix,
            sources,
            targets,
            title=title,
            row_title="source",
            column_title="target",
            colorbar=label,
        )
        if self.has_intervals:  # the interval in the hover text of each cell
            found = {
                tuple(d.partition("-")[::2]): sc.estimate(metric).format()
                for d, sc in self.scores.items()
            }
            figure.data[0].customdata = [[found.get((s, t), "") for t in targets] for s in sources]
            figure.data[0].hovertemplate = (
                "source %{y} → target %{x}<br>" + label + " %{customdata}<extra></extra>"
            )
        return figure

    def __str__(self) -> str:
        if self.has_intervals:
            lines = [f"{'direction':<12}{'n':>6}  {'BLEU':<24}{'chrF':<24}"]
            for direction, s in self.scores.items():
                lines.append(
                    f"{direction:<12}{s.n:>6}  {s.bleu_interval.format():<24}"
                    f"{s.chrf_interval.format():<24}".rstrip()
                )
            return "\n".join(lines)
        lines = [f"{'direction':<12}{'n':>6}{'BLEU':>8}{'chrF':>8}"]
        for r in self.rows():
            lines.append(f"{r['direction']:<12}{r['n']:>6}{r['bleu']:>8.2f}{r['chrf']:>8.2f}")
        return "\n".join(lines)


def evaluate_directions(
    model: Any,
    tokenizer: Any,
    test_by_direction: Mapping[str, Dataset],
    *,
    shots: int = 0,
    train_by_direction: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> TranslationTable:
    """`evaluate_translation` for each direction (``{"en-fr": test_pairs, ...}``).

    ``train_by_direction`` gives the in-context demonstrations of each direction when
    ``shots > 0``; ``kwargs`` go to `evaluate_translation`.
    """
    if not test_by_direction:
        raise EmptyCorpusError("Pass at least one direction: {'en-fr': test_pairs}.")
    results = {}
    for direction, examples in test_by_direction.items():
        train = (train_by_direction or {}).get(direction) if shots else None
        results[direction] = evaluate_translation(
            model, tokenizer, examples, shots=shots, train_examples=train, **kwargs
        )
    table = TranslationTable.from_results(results)
    table.setting = f"{shots}-shot"
    return table
