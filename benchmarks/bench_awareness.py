"""Taylor-awareness scoring against one plain HF forward+backward pass of the same batches.

    python benchmarks/bench_awareness.py                    # Gemma 3 270M, 4 selected layers
    python benchmarks/bench_awareness.py --model tiny-llama --batches 2

LANDeRMT's awareness (Eq. 3–4) needs ∂L/∂h at the selected layers. The reference is what a
user would otherwise run: the HF model's forward with labels (full logits, HF's own loss)
and ``loss.backward()`` with parameter gradients. Target: ratio ≤ 1.3. Medians over
repeats after a warm-up, in one process, on the same batches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def _median(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _plain_model(name: str) -> torch.nn.Module:
    """The same weights as a plain, unbooted HF model."""
    if name == "gemma-3-270m":
        from transformers import AutoModelForCausalLM

        from lsn_mech.models.gemma_gguf import gemma_3_270m_dir

        return AutoModelForCausalLM.from_pretrained(str(gemma_3_270m_dir()), dtype=torch.float32)
    from lsn_mech.models import build_tiny

    return build_tiny(name).model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--layers",
        default=None,
        help="comma-separated layers (default: 1, L/3, 2L/3, L-1: the backward goes almost "
        "all the way down, the costly case)",
    )
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/awareness.json"))
    args = parser.parse_args()

    import lsn_mech as lm
    from lsn_mech.corpora import bible_pairs, translation_batches, translation_examples
    from lsn_mech.detect import taylor_awareness

    model = lm.load_model(args.model, device="cpu")
    plain = _plain_model(args.model).train(False)
    examples = translation_examples(bible_pairs("en", "fr", split="train", max_pairs=200))
    batches = list(
        translation_batches(model.tokenizer, examples, batch_size=args.batch_size, max_length=128)
    )[: args.batches]
    n_layers = model.cfg.n_layers
    if args.layers:
        layers = [int(x) for x in args.layers.split(",")]
    else:
        layers = sorted({min(1, n_layers - 1), n_layers // 3, 2 * n_layers // 3, n_layers - 1})

    def hf_forward_backward() -> None:
        for batch in batches:
            plain.zero_grad(set_to_none=True)
            plain(**batch).loss.backward()

    def awareness() -> None:
        taylor_awareness(model, {"en": batches}, layers, progress=False)

    reference = _median(hf_forward_backward, args.repeats)
    ours = _median(awareness, args.repeats)
    tokens = int(sum(int(b["attention_mask"].sum()) for b in batches))
    result = {
        "model": args.model,
        "layers": layers,
        "batches": len(batches),
        "tokens": tokens,
        "hf_forward_backward_s": reference,
        "awareness_s": ours,
        "awareness_over_hf_forward_backward": ours / reference,
        "threads": torch.get_num_threads(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"awareness / HF forward+backward: {ours / reference:.2f}  (target <= 1.3)")


if __name__ == "__main__":
    main()
