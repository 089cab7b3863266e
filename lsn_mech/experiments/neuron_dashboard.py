"""A static neuron dashboard: an index of the language sets and one page per neuron with
its statistics per language and its top-activating contexts (like the feature dashboards
of SAELens, for language neurons).

```python
site = lm.experiments.dashboard(model, neurons, stats, corpus, "dash", top_k=10)
print(site.index)          # dash/index.html: open it in a browser, offline
```

The contexts come from one streaming pass (`lsn_mech.stats.collect_top_activations`),
so memory stays O(neurons × languages × top_k × context) whatever the corpus size. The
pages are written by `lsn_mech.experiments.dashboard_html` (inline SVG, no script).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lsn_mech.errors import (
    MissingLanguageError,
    NeuronShapeMismatchError,
    StatisticsMismatchError,
    WrongInputError,
)
from lsn_mech.experiments.dashboard_html import (
    Context,
    IndexData,
    NeuronPage,
    index_html,
    neuron_html,
    page_name,
)
from lsn_mech.files import atomic_write_json, atomic_write_text, prepare_folder
from lsn_mech.models.limits import check_count
from lsn_mech.models.protocol import HookedModel, model_id
from lsn_mech.models.sites import hook_sites
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.stats.container import ActivationStats
from lsn_mech.stats.top_activations import MISSING, TopActivations, collect_top_activations

__all__ = ["DEFAULT_MAX_NEURONS", "Dashboard", "dashboard", "token_pieces"]

DEFAULT_MAX_NEURONS = 200
"""Neuron pages written by default: enough to browse, few enough to write in seconds."""


@dataclasses.dataclass(frozen=True)
class Dashboard:
    """Where a dashboard was written and what it holds."""

    output: Path
    languages: list[str]
    neurons: int
    """Neurons in the union of the sets."""
    pages: int
    """Neuron pages written (at most ``max_neurons``)."""
    contexts: int
    """Top contexts shown over all pages and languages."""
    tokens: dict[str, int]
    """Tokens read per language for the contexts."""

    @property
    def index(self) -> Path:
        """The page to open."""
        return self.output / "index.html"

    def __str__(self) -> str:
        read = ", ".join(f"{x}={n:,}" for x, n in self.tokens.items())
        return (
            f"Dashboard of {self.neurons} neurons ({self.pages} pages, {self.contexts} "
            f"contexts; tokens read: {read}): {self.index}"
        )


def dashboard(
    model: HookedModel,
    neurons: LanguageNeurons,
    stats: ActivationStats | None,
    corpus: Any,
    output_dir: str | Path,
    *,
    languages: Sequence[str] | None = None,
    top_k: int = 10,
    context: int = 8,
    max_tokens_per_language: int = 20_000,
    max_neurons: int = DEFAULT_MAX_NEURONS,
    batch_size: int = 8,
    window: int = 512,
    split: str | None = "train",
    progress: bool = True,
) -> Dashboard:
    """Write a static HTML site about ``neurons`` into ``output_dir`` and say what it holds.

    ``index.html`` shows each language's set per layer, the overlaps between languages and
    a table of the neurons that have a page; ``neurons/L{layer}_N{index}.html`` shows one
    neuron: the sets it belongs to, its activation probability and mean per language
    (from ``stats``; ``None`` collects them over the same text) and its ``top_k``
    highest activations per language with ``context`` tokens either side, each token
    shaded by the neuron's activation. ``dashboard.json`` lists the same in data.

    At most ``max_neurons`` neurons get a page: taken in turn from each language's set,
    most often active in that language first. Contexts are read from the first
    ``max_tokens_per_language`` tokens of each language (``split``), in windows of
    ``window`` tokens. Open the index from disk: it needs no network.
    """
    if not isinstance(neurons, LanguageNeurons):
        raise WrongInputError(
            f"dashboard needs LanguageNeurons (one set per language), got "
            f"{type(neurons).__name__}; wrap one set as LanguageNeurons({{'fr': neuron_set}})."
        )
    if stats is not None and not isinstance(stats, ActivationStats):
        raise WrongInputError(
            f"stats must be ActivationStats or None, got {type(stats).__name__}; pass "
            "lsn_mech.collect_stats(...) or ActivationStats.load(path)."
        )
    for name, value, minimum in (
        ("top_k", top_k, 1),
        ("context", context, 0),
        ("max_tokens_per_language", max_tokens_per_language, 1),
        ("max_neurons", max_neurons, 1),
        ("batch_size", batch_size, 1),
    ):
        check_count(name, value, minimum=minimum)
    chosen = list(neurons.languages if languages is None else languages)
    missing = [x for x in chosen if x not in neurons]
    if missing or not chosen:
        raise MissingLanguageError(
            f"languages {missing or chosen} are not among the neurons' languages "
            f"({', '.join(neurons.languages)}); pick from those or leave languages out."
        )
    _check_shapes(model, neurons, stats)
    output = prepare_folder(output_dir, argument="output_dir")
    if stats is None:
        from lsn_mech.stats.collect import collect_stats

        stats = collect_stats(
            model,
            corpus,
            languages=chosen,
            max_tokens_per_language=max_tokens_per_language,
            batch_size=batch_size,
            window=window,
            split=split,
            progress=progress,
        )
    absent = [x for x in chosen if x not in stats.languages]
    if absent:
        raise MissingLanguageError(
            f"The statistics cover {', '.join(stats.languages)}, not {', '.join(absent)}; "
            "pass statistics collected on every dashboard language, or stats=None."
        )
    probability = _statistic(stats, "activation_probability", "mlp_pre")
    mean = _statistic(stats, "mean", neurons.site)
    union = neurons.subset(chosen).union()
    paged = _pick_pages(neurons, chosen, stats, probability, max_neurons)
    top = None
    if paged:
        top = collect_top_activations(
            model,
            corpus,
            [layer for layer, _ in paged],
            [index for _, index in paged],
            languages=chosen,
            site=neurons.site,
            k=top_k,
            context=context,
            max_tokens_per_language=max_tokens_per_language,
            batch_size=batch_size,
            window=window,
            split=split,
            progress=progress,
        )
    masks = neurons.to_mask()
    pages = [
        NeuronPage(
            layer=layer,
            index=index,
            site=neurons.site,
            sets=[x for i, x in enumerate(neurons.languages) if bool(masks[i, layer, index])],
            probability=_per_language(probability, stats, chosen, layer, index),
            mean=_per_language(mean, stats, chosen, layer, index),
            contexts=_contexts(top, row, chosen, model.tokenizer) if top is not None else {},
        )
        for row, (layer, index) in enumerate(paged)
    ]
    title = f"Language neurons of {model_id(model) or 'a model'}"
    _write_site(output, neurons, chosen, pages, len(union), title, _facts(model, neurons, top))
    tokens = {x: int(top.tokens[i]) if top is not None else 0 for i, x in enumerate(chosen)}
    contexts = sum(len(c) for page in pages for c in page.contexts.values())
    result = Dashboard(output, chosen, len(union), len(pages), contexts, tokens)
    atomic_write_json(
        output / "dashboard.json",
        {
            "languages": chosen,
            "neurons": len(union),
            "pages": [
                {
                    "layer": p.layer,
                    "index": p.index,
                    "sets": p.sets,
                    "page": page_name(p.layer, p.index),
                }
                for p in pages
            ],
            "contexts": contexts,
            "tokens": tokens,
            "top_k": top_k,
            "context": context,
            "site": neurons.site,
            "model": model_id(model),
        },
    )
    return result


def _check_shapes(model: Any, neurons: LanguageNeurons, stats: ActivationStats | None) -> None:
    sites = hook_sites(model)
    shapes = {"the model": (sites.n_layers, sites.d_mlp)}
    if stats is not None:
        shapes["the statistics"] = (stats.n_layers, stats.d_mlp)
    for what, (n_layers, d_mlp) in shapes.items():
        if (neurons.n_layers, neurons.d_mlp) != (n_layers, d_mlp):
            raise NeuronShapeMismatchError(
                f"The neurons are of a {neurons.n_layers}-layer model with d_mlp "
                f"{neurons.d_mlp}, {what} of one with {n_layers} layers and d_mlp {d_mlp}; "
                "pass neurons, statistics and model of the same model."
            )


def _statistic(stats: ActivationStats, name: str, site: str) -> torch.Tensor | None:
    """``stats.<name>(site)`` on the CPU, or ``None`` when those statistics lack it."""
    try:
        return getattr(stats, name)(site).detach().to("cpu", torch.float64)
    except StatisticsMismatchError:
        return None


def _per_language(
    values: torch.Tensor | None,
    stats: ActivationStats,
    languages: list[str],
    layer: int,
    index: int,
) -> dict[str, float | None]:
    if values is None:
        return dict.fromkeys(languages)
    return {x: float(values[layer, index, stats.language_index(x)]) for x in languages}


def _pick_pages(
    neurons: LanguageNeurons,
    languages: list[str],
    stats: ActivationStats,
    probability: torch.Tensor | None,
    limit: int,
) -> list[tuple[int, int]]:
    """Up to ``limit`` neurons, one from each language's set in turn, each set ordered by
    activation probability in its own language (then layer and index), so every
    language gets pages and each gets its most active neurons first."""
    queues = []
    for language in languages:
        pairs = [(int(layer), int(index)) for layer, index in neurons[language].to_pairs()]
        if probability is not None:
            column = stats.language_index(language)
            pairs.sort(key=lambda p: (-float(probability[p[0], p[1], column]), p))
        queues.append(pairs)
    chosen: dict[tuple[int, int], None] = {}
    for pair in itertools.chain.from_iterable(itertools.zip_longest(*queues)):
        if pair is not None:
            chosen.setdefault(pair)
        if len(chosen) == limit:
            break
    return sorted(chosen)


def token_pieces(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The text each token adds, decoding ``ids`` incrementally: a character split over
    several byte tokens appears with the token that completes it, not as ``�``."""
    pieces: list[str] = []
    shown = ""
    for end in range(1, len(ids) + 1):
        text = tokenizer.decode(list(ids[:end]))
        if text.endswith("\ufffd") and end < len(ids):
            pieces.append("")  # an unfinished character: wait for its next byte
        elif text.startswith(shown):
            pieces.append(text[len(shown) :])
            shown = text
        else:
            pieces.append(tokenizer.decode([ids[end - 1]]))
            shown = text
    return pieces


def _contexts(
    top: TopActivations, row: int, languages: list[str], tokenizer: Any
) -> dict[str, list[Context]]:
    """The kept contexts of neuron ``row`` of ``top``, decoded, per language."""
    result: dict[str, list[Context]] = {}
    centre = top.context
    for column, language in enumerate(languages):
        contexts = []
        for slot, (value, window, position) in enumerate(top.entries(row, column)):
            ids = top.context_ids[row, column, slot].tolist()
            values = top.context_values[row, column, slot].tolist()
            kept = [i for i, token in enumerate(ids) if token != MISSING]
            pieces = token_pieces(tokenizer, [ids[i] for i in kept])
            contexts.append(
                Context(
                    value=value,
                    window=window,
                    position=position,
                    tokens=pieces,
                    activations=[float(values[i]) for i in kept],
                    peak=kept.index(centre),
                )
            )
        result[language] = contexts
    return result


def _facts(
    model: Any, neurons: LanguageNeurons, top: TopActivations | None
) -> list[tuple[str, str]]:
    source = neurons.provenance
    facts = [("model", str(model_id(model))), ("site", neurons.site)]
    if source is not None and source.method:
        facts.append(("method", str(source.method)))
    if source is not None and source.corpus:
        facts.append(("corpus of the sets", str(source.corpus)))
    facts.append(("languages", ", ".join(neurons.languages)))
    if top is not None:
        facts.append(("contexts", f"top {top.k} per language, {top.context} tokens either side"))
    return facts


def _write_site(
    output: Path,
    neurons: LanguageNeurons,
    languages: list[str],
    pages: list[NeuronPage],
    n_union: int,
    title: str,
    facts: list[tuple[str, str]],
) -> None:
    per_layer = neurons.per_layer()
    intersections = neurons.overlap_matrix("intersection")
    jaccard = neurons.overlap_matrix("jaccard")
    data = IndexData(
        title=title,
        facts=facts,
        languages=languages,
        n_layers=neurons.n_layers,
        d_mlp=neurons.d_mlp,
        per_layer={x: list(per_layer[x]) for x in languages},
        exclusive={x: len(neurons.exclusive(x)) for x in languages},
        intersections=[[int(intersections[a, b]) for b in languages] for a in languages],
        jaccard=[[float(jaccard[a, b]) for b in languages] for a in languages],
        pages=pages,
        more=n_union - len(pages),
    )
    for i, page in enumerate(pages):
        text = neuron_html(
            page,
            languages,
            title=title,
            previous=pages[i - 1] if i > 0 else None,
            following=pages[i + 1] if i + 1 < len(pages) else None,
        )
        atomic_write_text(output / page_name(page.layer, page.index), text)
    atomic_write_text(output / "index.html", index_html(data))
