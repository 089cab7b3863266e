"""Zero-shot cross-lingual transfer with language neurons (Mondal et al., 2025).

Two experiments over a `ClassificationTask` (train in the source language, test in
the targets):

* `intervention_table` — Tables 1/4: the classifier finetuned on the source is
  evaluated on each target with that target's neurons set to a statistic of the
  target's own activations (mean, P5…P95), to zero or to a constant, or left alone;
  one block per detector (LAPE, Act-Prob-90p, ...).
* `finetuning_table` — Tables 3/7/8: masked LoRA on the source's, the target's, both
  languages' or random neurons during finetuning, then the same test-time
  interventions.

Cells hold accuracy and macro-F1 (`ClassificationScores`) with percentile-bootstrap
intervals over the test rows and each row's predictions; `TransferTable.delta` gives the
change against no intervention, the number the paper's finding is about, and
`TransferTable.change` decides whether it is real by a paired bootstrap over the same
test rows. ``finetuning_table(..., seeds=)`` trains every classifier once per seed and
pools the cells (`pool_seeds`: mean ± sd over seeds, per-seed values kept).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from lsn_mech import display, intervals
from lsn_mech.corpora.tasks import ClassificationTask
from lsn_mech.errors import LsnMechError
from lsn_mech.evaluate.classification import (
    ClassificationScores,
    classification_change,
    evaluate_classifier,
    pooled_scores,
)
from lsn_mech.experiments._results import Result, ResultTable, canonical, table
from lsn_mech.interventions import (
    Intervention,
    ParsedValue,
    UnknownInterventionError,
    apply,
    parse_value,
)
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.provenance import Provenance
from lsn_mech.stats.container import ActivationStats
from lsn_mech.stats.percentiles import Estimate, statistic_value
from lsn_mech.training.classifier import ClassifierConfig, TransferClassifier, finetune_classifier
from lsn_mech.training.tracking import check_report_to

__all__ = [
    "ALL_INTERVENTIONS",
    "INTERVENTIONS",
    "SETUPS",
    "TransferTable",
    "finetuning_table",
    "intervention_table",
    "intervention_value",
    "pool_seeds",
    "setup_neurons",
]

INTERVENTIONS = ("none", "mean", "p90", "zero", "p10")
"""Columns of Mondal et al. Tables 1–3: No Int, Int (mean), Int P90, Int 0, Int P10."""

ALL_INTERVENTIONS = ("none", "mean", "p75", "p90", "p95", "zero", "p5", "p10", "p25")
"""Columns of the appendix Tables 4–5."""

SETUPS = ("none", "source", "target", "both", "random")
"""Finetuning setups: attention LoRA + head only, plus masked LoRA on the source's,
the target's, both languages' or random neurons (Tables 3, 7, 8)."""


class TransferExperimentError(LsnMechError, ValueError):
    """An intervention, setup or language the experiment cannot run."""


def intervention_value(
    stats: ActivationStats,
    language: str,
    name: str,
    *,
    site: str = "mlp_post",
    read_site: str | None = None,
    estimate: Estimate = "histogram",
) -> Any:
    """What ``name`` writes into ``language``'s neurons (``None`` for ``"none"``).

    ``"zero"`` and numbers (``"1"``, ``"-10"``) are constants; ``"mean"`` and
    ``"p<q>"`` are the language's own statistic read at ``read_site`` (default: the
    written ``site``; ``read_site="mlp_pre"`` with ``site="mlp_post"`` is the
    reference code's pre-into-post mismatch).
    """
    parsed = _parse(name)
    if parsed.is_none:
        return None
    if parsed.constant is not None:
        return parsed.constant
    return statistic_value(
        stats, language, name, read_site=read_site or site, write_site=site, estimate=estimate
    )


def _parse(name: str) -> ParsedValue:
    """`parse_value`, with the experiment's error type."""
    try:
        return parse_value(name)
    except UnknownInterventionError as error:
        raise TransferExperimentError(str(error)) from None


@dataclass
class TransferTable(Result):
    """Scores per (setup, detector, language) row and intervention column.

    ``cells[i][column]`` is the `ClassificationScores` of ``rows[i]`` as a dict
    (``accuracy``, ``macro_f1``, ``n``, their ``intervals``, the rows' ``predictions``
    and ``gold``; ``seeds`` and ``per_seed`` when pooled over seeds), so the table saves
    and reloads as JSON. Tables saved before intervals existed hold only ``accuracy``,
    ``macro_f1`` and ``n``: they still load, and report points without intervals.
    The resampling bootstrap are in ``provenance.parameters["intervals"]``.
    """

    rows: list[dict[str, str]]
    columns: list[str]
    cells: list[dict[str, dict[str, Any]]]
    training: dict[str, dict[str, Any]] = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)

    def score(self, row: int, column: str, metric: str = "accuracy") -> float:
        return float(self.cells[row][column][metric])

    def scores(self, row: int, column: str) -> ClassificationScores:
        """The cell as `ClassificationScores` (intervals, per-row predictions, seeds)."""
        return ClassificationScores.from_dict(self.cells[row][column])

    def interval(self, row: int, column: str, metric: str = "accuracy") -> intervals.Estimate:
        """The cell's ``metric`` with its interval (no bounds in a pre-interval file)."""
        return self.scores(row, column).interval(metric)

    @property
    def bootstrap(self) -> intervals.Bootstrap:
        """How the intervals and paired tests resample (from the provenance)."""
        return intervals.Bootstrap.from_dict(self.provenance.parameters.get("intervals"))

    @property
    def seeds(self) -> list[int]:
        """The training seeds the cells are pooled over (empty: one training run)."""
        return [int(s) for s in self.provenance.parameters.get("seeds", [])]

    def values(self, metric: str = "accuracy") -> list[list[float]]:
        return [[self.score(i, c, metric) for c in self.columns] for i in range(len(self.rows))]

    def delta(self, metric: str = "accuracy") -> list[list[float]]:
        """Each cell minus the row's no-intervention cell (needs a ``"none"`` column)."""
        self._need_none("delta()")
        return [
            [self.score(i, c, metric) - self.score(i, "none", metric) for c in self.columns]
            for i in range(len(self.rows))
        ]

    def _need_none(self, what: str) -> None:
        if "none" not in self.columns:
            raise TransferExperimentError(f"{what} needs the 'none' column; include it.")

    def change(self, row: int, column: str, metric: str = "accuracy") -> intervals.PairedTest:
        """Does ``column`` change ``metric`` against no intervention on ``rows[row]``?

        The difference in percentage points with its interval and the two-sided p-value
        of a paired bootstrap over the same test rows (`classification_change`); cells
        without per-row predictions (an old file) give the difference with no interval
        and a NaN p-value, never a decision.
        """
        self._need_none("change()")
        return self._paired((row, column), (row, "none"), metric)

    def compare(
        self, row: int, other: int, column: str = "none", metric: str = "accuracy"
    ) -> intervals.PairedTest:
        """``rows[row]`` against ``rows[other]`` in one column, paired over the same test
        rows (e.g. finetuning setup "target" against "none" on one language); both rows
        must be evaluated on the same test set."""
        return self._paired((row, column), (other, column), metric)

    def _paired(
        self, at: tuple[int, str], reference_at: tuple[int, str], metric: str
    ) -> intervals.PairedTest:
        """The paired test of two cells, computed once per cell pair (tables print each
        test several times); a cell replaced since is tested again."""
        cell_data = self.cells[at[0]][at[1]]
        reference_data = self.cells[reference_at[0]][reference_at[1]]
        bootstrap = self.bootstrap
        cache = self.__dict__.setdefault("_tests", {})
        key = (at, reference_at, metric, bootstrap)
        if key in cache and cache[key][0] is cell_data and cache[key][1] is reference_data:
            return cache[key][2]
        cell = ClassificationScores.from_dict(cell_data)
        reference = ClassificationScores.from_dict(reference_data)
        if not (cell.has_rows and reference.has_rows):
            value = getattr(cell, metric) - getattr(reference, metric)
            test = intervals.PairedTest(
                intervals.Estimate.point(value), math.nan, "none (no per-row predictions)"
            )
        else:
            test = classification_change(cell, reference, metric, bootstrap=bootstrap)
        cache[key] = (cell_data, reference_data, test)
        return test

    def changes(self, metric: str = "accuracy") -> list[list[intervals.PairedTest]]:
        """`change` of every cell (the ``"none"`` column is 0 with p = 1)."""
        return [[self.change(i, c, metric) for c in self.columns] for i in range(len(self.rows))]

    def row_labels(self) -> list[str]:
        return [" / ".join(v for v in row.values() if v) for row in self.rows]

    def find(self, **keys: str) -> int:
        """Index of the row whose keys match, e.g. ``find(detector="lape", language="vi")``."""
        for i, row in enumerate(self.rows):
            if all(row.get(k) == v for k, v in keys.items()):
                return i
        raise KeyError(f"No row with {keys}; rows are {self.row_labels()}.")

    table_forms = ("wide", "long")

    def tabulate(self, metric: str = "accuracy", *, form: str = "wide") -> ResultTable:
        """``form="wide"``: one row per (setup, detector, language) row, its keys first,
        then per intervention ``metric`` and its bounds (``none, none_low, none_high,
        …``). ``form="long"``: one row per (row, intervention) with the row's keys,
        ``intervention``, ``accuracy`` and ``macro_f1`` with their bounds, ``n``, the
        paired change in accuracy against ``none`` with its bounds and p-value (when the
        ``"none"`` column is there), and each metric's sd over seeds (pooled tables)."""
        keys = list(self.rows[0]) if self.rows else []
        if form == "long":
            return self._long(keys)
        header = [*keys]
        for column in self.columns:
            header += intervals.interval_header(column)
        body = [
            [*row.values(), *(v for c in self.columns for v in self.interval(i, c, metric).cells())]
            for i, row in enumerate(self.rows)
        ]
        return ResultTable(header, body)

    def _long(self, keys: list[str]) -> ResultTable:
        header = [*keys, "intervention"]
        header += [*intervals.interval_header("accuracy"), *intervals.interval_header("macro_f1")]
        header.append("n")
        tested = "none" in self.columns
        if tested:
            header += [*intervals.interval_header("accuracy_change"), "accuracy_p_value"]
        pooled = bool(self.seeds)
        if pooled:
            header += ["accuracy_sd", "macro_f1_sd"]
        body = []
        for i, row in enumerate(self.rows):
            for column in self.columns:
                scores = self.scores(i, column)
                line = [*(row.get(k) for k in keys), column]
                line += [*scores.interval("accuracy").cells(), *scores.interval("macro_f1").cells()]
                line.append(scores.n)
                if tested:
                    test = self.change(i, column)
                    line += [*test.difference.cells(), test.p_value]
                if pooled:
                    line += [_sd(scores, "accuracy"), _sd(scores, "macro_f1")]
                body.append(line)
        return ResultTable(header, body)

    def _display_summary(self) -> str:
        return (
            f"{display.plural(len(self.rows), 'row')} × "
            f"{display.plural(len(self.columns), 'intervention')} "
            f"({', '.join(self.columns)}); accuracy in % {self._interval_note()}"
        )

    def _interval_note(self) -> str:
        """Which interval the cells show, and over what."""
        bootstrap = self.bootstrap
        seeds = f"mean ± sd over seeds {', '.join(map(str, self.seeds))}; " if self.seeds else ""
        return (
            f"({seeds}[{bootstrap.level:.0%} interval: percentile bootstrap over the test rows, "
            f"{bootstrap.resamples} resamples, seed {bootstrap.seed}])"
        )

    def _cell_text(self, row: int, column: str, metric: str) -> str:
        """The cell as printed: value [interval], ``*`` when it differs from ``none``."""
        text = self.scores(row, column).format(metric)
        if (
            column != "none"
            and "none" in self.columns
            and self.change(row, column, metric).significant
        ):
            text += "*"
        return text

    def _display_table(self) -> display.Table:
        """Accuracy per cell with its interval, coloured by its change against no
        intervention (when the ``"none"`` column is there) or by the accuracy itself."""
        keys = list(self.rows[0]) if self.rows else []
        header = [*keys, *self.columns]
        rows = [
            [*row.values(), *(self._cell_text(i, c, "accuracy") for c in self.columns)]
            for i, row in enumerate(self.rows)
        ]
        blank = [None] * len(keys)
        if "none" in self.columns:
            heat = [blank + list(r) for r in self.delta()]
            legend = (
                "cells: accuracy [interval]; * differs from none (paired bootstrap over the "
                "same test rows); colour: change vs no intervention, blue < 0 < red"
            )
            return display.Table(
                header, rows, heat=heat, diverging=True, legend=legend, label_columns=len(keys)
            )
        heat = [blank + list(r) for r in self.values()]
        return display.Table(
            header, rows, heat=heat, legend="colour: accuracy", label_columns=len(keys)
        )

    def _hover(self, metric: str, delta: bool) -> list[list[str]]:
        """Hover text per cell: the value with its interval, and the paired change."""
        grid = []
        for i in range(len(self.rows)):
            line = []
            for column in self.columns:
                text = f"{metric}: {self.scores(i, column).format(metric, '.2f')}"
                if delta and "none" in self.columns and column != "none":
                    test = self.change(i, column, metric)
                    text += (
                        f"<br>change vs none: {test.difference.format('+.2f')}"
                        f"<br>p = {test.p_value:.3g} ({test.test})"
                    )
                line.append(text)
            grid.append(line)
        return grid

    def plot(self, metric: str = "accuracy", *, delta: bool = True) -> Any:
        """Heatmap of each cell (or its change against no intervention); the hover text
        holds each cell's interval and its paired test against ``none``."""
        from lsn_mech.plots.heatmap import heatmap

        name = metric.replace("_", "-")
        figure = heatmap(
            self.delta(metric) if delta else self.values(metric),
            self.row_labels(),
            self.columns,
            title=f"{self.provenance.method or 'transfer'}: {name}"
            + (" change vs no intervention" if delta else ""),
            row_title="row",
            column_title="intervention",
            colorbar=("Δ " if delta else "") + name,
            text_format=".1f",
            diverging=delta,
        )
        figure.update_traces(
            customdata=self._hover(metric, delta),
            hovertemplate="row=%{y}<br>intervention=%{x}<br>%{customdata}<extra></extra>",
        )
        return figure

    def plot_intervals(self, metric: str = "accuracy", *, delta: bool = False) -> Any:
        """Bars with error bars: per row, one bar per intervention holding ``metric`` and
        its interval, or (``delta=True``) its change against ``none`` with the paired
        interval, so a bar whose error bar crosses 0 is no decided change."""
        import plotly.graph_objects as go

        labels = self.row_labels()
        figure = go.Figure()
        for column in self.columns:
            if delta and column == "none":
                continue
            found = [
                self.change(i, column, metric).difference
                if delta
                else self.interval(i, column, metric)
                for i in range(len(self.rows))
            ]
            figure.add_trace(
                go.Bar(
                    x=labels,
                    y=[e.value for e in found],
                    name=column,
                    error_y={
                        "type": "data",
                        "array": [e.high - e.value for e in found],
                        "arrayminus": [e.value - e.low for e in found],
                    },
                    hovertext=[e.format(".2f") for e in found],
                )
            )
        name = metric.replace("_", "-")
        figure.update_layout(
            barmode="group",
            title=f"{self.provenance.method or 'transfer'}: {name}"
            + (" change vs no intervention" if delta else "")
            + f" with {self.bootstrap.level:.0%} intervals",
            xaxis={"title": "row"},
            yaxis={"title": ("Δ " if delta else "") + name + (" (points)" if delta else " (%)")},
            legend={"title": "intervention"},
        )
        return figure

    def __str__(self) -> str:
        header = ["row", *self.columns]
        lines = [f"accuracy (macro-F1) in % {self._interval_note()}"]
        for metric in ("accuracy", "macro_f1"):
            body = [
                [label, *(self._cell_text(i, c, metric) for c in self.columns)]
                for i, label in enumerate(self.row_labels())
            ]
            lines.append(f"{metric.replace('_', '-')}:\n" + table(header, body))
        if "none" in self.columns and len(self.columns) > 1:
            lines.append(
                "* differs from none at the interval's level: paired bootstrap over the same "
                "test rows, two-sided (TransferTable.change)"
            )
        return "\n".join(lines)


def _sd(scores: ClassificationScores, metric: str) -> float:
    summary = scores.seed_summary(metric)
    return summary.sd if summary is not None else math.nan


def pool_seeds(
    tables: Mapping[int, TransferTable], *, bootstrap: intervals.Bootstrap | None = None
) -> TransferTable:
    """One table from tables of the same rows and columns, each from classifiers trained
    with one seed: every cell pooled (`pooled_scores`: the mean over seeds, mean ± sd and
    per-seed values in ``per_seed``, the interval over the test rows). ``training`` keys
    gain `` seed <s>``; ``bootstrap`` defaults to the first table's."""
    if not tables:
        raise TransferExperimentError("pool_seeds needs at least one seed's table.")
    first = next(iter(tables.values()))
    chosen = bootstrap or first.bootstrap
    for seed, other in tables.items():
        if other.rows != first.rows or other.columns != first.columns:
            raise TransferExperimentError(
                f"The table of seed {seed} has other rows or columns than the first; pool "
                "tables of the same experiment run with different seeds only."
            )
    cells = [
        {
            column: pooled_scores(
                {seed: t.scores(i, column) for seed, t in tables.items()}, bootstrap=chosen
            ).to_dict()
            for column in first.columns
        }
        for i in range(len(first.rows))
    ]
    training = {
        f"{key} seed {seed}": summary
        for seed, t in tables.items()
        for key, summary in t.training.items()
    }
    parameters = {
        **first.provenance.parameters,
        "intervals": chosen.to_dict(),
        "seeds": [int(s) for s in tables],
    }
    return TransferTable(
        rows=[dict(r) for r in first.rows],
        columns=list(first.columns),
        cells=cells,
        training=training,
        provenance=dataclasses.replace(first.provenance, parameters=parameters),
    )


def _check_languages(task: ClassificationTask, languages: Sequence[str] | None) -> list[str]:
    chosen = list(languages) if languages is not None else task.targets
    for language in chosen:
        task.test_set(language)
    if not chosen:
        raise TransferExperimentError(
            "No target language to evaluate: build the task with targets or pass languages."
        )
    return chosen


def _check_neurons(
    neurons: Mapping[str, LanguageNeurons], languages: Sequence[str], stats: ActivationStats
) -> None:
    for detector, sets in neurons.items():
        missing = [lang for lang in languages if lang not in sets]
        if missing:
            raise TransferExperimentError(
                f"The {detector!r} neurons have no set for {missing}; detect them on "
                "statistics that include those languages."
            )
    missing = [lang for lang in languages if lang not in stats]
    if missing:
        raise TransferExperimentError(
            f"The statistics have no language {missing}; collect them with those languages."
        )


def _evaluate_row(
    classifier: TransferClassifier,
    rows: Any,
    contexts: Mapping[str, Intervention],
    *,
    batch_size: int,
    baseline: ClassificationScores | None,
    bootstrap: intervals.Bootstrap,
) -> dict[str, dict[str, Any]]:
    cells: dict[str, dict[str, Any]] = {}
    for name, context in contexts.items():
        if all(spec.kind == "none" for spec in context.specs):
            scores = baseline or evaluate_classifier(
                classifier, rows, batch_size=batch_size, bootstrap=bootstrap
            )
        else:
            with context:
                scores = evaluate_classifier(
                    classifier, rows, batch_size=batch_size, bootstrap=bootstrap
                )
        cells[name] = scores.to_dict()
    return cells


def _intervention_rows(
    classifier: TransferClassifier,
    task: ClassificationTask,
    neurons: Mapping[str, LanguageNeurons],
    stats: ActivationStats,
    *,
    setup: str,
    languages: Sequence[str],
    interventions: Sequence[str],
    site: str,
    read_site: str | None,
    estimate: Estimate,
    batch_size: int,
    bar: Any,
    bootstrap: intervals.Bootstrap,
) -> tuple[list[dict[str, str]], list[dict[str, dict[str, Any]]]]:
    rows, cells = [], []
    parsed = {name: _parse(name) for name in interventions}
    for language in languages:
        test = task.test_set(language)
        # every statistic is read here, before any evaluation: a missing one fails fast
        contexts = {
            detector: {
                name: apply(
                    classifier.bridge,
                    word.spec(
                        sets[language],
                        language=language,
                        site=site,
                        read_site=read_site,
                        estimate=estimate,
                    ),
                    stats=stats,
                )
                for name, word in parsed.items()
            }
            for detector, sets in neurons.items()
        }
        baseline = (
            evaluate_classifier(classifier, test, batch_size=batch_size, bootstrap=bootstrap)
            if "none" in interventions
            else None
        )
        for detector in neurons:
            bar.set_description(f"transfer {setup or 'eval'} {detector} {language}")
            cells.append(
                _evaluate_row(
                    classifier,
                    test,
                    contexts[detector],
                    batch_size=batch_size,
                    baseline=baseline,
                    bootstrap=bootstrap,
                )
            )
            rows.append({"setup": setup, "detector": detector, "language": language})
            bar.update(1)
    return rows, cells


def intervention_table(
    classifier: TransferClassifier,
    task: ClassificationTask,
    neurons: Mapping[str, LanguageNeurons],
    stats: ActivationStats,
    *,
    interventions: Sequence[str] = INTERVENTIONS,
    languages: Sequence[str] | None = None,
    site: str = "mlp_post",
    read_site: str | None = None,
    estimate: Estimate = "histogram",
    batch_size: int = 16,
    progress: bool = True,
    bootstrap: intervals.Bootstrap = intervals.DEFAULT,
) -> TransferTable:
    """Tables 1/4: target-language accuracy with that language's neurons set to each value.

    Args:
        classifier: finetuned on ``task``'s source (`finetune_classifier`).
        task: gives the test rows of each language.
        neurons: ``{detector name: LanguageNeurons}``, e.g. ``{"lape": ..., "act-prob-90p": ...}``.
        stats: statistics of the *base* model with the languages' percentiles
            (collected with a `QuantileAccumulator` at ``read_site or site``).
        interventions: column names (see `intervention_value`).
        languages: evaluated languages (default: the task's targets).
        site: where the values are written (the neurons' activations at ``mlp_post``).
        read_site: where the statistics are read (default ``site``).
        estimate: ``"histogram"`` percentiles (bounded error) or the reference code's
            ``"batch_mean"`` (biased; needs a `BatchQuantileAccumulator`).
        bootstrap: resamples, level and seed of the cells' bootstrap intervals over the
            test rows and of `TransferTable.change`'s paired tests.
    """
    chosen = _check_languages(task, languages)
    _check_neurons(neurons, chosen, stats)
    bar = tqdm(total=len(chosen) * len(neurons), disable=not progress, leave=False)
    rows, cells = _intervention_rows(
        classifier,
        task,
        neurons,
        stats,
        setup=classifier.setup,
        languages=chosen,
        interventions=interventions,
        site=site,
        read_site=read_site,
        estimate=estimate,
        batch_size=batch_size,
        bar=bar,
        bootstrap=bootstrap,
    )
    bar.close()
    return TransferTable(
        rows=rows,
        columns=list(interventions),
        cells=cells,
        training={classifier.setup or "base": _training_summary(classifier)},
        provenance=_provenance(
            task, "intervention_table", interventions, site, read_site, bootstrap
        ),
    )


def setup_neurons(
    setup: str, neurons: LanguageNeurons, source: str, target: str, *, seed: int = 0
) -> NeuronSet | None:
    """The neurons masked LoRA may change in ``setup`` (``None``: attention LoRA only).

    ``"random"`` draws, per layer, as many neurons as the target's set holds
    (uniformly, seeded), the control of Table 8.
    """
    if setup == "none":
        return None
    if setup == "source":
        return neurons[source]
    if setup == "target":
        return neurons[target]
    if setup == "both":
        return neurons[source] | neurons[target]
    if setup == "random":
        return neurons[target].random_like(seed)
    raise TransferExperimentError(f"Unknown setup {setup!r}; choose from {', '.join(SETUPS)}.")


def _training_summary(classifier: TransferClassifier) -> dict[str, Any]:
    record = classifier.record
    return {
        "steps": record.steps,
        "seconds": round(record.seconds, 2),
        "trainable_parameters": record.trainable_parameters,
        "mlp_neurons": record.mlp_neurons,
        "first_loss": record.losses[0] if record.losses else None,
        "last_loss": record.losses[-1] if record.losses else None,
    }


def finetuning_table(
    model: Any,
    task: ClassificationTask,
    neurons: LanguageNeurons,
    stats: ActivationStats,
    *,
    detector: str = "lape",
    setups: Sequence[str] = SETUPS,
    interventions: Sequence[str] = INTERVENTIONS,
    languages: Sequence[str] | None = None,
    config: ClassifierConfig | None = None,
    site: str = "mlp_post",
    read_site: str | None = None,
    estimate: Estimate = "histogram",
    base: TransferClassifier | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
    report_to: str = "none",
    run_dir: str | os.PathLike[str] = "runs",
    seeds: Sequence[int] | None = None,
    bootstrap: intervals.Bootstrap = intervals.DEFAULT,
) -> TransferTable:
    """Tables 3/7/8: finetune with masked LoRA on each setup's neurons, then intervene.

    ``"none"`` and ``"source"`` are trained once and evaluated on every target;
    ``"target"``, ``"both"`` and ``"random"`` are trained once per target. The
    test-time interventions use ``neurons`` (``detector`` names them in the rows).
    ``base``: an already finetuned ``"none"`` classifier (e.g. the one of
    `intervention_table`) to reuse instead of training it again. ``report_to`` /
    ``run_dir``: each classifier trained here reports as ``run_dir/classifier_<setup>``
    (``classifier_target-vi`` for a per-target setup; see `finetune_classifier`).

    ``seeds``: train every classifier once per seed (the training order, the head's
    initialisation and the ``"random"`` setup's neurons all follow it; ``base`` stands
    for the run of ``seed`` when that is among them) and pool the cells with
    `pool_seeds`: mean ± sd over seeds, the per-seed values, and the interval over the
    test rows; runs then report under ``run_dir/seed_<s>``. ``bootstrap``: resamples,
    level and seed of the intervals and paired tests.
    """
    chosen = _check_languages(task, languages)
    _check_neurons({detector: neurons}, [task.source, *chosen], stats)
    check_report_to(report_to)
    for setup in setups:
        if setup not in SETUPS:
            raise TransferExperimentError(
                f"Unknown setup {setup!r}; choose from {', '.join(SETUPS)}."
            )
    options = {
        "detector": detector,
        "setups": setups,
        "interventions": interventions,
        "languages": chosen,
        "site": site,
        "read_site": read_site,
        "estimate": estimate,
        "batch_size": batch_size,
        "progress": progress,
        "report_to": report_to,
        "bootstrap": bootstrap,
    }
    if seeds is None:
        return _finetuning_run(
            model,
            task,
            neurons,
            stats,
            config=config,
            base=base,
            seed=seed,
            run_dir=run_dir,
            **options,
        )
    chosen_seeds = [int(s) for s in seeds]
    if not chosen_seeds or len(set(chosen_seeds)) != len(chosen_seeds):
        raise TransferExperimentError(
            f"seeds {list(seeds)} must name at least one seed, each once; e.g. seeds=[0, 1, 2]."
        )
    if base is not None and seed not in chosen_seeds:
        base.release()
        base = None
    tables = {
        s: _finetuning_run(
            model,
            task,
            neurons,
            stats,
            config=dataclasses.replace(config or ClassifierConfig(), seed=s),
            base=base if s == seed else None,
            seed=s,
            run_dir=os.path.join(run_dir, f"seed_{s}"),
            **options,
        )
        for s in chosen_seeds
    }
    return pool_seeds(tables, bootstrap=bootstrap)


def _finetuning_run(
    model: Any,
    task: ClassificationTask,
    neurons: LanguageNeurons,
    stats: ActivationStats,
    *,
    detector: str,
    setups: Sequence[str],
    interventions: Sequence[str],
    languages: list[str],
    config: ClassifierConfig | None,
    site: str,
    read_site: str | None,
    estimate: Estimate,
    base: TransferClassifier | None,
    seed: int,
    batch_size: int,
    progress: bool,
    report_to: str,
    run_dir: str | os.PathLike[str],
    bootstrap: intervals.Bootstrap,
) -> TransferTable:
    """`finetuning_table` with one training seed (``seed``; ``config.seed`` trains)."""
    chosen = languages
    rows: list[dict[str, str]] = []
    cells: list[dict[str, dict[str, Any]]] = []
    training: dict[str, dict[str, Any]] = {}
    bar = tqdm(total=len(setups) * len(chosen), disable=not progress, leave=False)
    shared: dict[str, TransferClassifier] = {"none": base} if base is not None else {}
    if base is not None:
        training["none"] = _training_summary(base)
    for setup in setups:
        for language in chosen:
            key = setup if setup in ("none", "source") else f"{setup}:{language}"
            classifier = shared.get(key)
            if classifier is None:
                bar.set_description(f"transfer finetune {key}")
                classifier = finetune_classifier(
                    model,
                    task,
                    setup_neurons(setup, neurons, task.source, language, seed=seed),
                    config=config,
                    setup=setup,
                    progress=progress,
                    report_to=report_to,
                    run_dir=run_dir,
                    run_name=f"classifier_{key.replace(':', '-')}",
                )
                training[key] = _training_summary(classifier)
                if key == setup:
                    shared[key] = classifier
            more_rows, more_cells = _intervention_rows(
                classifier,
                task,
                {detector: neurons},
                stats,
                setup=setup,
                languages=[language],
                interventions=interventions,
                site=site,
                read_site=read_site,
                estimate=estimate,
                batch_size=batch_size,
                bar=bar,
                bootstrap=bootstrap,
            )
            rows += more_rows
            cells += more_cells
            if key != setup:
                classifier.release()
        if setup in shared:
            shared.pop(setup).release()
    if base is not None:
        base.release()
    bar.close()
    return TransferTable(
        rows=rows,
        columns=list(interventions),
        cells=cells,
        training=training,
        provenance=_provenance(task, "finetuning_table", interventions, site, read_site, bootstrap),
    )


def _provenance(
    task: ClassificationTask,
    method: str,
    interventions: Sequence[str],
    site: str,
    read_site: str | None,
    bootstrap: intervals.Bootstrap,
) -> Provenance:
    return Provenance(
        corpus=task.name,
        method=method,
        parameters={
            "source": task.source,
            "interventions": list(interventions),
            "site": site,
            "read_site": read_site or site,
            "task": canonical(task.metadata),
            "intervals": bootstrap.to_dict(),
        },
    )
