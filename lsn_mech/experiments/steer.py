"""Steering the output language by activating and deactivating neurons (Tang et al. §3.3.4,
Tables 4 and 5).

Three settings, each a greedy generation with a repetition penalty of 1.1 (the paper's
decoding) for every prompt:

* ``normal``: no intervention; the expected language is the prompt's.
* ``steered``: the prompt language's neurons are set to that language's mean
  activation (Table 4); expected: the prompt's language.
* ``cross``: the prompt language's neurons are deactivated (set to 0) and the target
  language's neurons are set to the target's mean activation (Table 5); expected: the
  target language. Prompts already in the target language are skipped.

The language of each generation is identified offline with lingua
(`lsn_mech.experiments.language_id`); language accuracy is the share of generations in
the expected language.

Every accuracy comes with a percentile-bootstrap interval over the prompts (the units:
one generation per prompt and setting), and "steering changes the language accuracy" is
decided by a paired bootstrap test between two settings over the same prompts
(`SteeringResult.compare`), both through `lsn_mech.intervals`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from lsn_mech import display, intervals
from lsn_mech._version import __version__
from lsn_mech.corpora.windows import tokenizer_adds_bos
from lsn_mech.errors import EmptyCorpusError, InvalidSettingError, MissingLanguageError
from lsn_mech.experiments._results import Result, ResultTable, canonical, table
from lsn_mech.experiments.language_id import LanguageIdentifier
from lsn_mech.experiments.prompts import default_prompts
from lsn_mech.intervals import Bootstrap, Estimate, PairedTest, interval_header
from lsn_mech.interventions import STEERING_SETTINGS, apply, steering_specs
from lsn_mech.models.protocol import HookedModel, model_id
from lsn_mech.models.runtime import eos_token_ids, greedy_decode, pad_id_for
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.provenance import Provenance, stable_hash
from lsn_mech.stats import ActivationStats

SETTINGS: tuple[str, ...] = STEERING_SETTINGS

ALL = "all"
"""The "language" of a setting's accuracy over every prompt language together."""

TEST = "paired bootstrap over prompts, two-sided"
"""The test behind "steering changes the language accuracy" (`SteeringResult.compare`)."""


@dataclasses.dataclass(frozen=True)
class Generation:
    """One generated answer and its identified language.

    ``output`` is the generated continuation only (the prompt is not repeated);
    ``detected`` is ``None`` when the output holds no letters (e.g. it is empty);
    ``correct`` is ``detected == expected``, so empty outputs count as wrong.
    """

    setting: str
    language: str
    expected: str
    prompt: str
    output: str
    detected: str | None
    correct: bool
    n_tokens: int


@dataclasses.dataclass
class SteeringResult(Result):
    """Generations of every setting and prompt language, with their detected languages.

    Attributes:
        settings: the settings run, in order.
        languages: the prompt languages, in order.
        target: the target language of the ``cross`` setting (``None`` without it).
        generations: every generation, in (setting, language, prompt) order.
    """

    settings: list[str]
    languages: list[str]
    target: str | None
    generations: list[Generation]
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    def select(self, setting: str | None = None, language: str | None = None) -> list[Generation]:
        """Generations of one setting and/or prompt language."""
        return [
            g
            for g in self.generations
            if (setting is None or g.setting == setting)
            and (language is None or g.language == language)
        ]

    def accuracy(self) -> dict[str, dict[str, float]]:
        """``accuracy()[setting][language]``: share of outputs in the expected language
        (Table 4). Languages with no generation in a setting (the target in ``cross``)
        are left out."""
        result: dict[str, dict[str, float]] = {}
        for setting in self.settings:
            row = {}
            for language in self.languages:
                chosen = self.select(setting, language)
                if chosen:
                    row[language] = sum(g.correct for g in chosen) / len(chosen)
            result[setting] = row
        return result

    def mean_accuracy(self) -> dict[str, float]:
        """Accuracy of each setting over all its generations."""
        out = {}
        for setting in self.settings:
            chosen = self.select(setting)
            out[setting] = sum(g.correct for g in chosen) / len(chosen) if chosen else 0.0
        return out

    def empty(self) -> dict[str, int]:
        """Outputs with no letters (no language could be identified), per setting."""
        return {s: sum(g.detected is None for g in self.select(s)) for s in self.settings}

    def detected_counts(self, setting: str, language: str) -> dict[str, int]:
        """How often each language was detected for one setting and prompt language
        (``"none"`` for outputs with no identifiable language)."""
        counts: dict[str, int] = {}
        for g in self.select(setting, language):
            key = g.detected or "none"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    # ----- intervals ------------------------------------------------------------------
    def bootstrap_settings(self) -> Bootstrap:
        """How this result's intervals are resampled: the settings `steering` recorded in
        its provenance (``parameters["intervals"]``), else the defaults (results saved
        before intervals existed)."""
        return Bootstrap.from_dict(self.provenance.parameters.get("intervals"))

    def _successes(self, setting: str, language: str) -> torch.Tensor:
        chosen = self.select(setting, None if language == ALL else language)
        return torch.tensor([g.correct for g in chosen], dtype=torch.float64)

    def accuracy_estimates(
        self, bootstrap: Bootstrap | None = None
    ) -> dict[str, dict[str, Estimate]]:
        """``[setting][language]``: `accuracy` with its percentile-bootstrap interval over
        the prompts, plus ``[setting]["all"]`` over every prompt of the setting (the
        `mean_accuracy`). ``bootstrap`` overrides `bootstrap_settings`."""
        settings = bootstrap or self.bootstrap_settings()
        result: dict[str, dict[str, Estimate]] = {}
        for setting in self.settings:
            row = {}
            for language in [*self.languages, ALL]:
                successes = self._successes(setting, language)
                if len(successes):
                    row[language] = intervals.proportion(successes, settings)
            result[setting] = row
        return result

    def _pairs(self, a: str, b: str, language: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Whether the outputs of settings ``a`` and ``b`` are in ``a``'s expected
        language, on the prompts both answered (the ``k``-th occurrence of a prompt text
        in a language pairs with its ``k``-th). Scoring ``b`` against ``a``'s expected
        language makes ``cross`` against ``normal`` ask "does steering raise the share
        of answers in the target language?"."""

        def keyed(setting: str) -> dict[tuple[str, str, int], Generation]:
            seen: dict[tuple[str, str], int] = {}
            out = {}
            for g in self.select(setting, None if language == ALL else language):
                k = seen.get((g.language, g.prompt), 0)
                seen[(g.language, g.prompt)] = k + 1
                out[(g.language, g.prompt, k)] = g
            return out

        first, second = keyed(a), keyed(b)
        shared = [key for key in first if key in second]
        if not shared:
            raise InvalidSettingError(
                f"Settings {a!r} and {b!r} share no prompt in {language!r} (the cross setting "
                "skips the target's own prompts); compare them on another language or 'all'."
            )
        a_hits = [first[k].correct for k in shared]
        b_hits = [second[k].detected == first[k].expected for k in shared]
        return torch.tensor(a_hits, dtype=torch.float64), torch.tensor(b_hits, dtype=torch.float64)

    def compare(
        self,
        setting: str,
        baseline: str | None = None,
        *,
        language: str = ALL,
        bootstrap: Bootstrap | None = None,
    ) -> PairedTest:
        """Does ``setting`` change the language accuracy against ``baseline`` (default:
        `baseline`, i.e. ``normal`` when it ran)?

        The share of ``setting``'s outputs in its expected language minus the share of
        ``baseline``'s outputs in that same language, on the same prompts (of one prompt
        language, or ``"all"``); for ``steered`` against ``normal`` that is the difference
        of their accuracies, for ``cross`` the gain in answers in the target language. With
        its paired-bootstrap interval and two-sided p-value (`lsn_mech.intervals.paired_test`:
        both settings resampled with the same prompt indices). ``significant`` means the
        interval excludes 0.
        """
        baseline = self.baseline if baseline is None else baseline
        for name in (setting, baseline):
            if name not in self.settings:
                raise InvalidSettingError(
                    f"No setting {name!r} in this result; choose from {', '.join(self.settings)}."
                )
        a, b = self._pairs(setting, baseline, language)
        test = intervals.paired_test(
            intervals.mean_of, [a], [b], bootstrap or self.bootstrap_settings()
        )
        return dataclasses.replace(test, test=TEST)

    @property
    def baseline(self) -> str:
        """The setting the others are tested against: ``normal`` when it ran, else the
        first setting."""
        return "normal" if "normal" in self.settings else (self.settings or [""])[0]

    def tests(self, bootstrap: Bootstrap | None = None) -> dict[str, dict[str, PairedTest]]:
        """``[setting][language]``: `compare` of every other setting against the
        `baseline` (``normal`` when it ran), per prompt language the two share and over
        ``"all"``."""
        if len(self.settings) < 2:
            return {}
        baseline = self.baseline
        out: dict[str, dict[str, PairedTest]] = {}
        for setting in [s for s in self.settings if s != baseline]:
            row = {}
            for language in [*self.languages, ALL]:
                if self.select(setting, None if language == ALL else language):
                    with contextlib.suppress(InvalidSettingError):
                        row[language] = self.compare(
                            setting, baseline, language=language, bootstrap=bootstrap
                        )
            out[setting] = row
        return out

    def decisions(self, bootstrap: Bootstrap | None = None) -> list[str]:
        """One line per setting compared with the baseline over all prompts: whether it
        changes the language accuracy, by `TEST`, at the intervals' level."""
        settings = bootstrap or self.bootstrap_settings()
        lines = []
        baseline = self.baseline
        for setting, row in self.tests(settings).items():
            test = row.get(ALL)
            if test is None:
                continue
            verdict = (
                ("raises" if test.difference.value > 0 else "lowers")
                if test.significant
                else "does not significantly change"
            )
            lines.append(
                f"{self._label(setting)} {verdict} the share of answers in its expected "
                f"language against {baseline}: "
                f"{test.difference.format('+.2f')}, p = {test.p_value:.3g} ({test.test}, "
                f"{settings.level:.0%} interval of the difference; {settings.resamples} "
                f"resamples, seed {settings.seed})"
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The fields, plus ``"intervals"``: every accuracy and paired test with its bounds
        (derived from the generations; recomputed, not read, on load)."""
        settings = self.bootstrap_settings()
        accuracy = self.accuracy_estimates(settings)
        return {
            **super().to_dict(),
            "intervals": {
                "bootstrap": settings.to_dict(),
                "accuracy": {
                    s: {x: e.to_dict() for x, e in r.items()} for s, r in accuracy.items()
                },
                "tests": {
                    s: {x: t.to_dict() for x, t in r.items()}
                    for s, r in self.tests(settings).items()
                },
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SteeringResult:
        """Inverse of `to_dict`; the derived ``"intervals"`` key is dropped (files written
        before intervals existed have none)."""
        return super().from_dict({k: v for k, v in data.items() if k != "intervals"})

    def _label(self, setting: str) -> str:
        return f"cross (→{self.target})" if setting == "cross" and self.target else setting

    @classmethod
    def _revive(cls, fields: dict[str, Any]) -> dict[str, Any]:
        fields["generations"] = [Generation(**g) for g in fields["generations"]]
        return fields

    table_forms = ("long", "wide")
    views: ClassVar[tuple[str, ...]] = ("generations", "accuracy", "tests")
    """The long form's rows (``to_pandas(view=...)``, ``to_csv(path, view=...)``)."""

    def tabulate(self, *, form: str = "long", view: str = "generations") -> ResultTable:
        """``form="long"``, by ``view``:

        * ``"generations"`` (default): one row per generation (its `Generation` fields);
        * ``"accuracy"``: one row per setting and prompt language (and ``"all"``): the
          generations ``n`` and the accuracy with its interval bounds;
        * ``"tests"``: one row per setting, baseline and language of `tests`: the paired
          difference with its bounds, the p-value, whether it is significant, the test.

        ``form="wide"``: language accuracy (share of correct generations) per setting
        (rows) and prompt language (columns, then ``"all"``), each followed by its
        interval bounds (``en, en_low, en_high, …``); empty where a setting has no
        generation for a language (the target in ``cross``).
        """
        if form == "wide":
            estimates = self.accuracy_estimates()
            columns = [*self.languages, ALL]
            rows_wide = [
                [
                    setting,
                    *(
                        value
                        for x in columns
                        for value in (
                            estimates[setting][x].cells() if x in estimates[setting] else [None] * 3
                        )
                    ),
                ]
                for setting in self.settings
            ]
            header = [name for x in columns for name in interval_header(x)]
            return ResultTable(["setting", *header], rows_wide)
        if view not in self.views:
            raise InvalidSettingError(
                f"SteeringResult has no {view!r} view; pass view= one of "
                f"{', '.join(repr(v) for v in self.views)}."
            )
        if view == "accuracy":
            rows_acc = [
                [setting, language, len(self._successes(setting, language)), *estimate.cells()]
                for setting, row in self.accuracy_estimates().items()
                for language, estimate in row.items()
            ]
            return ResultTable(["setting", "language", "n", *interval_header("accuracy")], rows_acc)
        if view == "tests":
            baseline = self.baseline
            rows_tests = [
                [
                    setting,
                    baseline,
                    language,
                    len(self._pairs(setting, baseline, language)[0]),
                    *test.difference.cells(),
                    test.p_value,
                    test.significant,
                    test.test,
                ]
                for setting, row in self.tests().items()
                for language, test in row.items()
            ]
            header = ["setting", "baseline", "language", "n", *interval_header("difference")]
            return ResultTable([*header, "p_value", "significant", "test"], rows_tests)
        fields = [f.name for f in dataclasses.fields(Generation)]
        rows = [[getattr(g, f) for f in fields] for g in self.generations]
        return ResultTable(fields, rows)

    def _display_summary(self) -> str:
        means = {s: row.get(ALL) for s, row in self.accuracy_estimates().items()}
        mean = ", ".join(
            f"{self._label(s)} {e.format('.0%')}" for s, e in means.items() if e is not None
        )
        level = self.bootstrap_settings().level
        return (
            f"{display.plural(len(self.generations), 'generation')}; language accuracy "
            f"{mean} ({level:.0%} bootstrap intervals over prompts)"
        )

    def _display_table(self) -> display.Table:
        """Language accuracy with its interval per setting and prompt language, coloured by
        the accuracy (the generations are in ``to_pandas()``)."""
        estimates = self.accuracy_estimates()
        columns = [*self.languages, ALL]
        cells = [[estimates[s].get(x) for x in columns] for s in self.settings]
        return display.Table(
            ["setting", *columns],
            [
                [s, *(e.format(".2f") if e else None for e in row)]
                for s, row in zip(self.settings, cells)
            ],
            heat=[[None, *(e.value if e else None for e in row)] for row in cells],
            legend="cells: share of generations in the expected language "
            f"[{self.bootstrap_settings().level:.0%} interval over prompts]",
        )

    def plot(self) -> Any:
        """Grouped bars: language accuracy per prompt language, one bar per setting, with
        error bars (and hover text) of its bootstrap interval over prompts."""
        import plotly.graph_objects as go

        estimates = self.accuracy_estimates()
        figure = go.Figure()
        for setting in self.settings:
            row = estimates[setting]
            shown = [x for x in self.languages if x in row]
            cells = [row[x] for x in shown]
            figure.add_trace(
                go.Bar(
                    x=shown,
                    y=[e.value for e in cells],
                    name=self._label(setting),
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [_gap(e.high - e.value) for e in cells],
                        "arrayminus": [_gap(e.value - e.low) for e in cells],
                    },
                    hovertext=[
                        f"{self._label(setting)} | {x}: {e.format('.2f')} "
                        f"(n={len(self._successes(setting, x))})"
                        for x, e in zip(shown, cells)
                    ],
                    hoverinfo="text",
                )
            )
        level = self.bootstrap_settings().level
        figure.update_layout(
            barmode="group",
            title=f"Language accuracy of generations ({level:.0%} bootstrap intervals)",
            xaxis={"title": "prompt language"},
            yaxis={"title": "language accuracy", "range": [0, 1]},
        )
        return figure

    def examples(self, per_cell: int = 1, width: int = 100) -> str:
        """The first ``per_cell`` generations of every setting and language, shortened."""
        lines = []
        for setting in self.settings:
            for language in self.languages:
                for g in self.select(setting, language)[:per_cell]:
                    text = " ".join(g.output.split())
                    if len(text) > width:
                        text = text[: width - 1] + "…"
                    lines.append(
                        f"[{self._label(setting)} | {language} → {g.detected or 'none'}] "
                        f"{g.prompt!r}: {text!r}"
                    )
        return "\n".join(lines)

    def __str__(self) -> str:
        estimates = self.accuracy_estimates()
        rows: list[list[Any]] = []
        for setting in self.settings:
            row = estimates[setting]
            rows.append(
                [
                    self._label(setting),
                    *(
                        f"{row[x].format('.2f')} ({len(self._successes(setting, x))})"
                        if x in row
                        else "–"
                        for x in [*self.languages, ALL]
                    ),
                ]
            )
        empty = self.empty()
        note = ", ".join(f"{self._label(s)}: {n}" for s, n in empty.items() if n)
        level = self.bootstrap_settings().level
        text = (
            f"Language accuracy (generations) [{level:.0%} bootstrap interval over prompts]\n"
            + table(["setting", *self.languages, ALL], rows)
        )
        decisions = self.decisions()
        text += "".join(f"\n{line}" for line in decisions)
        return text + (f"\nempty outputs: {note}" if note else "")


def _gap(value: float) -> float:
    """An error-bar length: 0 where the estimate has no interval (NaN bounds)."""
    return 0.0 if math.isnan(value) else value


# ----------------------------------------------------------------------------- generation


def _encode(model: HookedModel, prompts: Sequence[str], add_bos: bool | None) -> list[list[int]]:
    tokenizer = model.tokenizer
    if add_bos is None:
        add_bos = tokenizer_adds_bos(tokenizer)
    bos = getattr(tokenizer, "bos_token_id", None)
    encoded = []
    for prompt in prompts:
        ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if add_bos and bos is not None:
            ids = [int(bos), *ids]
        if not ids:
            raise EmptyCorpusError(f"The prompt {prompt!r} gives no token; pass a non-empty one.")
        encoded.append(ids)
    return encoded


@torch.no_grad()
def greedy_generate(
    model: HookedModel,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 40,
    repetition_penalty: float = 1.1,
    batch_size: int = 8,
    add_bos: bool | None = None,
    use_model_generate: bool | None = None,
) -> list[tuple[str, int]]:
    """Greedy continuations of ``prompts`` with a Hugging Face repetition penalty.

    The penalty divides the positive logits and multiplies the negative logits of every
    token already in the sequence (prompt included) by ``repetition_penalty`` before the
    argmax: ``transformers``' ``RepetitionPenaltyLogitsProcessor`` itself.

    Decoding is `lsn_mech.models.runtime.greedy_decode`: with a TransformerLens 4 bridge
    or a Hugging Face model (``use_model_generate=None`` or ``True``) Hugging Face's
    ``generate`` runs on the bridge's model, with a KV cache, on left-padded batches of
    ``batch_size`` prompts and an explicit attention mask; the bridge's hooks (every
    intervention) apply. (In a padded batch the pad token counts as "seen" for the
    penalty; it only lowers the pad token's own logit.) A hooked model with no Hugging
    Face model inside (e.g. TransformerLens 3), or ``use_model_generate=False``, uses a
    plain loop without cache, one prompt at a time.

    Generation stops at any of the model's EOS ids (`lsn_mech.models.runtime.eos_token_ids`).
    Returns ``(text, n_tokens)`` per prompt: the decoded continuation without special
    tokens, and the number of generated tokens before the stop token.
    """
    tokenizer = model.tokenizer
    eos = eos_token_ids(model, tokenizer)
    decoded = greedy_decode(
        model,
        _encode(model, prompts, add_bos),
        max_new_tokens=max_new_tokens,
        stop_ids=eos,
        repetition_penalty=repetition_penalty,
        batch_size=batch_size,
        pad_id=pad_id_for(tokenizer, eos),
        use_hf_generate=use_model_generate,
    )
    generated = [ids[:-1] if ids and ids[-1] in eos else ids for ids in decoded]
    return [(tokenizer.decode(ids, skip_special_tokens=True), len(ids)) for ids in generated]


# ----------------------------------------------------------------------------- experiment


@contextlib.contextmanager
def _setting(
    model: HookedModel,
    setting: str,
    language: str,
    *,
    neurons: LanguageNeurons,
    stats: ActivationStats,
    target: str | None,
    deactivate_source: bool,
) -> Iterator[None]:
    specs = steering_specs(
        setting, language, neurons=neurons, target=target, deactivate_source=deactivate_source
    )
    with apply(model, *specs, stats=stats):
        yield


def steering(
    model: HookedModel,
    prompts: Mapping[str, Sequence[str]] | None = None,
    *,
    neurons: LanguageNeurons,
    stats: ActivationStats,
    target: str | None = None,
    deactivate_source: bool = True,
    settings: Sequence[str] | None = None,
    max_new_tokens: int = 40,
    repetition_penalty: float = 1.1,
    template: str = "{prompt}\n",
    batch_size: int = 8,
    id_languages: Sequence[str] | str | None = None,
    identifier: LanguageIdentifier | None = None,
    use_model_generate: bool | None = None,
    progress: bool = True,
    bootstrap: Bootstrap | None = None,
) -> SteeringResult:
    """Generate for prompts of each language, normally and with neurons steered, and
    measure the language accuracy of the outputs (Tang et al., Tables 4 and 5).

    Args:
        model: a hooked model (a TransformerLens 4 bridge uses its own ``generate``).
        prompts: ``{language: [prompt, ...]}``; ``None``: the built-in
            `lsn_mech.experiments.prompts.DEFAULT_PROMPTS` of the languages the neurons
            have.
        neurons: language-specific neurons (e.g. from `lsn_mech.detect.lape`).
        stats: statistics whose per-language means are written into the activated
            neurons (``stats[language].mean`` at the neurons' site).
        target: with a target, the ``cross`` setting runs too: answer every prompt of
            another language in ``target``.
        deactivate_source: in ``cross``, also deactivate the prompt language's neurons
            (as in Table 5). ``False`` only activates the target's neurons.
        settings: which of ``"normal"``, ``"steered"``, ``"cross"`` to run (default:
            normal and steered, plus cross when ``target`` is given).
        max_new_tokens: generated tokens per prompt at most.
        repetition_penalty: Hugging Face-style penalty (the paper uses 1.1 with greedy
            search).
        template: how a prompt becomes the model input; ``"{prompt}\\n"`` by default
            (a base model then starts its answer on a new line). Use a chat template
            string for instruction-tuned models.
        batch_size: prompts generated together.
        id_languages: candidate languages of the language identifier; default: the
            prompt languages and the target ("the languages in play"). ``"all"``: every
            language lingua knows.
        identifier: a ready `LanguageIdentifier` (overrides ``id_languages``).
        use_model_generate: see `greedy_generate`.
        progress: show a progress bar.
        bootstrap: resamples, level and seed of the accuracy intervals and paired tests
            (default ``Bootstrap()``: 1000 resamples, 95 %, seed 0); recorded in the
            provenance under ``"intervals"``. The result's methods take another one too.
    """
    if prompts is None:
        prompts = default_prompts([x for x in neurons.languages if x in _default_languages()])
    prompts = {str(k): [str(p) for p in v] for k, v in prompts.items()}
    if not prompts or not any(prompts.values()):
        raise EmptyCorpusError("No prompts: pass {language: [prompt, ...]}.")
    languages = list(prompts)
    if settings is None:
        settings = ["normal", "steered"] + (["cross"] if target is not None else [])
    settings = list(settings)
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise ValueError(f"Unknown settings {unknown}; choose from {', '.join(SETTINGS)}.")
    if "cross" in settings and target is None:
        raise ValueError("The 'cross' setting needs target='<language>'.")
    needs_neurons: set[str] = set()
    needs_stats: set[str] = set()
    if "steered" in settings:
        needs_neurons.update(languages)
        needs_stats.update(languages)
    if "cross" in settings:
        assert target is not None
        needs_neurons.add(target)
        needs_stats.add(target)
        if deactivate_source:
            needs_neurons.update(x for x in languages if x != target)
    missing = sorted(needs_neurons - set(neurons.languages))
    if missing:
        raise MissingLanguageError(
            f"Steering needs neurons of {', '.join(missing)}, but the neurons have "
            f"{', '.join(neurons.languages)}; detect neurons for them or drop their prompts."
        )
    missing = sorted(needs_stats - set(stats.languages))
    if missing:
        raise MissingLanguageError(
            f"Steering activates the neurons of {', '.join(missing)} at their mean, but the "
            f"statistics have {', '.join(stats.languages)}; collect statistics for them."
        )
    if identifier is None:
        if id_languages is None:
            id_languages = list(dict.fromkeys([*languages, *([target] if target else [])]))
        identifier = LanguageIdentifier(id_languages)

    jobs = [
        (setting, language)
        for setting in settings
        for language in languages
        if prompts[language] and not (setting == "cross" and language == target)
    ]
    generations: list[Generation] = []
    bar = tqdm(total=sum(len(prompts[x]) for _, x in jobs), desc="steering", disable=not progress)
    for setting, language in jobs:
        bar.set_description(f"steering [{setting} {language}]")
        expected = target if setting == "cross" and target is not None else language
        inputs = [template.format(prompt=p) for p in prompts[language]]
        with _setting(
            model,
            setting,
            language,
            neurons=neurons,
            stats=stats,
            target=target,
            deactivate_source=deactivate_source,
        ):
            outputs = greedy_generate(
                model,
                inputs,
                max_new_tokens=max_new_tokens,
                repetition_penalty=repetition_penalty,
                batch_size=batch_size,
                use_model_generate=use_model_generate,
            )
        for prompt, (text, n_tokens) in zip(prompts[language], outputs):
            detected = identifier.detect(text)
            generations.append(
                Generation(
                    setting=setting,
                    language=language,
                    expected=expected,
                    prompt=prompt,
                    output=text,
                    detected=detected,
                    correct=detected == expected,
                    n_tokens=n_tokens,
                )
            )
        bar.update(len(inputs))
    bar.close()
    source = neurons.provenance
    return SteeringResult(
        settings=settings,
        languages=languages,
        target=target,
        generations=generations,
        provenance=Provenance(
            model_id=model_id(model),
            corpus="prompts",
            corpus_hash=stable_hash(prompts),
            method="steering",
            parameters=canonical(
                {
                    "target": target,
                    "deactivate_source": deactivate_source,
                    "settings": settings,
                    "max_new_tokens": max_new_tokens,
                    "repetition_penalty": repetition_penalty,
                    "decoding": "greedy",
                    "template": template,
                    "id_languages": list(identifier.languages),
                    "language_identifier": "lingua",
                    "neuron_counts": {x: len(neurons[x]) for x in neurons.languages},
                    "neurons_method": source.method if source else None,
                    "stats_corpus_hash": stats.provenance.corpus_hash,
                    "intervals": (bootstrap or intervals.DEFAULT).to_dict(),
                }
            ),
            library_version=__version__,
        ),
    )


def _default_languages() -> list[str]:
    from lsn_mech.experiments.prompts import DEFAULT_PROMPTS

    return list(DEFAULT_PROMPTS)
