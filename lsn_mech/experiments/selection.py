"""The selection-ratio sweep (Tang et al., Fig. 4): select more and more neurons of one
language, deactivate them, and watch the perplexity of every language."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm

from lsn_mech import display
from lsn_mech.corpora.sources import corpus_languages, corpus_provenance
from lsn_mech.errors import MissingLanguageError
from lsn_mech.evaluate.ppl_intervals import (
    WindowIntervals,
    bounds_text,
    error_bars,
    estimate_grid,
)
from lsn_mech.evaluate.ppl_matrix import evaluation_windows, ppl_view, window_perplexities
from lsn_mech.experiments._results import Result, ResultTable, canonical, table
from lsn_mech.intervals import DEFAULT, Bootstrap, Estimate, interval_header
from lsn_mech.interventions import deactivate
from lsn_mech.models.protocol import HookedModel, model_id
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.provenance import Provenance
from lsn_mech.stats import ActivationStats

DEFAULT_RATIOS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(11))
"""0 %, 1 %, …, 10 % of all MLP neurons, as in Fig. 4."""

KINDS = ("ppl", "delta", "ratio", "log_ratio")
_LABELS = {"ppl": "PPL", "delta": "ΔPPL", "ratio": "PPL / base PPL", "log_ratio": "log PPL ratio"}

Detector = Callable[..., LanguageNeurons]
"""``detector(stats, top_rate=ratio) -> LanguageNeurons`` (e.g. `lsn_mech.detect.lape`)."""


@dataclasses.dataclass
class SelectionSweep(WindowIntervals, Result):
    """Perplexity of every evaluated language while one language's neurons are deactivated,
    for increasing selection ratios.

    Attributes:
        language: whose neurons are deactivated.
        ratios: the detector's ``top_rate`` per row.
        languages: the evaluated languages (columns).
        base: perplexity of each evaluated language without intervention.
        ppl: ``ppl[r][j]``: perplexity of ``languages[j]`` with the neurons selected at
            ``ratios[r]`` deactivated.
        n_neurons: size of the deactivated set per ratio.
        per_layer: per-layer counts of the deactivated set per ratio.
        tokens: evaluated (predicted) tokens per language.
        window_tokens, window_base_nll, window_nll: per evaluated language, each
            window's predicted tokens and NLL sum (base; ``[ratio][language][window]``
            deactivated): what `estimates` resamples (``None`` in older results: values
            without intervals).
    """

    language: str
    ratios: list[float]
    languages: list[str]
    base: list[float]
    ppl: list[list[float]]
    n_neurons: list[int]
    per_layer: list[list[int]]
    tokens: list[int]
    provenance: Provenance = dataclasses.field(default_factory=Provenance)
    window_tokens: list[list[int]] | None = None
    window_base_nll: list[list[float]] | None = None
    window_nll: list[list[list[float]]] | None = None

    def estimates(self, kind: str = "ratio") -> list[list[Estimate]]:
        """``[ratio][language]`` as `values` with intervals: bootstrap over each evaluated
        language's windows, paired with its base (`lsn_mech.evaluate.ppl_intervals`)."""
        values = self.values(kind)
        if self._resamples is None:
            level = self.bootstrap.level
            return [[Estimate.point(v, level) for v in row] for row in values]
        return estimate_grid(self._resamples, kind)  # type: ignore[return-value]

    def base_estimates(self) -> list[Estimate]:
        """Each evaluated language's base perplexity with its interval."""
        if self._resamples is None:
            return [Estimate.point(b, self.bootstrap.level) for b in self.base]
        return [column.base_estimate() for column in self._resamples]

    def values(self, kind: str = "delta") -> list[list[float]]:
        """``[ratio][language]`` as ``ppl``, ``delta`` (ppl − base), ``ratio`` (ppl / base)
        or ``log_ratio``."""
        return ppl_view(self.ppl, self.base, kind)

    def curve(self, language: str, kind: str = "delta") -> list[float]:
        """One evaluated language's values over the ratios."""
        j = self.languages.index(language)
        return [row[j] for row in self.values(kind)]

    def curve_estimates(self, language: str, kind: str = "delta") -> list[Estimate]:
        """One evaluated language's values over the ratios, with intervals."""
        j = self.languages.index(language)
        return [row[j] for row in self.estimates(kind)]

    table_forms = ("wide", "long")

    def tabulate(
        self, kind: str = "ppl", *, form: str = "wide", intervals: bool = False
    ) -> ResultTable:
        """``form="wide"``: one row per ratio (plus the base row for ``kind="ppl"``), one
        column per evaluated language, the values in ``kind``. ``form="long"``: one row
        per (selection ratio, evaluated language) with ``selection_ratio``, ``n_neurons``,
        ``language``, ``ppl``, ``base_ppl``, ``delta``, ``ratio`` (ppl / base) and
        ``log_ratio`` (``kind`` is not needed there). ``intervals=True``: every value
        followed by its bounds (``ratio, ratio_low, ratio_high``; NaN without one)."""
        if intervals:
            return self._interval_table(kind, form)
        if form == "long":
            views = [self.values(k) for k in ("delta", "ratio", "log_ratio")]
            rows_long = [
                [ratio, n, language, self.ppl[r][j], self.base[j], *(v[r][j] for v in views)]
                for r, (ratio, n) in enumerate(zip(self.ratios, self.n_neurons))
                for j, language in enumerate(self.languages)
            ]
            header = ["selection_ratio", "n_neurons", "language", "ppl", "base_ppl", "delta"]
            return ResultTable([*header, "ratio", "log_ratio"], rows_long)
        rows: list[list[Any]] = []
        if kind == "ppl":
            rows.append(["base", 0, *self.base])
        for ratio, n, row in zip(self.ratios, self.n_neurons, self.values(kind)):
            rows.append([ratio, n, *row])
        return ResultTable(["ratio", "n_neurons", *self.languages], rows)

    def _interval_table(self, kind: str, form: str) -> ResultTable:
        base = self.base_estimates()
        if form == "long":
            names = ("ppl", "delta", "ratio", "log_ratio")
            views = {k: self.estimates(k) for k in names}
            header = ["selection_ratio", "n_neurons", "language", *interval_header("ppl")]
            header += interval_header("base_ppl")
            for k in names[1:]:
                header += interval_header(k)
            rows_long = [
                [
                    ratio,
                    n,
                    language,
                    *views["ppl"][r][j].cells(),
                    *base[j].cells(),
                    *(cell for k in names[1:] for cell in views[k][r][j].cells()),
                ]
                for r, (ratio, n) in enumerate(zip(self.ratios, self.n_neurons))
                for j, language in enumerate(self.languages)
            ]
            return ResultTable(header, rows_long)
        header = ["ratio", "n_neurons", *(h for x in self.languages for h in interval_header(x))]
        rows: list[list[Any]] = []
        if kind == "ppl":
            rows.append(["base", 0, *(cell for b in base for cell in b.cells())])
        for ratio, n, row in zip(self.ratios, self.n_neurons, self.estimates(kind)):
            rows.append([ratio, n, *(cell for e in row for cell in e.cells())])
        return ResultTable(header, rows)

    def _display_summary(self) -> str:
        ratios = ", ".join(f"{100 * r:g} %" for r in self.ratios)
        return (
            f"deactivating {self.language} neurons selected at {ratios}; "
            f"{len(self.languages)} evaluated languages"
        )

    def _display_table(self) -> display.Table:
        """PPL per cell, coloured by log(PPL / base)."""
        header, rows = self.tabulate("ppl")
        heat = [[None] * len(rows[0]), *([None, None, *r] for r in self.values("log_ratio"))]
        legend = "cells: PPL; colour: log(PPL / base PPL), blue < 0 < red (first row: base)"
        return display.Table(header, rows, heat=heat, diverging=True, legend=legend)

    def plot(self, kinds: Sequence[str] = ("delta", "ratio")) -> Any:
        """Lines per evaluated language over the selection ratio (%), one panel per kind,
        with error bars of each point's confidence interval (where there are windows to
        resample).

        The default shows the absolute change (Fig. 4) next to the ratio to the base
        perplexity, which is comparable across languages.
        """
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        for kind in kinds:
            if kind not in KINDS:
                raise ValueError(f"Unknown kind {kind!r}; choose from {', '.join(KINDS)}.")
        figure = make_subplots(rows=1, cols=len(kinds), subplot_titles=[_LABELS[k] for k in kinds])
        x = [100 * r for r in self.ratios]
        colors = _palette(len(self.languages))
        for col, kind in enumerate(kinds, start=1):
            for language, color in zip(self.languages, colors):
                figure.add_trace(
                    go.Scatter(
                        x=x,
                        y=self.curve(language, kind),
                        error_y=error_bars(self.curve_estimates(language, kind)),
                        mode="lines+markers",
                        name=language,
                        legendgroup=language,
                        showlegend=col == 1,
                        line={"color": color, "width": 3 if language == self.language else 1.5},
                    ),
                    row=1,
                    col=col,
                )
            figure.update_xaxes(title_text="selection ratio (%)", row=1, col=col)
            figure.update_yaxes(title_text=_LABELS[kind], row=1, col=col)
        figure.update_layout(
            title=f"Perplexity when deactivating {self.language} neurons selected at each ratio"
        )
        return figure

    def __str__(self) -> str:
        header = ["ratio", "neurons", *self.languages]
        rows: list[list[Any]] = [["base", 0, *(b.format(".2f") for b in self.base_estimates())]]
        rel = self.estimates("ratio")
        for ratio, n, row, rel_row in zip(self.ratios, self.n_neurons, self.ppl, rel):
            rows.append(
                [
                    f"{100 * ratio:g} %",
                    n,
                    *(f"{p:.2f} (x{r.value:.2f}){bounds_text(r)}" for p, r in zip(row, rel_row)),
                ]
            )
        note = ""
        if any(e.has_interval for row in rel for e in row):
            note = f" ([low, high]: {self.bootstrap.level:.0%} interval of the ratio)"
        return f"Deactivating {self.language} neurons: PPL (ratio to base){note}\n" + table(
            header, rows, digits=2
        )


def _palette(n: int) -> list[str]:
    import plotly.colors

    colors = plotly.colors.qualitative.Plotly
    return [colors[i % len(colors)] for i in range(n)]


def selection_sweep(
    model: HookedModel,
    stats: ActivationStats,
    corpus: Any,
    *,
    language: str = "fr",
    ratios: Sequence[float | int] = DEFAULT_RATIOS,
    detector: Detector | None = None,
    eval_languages: Sequence[str] | None = None,
    split: str | None = "test",
    max_tokens_per_language: int | None = 20_000,
    window: int = 512,
    batch_size: int = 4,
    progress: bool = True,
    bootstrap: Bootstrap = DEFAULT,
) -> SelectionSweep:
    """Deactivate the neurons of ``language`` selected at each ratio; perplexity of every
    evaluated language (Tang et al., Fig. 4).

    For each ``ratio``, ``detector(stats, top_rate=ratio)[language]`` is deactivated
    (set to 0 at its site in every layer) and the perplexity of every evaluated language
    is measured on the same token windows as the base perplexity. A ratio of 0 selects
    no neuron: its row is the base perplexity, and the detector is not called (LAPE
    rejects ``top_rate=0``).

    Args:
        model: the hooked model the statistics come from.
        stats: activation statistics the detector selects from.
        corpus: evaluation text (see `lsn_mech.evaluate.ppl_change_matrix`).
        language: whose neurons are deactivated.
        ratios: the detector's ``top_rate`` values (share of all MLP neurons selected
            over all languages before assignment). Default 0 %, 1 %, …, 10 %.
        detector: ``detector(stats, top_rate=r) -> LanguageNeurons``; ``None`` uses
            `lsn_mech.detect.lape` with its other parameters at their defaults. Pass
            ``functools.partial(lape, filter_rate=...)`` to change them.
        eval_languages: evaluated languages; default: the languages that both the
            statistics and the corpus have.
        split: corpus split to evaluate on.
        max_tokens_per_language: evaluation tokens per language.
        window: tokens per evaluation window.
        batch_size: windows per forward pass.
        progress: show a progress bar.
        bootstrap: how the intervals resample the evaluation windows
            (`SelectionSweep.estimates`).
    """
    if detector is None:
        from lsn_mech.detect import lape as detector  # lazy: detect depends on stats only
    ratios = [float(r) for r in ratios]
    bad = [r for r in ratios if not 0.0 <= r <= 1.0]
    if bad or not ratios:
        raise ValueError(f"ratios must be a non-empty list of values in [0, 1]; got {ratios}.")
    if language not in stats:
        raise MissingLanguageError(
            f"Language {language!r} is not in the statistics ({', '.join(stats.languages)}); "
            "collect statistics for it first."
        )
    available = corpus_languages(corpus)
    columns = (
        list(eval_languages)
        if eval_languages is not None
        else [x for x in stats.languages if x in available]
    )
    if not columns:
        raise MissingLanguageError(
            f"The statistics ({', '.join(stats.languages)}) and the corpus "
            f"({', '.join(available)}) share no language; pass eval_languages=[...]."
        )
    windows = evaluation_windows(
        model, corpus, columns, split=split, window=window, max_tokens=max_tokens_per_language
    )
    bar = tqdm(total=(len(ratios) + 1) * len(columns), desc="selection sweep", disable=not progress)

    first = window_perplexities(model, windows, columns, batch_size=batch_size, bar=bar)
    base = [result.value for result in first]
    tokens = [result.tokens for result in first]
    ppl, n_neurons, per_layer, window_nll = [], [], [], []
    for ratio in ratios:
        bar.set_description(f"selection sweep [{100 * ratio:g} %]")
        if ratio == 0.0:  # nothing selected: the base perplexity (LAPE refuses top_rate=0)
            n_neurons.append(0)
            per_layer.append([0] * stats.n_layers)
            ppl.append(list(base))
            window_nll.append([list(result.window_nll) for result in first])
            bar.update(len(columns))
            continue
        selected = detector(stats, top_rate=ratio)[language]
        n_neurons.append(len(selected))
        per_layer.append(selected.per_layer())
        with deactivate(model, selected):
            found = window_perplexities(model, windows, columns, batch_size=batch_size, bar=bar)
        ppl.append([result.value for result in found])
        window_nll.append([list(result.window_nll) for result in found])
    bar.close()
    return SelectionSweep(
        language=language,
        ratios=ratios,
        languages=columns,
        base=base,
        ppl=ppl,
        n_neurons=n_neurons,
        per_layer=per_layer,
        tokens=tokens,
        window_tokens=[list(result.window_tokens) for result in first],
        window_base_nll=[list(result.window_nll) for result in first],
        window_nll=window_nll,
        provenance=corpus_provenance(
            corpus,
            model_id=model_id(model),
            method="selection_sweep",
            parameters=canonical(
                {
                    "language": language,
                    "ratios": ratios,
                    "detector": getattr(detector, "__qualname__", None)
                    or getattr(getattr(detector, "func", None), "__qualname__", repr(detector)),
                    "split": split,
                    "max_tokens_per_language": max_tokens_per_language,
                    "window": window,
                    "stats_model_id": stats.provenance.model_id,
                    "stats_corpus_hash": stats.provenance.corpus_hash,
                    "intervals": bootstrap.to_dict(),
                }
            ),
        ),
    )
