"""``report.md`` and figures of the transfer job (`lsn_mech.pipelines.transfer`)."""

from __future__ import annotations

import json
from typing import Any

from lsn_mech.files import atomic_write, atomic_write_text
from lsn_mech.results import table

__all__ = ["write_transfer_report"]


def _figure(figure: Any, path: Any) -> str:
    atomic_write(path, lambda temporary: figure.write_html(str(temporary), include_plotlyjs="cdn"))
    return path.name


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
    """Write ``report.md`` and the HTML figures into ``report.output``."""
    out = report.output
    lines = ["# Cross-lingual transfer with language neurons (Mondal et al., 2025)\n"]
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
        lines.append(f"Figure: {_figure(report.overlap.plot(), out / 'method_overlap.html')}\n")
    lines.append("## PPL: zero vs statistic deactivation (Fig. 1)\n")
    for name, result in report.ppl.items():
        lines.append(f"### {name}\n")
        lines.append(_block(result))
        lines.append(f"Figure: {_figure(result.plot(), out / f'deactivation_ppl_{name}.html')}\n")
    lines.append("## Test-time interventions (Tables 1/4)\n")
    lines.append(_block(report.interventions))
    lines += _delta_lines(report.interventions)
    fig = _figure(report.interventions.plot(), out / "interventions.html")
    lines.append(f"\nFigure: {fig}\n")
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
        fig = _figure(report.finetuning.plot(), out / "finetuning.html")
        lines.append(f"Figure: {fig}\n")
    lines.append("## Seconds per stage\n")
    lines.append(_block(table(["stage", "seconds"], list(report.seconds.items()), digits=1)))
    atomic_write_text(report.report_path, "\n".join(lines))
