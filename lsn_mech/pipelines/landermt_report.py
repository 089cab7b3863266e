"""The LANDeRMT job's report folder: ``report.md`` with Tables 1–2, data as CSV/JSON and
figures (Fig. 3–8, 12–13) as PNG images in ``report.md``/``report.html`` and interactive
HTML."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Mapping
from typing import Any

from lsn_mech.files import atomic_write_json, atomic_write_text
from lsn_mech.intervals import interval_header
from lsn_mech.pipelines.landermt_methods import METHOD_LABELS
from lsn_mech.pipelines.landermt_significance import (
    HOLDS,
    REVERSED,
    UNDECIDED,
    significance_note,
)
from lsn_mech.pipelines.report import figure_markdown, skipped_images_line
from lsn_mech.pipelines.report_html import write_report_html
from lsn_mech.plots.export import PLOTLY_JS, save_figures
from lsn_mech.results import markdown_table


def _bleu_cell(result: Any, direction: str) -> str:
    """The first seed's BLEU with its interval, and mean ± sd when there are several seeds."""
    cell = result.estimate(direction).format(".2f")
    summary = result.seed_summary(direction)
    if len(summary.values) > 1:
        cell += f"; seeds {summary.format('.2f')}"
    return cell


def results_rows(results: Mapping[str, Any], directions: list[str]) -> list[list[str]]:
    """Table 1/2 rows: method, trainable parameters, BLEU per direction (with its interval,
    and mean ± sd over seeds), mean BLEU and chrF."""
    rows = []
    for method, result in results.items():
        mean_chrf = sum(result.chrf.values()) / len(result.chrf)
        rows.append(
            [
                METHOD_LABELS.get(method, method),
                f"{result.trainable_parameters:,}" if result.trainable_parameters else "0",
                *(_bleu_cell(result, d) for d in directions),
                f"{result.mean_bleu:.2f}",
                f"{mean_chrf:.1f}",
                f"{result.train_seconds:.0f}",
                {True: "yes", False: "NO", None: "n/a"}[result.unchanged_outside_masks],
            ]
        )
    return rows


def _bleu_figure(results: Mapping[str, Any], directions: list[str]) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for method, result in results.items():
        estimates = [result.estimate(d) for d in directions]
        figure.add_trace(
            go.Bar(
                name=METHOD_LABELS.get(method, method),
                x=directions,
                y=[e.value for e in estimates],  # the first seed's, as its error bar
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [e.high - e.value for e in estimates],
                    "arrayminus": [e.value - e.low for e in estimates],
                },
                hovertext=[
                    f"{e.format()}; seeds {result.seed_summary(d).format()}"
                    for e, d in zip(estimates, directions)
                ],
            )
        )
    figure.update_layout(barmode="group", title="BLEU per direction", yaxis_title="BLEU")
    return figure


def _transfer_figure(transfer: Mapping[str, Mapping[str, float]]) -> Any:
    import plotly.graph_objects as go

    rows = list(transfer)
    columns = list(next(iter(transfer.values())))
    figure = go.Figure(
        go.Heatmap(
            z=[[transfer[r][c] for c in columns] for r in rows],
            x=columns,
            y=rows,
            colorscale="RdBu",
            zmid=0,
            text=[[f"{transfer[r][c]:+.2f}" for c in columns] for r in rows],
            texttemplate="%{text}",
        )
    )
    figure.update_layout(
        title="BLEU change over 0-shot, LANDeRMT trained on one direction (rows)",
        xaxis_title="evaluated direction",
        yaxis_title="trained direction",
    )
    return figure


def write_landermt_report(report: Any, *, config: Any, projections: Mapping[str, Any]) -> None:
    """Write ``report.md``, ``results.csv``/``.json`` and the figures into ``report.output``."""
    output = report.output
    directions = list(config.directions)
    drawn = {
        "layer_means": report.layers.plot("means"),
        "layer_deltas": report.layers.plot("deltas"),
        "awareness": report.awareness.plot(),
        "awareness_general": report.split.plot("general"),
        "awareness_specific": report.split.plot("specific"),
        **{f"projection_{kind}": projection.plot() for kind, projection in projections.items()},
    }
    if report.results:
        drawn["bleu"] = _bleu_figure(report.results, directions)
    if report.transfer:
        drawn["transfer"] = _transfer_figure(report.transfer)
        atomic_write_json(output / "transfer.json", report.transfer)
    saved = save_figures(drawn, output)
    figures = [path.name for figure in saved.values() for path in figure.paths]

    header = ["method", "trainable params", *directions, "mean BLEU", "mean chrF", "train s"]
    header.append("frozen entries unchanged")
    rows = results_rows(report.results, directions)
    with (output / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    write_scores_csv(output / "scores.csv", report.results, directions)
    atomic_write_json(
        output / "results.json", {m: dataclasses.asdict(r) for m, r in report.results.items()}
    )
    significance = getattr(report, "significance", [])
    atomic_write_json(output / "significance.json", [c.to_dict() for c in significance])
    atomic_write_json(output / "samples.json", report.samples)

    split = report.split
    lines = [
        "# LANDeRMT report",
        "",
        f"Model `{config.model}`; directions {', '.join(directions)}; {config.train_pairs:,} "
        f"training pairs and {config.test_pairs} held-out test pairs per direction (Bible, "
        f"split by book). Budget: {config.steps} optimiser steps in all (pairs alternate), "
        f"batch {config.batch_size}, gradient accumulation {config.grad_accumulation}, "
        f"AdamW lr {config.lr}, weight decay {config.weight_decay}; greedy decoding, "
        f"sacreBLEU (13a; zh for Chinese).",
        "",
        *skipped_images_line(saved),
        "## Detection",
        "",
        f"Selected layers (k = {config.k}, top |ΔA| transitions, attributed to the "
        f"{config.attribute_to} layer): **{report.layers.layers()}**. "
        f"Per pair: {report.layers.per_pair()}.",
        "",
        figure_markdown(saved["layer_means"], "Mean activation per layer and language"),
        "",
        figure_markdown(saved["layer_deltas"], "Change of the activation between layers"),
        "",
        f"Awareness from {config.awareness_source} data ({config.awareness_batches} batches per "
        f"language, reduce={config.awareness_reduce}); split with ε = {config.epsilon}:",
        "",
        "```text",
        split.summary(),
        "```",
        "",
        figure_markdown(saved["awareness"], "Average awareness per layer and language"),
        "",
        figure_markdown(saved["awareness_general"], "Awareness of the language-general neurons"),
        "",
        figure_markdown(saved["awareness_specific"], "Awareness of the language-specific neurons"),
        "",
        "Representations of the top selected layer's neurons (leave-one-out nearest-centroid "
        "accuracy of the language; chance = 1/languages): "
        + ", ".join(
            f"{kind} {p.separation:.2f} (2-D: {p.separation_2d:.2f})"
            for kind, p in projections.items()
        )
        + ".",
        "",
        *(
            block
            for kind in projections
            for block in (
                figure_markdown(saved[f"projection_{kind}"], f"{kind} neurons, projected"),
                "",
            )
        ),
        "## Translation quality (Tables 1–2)",
        "",
        markdown_table(header, rows) if rows else "(no method was run)",
        "",
    ]
    if "bleu" in saved:
        lines += [figure_markdown(saved["bleu"], "BLEU per direction and method"), ""]
    lines += [
        f"BLEU cells: the first seed's score with its {config.confidence:.0%} interval "
        f"(sacreBLEU's bootstrap over the {config.test_pairs} test sentences, "
        f"{config.resamples} resamples); training-based methods add mean ± sd over the "
        f"seeds {list(config.seeds)}. Every bound is in `scores.csv`.",
        "",
    ]
    lines += significance_lines(significance, config)
    zero = report.results.get("0-shot")
    ours = report.results.get("landermt")
    full = report.results.get("full")
    if zero is not None and ours is not None:
        better = [d for d in directions if ours.bleu[d] > zero.bleu[d]]
        lines.append(
            f"LANDeRMT beats 0-shot on {len(better)} of {len(directions)} trained directions "
            f"({', '.join(better) or 'none'})"
            + (
                f", training {ours.trainable_parameters / max(full.trainable_parameters, 1):.1%} "
                "of the parameters full finetuning trains."
                if full is not None
                else "."
            )
        )
        lines.append("")
    if report.transfer:
        lines += ["## Transfer (Fig. 3): BLEU change over 0-shot", ""]
        columns = list(next(iter(report.transfer.values())))
        lines.append(
            markdown_table(
                ["trained \\ evaluated", *columns],
                [[r, *(f"{v[c]:+.2f}" for c in columns)] for r, v in report.transfer.items()],
            )
        )
        lines += ["", figure_markdown(saved["transfer"], "BLEU change over 0-shot"), ""]
    lines += ["## Sample translations", ""]
    for direction, entry in report.samples.items():
        lines.append(f"### {direction}")
        for i, source in enumerate(entry["source"]):
            lines.append(f"- source: {source}")
            lines.append(f"    - reference: {entry['reference'][i]}")
            for method in report.results:
                if method in entry:
                    lines.append(f"    - {method}: {entry[method][i]}")
        lines.append("")
    lines += [
        "## Files",
        "",
        "- `layers.json` (`detect.LayerSelection.load`), `neurons/` (`detect.AwarenessSplit.load`)",
        "- `results.csv`, `results.json`, `scores.csv` (BLEU/chrF with bounds, per seed), "
        "`significance.json`, `samples.json`, `translations/*.json`, `training/*.json`, "
        "`methods/*.json` (what `--resume` reuses)",
        "- `report.html`: this report with its figures, for a browser (opens offline)",
        "- figures: " + ", ".join(f"`{f}`" for f in figures) + f" (the HTML loads `{PLOTLY_JS}`)",
        "",
        "## Time per stage (seconds)",
        "",
        markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in report.seconds.items()]),
        "",
    ]
    write_report_html(atomic_write_text(output / "report.md", "\n".join(lines)))


def write_scores_csv(path: Any, results: Mapping[str, Any], directions: list[str]) -> None:
    """One row per method, direction and seed: BLEU and chrF with their bounds (bounds of
    the first seed's run; later seeds give the score alone)."""
    header = ["method", "direction", "seed", *interval_header("bleu"), *interval_header("chrf")]
    rows = []
    for method, result in results.items():
        for direction in directions:
            bleu_seeds = result.seed_summary(direction, "bleu")
            chrf_seeds = result.seed_summary(direction, "chrf")
            for index, (seed, bleu, chrf) in enumerate(
                zip(bleu_seeds.seeds, bleu_seeds.values, chrf_seeds.values)
            ):
                if index == 0:
                    cells = result.estimate(direction, "bleu").cells()
                    cells += result.estimate(direction, "chrf").cells()
                else:
                    cells = [bleu, "", "", chrf, "", ""]
                rows.append([method, direction, seed, *cells])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def significance_lines(comparisons: list[Any], config: Any) -> list[str]:
    """The significance table (LANDeRMT − each method, per direction and metric) and the
    orderings it decides, naming the test."""
    if not comparisons:
        return []
    bootstrap = config.bootstrap()
    header = ["LANDeRMT vs", "direction", "metric", "Δ (first seed) [interval]", "p per seed"]
    header.append("LANDeRMT > method")
    rows = [
        [
            METHOD_LABELS.get(c.method, c.method),
            c.direction,
            "BLEU" if c.metric == "bleu" else "chrF",
            c.tests[0].difference.format("+.2f"),
            ", ".join(f"{t.p_value:.3f}" for t in c.tests),
            c.verdict,
        ]
        for c in comparisons
    ]
    lines = ["## Significance: LANDeRMT against each method", "", markdown_table(header, rows), ""]
    lines += [significance_note(bootstrap), ""]
    for metric, name in (("bleu", "BLEU"), ("chrf", "chrF")):
        for verdict in (HOLDS, REVERSED, UNDECIDED):
            found = [
                f"{METHOD_LABELS.get(c.method, c.method)} ({c.direction})"
                for c in comparisons
                if c.verdict == verdict and c.metric == metric
            ]
            label = {HOLDS: "holds", REVERSED: "is reversed", UNDECIDED: "is not decided"}
            lines.append(
                f"- 'LANDeRMT > method' by {name} {label[verdict]} for: "
                f"{', '.join(found) or 'none'}."
            )
    lines.append("")
    return lines
