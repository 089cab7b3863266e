"""The LAPE job's report folder: tables in ``report.md``, data as CSV/JSON, figures as HTML/PNG."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lsn_mech.files import atomic_write_text
from lsn_mech.pipelines.report_html import write_report_html
from lsn_mech.plots.export import (
    PLOTLY_JS,
    SavedFigure,
    save_figures,
    skipped_images_message,
    static_images_problem,
)
from lsn_mech.plots.export import save_figure as plots_save_figure
from lsn_mech.results import markdown_table


def save_figure(figure: Any, stem: Path) -> list[str]:
    """Write ``stem.html`` (opens offline) and ``stem.png`` where a static exporter works;
    the names written. Kept for callers of the old helper: `lsn_mech.plots.save_figure`
    does the writing."""
    return [path.name for path in plots_save_figure(figure, stem)]


def figure_markdown(saved: SavedFigure, caption: str) -> str:
    """A figure in ``report.md``: its PNG as an image (GitHub and any Markdown viewer show
    it) and a link to the interactive HTML; only the link where the PNG was skipped."""
    link = f"[{caption} (interactive)]({saved.html.name})"
    if saved.png is None:
        return link
    return f"![{caption}]({saved.png.name})\n\n{link}"


def skipped_images_line(saved: Mapping[str, SavedFigure]) -> list[str]:
    """One line for the top of a report whose figures have no PNG, with the fix; none
    when every figure has its image."""
    if all(figure.png is not None for figure in saved.values()):
        return []
    problem = static_images_problem() or "the static exporter failed"
    return [f"> Figures are interactive HTML only: {skipped_images_message(problem)}", ""]


def _matrix_table(matrix: Any, kind: str, fmt: str) -> str:
    values = matrix.values(kind)
    rows = [[name, *(format(v, fmt) for v in row)] for name, row in zip(matrix.rows, values)]
    if kind == "ppl":
        rows.insert(0, ["(none)", *(format(b, fmt) for b in matrix.base)])
    return markdown_table(["deactivated \\ evaluated", *matrix.columns], rows)


def dominance_summary(matrix: Any, random_matrix: Any) -> dict[str, dict[str, Any]]:
    """Per language: is its own column the most affected, and how it compares to random."""
    own = matrix.values("log_ratio")
    rand = random_matrix.values("log_ratio")
    summary = {}
    for i, language in enumerate(matrix.rows):
        j = matrix.columns.index(language)
        others = [v for k, v in enumerate(own[i]) if k != j]
        summary[language] = {
            "own_log_ratio": own[i][j],
            "max_other_log_ratio": max(others) if others else float("nan"),
            "diagonal_dominant": own[i][j] == max(own[i]),
            "random_own_log_ratio": rand[i][j],
            "beats_random": own[i][j] > rand[i][j],
        }
    return summary


def write_lape_report(
    output: Path,
    *,
    config: dict[str, Any],
    stats: Any,
    neurons: Any,
    random_neurons: Any,
    matrix: Any,
    random_matrix: Any,
    seconds: dict[str, float],
) -> Path:
    """Write every artefact of the LAPE job and ``report.md`` that summarises them."""
    from lsn_mech.experiments import layer_distribution, overlap

    matrix.save(output / "ppl_matrix.json")
    matrix.to_csv(output / "ppl_matrix.csv", kind="ppl")
    random_matrix.save(output / "ppl_matrix_random.json")
    random_matrix.to_csv(output / "ppl_matrix_random.csv", kind="ppl")
    distribution = layer_distribution(neurons)
    distribution.save(output / "layer_distribution.json")
    distribution.to_csv(output / "layer_distribution.csv")
    overlaps = overlap(neurons)
    overlaps.save(output / "overlap.json")
    overlaps.to_csv(output / "overlap.csv")
    saved = save_figures(
        {
            "ppl_matrix": matrix.plot("log_ratio"),
            "ppl_matrix_random": random_matrix.plot("log_ratio"),
            "layer_distribution": distribution.plot(),
            "overlap": overlaps.plot(),
        },
        output,
    )
    figures = [path.name for figure in saved.values() for path in figure.paths]

    summary = dominance_summary(matrix, random_matrix)
    dominant = [x for x, s in summary.items() if s["diagonal_dominant"]]
    beats = [x for x, s in summary.items() if s["beats_random"]]
    languages = list(neurons.languages)
    counts = [[x, str(len(neurons[x])), str(len(neurons.exclusive(x)))] for x in languages]
    layer_rows = [[x, *map(str, neurons[x].per_layer())] for x in languages]
    union = neurons.union().per_layer()
    layer_rows.append(["union", *map(str, union)])
    pairs = overlaps.pairs_sorted()[:5]
    detector = config.get("detector", "lape")
    parameters = ", ".join(
        f"{k}={v}"
        for k, v in neurons.provenance.parameters.items()
        if k in ("top_rate", "filter_rate", "activation_bar_ratio")
    )
    label = "LAPE" if detector == "lape" else f"detector `{detector}`"
    lines = [
        "# LAPE report",
        "",
        f"Model `{config['model']}`, languages {', '.join(languages)}; "
        f"{stats.tokens.tolist()[0]:,} statistics tokens per language, "
        f"{config['eval_tokens']:,} evaluation tokens per language (held-out split).",
        f"{label}: {parameters or 'its default parameters'}; "
        f"{len(neurons.union()):,} distinct neurons selected "
        f"({len(neurons.union()) / (neurons.n_layers * neurons.d_mlp):.2%} of "
        f"{neurons.n_layers * neurons.d_mlp:,}).",
        "",
        *skipped_images_line(saved),
        "## Finding",
        "",
        f"Deactivating a language's {label} neurons raises that language's perplexity the most "
        f"(largest log PPL ratio in its row) for {len(dominant)} of {len(languages)} languages "
        f"({', '.join(dominant) or 'none'}), and more than deactivating random neurons with the "
        f"same per-layer counts for {len(beats)} of {len(languages)} "
        f"({', '.join(beats) or 'none'}).",
        "",
        markdown_table(
            ["language", "own log ratio", "max other", "random own", "dominant", "beats random"],
            [
                [
                    x,
                    f"{s['own_log_ratio']:.3f}",
                    f"{s['max_other_log_ratio']:.3f}",
                    f"{s['random_own_log_ratio']:.3f}",
                    "yes" if s["diagonal_dominant"] else "no",
                    "yes" if s["beats_random"] else "no",
                ]
                for x, s in summary.items()
            ],
        ),
        "",
        "## Neurons per language",
        "",
        markdown_table(["language", "neurons", "exclusive"], counts),
        "",
        "## Per-layer distribution (Fig. 5)",
        "",
        markdown_table(["language", *map(str, range(neurons.n_layers))], layer_rows),
        "",
        figure_markdown(saved["layer_distribution"], "Neurons per layer and language"),
        "",
        "## Overlap between languages (Jaccard)",
        "",
        "Most overlapping pairs: " + ", ".join(f"{a}–{b} {v:.2f}" for a, b, v in pairs) + ".",
        "",
        figure_markdown(saved["overlap"], "Jaccard overlap of the languages' neurons"),
        "",
        "## Perplexity with each language's neurons deactivated (rows) per language (columns)",
        "",
        _matrix_table(matrix, "ppl", ".2f"),
        "",
        "PPL ratio to the undisturbed model (base perplexities differ between languages, so "
        "compare effects as ratios):",
        "",
        _matrix_table(matrix, "ratio", ".3f"),
        "",
        figure_markdown(saved["ppl_matrix"], f"log PPL ratio, {detector} neurons deactivated"),
        "",
        "## Random baseline (same per-layer counts), PPL ratio",
        "",
        _matrix_table(random_matrix, "ratio", ".3f"),
        "",
        figure_markdown(saved["ppl_matrix_random"], "log PPL ratio, random neurons deactivated"),
        "",
        "## Files",
        "",
        "- `stats/stats.safetensors`: activation statistics (`lsn_mech.ActivationStats.load`)",
        "- `neurons.safetensors`, `random_neurons.safetensors`: `lsn_mech.LanguageNeurons.load`",
        "- `lape_neurons.pt` + `lape_neurons.languages.json`: the published LAPE format",
        "- `ppl_matrix*.json|csv`, `layer_distribution.*`, `overlap.*`: data",
        "- `report.html`: this report with its figures, for a browser (opens offline)",
        "- figures: " + ", ".join(f"`{f}`" for f in figures) + f" (the HTML loads `{PLOTLY_JS}`)",
        "",
        "## Time per stage (seconds)",
        "",
        markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in seconds.items()]),
        "",
    ]
    report = atomic_write_text(output / "report.md", "\n".join(lines))
    write_report_html(report)
    return report
