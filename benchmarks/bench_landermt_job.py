"""The full LANDeRMT comparison (Tables 1–2) on the embedded default, timed per stage.

    python benchmarks/bench_landermt_job.py                  # the defaults of `lsn-mech landermt`
    python benchmarks/bench_landermt_job.py --transfer       # plus the transfer matrix (Fig. 3)
    python benchmarks/bench_landermt_job.py --steps 12 --test-pairs 8   # a quick look
    python benchmarks/bench_landermt_job.py --steps 200 \
        --directions en-fr fr-en en-zh zh-en en-de de-en      # the issue's reduced run

Measured on 2 CPU cores (Gemma 3 270M, float32), with 20 test pairs per direction (the
default before issue 14; it is 200 now, see bench_landermt_significance.py): the defaults
(three directions, 45 steps) took 51 minutes; the six-direction 200-step run 6,669 s
(1 h 51 min), of which full finetuning 1,669 s and each other trained method 840-1,000 s.
Tables in docs/landermt.md.

Runs `lsn_mech.pipelines.run_landermt` (what `lsn-mech landermt` runs) into OUTPUT and
writes ``benchmarks/results/landermt.json``: seconds per stage, BLEU/chrF per method and
direction, trainable parameters, and each method's training seconds per optimiser step
relative to full finetuning's (same batches, same loop).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--test-pairs", type=int, default=None)
    parser.add_argument("--transfer", action="store_true")
    parser.add_argument("--directions", nargs="+", default=None, help="e.g. en-fr fr-en")
    parser.add_argument("--output", type=Path, default=Path("lsn_runs/landermt_bench"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/landermt.json"))
    args = parser.parse_args()

    from lsn_mech.pipelines import LandermtConfig, run_landermt

    config = LandermtConfig(output=args.output, transfer=args.transfer)
    if args.steps is not None:
        config.steps = args.steps
    if args.test_pairs is not None:
        config.test_pairs = args.test_pairs
    if args.directions is not None:
        config.directions = tuple(args.directions)
    started = time.perf_counter()
    report = run_landermt(config, progress=False)
    total = time.perf_counter() - started
    full_seconds = report.results["full"].train_seconds if "full" in report.results else None
    result = {
        "config": config.to_dict(),
        "total_s": round(total, 1),
        "seconds": report.seconds,
        "methods": {
            method: {
                "bleu": r.bleu,
                "chrf": r.chrf,
                "mean_bleu": r.mean_bleu,
                "trainable_parameters": r.trainable_parameters,
                "train_seconds": r.train_seconds,
                "train_time_over_full": (r.train_seconds / full_seconds if full_seconds else None),
                "unchanged_outside_masks": r.unchanged_outside_masks,
            }
            for method, r in report.results.items()
        },
        "transfer": report.transfer,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print((report.output / "report.md").read_text())
    print(f"total {total / 60:.1f} min")


if __name__ == "__main__":
    main()
