"""``report.md`` and figures of the transfer job (`lsn_mech.pipelines.transfer`)."""

from __future__ import annotations

import json
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
    if report.finetuning is not None:
        drawn["finetuning"] = report.finetuning.plot()
    return drawn


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


def _delta_lines(result: Any) -> list[str]:
    """One line per row: how far the best and worst intervention move accuracy."""
    lines = []
    deltas = result.delta("accuracy")
    for label, row in zip(result.row_labels(), deltas, strict=True):
        named = dict(zip(result.columns, row, strict=True))
        named.pop("none", None)
        if named:
            best = max(named, key=named.get)
            worst = min(named, key=named.get)
            lines.append(
                f"- {label}: best {best} {named[best]:+.1f}, worst {worst} {named[worst]:+.1f} "
                "accuracy points vs no intervention"
            )
    return lines


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
    lines.append(_block(report.interventions))
    lines += _delta_lines(report.interventions)
    lines.append("\n" + figure_markdown(saved["interventions"], "Accuracy per intervention") + "\n")
    if report.finetuning is not None:
        lines.append("## Masked-LoRA finetuning setups (Tables 3/7/8)\n")
        lines.append(_block(report.finetuning))
        lines += _delta_lines(report.finetuning)
        training = [
            [key, v["steps"], v["trainable_parameters"], v["mlp_neurons"], v["last_loss"]]
            for key, v in report.finetuning.training.items()
        ]
        header = ["finetune", "steps", "trainable", "MLP neurons", "last loss"]
        lines.append("\n" + _block(table(header, training)))
        lines.append(figure_markdown(saved["finetuning"], "Accuracy per finetuning setup") + "\n")
    lines.append("## Seconds per stage\n")
    lines.append(_block(table(["stage", "seconds"], list(report.seconds.items()), digits=1)))
    write_report_html(atomic_write_text(report.report_path, "\n".join(lines)))
