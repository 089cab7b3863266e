"""Cost of percentile statistics: collect_stats time with / without `QuantileAccumulator`.

    python benchmarks/bench_quantiles.py --model tiny-llama            # seconds, any machine
    python benchmarks/bench_quantiles.py --model gemma-3-270m --bible  # the target
    python benchmarks/bench_quantiles.py --model gemma-3-270m --device cuda --output r.json

Target: ratio (moments + quantiles) / (moments only) ≤ 1.5 on the embedded default.
On a tiny model the forward costs almost nothing, so the ratio there overstates the
overhead; only the default model's ratio is the target. ``--batch-quantiles`` also times
the paper's batch-averaged quantiles (a sort per batch). Timings are medians of
``--repeats`` runs in one process, after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import lsn_mech as lm
from lsn_mech.corpora.windows import TokenWindows, tokenize_windows
from lsn_mech.stats import BatchQuantileAccumulator, MomentAccumulator, QuantileAccumulator


def synthetic_texts(n_texts: int, seed: int = 0) -> list[str]:
    """Pseudo-sentences of random letters: enough tokens, no download."""
    rng = random.Random(seed)
    words = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(2000)
    ]
    return [" ".join(rng.choices(words, k=40)) + "." for _ in range(n_texts)]


def windows_for(model: Any, tokens: int, window: int, bible: bool) -> TokenWindows:
    if bible:
        corpus = lm.corpora.bible(["en"])
        texts = corpus.texts("en")
    else:
        texts = synthetic_texts(max(tokens // 20, 10))
    return tokenize_windows(model.tokenizer, texts, window=window, max_tokens=tokens)


def median_seconds(run: Any, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--device", default=None, help="default: the library's default device")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bins", type=int, default=256)
    parser.add_argument("--sites", default="mlp_pre,mlp_post")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bible", action="store_true", help="Bible text instead of synthetic")
    parser.add_argument("--batch-quantiles", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help="write results as JSON")
    args = parser.parse_args()

    model = lm.load_model(args.model, device=args.device)
    sites = tuple(args.sites.split(","))
    windows = windows_for(model, args.tokens, args.window, args.bible)
    configurations = {
        "moments": [MomentAccumulator(sites)],
        "moments+quantiles": [MomentAccumulator(sites), QuantileAccumulator(sites, args.bins)],
    }
    if args.batch_quantiles:
        configurations["moments+batch_quantiles"] = [
            MomentAccumulator(sites),
            BatchQuantileAccumulator(sites),
        ]
    seconds = {}
    for name, accumulators in configurations.items():

        def run(accumulators: list = accumulators) -> None:  # type: ignore[type-arg]
            lm.collect_stats(
                model,
                {"en": windows},
                sites=sites,
                accumulators=accumulators,
                batch_size=args.batch_size,
                window=args.window,
                max_tokens_per_language=None,
                progress=False,
            )

        seconds[name] = median_seconds(run, args.repeats)
    base = seconds["moments"]
    result = {
        "model": args.model,
        "device": str(next(iter(model.parameters())).device),
        "tokens": int(windows.n_tokens),
        "window": args.window,
        "batch_size": args.batch_size,
        "bins": args.bins,
        "sites": list(sites),
        "seconds": seconds,
        "ratio": {name: value / base for name, value in seconds.items()},
        "target_ratio": 1.5,
    }
    print(json.dumps(result, indent=2))
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
