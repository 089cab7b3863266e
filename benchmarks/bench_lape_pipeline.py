"""The full `lsn-mech lape` job on the embedded default, timed per stage.

    python benchmarks/bench_lape_pipeline.py            # README's default budget (2.5-3 h, 2 cores)
    python benchmarks/bench_lape_pipeline.py --quick    # 2k statistics / 128 eval tokens

Runs `lsn_mech.pipelines.run_lape` (exactly what `lsn-mech lape` runs) into a fresh folder,
then, in the same process and on the same model, a plain Hugging Face forward (logits
included) over Bible windows of the same shape. Reported:

* seconds per stage and in all;
* collect_stats tokens/s (tokens counted / stage time) ÷ plain HF forward tokens/s;
* PPL-matrix tokens/s (rows x languages x eval tokens / stage time) ÷ plain HF forward tokens/s.

Only the ratios compare across machines; the stage times are what a user waits on this one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def hf_forward_tokens_per_second(n_tokens: int, window: int, batch_size: int) -> float:
    """Median tokens/s of a plain HF forward (logits included) over English Bible windows."""
    from transformers import AutoModelForCausalLM

    from lsn_mech.corpora import bible
    from lsn_mech.corpora.windows import tokenize_windows
    from lsn_mech.models.gemma_gguf import gemma_3_270m_dir

    path = str(gemma_3_270m_dir())
    plain = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    windows = tokenize_windows(
        tokenizer, bible(["en"]).texts("en"), window=window, max_tokens=n_tokens
    )
    batches = list(windows.batches(batch_size))
    times = []
    with torch.no_grad():
        for repeat in range(3):
            start = time.perf_counter()
            for b in batches:
                plain(b.input_ids, attention_mask=b.attention_mask.long())
            if repeat:  # the first pass is a warm-up
                times.append(time.perf_counter() - start)
    return windows.n_tokens / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small budgets")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/lape.json"))
    args = parser.parse_args()

    from lsn_mech.pipelines.lape import LapeConfig, run_lape

    workdir = Path(tempfile.mkdtemp(prefix="lsn-bench-lape-"))
    config = LapeConfig(output=workdir / "lape")
    if args.quick:
        config.stats_tokens, config.eval_tokens = 2_000, 128
    started = time.perf_counter()
    report = run_lape(config, progress=False)
    total = time.perf_counter() - started

    stats_stage = report.seconds["collect statistics"]
    ppl_stage = report.seconds["PPL-change matrix (LAPE + random rows)"]
    stats_tokens = int(report.stats.tokens.sum())
    rows = len(report.matrix.rows) + len(report.random_matrix.rows) + 1  # + the baseline
    ppl_tokens = rows * len(config.languages) * config.eval_tokens
    hf_tps = hf_forward_tokens_per_second(
        n_tokens=4 * config.window, window=config.window, batch_size=config.batch_size
    )
    result = {
        "config": config.to_dict(),
        "threads": torch.get_num_threads(),
        "seconds": report.seconds,
        "total_s": round(total, 1),
        "stats_tokens": stats_tokens,
        "stats_tokens_per_s": stats_tokens / stats_stage,
        "ppl_tokens_approx": ppl_tokens,
        "ppl_tokens_per_s": ppl_tokens / ppl_stage,
        "hf_forward_tokens_per_s": hf_tps,
        "stats_over_hf": stats_tokens / stats_stage / hf_tps,
        "ppl_over_hf": ppl_tokens / ppl_stage / hf_tps,
        "diagonal_dominant": report.matrix.diagonal_dominance(),
        "neurons_per_language": {k: len(v) for k, v in report.neurons.items()},
        "ppl_ratio_lape": dict(zip(report.matrix.rows, report.matrix.values("ratio"))),
        "ppl_ratio_random": dict(
            zip(report.random_matrix.rows, report.random_matrix.values("ratio"))
        ),
        "columns": list(config.languages),
    }
    shutil.rmtree(workdir, ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str))
    for stage, seconds in report.seconds.items():
        print(f"{stage:<45} {seconds:8.1f} s")
    print(f"{'total':<45} {total:8.1f} s")
    print(f"collect_stats tokens/s / HF forward tokens/s   {result['stats_over_hf']:6.2f}")
    print(f"PPL matrix tokens/s / HF forward tokens/s      {result['ppl_over_hf']:6.2f}")


if __name__ == "__main__":
    main()
