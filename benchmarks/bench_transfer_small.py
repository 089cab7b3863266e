"""The CI-sized Mondal et al. comparison on the embedded default, timed.

    python benchmarks/bench_transfer_small.py

Same budget as tutorial 03 (en, vi, zh; 2,000 statistics tokens per language; 30
English training verses per genre, one epoch; 6 test verses per genre and language),
but with every statistic of Tables 1/4 (mean, P5 ... P95, zero, +-1, +-10) for LAPE and
Act-Prob-90p neurons on vi and zh, every finetuning setup of Tables 3/7/8 (none, source,
target, both, random) for Vietnamese, then LAPE's language-set dependency: Bible-Set1
against Bible-Set6 at 2,000 tokens per language. About 7 minutes on 2 idle CPU cores. Writes
``lsn_runs/transfer_small/{interventions,finetuning,language_sets}.json`` and
``benchmarks/results/transfer_small.json`` (the tables' numbers and seconds per stage).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lsn_mech.experiments import TransferTable

CONSTANTS = ("1", "-1", "10", "-10")


def _table(table: TransferTable) -> dict[str, Any]:
    return {
        "rows": table.rows,
        "columns": list(table.columns),
        "accuracy": table.values("accuracy"),
        "macro_f1": table.values("macro_f1"),
        "training": table.training,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=Path("lsn_runs/transfer_small"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/transfer_small.json"))
    args = parser.parse_args()

    import lsn_mech as lm
    from lsn_mech import detect
    from lsn_mech import experiments as ex
    from lsn_mech.stats import MomentAccumulator, QuantileAccumulator
    from lsn_mech.training import ClassifierConfig, finetune_classifier

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    model = lm.load_model("gemma-3-270m")
    sites = ("mlp_pre", "mlp_post")
    stats = lm.collect_stats(
        model,
        lm.corpora.bible(["en", "vi", "zh"]),
        max_tokens_per_language=2000,
        progress=False,
        accumulators=[MomentAccumulator(sites), QuantileAccumulator(sites)],
    )
    neurons = {"lape": detect.lape(stats), "act-prob-90p": detect.act_prob_90p(stats)}
    seconds["model + statistics + detectors"] = time.perf_counter() - started

    mark = time.perf_counter()
    task = lm.corpora.bible_genre_task(
        "en", ["vi", "zh"], train_per_genre=30, test_per_genre=6, seed=0
    )
    config = ClassifierConfig(epochs=1, batch_size=8, max_length=96)
    base = finetune_classifier(model, task, config=config, setup="none", progress=False)
    interventions = ex.intervention_table(
        base, task, neurons, stats, interventions=ex.ALL_INTERVENTIONS + CONSTANTS, progress=False
    )
    args.output.mkdir(parents=True, exist_ok=True)
    interventions.save(args.output / "interventions.json")
    print(interventions, flush=True)
    seconds["source classifier + interventions (Tables 1/4)"] = time.perf_counter() - mark

    mark = time.perf_counter()
    finetuning = ex.finetuning_table(
        model,
        task,
        neurons["lape"],
        stats,
        setups=("none", "source", "target", "both", "random"),
        interventions=("none", "p90", "zero", "p10"),
        languages=["vi"],
        config=config,
        base=base,
        progress=False,
    )
    finetuning.save(args.output / "finetuning.json")
    print(finetuning, flush=True)
    seconds["finetuning setups (Tables 3/7/8)"] = time.perf_counter() - mark

    mark = time.perf_counter()
    languages = list(dict.fromkeys(ex.BIBLE_SET1 + ex.BIBLE_SET6))
    set_stats = lm.collect_stats(
        model, lm.corpora.bible(languages), max_tokens_per_language=2000, progress=False
    )
    dependency = ex.lape_set_dependency(set_stats, ex.BIBLE_SET1, ex.BIBLE_SET6)
    dependency.save(args.output / "language_sets.json")
    print(dependency, flush=True)
    seconds["language-set dependency"] = time.perf_counter() - mark

    result = {
        "total_s": round(time.perf_counter() - started, 1),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "interventions": _table(interventions),
        "finetuning": _table(finetuning),
        "language_sets": json.loads((args.output / "language_sets.json").read_text()),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["seconds"], indent=1))


if __name__ == "__main__":
    main()
