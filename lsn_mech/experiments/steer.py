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
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from lsn_mech import display
from lsn_mech._version import __version__
from lsn_mech.corpora.windows import tokenizer_adds_bos
from lsn_mech.errors import EmptyCorpusError, MissingLanguageError
from lsn_mech.experiments._results import Result, ResultTable, canonical, table
from lsn_mech.experiments.language_id import LanguageIdentifier
from lsn_mech.experiments.prompts import default_prompts
from lsn_mech.interventions import STEERING_SETTINGS, apply, steering_specs
from lsn_mech.models.protocol import HookedModel, model_id
from lsn_mech.models.runtime import eos_token_ids, greedy_decode, pad_id_for
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.provenance import Provenance, stable_hash
from lsn_mech.stats import ActivationStats

SETTINGS: tuple[str, ...] = STEERING_SETTINGS


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

    def _label(self, setting: str) -> str:
        return f"cross (→{self.target})" if setting == "cross" and self.target else setting

    @classmethod
    def _revive(cls, fields: dict[str, Any]) -> dict[str, Any]:
        fields["generations"] = [Generation(**g) for g in fields["generations"]]
        return fields

    table_forms = ("long", "wide")

    def tabulate(self, *, form: str = "long") -> ResultTable:
        """``form="long"``: one row per generation (its `Generation` fields).
        ``form="wide"``: language accuracy (share of correct generations) per setting
        (rows) and prompt language (columns); empty where a setting has no generation
        for a language (the target in ``cross``)."""
        if form == "wide":
            accuracy = self.accuracy()
            rows_wide = [
                [setting, *(accuracy[setting].get(x) for x in self.languages)]
                for setting in self.settings
            ]
            return ResultTable(["setting", *self.languages], rows_wide)
        fields = [f.name for f in dataclasses.fields(Generation)]
        rows = [[getattr(g, f) for f in fields] for g in self.generations]
        return ResultTable(fields, rows)

    def _display_summary(self) -> str:
        mean = ", ".join(f"{self._label(s)} {a:.0%}" for s, a in self.mean_accuracy().items())
        return f"{display.plural(len(self.generations), 'generation')}; language accuracy {mean}"

    def _display_table(self) -> display.Table:
        """Language accuracy per setting and prompt language (the generations are in
        ``to_pandas()``)."""
        header, rows = self.tabulate(form="wide")
        return display.Table(
            header,
            rows,
            heat=display.numeric_heat(rows),
            legend="cells: share of generations in the expected language",
        )

    def plot(self) -> Any:
        """Grouped bars: language accuracy per prompt language, one bar per setting."""
        import plotly.graph_objects as go

        accuracy = self.accuracy()
        figure = go.Figure()
        for setting in self.settings:
            row = accuracy[setting]
            figure.add_trace(
                go.Bar(
                    x=[x for x in self.languages if x in row],
                    y=[row[x] for x in self.languages if x in row],
                    name=self._label(setting),
                )
            )
        figure.update_layout(
            barmode="group",
            title="Language accuracy of generations",
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
        accuracy = self.accuracy()
        rows: list[list[Any]] = []
        for setting in self.settings:
            row = accuracy[setting]
            rows.append(
                [
                    self._label(setting),
                    *(
                        f"{row[x]:.2f} ({len(self.select(setting, x))})" if x in row else "–"
                        for x in self.languages
                    ),
                ]
            )
        empty = self.empty()
        note = ", ".join(f"{self._label(s)}: {n}" for s, n in empty.items() if n)
        text = "Language accuracy (generations)\n" + table(["setting", *self.languages], rows)
        return text + (f"\nempty outputs: {note}" if note else "")


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
                }
            ),
            library_version=__version__,
        ),
    )


def _default_languages() -> list[str]:
    from lsn_mech.experiments.prompts import DEFAULT_PROMPTS

    return list(DEFAULT_PROMPTS)
