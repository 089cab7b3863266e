"""What the transfer tables' intervals cost and how wide they are, on synthetic predictions.

    OMP_NUM_THREADS=1 python benchmarks/bench_transfer_intervals.py

Seconds for the scores of one cell (accuracy and macro-F1, 1000 resamples each) and one
paired test against no intervention, at 36, 300 and 1800 test rows (6 labels, random
predictions: accuracy near chance, the widest case); the seconds of every view of a
job-sized table (2 detectors × 3 targets × 5 interventions on 300 rows: print, long CSV,
heatmap, bars, HTML); and the accuracy intervals of the recorded 36-verse benchmark
(`benchmarks/results/transfer_small.json`): with 36 verses only ``k`` and ``n`` matter, so
they follow from the recorded accuracies. Writes ``benchmarks/results/transfer_intervals.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/transfer_intervals.json")
    )
    args = parser.parse_args()

    import torch

    from lsn_mech import intervals
    from lsn_mech.evaluate.classification import classification_change, classification_scores
    from lsn_mech.experiments.transfer import TransferTable
    from lsn_mech.provenance import Provenance

    out: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "settings": intervals.DEFAULT.to_dict(),
    }
    generator = torch.Generator().manual_seed(0)
    for n in (36, 300, 1800):
        gold = torch.randint(6, (n,), generator=generator)
        predictions = torch.randint(6, (n,), generator=generator)
        started = time.perf_counter()
        scores = classification_scores(predictions, gold, 6)
        scored = time.perf_counter() - started
        better = predictions.clone()
        better[: n // 10] = gold[: n // 10]
        other = classification_scores(better, gold, 6)
        started = time.perf_counter()
        test = classification_change(other, scores)
        out[f"rows={n}"] = {
            "scores_s": round(scored, 4),
            "paired_change_s": round(time.perf_counter() - started, 4),
            "accuracy": scores.interval("accuracy").format(".1f"),
            "macro_f1": scores.interval("macro_f1").format(".1f"),
            "change_of_fixing_a_tenth": test.difference.format("+.1f"),
            "p_value": test.p_value,
        }
    columns = ["none", "mean", "p90", "zero", "p10"]
    gold = torch.randint(6, (300,), generator=generator)

    def cell() -> dict[str, Any]:
        right = torch.rand(300, generator=generator) < 0.5
        guess = torch.randint(6, (300,), generator=generator)
        return classification_scores(torch.where(right, gold, guess), gold, 6).to_dict()

    rows = [
        {"setup": "none", "detector": d, "language": lang}
        for d in ("lape", "act-prob-90p")
        for lang in ("vi", "hi", "zh")
    ]
    parameters = {"intervals": intervals.DEFAULT.to_dict()}
    table = TransferTable(
        rows,
        columns,
        [{c: cell() for c in columns} for _ in rows],
        provenance=Provenance(parameters=parameters),
    )
    started = time.perf_counter()
    str(table)
    table.tabulate(form="long")
    table.plot()
    table.plot_intervals(delta=True)
    table._repr_html_()
    out["job_table_views_s"] = round(time.perf_counter() - started, 2)
    recorded = {"vi none (7 of 36)": 7, "zh none (8 of 36)": 8, "zh zero, vi +1 (13 of 36)": 13}
    out["recorded_36_verses"] = {
        name: intervals.proportion(torch.arange(36) < k).map(lambda v: 100 * v).format(".1f")
        for name, k in recorded.items()
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
