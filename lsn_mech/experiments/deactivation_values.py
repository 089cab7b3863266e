"""Is zero "off"? The perplexity change when a language's neurons are set to zero or to
that language's own low statistics (Mondal et al. 2025, §4.2 and Fig. 1).

Tang et al. deactivate a neuron by writing 0 into it. Mondal et al. argue that zero is
not necessarily a true indicator of deactivation: a GELU/SiLU neuron's typical value
is slightly negative or near zero, and its low percentiles (P5, P10) are what the neuron
outputs when it is "not firing" for that language. `deactivation_value_ppl` writes each
candidate value into each language's neurons and measures the perplexity of that
language's own text: ``ΔPPL = PPL_intervened − PPL_base`` as the paper defines it, plus
the ratio ``PPL_intervened / PPL_base``, which is comparable across languages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from jaxtyping import Bool, Float
from torch import Tensor
from tqdm.auto import tqdm

from lsn_mech import display
from lsn_mech.corpora.sources import corpus_languages, corpus_provenance
from lsn_mech.errors import MissingLanguageError, NeuronShapeMismatchError, StatisticsMismatchError
from lsn_mech.evaluate.perplexity import perplexity
from lsn_mech.evaluate.ppl_intervals import (
    WindowIntervals,
    bounds_text,
    error_bars,
)
from lsn_mech.evaluate.ppl_matrix import evaluation_windows, ppl_cell_view, window_perplexities
from lsn_mech.experiments._results import Result, ResultTable, canonical, table
from lsn_mech.intervals import DEFAULT, Bootstrap, interval_header
from lsn_mech.intervals import Estimate as Interval
from lsn_mech.interventions import parse_value, set_to
from lsn_mech.interventions.checks import check_stats_fit
from lsn_mech.models.protocol import HookedModel, model_id
from lsn_mech.models.sites import hook_sites
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.provenance import Provenance
from lsn_mech.stats import ActivationStats
from lsn_mech.stats.percentiles import Estimate, statistic

ZERO = "zero"
"""The value label of Tang et al.'s deactivation (write 0)."""

DEFAULT_VALUES: tuple[str, ...] = (ZERO, "p5", "p10", "mean")
"""Zero (Tang et al.), the language's P5 and P10 (Mondal et al.'s low-percentile
"deactivations", Tables 2, 4, 5), and its mean (the neuron pinned at its typical level:
the token-dependent information is removed but the level is kept)."""

KINDS = ("ppl", "delta", "ratio", "log_ratio")
_LABELS = {"ppl": "PPL", "delta": "ΔPPL", "ratio": "PPL / base PPL", "log_ratio": "log PPL ratio"}

ValueSpec = str | float | int
"""``"zero"``, ``"mean"``, a percentile ``"p<0…100>"``, or a constant (a number)."""


def value_label(value: ValueSpec) -> str:
    """The label of a value: ``"zero"``, ``"mean"``, ``"p10"``, or a constant as ``"-0.17"``.

    Raises:
        ValueError: an unknown name (an `UnknownInterventionError` listing the choices).
    """
    return parse_value(value, allow_none=False).label


def _constant(label: str) -> float | None:
    """The constant a label stands for (``"zero"`` → 0.0), or ``None`` for a statistic."""
    return parse_value(label, allow_none=False).constant


def _view(p: float | None, base: float, kind: str) -> float | None:
    return None if p is None else ppl_cell_view(p, base, kind)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"Unknown kind {kind!r}; choose from {', '.join(KINDS)}.")
    return kind


@dataclasses.dataclass
class DeactivationValuePPL(WindowIntervals, Result):
    """Perplexities with each language's neurons set to each value (Mondal et al., Fig. 1).

    Attributes:
        values: value labels (``"zero"``, ``"p5"``, ``"mean"``, constants such as ``"-0.1"``).
        languages: whose neurons are set (the rows).
        columns: evaluated languages; ``columns == languages``.
        base: perplexity of each column without intervention.
        ppl: ``ppl[v][i][j]``: perplexity of ``columns[j]`` with the neurons of
            ``languages[i]`` set to ``values[v]``; ``None`` where not evaluated (only the
            diagonal ``i == j`` is evaluated unless the run asked for the full matrix).
        n_neurons: size of each row's neuron set.
        written: ``written[v][i]``: mean value written into the neurons of
            ``languages[i]`` for ``values[v]`` (``None`` for an empty set).
        tokens: predicted tokens per column.
        provenance: model, corpus, every parameter, the neurons' and statistics' origin.
        window_tokens, window_base_nll, window_nll: per column, each evaluation window's
            predicted tokens and NLL sum (base; ``[value][row][column][window]`` with the
            neurons set, ``None`` where not evaluated): what `own_estimates` resamples
            (``None`` in older results: values without intervals).
    """

    values: list[str]
    languages: list[str]
    columns: list[str]
    base: list[float]
    ppl: list[list[list[float | None]]]
    n_neurons: list[int]
    written: list[list[float | None]]
    tokens: list[int]
    provenance: Provenance = dataclasses.field(default_factory=Provenance)
    window_tokens: list[list[int]] | None = None
    window_base_nll: list[list[float]] | None = None
    window_nll: list[list[list[list[float] | None]]] | None = None

    def _window_conditions(self) -> list[list[list[float] | None]]:
        """Condition ``v * len(languages) + i`` is value ``v`` in row ``i``."""
        return [row for plane in self.window_nll for row in plane]

    def _estimate(self, v: int, i: int, j: int, kind: str) -> Interval | None:
        """Value ``v``, row ``i``, column ``j`` with its interval (paired with the base)."""
        if self._resamples is None:
            p = self.ppl[v][i][j]
            return None if p is None else Interval.point(ppl_cell_view(p, self.base[j], kind))
        return self._resamples[j].estimate(v * len(self.languages) + i, kind)

    def own_estimates(self, kind: str = "delta") -> list[list[Interval]]:
        """`own` with intervals: bootstrap over the language's windows, paired with its
        base perplexity (`lsn_mech.evaluate.ppl_intervals`)."""
        _check_kind(kind)
        return [
            [
                self._estimate(v, i, self.columns.index(x), kind)  # type: ignore[misc]
                for i, x in enumerate(self.languages)
            ]
            for v in range(len(self.values))
        ]

    def matrix_estimates(
        self, value: ValueSpec, kind: str = "delta"
    ) -> list[list[Interval | None]]:
        """`matrix` with intervals (``None`` where not evaluated)."""
        _check_kind(kind)
        v = self._value_index(value)
        return [
            [self._estimate(v, i, j, kind) for j in range(len(self.columns))]
            for i in range(len(self.languages))
        ]

    def base_estimates(self) -> list[Interval]:
        """Each column's base perplexity with its interval."""
        if self._resamples is None:
            return [Interval.point(b) for b in self.base]
        return [column.base_estimate() for column in self._resamples]

    @property
    def full(self) -> bool:
        """Whether every (row, column) pair was evaluated."""
        return all(p is not None for plane in self.ppl for row in plane for p in row)

    def _value_index(self, value: ValueSpec) -> int:
        label = value_label(value)
        if label not in self.values:
            raise KeyError(
                f"Value {label!r} was not run; this result has {', '.join(self.values)}."
            )
        return self.values.index(label)

    def own(self, kind: str = "delta") -> list[list[float]]:
        """``[value][language]``: the effect on each language's own text (Fig. 1).

        ``kind``: ``"delta"`` (PPL − base, the paper's ΔPPL), ``"ratio"``,
        ``"log_ratio"`` or ``"ppl"``.
        """
        _check_kind(kind)
        out = []
        for plane in self.ppl:
            row = []
            for i, language in enumerate(self.languages):
                j = self.columns.index(language)
                row.append(_view(plane[i][j], self.base[j], kind))
            out.append(row)
        return out  # type: ignore[return-value]  # the diagonal is always evaluated

    def matrix(self, value: ValueSpec, kind: str = "delta") -> list[list[float | None]]:
        """``[row][column]`` for one value (``None`` where not evaluated)."""
        _check_kind(kind)
        plane = self.ppl[self._value_index(value)]
        return [[_view(p, b, kind) for p, b in zip(row, self.base)] for row in plane]

    table_forms = ("wide", "long")

    def tabulate(
        self, kind: str = "delta", *, form: str = "wide", intervals: bool = False
    ) -> ResultTable:
        """``form="wide"``: one row per language: neurons, base PPL, then ``kind`` of its
        own perplexity for each value. ``form="long"``: one row per evaluated (value,
        language whose neurons are set, evaluated language) with ``neurons``,
        ``written``, ``ppl``, ``base_ppl``, ``delta``, ``ratio`` and ``log_ratio``
        (cells that were not evaluated are left out). ``intervals=True``: every value
        followed by its bounds (``delta, delta_low, delta_high``; NaN without one)."""
        if intervals:
            return self._interval_table(kind, form)
        if form == "long":
            rows_long = []
            for v, (label, plane) in enumerate(zip(self.values, self.ppl)):
                for i, language in enumerate(self.languages):
                    for j, column in enumerate(self.columns):
                        p, base = plane[i][j], self.base[j]
                        if p is None:
                            continue
                        views = [ppl_cell_view(p, base, k) for k in ("delta", "ratio", "log_ratio")]
                        written = self.written[v][i]
                        rows_long.append(
                            [label, language, column, self.n_neurons[i], written, p, base, *views]
                        )
            header = ["value", "language", "evaluated", "neurons", "written", "ppl", "base_ppl"]
            return ResultTable([*header, "delta", "ratio", "log_ratio"], rows_long)
        own = self.own(kind)
        rows = [
            [lang, n, self.base[self.columns.index(lang)], *(own[v][i] for v in range(len(own)))]
            for i, (lang, n) in enumerate(zip(self.languages, self.n_neurons))
        ]
        return ResultTable(["language", "neurons", "base_ppl", *self.values], rows)

    def _interval_table(self, kind: str, form: str) -> ResultTable:
        base = self.base_estimates()
        if form == "long":
            names = ("ppl", "delta", "ratio", "log_ratio")
            rows_long = []
            for v, label in enumerate(self.values):
                for i, language in enumerate(self.languages):
                    for j, column in enumerate(self.columns):
                        if self.ppl[v][i][j] is None:
                            continue
                        cells = [self._estimate(v, i, j, k).cells() for k in names]  # type: ignore[union-attr]
                        rows_long.append(
                            [
                                label,
                                language,
                                column,
                                self.n_neurons[i],
                                self.written[v][i],
                                *cells[0],
                                *base[j].cells(),
                                *(c for cell in cells[1:] for c in cell),
                            ]
                        )
            header = ["value", "language", "evaluated", "neurons", "written"]
            header += [*interval_header("ppl"), *interval_header("base_ppl")]
            for k in names[1:]:
                header += interval_header(k)
            return ResultTable(header, rows_long)
        own = self.own_estimates(kind)
        rows = [
            [
                lang,
                n,
                *base[self.columns.index(lang)].cells(),
                *(c for v in range(len(own)) for c in own[v][i].cells()),
            ]
            for i, (lang, n) in enumerate(zip(self.languages, self.n_neurons))
        ]
        header = ["language", "neurons", *interval_header("base_ppl")]
        return ResultTable([*header, *(h for v in self.values for h in interval_header(v))], rows)

    def _display_summary(self) -> str:
        return (
            f"neurons of {display.plural(len(self.languages), 'language')} set to "
            f"{', '.join(self.values)}; "
            f"{'every' if self.full else 'own-language'} perplexity evaluated"
        )

    def _display_table(self) -> display.Table:
        """ΔPPL of each language's own text, coloured around 0."""
        header, rows = self.tabulate("delta")
        heat = [[None, None, None, *r[3:]] for r in rows]
        legend = "cells after base_ppl: PPL − base PPL; colour: blue < 0 < red"
        return display.Table(header, rows, heat=heat, diverging=True, legend=legend)

    def plot(self, kind: str = "delta") -> Any:
        """Grouped bars (Fig. 1): per language, the change of its own perplexity for each
        value, with error bars of its confidence interval (where there are windows to
        resample). ``kind="ratio"`` or ``"log_ratio"`` compares languages whose base
        perplexities differ."""
        import plotly.graph_objects as go

        own = self.own(kind)
        intervals = self.own_estimates(kind)
        figure = go.Figure()
        if kind == "ppl":
            figure.add_trace(
                go.Bar(
                    x=self.languages,
                    y=[self.base[self.columns.index(x)] for x in self.languages],
                    error_y=error_bars(
                        [self.base_estimates()[self.columns.index(x)] for x in self.languages]
                    ),
                    name="base",
                )
            )
        for label, row, bounds in zip(self.values, own, intervals):
            figure.add_trace(
                go.Bar(x=self.languages, y=row, error_y=error_bars(bounds), name=label)
            )
        figure.update_layout(
            barmode="group",
            title="Own-language perplexity with the language's neurons set to each value",
            xaxis={"title": "language (neurons set and text evaluated)"},
            yaxis={"title": _LABELS[kind]},
            legend={"title": "value written"},
        )
        return figure

    def plot_matrix(self, value: ValueSpec, kind: str = "log_ratio") -> Any:
        """Heatmap of one value's full matrix (rows: whose neurons, columns: evaluated);
        needs a run with ``full_matrix=True``."""
        from lsn_mech.plots import heatmap

        cells = self.matrix(value, kind)
        if any(c is None for row in cells for c in row):
            raise ValueError(
                "Only the diagonal was evaluated; rerun deactivation_value_ppl(..., "
                "full_matrix=True) for the full matrix."
            )
        label = value_label(value)
        return heatmap(
            cells,  # type: ignore[arg-type]
            self.languages,
            self.columns,
            title=f"Perplexity with neurons set to {label} ({_LABELS[kind]})",
            row_title="neurons set",
            column_title="evaluated",
            colorbar=_LABELS[kind],
            diverging=kind in ("delta", "log_ratio"),
        )

    def __str__(self) -> str:
        own_delta, own_ratio = self.own("delta"), self.own_estimates("ratio")
        ratios_have_intervals = any(e.has_interval for row in own_ratio for e in row)
        header = ["language", "neurons", "base PPL", *self.values]
        rows: list[list[Any]] = []
        for i, (lang, n) in enumerate(zip(self.languages, self.n_neurons)):
            ratios = [own_ratio[v][i] for v in range(len(self.values))]
            cells = [
                f"{own_delta[v][i]:+.2f} (x{r.value:.3f}){bounds_text(r, '.3f')}"
                for v, r in enumerate(ratios)
            ]
            rows.append([lang, n, self.base[self.columns.index(lang)], *cells])
        written = [
            [lang, *("-" if w[i] is None else f"{w[i]:+.4f}" for w in self.written)]
            for i, lang in enumerate(self.languages)
        ]
        return "\n".join(
            [
                "Own-language ΔPPL = PPL − base (ratio) with the language's neurons set to"
                + _interval_note(ratios_have_intervals, self.bootstrap.level)
                + ":",
                table(header, rows, digits=2),
                "Mean value written into the neurons:",
                table(["language", *self.values], written),
            ]
        )


def _interval_note(shown: bool, level: float = 0.95) -> str:
    """What the brackets after a ratio are, when a table prints them."""
    if not shown:
        return ""
    return f" ([low, high]: {level:.0%} interval of the ratio, bootstrap over windows)"


def _masked_mean(
    values: Float[Tensor, "layer d_mlp"], mask: Bool[Tensor, "layer d_mlp"]
) -> float | None:
    """Mean of ``values`` where ``mask`` holds (``None`` for an empty mask)."""
    if not bool(mask.any()):
        return None
    return float(values.double()[mask].mean())


def _statistic_table(
    stats: ActivationStats, label: str, site: str, estimate: Estimate
) -> Float[Tensor, "layer d_mlp lang"]:
    """``statistic(stats, label, site)`` with an error that names the experiment and fix."""
    try:
        return statistic(stats, label, site, estimate)
    except StatisticsMismatchError as error:
        raise StatisticsMismatchError(
            f"deactivation_value_ppl: value {label!r} needs that statistic at site {site!r}. "
            f"{error}"
        ) from None


def deactivation_value_ppl(
    model: HookedModel,
    neurons: LanguageNeurons,
    stats: ActivationStats,
    corpus: Any,
    *,
    values: Sequence[ValueSpec] = DEFAULT_VALUES,
    languages: Sequence[str] | None = None,
    site: str | None = None,
    estimate: Estimate = "histogram",
    full_matrix: bool = False,
    split: str | None = "test",
    max_tokens_per_language: int | None = 20_000,
    window: int = 512,
    batch_size: int = 4,
    progress: bool = True,
    bootstrap: Bootstrap = DEFAULT,
) -> DeactivationValuePPL:
    """Set each language's neurons to each value; perplexity of its own text (Fig. 1).

    For every language ``L`` and value ``v``, ``set_to(model, neurons[L], value)``
    writes into ``L``'s neurons (at their site, in every layer at once, on every token)
    either a constant (``"zero"``: Tang et al.'s deactivation, or a number) or ``L``'s
    own statistic ``v`` of each neuron (``"mean"``, ``"p5"``, ``"p10"``, …), and the
    perplexity of ``L``'s evaluation text is compared with the base perplexity on the
    same token windows.

    Args:
        model: the hooked model.
        neurons: one neuron set per language (any detector).
        stats: statistics of the same model covering every row language. Percentile
            values need `lsn_mech.stats.QuantileAccumulator` histograms at ``site``
            (``estimate="batch_mean"``: a `BatchQuantileAccumulator`); ``"mean"`` needs
            a `MomentAccumulator`.
        corpus: evaluation text (a ``MultilingualCorpus``, or a mapping of language to
            texts or token windows).
        values: what to write (default `DEFAULT_VALUES`: zero, P5, P10, mean).
        languages: rows; default: the neurons' languages that the corpus has.
        site: where the statistics are read; default: the neurons' own site
            (``"mlp_post"``: the value written is a value the neuron really takes there).
            ``site="mlp_pre"`` reproduces Mondal et al.'s reference code, which reads
            statistics of the gate pre-activation and writes them at ``mlp_post``.
        estimate: ``"histogram"`` or ``"batch_mean"`` (see `lsn_mech.stats.percentiles`).
        full_matrix: also evaluate every other language with each row's neurons set
            (``len(languages)`` times the cost); default: the diagonal only, as in Fig. 1.
        split: corpus split to evaluate on.
        max_tokens_per_language: evaluation tokens per language.
        window: tokens per evaluation window.
        batch_size: windows per forward pass.
        progress: show a progress bar.
        bootstrap: how the intervals resample the evaluation windows
            (`DeactivationValuePPL.own_estimates`).

    Raises:
        StatisticsMismatchError: the statistics lack a needed statistic (the message
            names the accumulator to collect), or a row language has no tokens.
        MissingLanguageError: a row language is missing from neurons, statistics or corpus.
        NeuronShapeMismatchError: statistics and neurons come from different model shapes.
    """
    labels = [value_label(v) for v in values]
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"values must be a non-empty list without repeats, got {labels}.")
    if languages is None:
        available = corpus_languages(corpus)
        rows = [x for x in neurons.languages if x in available]
        if not rows:
            raise MissingLanguageError(
                f"The neurons ({', '.join(neurons.languages)}) and the corpus "
                f"({', '.join(available)}) share no language; pass languages=[...]."
            )
    else:
        rows = list(languages)
        if not rows or len(set(rows)) != len(rows):
            raise ValueError(f"languages must be non-empty and without repeats, got {rows}.")
    sets = {x: neurons[x] for x in rows}  # names a language the neurons lack
    check_stats_fit(stats, hook_sites(model), caller="deactivation_value_ppl")
    indices = {x: stats.language_index(x) for x in rows}  # … or the statistics lack
    if (stats.n_layers, stats.d_mlp) != (neurons.n_layers, neurons.d_mlp):
        raise NeuronShapeMismatchError(
            f"The statistics describe {stats.n_layers} layers x {stats.d_mlp} neurons, the "
            f"neurons {neurons.n_layers} x {neurons.d_mlp}; use statistics and neurons of "
            "the same model."
        )
    read_site = site or neurons.site

    # every value tensor before any forward pass: a missing statistic fails fast
    written_values: list[dict[str, float | Float[Tensor, "layer d_mlp"]]] = []
    for label in labels:
        constant = _constant(label)
        if constant is not None:
            written_values.append(dict.fromkeys(rows, constant))
            continue
        per_language = _statistic_table(stats, label, read_site, estimate)
        written_values.append({x: per_language[..., indices[x]].float().cpu() for x in rows})
    masks = {x: sets[x].to_mask() for x in rows}
    written: list[list[float | None]] = []
    for per_row in written_values:
        means: list[float | None] = []
        for x in rows:
            v = per_row[x]
            if isinstance(v, float):
                means.append(v if len(sets[x]) else None)
            else:
                means.append(_masked_mean(v, masks[x]))
        written.append(means)

    columns = list(rows)
    windows = evaluation_windows(
        model, corpus, columns, split=split, window=window, max_tokens=max_tokens_per_language
    )
    per_row = len(columns) if full_matrix else 1
    bar = tqdm(
        total=len(columns) + len(labels) * len(rows) * per_row,
        desc="deactivation values",
        disable=not progress,
    )
    first = window_perplexities(model, windows, columns, batch_size=batch_size, bar=bar)
    base = [result.value for result in first]
    tokens = [result.tokens for result in first]
    ppl: list[list[list[float | None]]] = []
    window_nll: list[list[list[list[float] | None]]] = []
    for label, per_language in zip(labels, written_values):
        plane: list[list[float | None]] = []
        window_plane: list[list[list[float] | None]] = []
        for language in rows:
            bar.set_description(f"deactivation values [{language}={label}]")
            cells: list[float | None] = [None] * len(columns)
            window_cells: list[list[float] | None] = [None] * len(columns)
            targets = columns if full_matrix else [language]
            with set_to(model, sets[language], per_language[language]):
                for target in targets:
                    j = columns.index(target)
                    found = perplexity(model, windows[target], batch_size=batch_size)
                    cells[j] = found.value
                    window_cells[j] = list(found.window_nll)
                    bar.update(1)
            plane.append(cells)
            window_plane.append(window_cells)
        ppl.append(plane)
        window_nll.append(window_plane)
    bar.close()

    source = neurons.provenance
    return DeactivationValuePPL(
        values=labels,
        languages=rows,
        columns=columns,
        base=base,
        ppl=ppl,
        n_neurons=[len(sets[x]) for x in rows],
        written=written,
        tokens=tokens,
        window_tokens=[list(result.window_tokens) for result in first],
        window_base_nll=[list(result.window_nll) for result in first],
        window_nll=window_nll,
        provenance=corpus_provenance(
            corpus,
            model_id=model_id(model),
            method="deactivation_value_ppl",
            parameters=canonical(
                {
                    "values": labels,
                    "stat_site": read_site,
                    "neuron_site": neurons.site,
                    "estimate": estimate,
                    "full_matrix": full_matrix,
                    "split": split,
                    "max_tokens_per_language": max_tokens_per_language,
                    "window": window,
                    "neurons_method": source.method if source else None,
                    "neurons_parameters": dict(source.parameters) if source else {},
                    "stats_model_id": stats.provenance.model_id,
                    "stats_corpus_hash": stats.provenance.corpus_hash,
                    "intervals": bootstrap.to_dict(),
                }
            ),
        ),
    )
