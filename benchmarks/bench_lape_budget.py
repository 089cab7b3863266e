"""How wide is each language's own-PPL ratio interval, as a function of the evaluation budget?

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_lape_budget.py \\
        --neurons lsn_runs/lape/neurons.safetensors --windows 512 128 --max-tokens 4096

For each window length and language of the embedded default (Gemma 3 270M, the Bible's
test split), the NLL sum of every window is measured twice: with no intervention, and with
the language's own LAPE neurons deactivated. The own-PPL ratio (PPL deactivated / base PPL)
of the first ``k`` windows then gets its 95 % paired-bootstrap interval from
`lsn_mech.intervals.perplexity_ratio`, for growing ``k``: the table says how many tokens
per language make every interval fit within ±10 % of its ratio (the budget LapeConfig uses).

Per-window NLL sums are saved after each (window, language), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from lsn_mech.pipelines.inputs import DEFAULT_LANGUAGES

TOLERANCE = 0.10
"""The aim: every own-PPL ratio's 95 % interval within ±10 % of the ratio."""


def window_nll_sums(model: Any, windows: Any) -> tuple[list[float], list[int]]:
    """NLL sum and predicted-token count of each window (one window per forward pass)."""
    from lsn_mech.evaluate.perplexity import token_nll_sum

    sums, counts = [], []
    for one in windows.batches(1):
        nll, count = token_nll_sum(model, one.input_ids, one.attention_mask)
        sums.append(nll)
        counts.append(count)
    return sums, counts


def measure(
    model: Any,
    neurons: Any,
    corpus: Any,
    language: str,
    window: int,
    max_tokens: int,
    known: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Per-window NLL sums of ``language``: base and own neurons deactivated.

    Full windows of a smaller earlier budget (``known``) are the same windows (packing is
    deterministic), so their sums are reused and only the rest is run.
    """
    from lsn_mech import deactivate
    from lsn_mech.evaluate.ppl_matrix import evaluation_windows

    windows = evaluation_windows(
        model, corpus, [language], split="test", window=window, max_tokens=max_tokens
    )[language]
    reuse = 0
    if known is not None:
        while reuse < len(known["tokens"]) and known["tokens"][reuse] == window - 1:
            reuse += 1
        reuse = min(reuse, len(windows))
    started = time.perf_counter()
    base, tokens = window_nll_sums(model, windows[reuse:])
    with deactivate(model, neurons[language]):
        own, _ = window_nll_sums(model, windows[reuse:])
    seconds = time.perf_counter() - started
    if reuse:
        seconds += known["seconds"] * reuse / len(known["tokens"])
        base, own = known["base"][:reuse] + base, known["own"][:reuse] + own
        tokens = known["tokens"][:reuse] + tokens
    return {
        "base": base,
        "own": own,
        "tokens": tokens,
        "seconds": seconds,
        "max_tokens": max_tokens,
    }


def widths(cell: dict[str, Any], budgets: list[int], settings: Any) -> list[dict[str, Any]]:
    """The own-PPL ratio and its interval over the first ``k`` windows, for each ``k``."""
    from lsn_mech.intervals import perplexity_ratio

    rows = []
    for k in budgets:
        if k > len(cell["tokens"]):
            break
        estimate = perplexity_ratio(
            torch.tensor(cell["own"][:k], dtype=torch.float64),
            torch.tensor(cell["base"][:k], dtype=torch.float64),
            torch.tensor(cell["tokens"][:k], dtype=torch.float64),
            settings,
        )
        rows.append(
            {
                "windows": k,
                "tokens": int(sum(cell["tokens"][:k])),
                "ratio": estimate.to_dict(),
                "relative_half_width": max(
                    estimate.high / estimate.value - 1, 1 - estimate.low / estimate.value
                ),
            }
        )
    return rows


def projected_tokens(largest: dict[str, Any]) -> int:
    """Tokens per language needed for ±10 %, from the largest measured budget, assuming the
    width shrinks as 1/√tokens (a projection past what was measured, not a measurement)."""
    scale = (largest["relative_half_width"] / TOLERANCE) ** 2
    return math.ceil(largest["tokens"] * scale)


def budget_table(cells: dict[str, Any], settings: Any) -> dict[str, Any]:
    """Widths per window length and language (each up to the windows it was measured on),
    and the smallest budget from which every language measured there fits."""
    table: dict[str, Any] = {}
    for window, by_language in cells.items():
        counts = {lang: len(c["tokens"]) for lang, c in by_language.items()}
        steps = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
        per_language = {
            lang: widths(
                c, sorted({k for k in steps if k <= counts[lang]} | {counts[lang]}), settings
            )
            for lang, c in by_language.items()
        }
        common = min(counts.values())
        fits_from = None  # smallest budget from which on every larger common one fits too
        for k in sorted({k for k in steps if k <= common} | {common}, reverse=True):
            if any(
                row["relative_half_width"] > TOLERANCE
                for rows in per_language.values()
                for row in rows
                if row["windows"] == k
            ):
                break
            fits_from = k
        projected = {lang: projected_tokens(rows[-1]) for lang, rows in per_language.items()}
        seconds = sum(c["seconds"] for c in by_language.values())
        tokens = sum(2 * sum(c["tokens"]) for c in by_language.values())
        table[window] = {
            "per_language": per_language,
            "smallest_windows_within_tolerance": fits_from,
            "projected_tokens_needed": projected,
            "forward_tokens_per_s": tokens / seconds,
        }
    return table


def print_table(table: dict[str, Any]) -> None:
    for window, entry in table.items():
        print(f"\nwindow {window}: relative half-width of the own-PPL ratio's 95 % interval")
        by_language = entry["per_language"]
        languages = list(by_language)
        print("windows " + "".join(f"{lang:>16}" for lang in languages))
        budgets = sorted({row["windows"] for rows in by_language.values() for row in rows})
        for k in budgets:
            cells = ""
            for lang in languages:
                row = next((r for r in by_language[lang] if r["windows"] == k), None)
                cells += (
                    f"{row['relative_half_width']:7.1%} ({row['tokens']:5d})" if row else " " * 16
                )
            print(f"{k:7d} {cells}")
        print(f"smallest window count within ±10 %: {entry['smallest_windows_within_tolerance']}")
        print(f"projected tokens needed (width ∝ 1/√n): {entry['projected_tokens_needed']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--neurons", type=Path, required=True, help="a default run's neurons")
    parser.add_argument("--languages", nargs="+", default=list(DEFAULT_LANGUAGES))
    parser.add_argument("--windows", nargs="+", type=int, default=[512, 128])
    parser.add_argument("--max-tokens", type=int, default=4096, help="per language and window")
    parser.add_argument(
        "--cache", type=Path, default=Path("benchmarks/results/lape_budget_nll.json")
    )
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/lape_budget.json"))
    args = parser.parse_args()

    import lsn_mech as lm
    from lsn_mech.corpora import bible
    from lsn_mech.files import atomic_write_json
    from lsn_mech.intervals import Bootstrap

    settings = Bootstrap()
    cells: dict[str, Any] = json.loads(args.cache.read_text()) if args.cache.exists() else {}
    model = neurons = corpus = None
    for window in args.windows:
        for language in args.languages:
            key = str(window)
            done = cells.get(key, {}).get(language)
            if done is not None and done.get("max_tokens", 0) >= args.max_tokens:
                continue
            if model is None:
                model = lm.load_model("gemma-3-270m")
                neurons = lm.neurons.load(args.neurons)
                corpus = bible(args.languages)
            cell = measure(model, neurons, corpus, language, window, args.max_tokens, done)
            cells.setdefault(key, {})[language] = cell
            atomic_write_json(args.cache, cells, indent=None)
            count, seconds = len(cell["tokens"]), cell["seconds"]
            print(f"window {window} {language}: {count} windows, {seconds:.0f} s")
    wanted = {str(w): cells[str(w)] for w in args.windows if str(w) in cells}
    table = budget_table(wanted, settings)
    result = {
        "command": "OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_lape_budget.py "
        f"--neurons {args.neurons} --windows {' '.join(map(str, args.windows))} "
        f"--max-tokens {args.max_tokens}",
        "threads": torch.get_num_threads(),
        "neurons": str(args.neurons),
        "tolerance": TOLERANCE,
        "intervals": settings.to_dict(),
        "windows": table,
    }
    atomic_write_json(args.output, result, indent=2)
    print_table(table)


if __name__ == "__main__":
    main()
