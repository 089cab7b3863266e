"""The LAPE job's report folder: tables in ``report.md``, data as CSV/JSON, figures as HTML/PNG."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lsn_mech.evaluate.ppl_intervals import (
    DOMINANCE_TEST,
    NO,
    PAIRED_TEST,
    UNDECIDED,
    UNTESTED,
    YES,
    decision,
)
from lsn_mech.files import atomic_write_json, atomic_write_text
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
    """The matrix in ``kind`` with each cell's interval (``×1.234 [1.201, 1.270]``)."""
    prefix = "×" if kind == "ratio" else ""
    estimates = matrix.estimates(kind)
    rows = [
        [name, *(e.format(fmt, prefix) for e in row)] for name, row in zip(matrix.rows, estimates)
    ]
    if kind == "ppl":
        rows.insert(0, ["(none)", *(b.format(fmt) for b in matrix.base_estimates())])
    return markdown_table(["deactivated \\ evaluated", *matrix.columns], rows)


def dominance_summary(matrix: Any, random_matrix: Any) -> dict[str, dict[str, Any]]:
    """Per language: is its own column the most affected, and how it compares to random.

    ``diagonal_dominant`` and ``beats_random`` compare the point values (kept for callers
    of the first reports); the decisions the report states are ``dominance`` and
    ``beats_random_decision`` (yes / no / undecided / untested) from the tests
    ``dominance_test`` (`DOMINANCE_TEST`) and ``beats_random_test`` (`PAIRED_TEST`);
    ``own``, ``max_other`` and ``random_own`` are PPL ratios with their intervals.
    """
    own = matrix.values("log_ratio")
    rand = random_matrix.values("log_ratio")
    own_ratio = matrix.estimates("ratio")
    random_ratio = random_matrix.estimates("ratio")
    dominance = matrix.dominance_tests()
    beats = matrix.beats_tests(random_matrix)
    summary = {}
    for i, language in enumerate(matrix.rows):
        j = matrix.columns.index(language)
        others = [v for k, v in enumerate(own[i]) if k != j]
        other_ratios = [e for k, e in enumerate(own_ratio[i]) if k != j]
        summary[language] = {
            "own_log_ratio": own[i][j],
            "max_other_log_ratio": max(others) if others else float("nan"),
            "diagonal_dominant": own[i][j] == max(own[i]),
            "random_own_log_ratio": rand[i][j],
            "beats_random": own[i][j] > rand[i][j],
            "own": own_ratio[i][j],
            "max_other": max(other_ratios, key=lambda e: e.value) if other_ratios else None,
            "random_own": random_ratio[i][j],
            "dominance_test": dominance[language],
            "dominance": decision(dominance[language]),
            "beats_random_test": beats[language],
            "beats_random_decision": decision(beats[language]),
        }
    return summary


def summary_json(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`dominance_summary` as JSON-ready data (estimates and tests through ``to_dict``)."""

    def plain(value: Any) -> Any:
        return value.to_dict() if hasattr(value, "to_dict") else value

    return {x: {k: plain(v) for k, v in s.items()} for x, s in summary.items()}


def _decision_cell(test: Any, verdict: str) -> str:
    """``"yes (p=0.002)"``; the point comparison is named as such when untested."""
    if verdict == UNTESTED:
        return ("yes" if test.difference.value > 0 else "no") + " (point only, untested)"
    p = "p<0.001" if test.p_value < 0.001 else f"p={test.p_value:.3g}"
    return f"{verdict} ({p})"


def _decided(summary: Mapping[str, Mapping[str, Any]], key: str, verdict: str) -> list[str]:
    return [x for x, s in summary.items() if s[key] == verdict]


def _interval_lines(matrix: Any) -> list[str]:
    """How the intervals were computed, or why there are none."""
    settings = matrix.bootstrap
    windows = matrix.windows
    size = matrix.provenance.parameters.get("window")
    count = f"{min(windows)}–{max(windows)}" if min(windows) != max(windows) else str(windows[0])
    if matrix.has_intervals:
        return [
            f"Intervals: {settings.level:.0%} percentile bootstrap over the evaluation windows "
            f"({count} windows of {size} tokens per language; "
            f"{settings.resamples} resamples, seed {settings.seed}); a "
            "ratio is paired with its base over the same windows."
        ]
    if matrix.window_nll is None:
        return [
            "**No intervals**: this matrix holds no per-window NLL sums (it was saved before "
            "intervals existed, or built by hand); rerun the job for intervals. The decisions "
            "below compare point values only and are untested."
        ]
    return [
        f"**No intervals**: a language was evaluated on {min(windows, default=0)} window(s); "
        "intervals resample windows and need at least 2 per language (raise eval_tokens above "
        "the window length). The decisions below compare point values only and are untested."
    ]


def _finding_lines(
    summary: Mapping[str, Mapping[str, Any]], label: str, n: int, tested: bool
) -> list[str]:
    """The finding as the tests decide it (or, without intervals, as the points say)."""
    if not tested:
        dominant = [x for x, s in summary.items() if s["diagonal_dominant"]]
        beats = [x for x, s in summary.items() if s["beats_random"]]
        return [
            f"Point values only (untested, see below): deactivating a language's {label} "
            f"neurons raises that language's perplexity the most (largest log PPL ratio in "
            f"its row) for {len(dominant)} of {n} languages ({', '.join(dominant) or 'none'}), "
            f"and more than deactivating random neurons with the same per-layer counts for "
            f"{len(beats)} of {n} ({', '.join(beats) or 'none'})."
        ]

    def counted(key: str) -> str:
        parts = []
        for verdict, words in ((YES, "yes"), (UNDECIDED, "undecided"), (NO, "no")):
            found = _decided(summary, key, verdict)
            if found:
                parts.append(f"{words} for {len(found)} ({', '.join(found)})")
        return "; ".join(parts) or "none"

    return [
        f"Deactivating a language's {label} neurons raises that language's perplexity "
        f"significantly more than any other language's (diagonal dominance, bootstrap test "
        f"below) — of {n} languages: {counted('dominance')}.",
        "",
        f"It raises it significantly more than deactivating random neurons with the same "
        f"per-layer counts (paired bootstrap test below) — of {n} languages: "
        f"{counted('beats_random_decision')}.",
    ]


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
    matrix.to_csv(output / "ppl_matrix_intervals.csv", form="long", intervals=True)
    random_matrix.save(output / "ppl_matrix_random.json")
    random_matrix.to_csv(output / "ppl_matrix_random.csv", kind="ppl")
    random_matrix.to_csv(output / "ppl_matrix_random_intervals.csv", form="long", intervals=True)
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
    atomic_write_json(output / "ppl_summary.json", summary_json(summary))
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
        *_finding_lines(summary, label, len(languages), matrix.has_intervals),
        "",
        *_interval_lines(matrix),
        "",
        markdown_table(
            [
                "language",
                "own PPL ratio",
                "largest other",
                "random own",
                "dominant",
                "beats random",
            ],
            [
                [
                    x,
                    s["own"].format(".3f", "×"),
                    "–" if s["max_other"] is None else s["max_other"].format(".3f", "×"),
                    s["random_own"].format(".3f", "×"),
                    _decision_cell(s["dominance_test"], s["dominance"]),
                    _decision_cell(s["beats_random_test"], s["beats_random_decision"]),
                ]
                for x, s in summary.items()
            ],
        ),
        "",
        f"- *dominant*: {DOMINANCE_TEST}; yes when its interval lies above 0, no when below, "
        "undecided when it holds 0.",
        f"- *beats random*: log(PPL with the language's neurons off / PPL with the random "
        f"neurons off) on the language's own text, {PAIRED_TEST}; yes when its interval lies "
        "above 0.",
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
        "- `ppl_matrix*_intervals.csv`: every cell with its bounds (`ratio, ratio_low, "
        "ratio_high`, …); `ppl_summary.json`: the decisions above with their tests",
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
