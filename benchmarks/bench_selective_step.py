"""Selective finetuning step time ÷ full finetuning step time, same batches, same loop.

    python benchmarks/bench_selective_step.py                      # Gemma 3 270M (minutes)
    python benchmarks/bench_selective_step.py --model tiny-llama   # seconds, smoke check

The selective run trains a LANDeRMT-like mask: 4 layers spread over the depth (the lowest
is layer 0, so backward still runs through the whole model: the conservative case),
10 % of their neurons general and 2 % specific per language, two pairs alternating.
The full run trains every parameter. Both use `selective_finetune` with AdamW and the
same batches; one step = ``--grad-accumulation`` forward/backward passes + one optimiser
step. Reported: medians of the step times after warm-up, alternating rounds of the two
methods; target ratio <= 1.2. On a busy machine, ``--threads 1`` steadies the timings.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from lsn_mech.training.selective import Batch, PairMasks

TARGET = 1.2
PAIRS = [("en", "fr"), ("fr", "zh")]


def load(name: str) -> nn.Module:
    """A tiny zoo model, or the embedded Gemma 3 270M as a plain float32 HF model."""
    from transformers import AutoModelForCausalLM

    from lsn_mech.models import TINY_MODELS, build_tiny
    from lsn_mech.models.gemma_gguf import gemma_3_270m_dir

    if name in TINY_MODELS:
        return build_tiny(name).model
    return AutoModelForCausalLM.from_pretrained(
        str(gemma_3_270m_dir()), dtype=torch.float32, attn_implementation="eager"
    )


def make_batches(
    n: int, batch_size: int, seq_len: int, vocab: int, seed: int
) -> list[dict[str, Tensor]]:
    """Random tokens; the first half of each row is the source (label -100)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        ids = torch.randint(4, vocab, (batch_size, seq_len), generator=generator)
        labels = ids.clone()
        labels[:, : seq_len // 2] = -100
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return batches


def landermt_like(model: nn.Module, n_select: int, seed: int) -> PairMasks:
    """LANDeRMT masks over ``n_select`` layers spread from the bottom to the top."""
    from lsn_mech.neurons import LanguageNeurons, NeuronSet
    from lsn_mech.peft.masks import mlp_shape
    from lsn_mech.training import baselines

    n_layers, d_mlp = mlp_shape(model)
    chosen = sorted({round(x) for x in torch.linspace(0, n_layers - 1, n_select).tolist()})
    generator = torch.Generator().manual_seed(seed)

    def draw(fraction: float) -> NeuronSet:
        k = max(1, round(fraction * d_mlp))
        per_layer = [
            torch.randperm(d_mlp, generator=generator)[:k] if layer in chosen else []
            for layer in range(n_layers)
        ]
        return NeuronSet(per_layer, d_mlp=d_mlp)

    general = draw(0.10)
    specific = LanguageNeurons({lang: draw(0.02) for lang in ("en", "fr", "zh")})
    return baselines.landermt(model, PAIRS, general, specific)


def step_seconds(
    model: nn.Module, masks: PairMasks, batches: list[Batch], args: argparse.Namespace
) -> list[float]:
    """Seconds of each step after warm-up, for one method."""
    from lsn_mech.training.selective import selective_finetune

    by_pair = {pair: itertools.cycle(batches) for pair in PAIRS}
    log = selective_finetune(
        model,
        by_pair,
        masks,
        steps=args.warmup + args.steps,
        grad_accumulation=args.grad_accumulation,
        progress=False,
    )
    return [s.seconds for s in log.steps[args.warmup :]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m", help="gemma-3-270m or a tiny-* name")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per method")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--grad-accumulation", type=int, default=1)
    parser.add_argument("--layers", type=int, default=4, help="selected layers")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from lsn_mech.training.baselines import full
    from lsn_mech.training.selective import trainable_parameter_count

    torch.manual_seed(0)
    model = load(args.model)
    vocab = int(model.config.vocab_size)
    per_step = args.grad_accumulation * len(PAIRS)
    batches = make_batches(per_step, args.batch_size, args.seq_len, vocab, seed=0)
    methods = {"selective": landermt_like(model, args.layers, seed=0), "full": full(model, PAIRS)}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.rounds):
        for name, masks in methods.items():
            times[name] += step_seconds(model, masks, batches, args)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["selective"] / medians["full"]
    result = {
        "model": args.model,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "grad_accumulation": args.grad_accumulation,
        "median_step_seconds": medians,
        "trainable_parameters": {n: trainable_parameter_count(m) for n, m in methods.items()},
        "ratio_selective_over_full": ratio,
        "target": TARGET,
        "passed": ratio <= TARGET,
    }
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
