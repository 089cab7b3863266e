"""PPL-change matrix tokens/s against a plain Hugging Face forward, at the same batch sizes.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_ppl_matrix.py \\
        --neurons lsn_runs/lape/neurons.safetensors --batch-sizes 1 4

For each batch size, in one process on the embedded default (Gemma 3 270M), alternately:

* `lsn_mech.evaluate.ppl_change_matrix` (base row + one deactivated row per language) over
  ``--tokens`` Bible test tokens per language: tokens/s = rows × counted tokens / seconds;
* a plain HF forward (``AutoModelForCausalLM``, logits included, float32) over the same
  languages' *full* windows only, at the same batch size: tokens/s = predicted tokens /
  seconds. Full windows only, so the HF side wastes no padding: the ratio is a strict one.

Repeats alternate the two so both see the same load on a shared machine; the reported
ratio is the median of the per-repeat ratios. Only ratios compare across machines.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch


def hf_forward_seconds(plain: Any, windows: list[Any], batch_size: int) -> tuple[float, int]:
    """Seconds of a plain HF forward over the full windows, and the tokens it predicts."""
    tokens = 0
    started = time.perf_counter()
    with torch.no_grad():
        for language_windows in windows:
            full = language_windows[language_windows.attention_mask.all(dim=1)]
            for batch in full.batches(batch_size):
                plain(batch.input_ids, attention_mask=batch.attention_mask.long())
                tokens += batch.n_tokens
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--neurons", type=Path, required=True, help="a LAPE run's neurons")
    parser.add_argument("--languages", nargs="+", default=["en", "fr"])
    parser.add_argument("--tokens", type=int, default=1024, help="per language")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--label", default="", help="recorded, e.g. the code's commit")
    parser.add_argument(
        "--output", type=Path, default=Path("benchmarks/results/ppl_matrix_speed.json")
    )
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    import lsn_mech as lm
    from lsn_mech.corpora import bible
    from lsn_mech.evaluate import evaluation_windows, ppl_change_matrix
    from lsn_mech.files import atomic_write_json
    from lsn_mech.models.gemma_gguf import gemma_3_270m_dir

    model = lm.load_model("gemma-3-270m")
    plain = AutoModelForCausalLM.from_pretrained(str(gemma_3_270m_dir()), dtype=torch.float32)
    plain.eval()
    neurons = lm.neurons.load(args.neurons)
    rows = {language: neurons[language] for language in args.languages}
    corpus = bible(args.languages)
    windows = evaluation_windows(
        model, corpus, args.languages, split="test", window=args.window, max_tokens=args.tokens
    )
    counted = sum(w.n_tokens for w in windows.values())
    matrix_tokens = (len(rows) + 1) * counted

    def run_matrix(batch_size: int) -> float:
        started = time.perf_counter()
        ppl_change_matrix(
            model,
            rows,
            windows,
            languages=args.languages,
            window=args.window,
            max_tokens_per_language=None,
            batch_size=batch_size,
            progress=False,
        )
        return time.perf_counter() - started

    hf_forward_seconds(plain, [w[:1] for w in windows.values()][:1], 1)  # warm-up
    run_matrix(1)
    results = []
    for batch_size in args.batch_sizes:
        repeats = []
        for _ in range(args.repeats):
            matrix_s = run_matrix(batch_size)
            hf_s, hf_tokens = hf_forward_seconds(plain, list(windows.values()), batch_size)
            matrix_tps, hf_tps = matrix_tokens / matrix_s, hf_tokens / hf_s
            repeats.append({"matrix_tokens_per_s": matrix_tps, "hf_tokens_per_s": hf_tps})
        ratio = statistics.median(r["matrix_tokens_per_s"] / r["hf_tokens_per_s"] for r in repeats)
        results.append({"batch_size": batch_size, "ppl_over_hf": ratio, "repeats": repeats})
        print(f"batch {batch_size}: PPL matrix / HF forward tokens/s = {ratio:.2f}")
    atomic_write_json(
        args.output,
        {
            "command": "OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_ppl_matrix.py "
            f"--neurons {args.neurons} --languages {' '.join(args.languages)} "
            f"--tokens {args.tokens} --window {args.window} "
            f"--batch-sizes {' '.join(map(str, args.batch_sizes))} --repeats {args.repeats}",
            "label": args.label,
            "threads": torch.get_num_threads(),
            "windows_per_language": {k: len(w) for k, w in windows.items()},
            "matrix_tokens": matrix_tokens,
            "results": results,
        },
        indent=2,
    )


if __name__ == "__main__":
    main()
