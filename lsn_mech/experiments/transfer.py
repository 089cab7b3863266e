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

Cells hold accuracy and macro-F1 (`ClassificationScores`); `TransferTable.delta`
gives the change against no intervention, the number the paper's finding is about.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from lsn_mech import display
from lsn_mech.corpora.tasks import ClassificationTask
from lsn_mech.errors import LsnMechError
from lsn_mech.evaluate.classification import ClassificationScores, evaluate_classifier
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
    (``accuracy``, ``macro_f1``, ``n``), so the table saves and reloads as JSON.
    """

    rows: list[dict[str, str]]
    columns: list[str]
    cells: list[dict[str, dict[str, Any]]]
    training: dict[str, dict[str, Any]] = field(default_factory=dict)
    provenance: Provenance = field(default_factory=Provenance)

    def score(self, row: int, column: str, metric: str = "accuracy") -> float:
        return float(self.cells[row][column][metric])

    def values(self, metric: str = "accuracy") -> list[list[float]]:
        return [[self.score(i, c, metric) for c in self.columns] for i in range(len(self.rows))]

    def delta(self, metric: str = "accuracy") -> list[list[float]]:
        """Each cell minus the row's no-intervention cell (needs a ``"none"`` column)."""
        if "none" not in self.columns:
            raise TransferExperimentError("delta() needs the 'none' column; include it.")
        return [
            [self.score(i, c, metric) - self.score(i, "none", metric) for c in self.columns]
            for i in range(len(self.rows))
        ]

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
        then one column per intervention holding ``metric``. ``form="long"``: one row
        per (row, intervention) with the row's keys, ``intervention``, ``accuracy``,
        ``macro_f1`` and ``n`` (``metric`` is not needed there)."""
        keys = list(self.rows[0]) if self.rows else []
        if form == "long":
            rows_long = [
                [
                    *(row.get(k) for k in keys),
                    column,
                    self.score(i, column, "accuracy"),
                    self.score(i, column, "macro_f1"),
                    int(self.cells[i][column]["n"]),
                ]
                for i, row in enumerate(self.rows)
                for column in self.columns
            ]
            header = [*keys, "intervention", "accuracy", "macro_f1", "n"]
            return ResultTable(header, rows_long)
        values = self.values(metric)
        return ResultTable(
            [*keys, *self.columns],
            [[*row.values(), *vals] for row, vals in zip(self.rows, values, strict=True)],
        )

    def _display_summary(self) -> str:
        return (
            f"{display.plural(len(self.rows), 'row')} × "
            f"{display.plural(len(self.columns), 'intervention')} "
            f"({', '.join(self.columns)}); accuracy in %"
        )

    def _display_table(self) -> display.Table:
        """Accuracy per cell, coloured by its change against no intervention (when the
        ``"none"`` column is there) or by the accuracy itself."""
        header, rows = self.tabulate()
        keys = len(header) - len(self.columns)
        if "none" in self.columns:
            heat = [[None] * keys + list(r) for r in self.delta()]
            legend = "cells: accuracy; colour: change vs no intervention, blue < 0 < red"
            return display.Table(
                header, rows, heat=heat, diverging=True, legend=legend, label_columns=keys
            )
        heat = display.numeric_heat(rows, first_column=keys)
        return display.Table(header, rows, heat=heat, legend="colour: accuracy", label_columns=keys)

    def plot(self, metric: str = "accuracy", *, delta: bool = True) -> Any:
        """Heatmap of each cell (or its change against no intervention)."""
        from lsn_mech.plots.heatmap import heatmap

        name = metric.replace("_", "-")
        return heatmap(
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

    def __str__(self) -> str:
        header = ["row", *self.columns]
        body = []
        for label, acc, f1 in zip(
            self.row_labels(), self.values(), self.values("macro_f1"), strict=True
        ):
            body.append([label, *(f"{a:.1f} ({f:.1f})" for a, f in zip(acc, f1, strict=True))])
        return "accuracy (macro-F1)\n" + table(header, body)


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
) -> dict[str, dict[str, Any]]:
    cells: dict[str, dict[str, Any]] = {}
    for name, context in contexts.items():
        if all(spec.kind == "none" for spec in context.specs):
            scores = baseline or evaluate_classifier(classifier, rows, batch_size=batch_size)
        else:
            with context:
                scores = evaluate_classifier(classifier, rows, batch_size=batch_size)
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
            evaluate_classifier(classifier, test, batch_size=batch_size)
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
    )
    bar.close()
    return TransferTable(
        rows=rows,
        columns=list(interventions),
        cells=cells,
        training={classifier.setup or "base": _training_summary(classifier)},
        provenance=_provenance(task, "intervention_table", interventions, site, read_site),
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
) -> TransferTable:
    """Tables 3/7/8: finetune with masked LoRA on each setup's neurons, then intervene.

    ``"none"`` and ``"source"`` are trained once and evaluated on every target;
    ``"target"``, ``"both"`` and ``"random"`` are trained once per target. The
    test-time interventions use ``neurons`` (``detector`` names them in the rows).
    ``base``: an already finetuned ``"none"`` classifier (e.g. the one of
    `intervention_table`) to reuse instead of training it again. ``report_to`` /
    ``run_dir``: each classifier trained here reports as ``run_dir/classifier_<setup>``
    (``classifier_target-vi`` for a per-target setup; see `finetune_classifier`).
    """
    chosen = _check_languages(task, languages)
    _check_neurons({detector: neurons}, [task.source, *chosen], stats)
    check_report_to(report_to)
    for setup in setups:
        if setup not in SETUPS:
            raise TransferExperimentError(
                f"Unknown setup {setup!r}; choose from {', '.join(SETUPS)}."
            )
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
        provenance=_provenance(task, "finetuning_table", interventions, site, read_site),
    )


def _provenance(
    task: ClassificationTask,
    method: str,
    interventions: Sequence[str],
    site: str,
    read_site: str | None,
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
        },
    )
