"""``report.md`` and figures of the transfer job (`lsn_mech.pipelines.transfer`)."""

from __future__ import annotations

import json
import math
from typing import Any

from lsn_mech.files import atomic_write_text
from lsn_mech.pipelines.report import figure_markdown, skipped_images_line
from lsn_mech.pipelines.report_html import write_report_html
from lsn_mech.plots.export import save_figures
from lsn_mech.results import table

__all__ = ["write_transfer_report"]


def _draw(report: Any) -> dict[str, Any]:
    """Every figure of the report by file stem, in the report's order."""
    drawn = {}
    if report.overlap is not None:
        drawn["method_overlap"] = report.overlap.plot()
    for name, result in report.ppl.items():
        drawn[f"deactivation_ppl_{name}"] = result.plot()
    drawn["interventions"] = report.interventions.plot()
    drawn["interventions_intervals"] = _interval_plot(report.interventions)
    if report.finetuning is not None:
        drawn["finetuning"] = report.finetuning.plot()
        drawn["finetuning_intervals"] = _interval_plot(report.finetuning)
    return drawn


def _interval_plot(result: Any) -> Any:
    """Changes against no intervention with their paired intervals (or, without a
    ``"none"`` column, the accuracies with theirs)."""
    return result.plot_intervals("accuracy", delta="none" in result.columns)


def _block(text: Any) -> str:
    return f"```\n{text}\n```\n"


def _task_section(task: Any) -> list[str]:
    summary = task.summary()
    rows = [["train " + task.source, *summary["train"].values()]]
    rows += [[f"test {lang}", *counts.values()] for lang, counts in summary["test"].items()]
    return [
        f"## Task: {task.name}\n",
        f"Labels: {', '.join(task.labels)}. Held-out books: "
        f"{json.dumps(task.metadata.get('test_books', {}), ensure_ascii=False)}.\n",
        _block(table(["split", *task.labels], rows)),
    ]


def _test_note(result: Any) -> str:
    """The test behind every decision line, with its settings."""
    bootstrap = result.bootstrap
    pooled = (
        f" Cells are the mean over seeds {', '.join(map(str, result.seeds))} (± their sd); "
        "the intervals and tests resample the test rows with every seed's prediction of a "
        "row kept together, so the sd, not the interval, shows training's spread."
        if result.seeds
        else ""
    )
    return (
        f"Intervals: {bootstrap.level:.0%} percentile bootstrap over the test rows "
        f"({bootstrap.resamples} resamples, seed {bootstrap.seed}). An intervention *changes "
        "accuracy* when the interval of its change against no intervention excludes 0: "
        "paired bootstrap over the same test rows, two-sided (p-value of no change "
        f"alongside; `TransferTable.change`).{pooled}\n"
    )


def _decision(test: Any) -> str:
    if math.isnan(test.p_value):
        return "not tested (no per-row predictions)"
    if not test.significant:
        return "no decided change"
    return "raises accuracy" if test.difference.value > 0 else "lowers accuracy"


def _delta_lines(result: Any) -> list[str]:
    """Per row and intervention: the change in accuracy against no intervention with its
    paired interval, p-value and decision; then how many changes are decided."""
    if "none" not in result.columns:
        return []
    rows, decided, tested = [], 0, 0
    for i, label in enumerate(result.row_labels()):
        for column in result.columns:
            if column == "none":
                continue
            test = result.change(i, column)
            verdict = _decision(test)
            tested += 1
            decided += verdict in ("raises accuracy", "lowers accuracy")
            p_value = "–" if math.isnan(test.p_value) else f"{test.p_value:.3g}"
            rows.append([label, column, test.difference.format("+.1f"), p_value, verdict])
    header = ["row", "intervention", "Δ accuracy (points) [interval]", "p", "decision"]
    return [
        _test_note(result),
        _block(table(header, rows)),
        f"{decided} of {tested} interventions change accuracy at the "
        f"{result.bootstrap.level:.0%} level (paired bootstrap over the same test rows).\n",
    ]


def _setup_lines(result: Any) -> list[str]:
    """Each finetuning setup against plain finetuning (setup "none") on the same target,
    without test-time intervention: does finetuning on language neurons help?"""
    column = "none" if "none" in result.columns else result.columns[0]
    rows = []
    for i, row in enumerate(result.rows):
        if row.get("setup") == "none":
            continue
        try:
            reference = result.find(
                setup="none", detector=row.get("detector"), language=row.get("language")
            )
        except KeyError:
            continue
        test = result.compare(i, reference, column)
        p_value = "–" if math.isnan(test.p_value) else f"{test.p_value:.3g}"
        label = f"{row.get('setup')} / {row.get('language')}"
        rows.append([label, test.difference.format("+.1f"), p_value, _decision(test)])
    if not rows:
        return []
    header = ["setup / target", "Δ accuracy vs setup none [interval]", "p", "decision"]
    return [
        f"Setups against plain finetuning (setup none), intervention {column!r}: paired "
        "bootstrap over the same test rows, two-sided.\n",
        _block(table(header, rows)),
    ]


def _transfer_lines(result: Any, labels: int) -> list[str]:
    """Whether zero-shot transfer happens: each target's accuracy without intervention
    against chance, decided by the interval's lower bound."""
    if "none" not in result.columns or not labels:
        return []
    chance = 100 / labels
    rows, seen = [], set()
    for i, row in enumerate(result.rows):
        language = row.get("language")
        if language in seen:
            continue  # the no-intervention cell is the same for every detector
        seen.add(language)
        estimate = result.interval(i, "none")
        ratio = estimate.low / chance if estimate.has_interval else math.nan
        verdict = "above chance" if estimate.above(chance) else "not above chance"
        if estimate.has_interval and ratio >= 1.5:
            verdict += " (lower bound ≥ 1.5× chance)"
        rows.append([language, estimate.format(".1f"), f"{ratio:.2f}", verdict])
    header = ["target", "accuracy % [interval]", "lower bound / chance", "decision"]
    return [
        f"Zero-shot transfer: chance is {chance:.1f} % ({labels} labels); a target transfers "
        "when its accuracy's whole interval lies above chance (percentile bootstrap over "
        "the test rows).\n",
        _block(table(header, rows)),
    ]


def write_transfer_report(report: Any, config: dict[str, Any]) -> None:
    """Write ``report.md``, ``report.html`` and the figures (PNG where a static exporter
    works, interactive HTML always) into ``report.output``."""
    saved = save_figures(_draw(report), report.output)
    lines = ["# Cross-lingual transfer with language neurons (Mondal et al., 2025)\n"]
    lines += skipped_images_line(saved)
    lines.append(_block(json.dumps(config, indent=1)))
    lines += _task_section(report.task)
    lines.append("## Neurons\n")
    counts = [
        [name, *(len(found[lang]) for lang in found.languages)]
        for name, found in report.neurons.items()
    ]
    languages = list(next(iter(report.neurons.values())).languages)
    lines.append(_block(table(["detector", *languages], counts)))
    if report.overlap is not None:
        first, second = report.overlap.names
        lines.append(f"{first} vs {second} (Fig. 18–19):\n")
        lines.append(_block(report.overlap))
        lines.append(figure_markdown(saved["method_overlap"], f"{first} vs {second}") + "\n")
    lines.append("## PPL: zero vs statistic deactivation (Fig. 1)\n")
    for name, result in report.ppl.items():
        lines.append(f"### {name}\n")
        lines.append(_block(result))
        caption = f"PPL with {name} neurons deactivated"
        lines.append(figure_markdown(saved[f"deactivation_ppl_{name}"], caption) + "\n")
    lines.append("## Test-time interventions (Tables 1/4)\n")
    lines += _transfer_lines(report.interventions, len(report.task.labels))
    lines.append(_block(report.interventions))
    lines += _delta_lines(report.interventions)
    lines.append("\n" + figure_markdown(saved["interventions"], "Accuracy per intervention") + "\n")
    caption = "Change per intervention with paired intervals"
    lines.append(figure_markdown(saved["interventions_intervals"], caption) + "\n")
    if report.finetuning is not None:
        lines.append("## Masked-LoRA finetuning setups (Tables 3/7/8)\n")
        lines.append(_block(report.finetuning))
        lines += _setup_lines(report.finetuning)
        lines += _delta_lines(report.finetuning)
        training = [
            [key, v["steps"], v["trainable_parameters"], v["mlp_neurons"], v["last_loss"]]
            for key, v in report.finetuning.training.items()
        ]
        header = ["finetune", "steps", "trainable", "MLP neurons", "last loss"]
        lines.append("\n" + _block(table(header, training)))
        lines.append(figure_markdown(saved["finetuning"], "Accuracy per finetuning setup") + "\n")
        caption = "Finetuning setups: change per intervention with paired intervals"
        lines.append(figure_markdown(saved["finetuning_intervals"], caption) + "\n")
    lines.append("## Seconds per stage\n")
    lines.append(_block(table(["stage", "seconds"], list(report.seconds.items()), digits=1)))
    write_report_html(atomic_write_text(report.report_path, "\n".join(lines)))
