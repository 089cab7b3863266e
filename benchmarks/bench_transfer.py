"""The default `lsn-mech transfer` job on the embedded default, timed stage by stage.

    OMP_NUM_THREADS=2 python benchmarks/bench_transfer.py
    python benchmarks/bench_transfer.py --set setups=[] --set targets='["vi","zh"]'

Runs `run_transfer(TransferConfig())` (the job's defaults; ``--set FIELD=JSON`` overrides
a field), then scores the saved source classifier on every test language, source
included, with 95 % bootstrap intervals over the test rows (`lsn_mech.intervals`), and
writes ``benchmarks/results/transfer_default.json``: seconds per stage and in all, the
threads used, the config, and per language the accuracy, its bounds, the chance level and
whether the lower bound clears 1.5× chance (the transfer task's bar, docs/transfer_tasks.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch


def _overrides(items: list[str]) -> dict[str, Any]:
    values = {}
    for item in items:
        name, _, text = item.partition("=")
        values[name.replace("-", "_")] = json.loads(text)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=Path("lsn_runs/bench_transfer"))
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/transfer_default.json")
    )
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=JSON")
    args = parser.parse_args()

    import lsn_mech as lm
    from lsn_mech.intervals import proportion
    from lsn_mech.pipelines import TransferConfig, run_transfer
    from lsn_mech.training.classifier import TransferClassifier

    config = TransferConfig(output=args.output, **_overrides(args.set))
    started = time.perf_counter()
    report = run_transfer(config, progress=False)
    job_seconds = time.perf_counter() - started

    mark = time.perf_counter()
    model = lm.load_model(config.model)
    classifier = TransferClassifier.load(args.output / "classifier_none", model)
    chance = 1 / report.task.num_labels
    accuracy: dict[str, Any] = {}
    for language, rows in report.task.test.items():
        predicted = classifier.predict(rows, batch_size=config.eval_batch_size).cpu()
        estimate = proportion(predicted == torch.tensor(rows["label"]))
        accuracy[language] = {
            **estimate.to_dict(),
            "n": len(rows),
            "lower_bound_over_1_5x_chance": estimate.low >= 1.5 * chance,
        }
        print(f"{language}: {estimate.format('.1%')} (n={len(rows)})", flush=True)
    result = {
        "job_s": round(job_seconds, 1),
        "seconds": {k: round(v, 1) for k, v in report.seconds.items()},
        "source_rescore_s": round(time.perf_counter() - mark, 1),
        "threads": torch.get_num_threads(),
        "chance": chance,
        "accuracy": accuracy,
        "config": config.to_dict(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["seconds"], indent=1))


if __name__ == "__main__":
    main()
