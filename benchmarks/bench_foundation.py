"""Foundation benchmarks on the embedded default, as ratios against a plain HF forward.

    python benchmarks/bench_foundation.py            # full: (a) (b) (c), a few minutes on 2 cores
    python benchmarks/bench_foundation.py --quick    # smaller token budgets

(a) collect_stats tokens/s  /  plain HF forward (logits included) tokens/s, same batches;
    target >= 1.0 (statistics stop before the unembedding).
(b) bridge forward inside deactivate(1 % of neurons)  /  plain HF forward; target <= 1.10.
    Also reported against the bridge forward without interventions.
(c) peak resident memory while collect_stats runs, 10k vs 100k tokens (fresh processes,
    RSS sampled every 10 ms); flat.

Timings are medians of repeated runs in one process; only ratios are meaningful.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

LANGUAGE = "en"


def _windows(tokenizer, n_tokens: int, window: int):  # type: ignore[no-untyped-def]
    from lsn_mech.corpora import bible

    corpus = bible([LANGUAGE])
    from lsn_mech.corpora.windows import tokenize_windows

    return tokenize_windows(tokenizer, corpus.texts(LANGUAGE), window=window, max_tokens=n_tokens)


def _median_seconds(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(n_tokens: int, window: int, batch_size: int, repeats: int) -> dict[str, float]:
    """(a) and (b) in one process, on the same batches."""
    from transformers import AutoModelForCausalLM

    import lsn_mech as lm
    from lsn_mech.models.gemma_gguf import gemma_3_270m_dir

    torch.manual_seed(0)
    model = lm.load_model("gemma-3-270m", device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(
        str(gemma_3_270m_dir()), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    windows = _windows(model.tokenizer, n_tokens, window)
    batches = list(windows.batches(batch_size))
    counted = windows.n_tokens

    @torch.no_grad()
    def hf_forward() -> None:
        for b in batches:
            plain(b.input_ids, attention_mask=b.attention_mask.long())

    @torch.no_grad()
    def bridge_forward() -> None:
        for b in batches:
            model(b.input_ids, attention_mask=b.attention_mask.long())

    def stats_pass() -> None:
        lm.collect_stats(model, {LANGUAGE: windows}, batch_size=batch_size, progress=False)

    one_percent = _sample_fraction(model.cfg.n_layers, model.cfg.d_mlp, 0.01)

    def deactivated_forward() -> None:
        with lm.deactivate(model, one_percent):
            bridge_forward()

    hf = _median_seconds(hf_forward, repeats)
    bridge = _median_seconds(bridge_forward, repeats)
    stats = _median_seconds(stats_pass, repeats)
    deactivated = _median_seconds(deactivated_forward, repeats)
    return {
        "tokens": counted,
        "hf_forward_s": hf,
        "bridge_forward_s": bridge,
        "collect_stats_s": stats,
        "deactivate_forward_s": deactivated,
        "a_stats_tps_over_hf_tps": hf / stats,
        "b_deactivate_over_hf_forward": deactivated / hf,
        "b_deactivate_over_bridge_forward": deactivated / bridge,
        "bridge_over_hf_forward": bridge / hf,
    }


def _sample_fraction(n_layers: int, d_mlp: int, fraction: float):  # type: ignore[no-untyped-def]
    import lsn_mech as lm

    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(n_layers, d_mlp, generator=generator) < fraction
    return lm.NeuronSet.from_mask(mask)


def peak_memory_child(n_tokens: int) -> None:
    """Run collect_stats once; print resident memory before it and its peak while it runs.

    The process's high-water mark (ru_maxrss) is set by loading the model, so a thread
    samples the current RSS every 10 ms during collection instead.
    """
    import psutil

    import lsn_mech as lm

    model = lm.load_model("gemma-3-270m", device="cpu")
    corpus = lm.corpora.bible([LANGUAGE])
    process = psutil.Process()
    before = process.memory_info().rss / 2**20
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], process.memory_info().rss / 2**20)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lm.collect_stats(model, corpus, max_tokens_per_language=n_tokens, batch_size=8, progress=False)
    done.set()
    sampler.join()
    print(
        json.dumps(
            {
                "tokens": n_tokens,
                "rss_before_mib": before,
                "peak_mib": peak[0],
                "growth_mib": peak[0] - before,
            }
        )
    )


def peak_memory(budgets: list[int]) -> list[dict[str, float]]:
    results = []
    for n in budgets:
        out = (
            subprocess.run(
                [sys.executable, __file__, "--memory-child", str(n)],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        results.append(json.loads(out))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller budgets")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/foundation.json"))
    args = parser.parse_args()
    if args.memory_child is not None:
        peak_memory_child(args.memory_child)
        return
    torch.set_num_threads(torch.get_num_threads())
    speed = throughput(
        n_tokens=2_048 if args.quick else 8_192,
        window=256,
        batch_size=4,
        repeats=2 if args.quick else 3,
    )
    budgets = [2_000, 20_000] if args.quick else [10_000, 100_000]
    memory = peak_memory(budgets)
    report = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "throughput": speed,
        "memory": memory,
        "c_peak_memory_ratio": memory[1]["peak_mib"] / memory[0]["peak_mib"],
        "c_growth_mib": [m["growth_mib"] for m in memory],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    lines = [
        ("(a) collect_stats / HF forward, tokens/s", speed["a_stats_tps_over_hf_tps"], ">= 1.0"),
        (
            "(b) deactivate(1%) forward / HF forward",
            speed["b_deactivate_over_hf_forward"],
            "<= 1.10",
        ),
        ("    deactivate(1%) / bridge forward", speed["b_deactivate_over_bridge_forward"], ""),
        ("    bridge forward / HF forward", speed["bridge_over_hf_forward"], ""),
        (
            f"(c) peak RSS {budgets[1]:,} / {budgets[0]:,} tokens",
            report["c_peak_memory_ratio"],
            "~1",
        ),
    ]
    for label, value, target in lines:
        print(f"{label:<45} {value:6.2f}  {('target ' + target) if target else ''}")


if __name__ == "__main__":
    main()
