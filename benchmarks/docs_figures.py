"""Regenerate the measured figures that docs/lape.md, docs/landermt.md and docs/transfer.md
show, as small PNGs under docs/images/, with the library's own plot methods.

    python benchmarks/docs_figures.py lape RUN         # RUN: a `lsn-mech lape` output folder
    python benchmarks/docs_figures.py landermt RUN     # a `lsn-mech landermt` output folder
    python benchmarks/docs_figures.py transfer RUN     # a `lsn-mech transfer` output folder
    python benchmarks/docs_figures.py recorded         # from the numbers the pages record

A run folder gives the figures of that run (its result files reloaded and plotted). Jobs
too long to rerun for the docs (the LANDeRMT comparison takes 51 minutes to 2 hours on two
CPU cores, the transfer job longer) are drawn by ``recorded`` from the measured numbers in
the pages' own tables, read from the Markdown, so a figure can never disagree with its
table. Each page's caption names the run and says which way its figure was made.
Needs plotly's static exporter: ``pip install -e '.[images]'`` and Chromium.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
IMAGES = DOCS / "images"

#: Pixel size of every docs figure (scale 1 keeps a PNG near 50 KB).
WIDTH, HEIGHT = 820, 480


def write_png(figure: Any, path: Path, *, width: int = WIDTH, height: int = HEIGHT) -> Path:
    """The figure as a PNG of a fixed size, with room for its title."""
    figure.update_layout(width=width, height=height, margin={"t": 70, "l": 70, "r": 30, "b": 60})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure.to_image(format="png", width=width, height=height, scale=1))
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")
    return path


# ----------------------------------------------------------------- from a job's folder


def lape_from_run(run: Path) -> list[Path]:
    """The PPL-change heatmap, its random baseline, the layer distribution and the overlaps."""
    from lsn_mech.evaluate import PPLChangeMatrix
    from lsn_mech.experiments import LayerDistribution, OverlapResult

    out = IMAGES / "lape"
    matrix = PPLChangeMatrix.load(run / "ppl_matrix.json")
    random_matrix = PPLChangeMatrix.load(run / "ppl_matrix_random.json")
    distribution = LayerDistribution.load(run / "layer_distribution.json")
    overlaps = OverlapResult.load(run / "overlap.json")
    square = {"width": 640, "height": 560}
    # the random baseline on the LAPE matrix's colour scale, so that equal colours mean
    # equal effects (on its own scale a 0.08 cell would look as red as zh's 2.45)
    extent = max(abs(v) for row in matrix.values("log_ratio") for v in row)
    random_figure = random_matrix.plot("log_ratio").update_traces(zmin=-extent, zmax=extent)
    return [
        write_png(matrix.plot("log_ratio"), out / "ppl_matrix.png", **square),
        write_png(random_figure, out / "ppl_matrix_random.png", **square),
        write_png(distribution.plot(), out / "layer_distribution.png"),
        write_png(overlaps.plot(), out / "overlap.png", **square),
    ]


def landermt_from_run(run: Path) -> list[Path]:
    """Layer selection (Fig. 5), specific-neuron awareness (Fig. 7) and BLEU per direction,
    each where the run got that far (a run stopped after layer selection has layers.json)."""
    from lsn_mech.detect import AwarenessSplit, LayerSelection

    out = IMAGES / "landermt"
    written = []
    if (run / "layers.json").exists():
        selection = LayerSelection.load(run / "layers.json")
        written.append(write_png(selection.plot("deltas"), out / "layer_deltas.png"))
    if (run / "neurons").is_dir():
        split = AwarenessSplit.load(run / "neurons")
        written.append(write_png(split.plot("specific"), out / "awareness.png"))
    if (run / "results.json").exists():
        results = json.loads((run / "results.json").read_text())
        directions = list(json.loads((run / "config.json").read_text())["directions"])
        bleu = {method: SimpleNamespace(bleu=r["bleu"]) for method, r in results.items()}
        written.append(_bleu_png(bleu, directions, "bleu.png"))
    if not written:
        raise SystemExit(f"{run} has none of layers.json, neurons/, results.json")
    return written


def transfer_from_run(run: Path) -> list[Path]:
    """Fig. 1 for each detector and the intervention table's accuracy changes."""
    from lsn_mech.experiments import DeactivationValuePPL, TransferTable

    out = IMAGES / "transfer"
    written = []
    for path in sorted(run.glob("deactivation_ppl_*.json")):
        figure = DeactivationValuePPL.load(path).plot("ratio")
        figure.update_yaxes(type="log")
        written.append(write_png(figure, out / f"{path.stem}.png"))
    table = TransferTable.load(run / "interventions.json")
    written.append(write_png(table.plot("accuracy"), out / "interventions.png"))
    return written


def _bleu_png(results: dict[str, Any], directions: list[str], name: str) -> Path:
    # the job's own BLEU figure (report.md's bleu.png), so the docs show what a run shows
    from lsn_mech.pipelines.landermt_report import _bleu_figure

    figure = _bleu_figure(results, directions)
    figure.update_layout(legend={"orientation": "h", "y": -0.15})
    return write_png(figure, IMAGES / "landermt" / name, height=540)


# ------------------------------------------------ from the numbers the pages record


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every pipe table of a Markdown page: its header cells and its rows of cells."""
    tables = []
    lines = text.splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.fullmatch(r"\|( *:?-+:? *\|)+", lines[i + 1].strip()):
            header = _cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            tables.append((header, rows))
        else:
            i += 1
    return tables


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(page: str, accept: Callable[[list[str]], bool], index: int = 0) -> Any:
    found = [t for t in markdown_tables((DOCS / page).read_text()) if accept(t[0])]
    if len(found) <= index:
        raise SystemExit(f"docs/{page} has no table number {index + 1} of that kind")
    return found[index]


def _number(cell: str) -> float:
    return float(cell.replace("×", "").replace(",", "").replace("−", "-").split(" ")[0])


def landermt_recorded() -> list[Path]:
    """BLEU per direction of both measured runs on docs/landermt.md (45 and 200 steps)."""
    from lsn_mech.pipelines.landermt_methods import METHOD_LABELS

    method_of = {label: method for method, label in METHOD_LABELS.items()}
    written = []
    for index, name in ((0, "bleu_45_steps.png"), (1, "bleu_200_steps.png")):
        header, rows = _table(
            "landermt.md", lambda h: h[:2] == ["method", "trainable params"], index
        )
        directions = [h for h in header if re.fullmatch(r"[a-z]{2}-[a-z]{2}", h)]
        results = {
            method_of[row[0]]: SimpleNamespace(
                bleu={d: _number(row[header.index(d)]) for d in directions}
            )
            for row in rows
        }
        written.append(_bleu_png(results, directions, name))
    return written


def transfer_recorded() -> list[Path]:
    """Fig. 1 (own-language PPL ratio per value written) and the accuracy changes of every
    statistic and constant (Tables 1/4), from docs/transfer.md's measured tables."""
    from lsn_mech.experiments import DeactivationValuePPL, TransferTable
    from lsn_mech.experiments.transfer import TransferExperimentError
    from lsn_mech.provenance import Provenance

    out = IMAGES / "transfer"
    text = (DOCS / "transfer.md").read_text()
    base_text = re.search(r"base PPL ([^)]*)\)", text)
    if base_text is None:
        raise SystemExit("docs/transfer.md no longer states the base perplexities")
    base = {k: float(v) for k, v in re.findall(r"(\w+) ([0-9.]+)", base_text.group(1))}
    counts = {
        "LAPE": dict(re.findall(r"(\w+) (\d+)", text.split("LAPE:", 1)[1].split(";", 1)[0])),
        "Act-Prob-90p": None,
    }
    per_language = re.search(r"Act-Prob-90p: (\d+) per language", text)
    header, rows = _table("transfer.md", lambda h: h[:3] == ["neurons", "language", "zero"])
    values = [v.lower() for v in header[2:]]
    written = []
    for detector in ("LAPE", "Act-Prob-90p"):
        own = [row for row in rows if row[0] == detector]
        languages = [row[1] for row in own]
        ppl = [
            [
                [base[x] * _number(row[2 + v]) if x == y else None for y in languages]
                for x, row in zip(languages, own)
            ]
            for v in range(len(values))
        ]
        n = counts[detector] or dict.fromkeys(languages, per_language.group(1))  # type: ignore[union-attr]
        result = DeactivationValuePPL(
            values=values,
            languages=languages,
            columns=languages,
            base=[base[x] for x in languages],
            ppl=ppl,
            n_neurons=[int(n[x]) for x in languages],
            written=[[None] * len(languages) for _ in values],
            tokens=[512] * len(languages),
        )
        figure = result.plot("ratio")
        figure.update_yaxes(type="log")
        figure.update_layout(title=f"{detector} neurons: own-language PPL ratio per value written")
        slug = detector.lower()
        written.append(write_png(figure, out / f"deactivation_ppl_{slug}.png"))

    header, rows = _table("transfer.md", lambda h: h[:4] == ["neurons", "target", "none", "mean"])
    columns = [_column(c) for c in header[2:]]
    table = TransferTable(
        rows=[{"detector": row[0], "language": row[1]} for row in rows],
        columns=columns,
        cells=[
            {
                c: {"accuracy": _number(v), "macro_f1": math.nan, "n": 36}
                for c, v in zip(columns, row[2:])
            }
            for row in rows
        ],
        provenance=Provenance(method="intervention_table"),
    )
    try:
        figure = table.plot("accuracy")
    except TransferExperimentError as error:
        raise SystemExit(f"docs/transfer.md's table changed shape: {error}") from None
    written.append(write_png(figure, out / "interventions.png", width=980, height=420))
    return written


def _column(label: str) -> str:
    label = label.replace("−", "-").replace("+", "")
    return label.lower() if not label.lstrip("-").isdigit() else label


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("source", choices=["lape", "landermt", "transfer", "recorded"])
    parser.add_argument("run", type=Path, nargs="?", help="the job's output folder")
    args = parser.parse_args()
    if args.source == "recorded":
        landermt_recorded()
        transfer_recorded()
        return
    if args.run is None or not args.run.is_dir():
        parser.error(f"{args.source} needs the output folder of a `lsn-mech {args.source}` run")
    {"lape": lape_from_run, "landermt": landermt_from_run, "transfer": transfer_from_run}[
        args.source
    ](args.run)


if __name__ == "__main__":
    main()
