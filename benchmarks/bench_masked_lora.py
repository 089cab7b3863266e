"""Masked-LoRA training step time ÷ plain LoRA step time, same rank, targets and batches.

    python benchmarks/bench_masked_lora.py                      # Gemma 3 270M (minutes)
    python benchmarks/bench_masked_lora.py --model tiny-llama   # seconds, smoke check

Both runs wrap the same modules: the gate (first) projection of every layer and the
attention q, k, v, o, with the same ``r`` and ``alpha``. The masked run restricts the
gate update to a random ``--fraction`` of each layer's neurons (every layer holds some,
so both runs have the same LoRA layers); the plain run is ordinary PEFT LoRA. One step
= forward + backward on one batch (loss at target positions, the second half of each
row) + one AdamW step with weight decay 0.1. Reported: medians of the step times after
warm-up, over alternating rounds of the two methods; target ratio <= 1.1. On a busy
machine, ``--threads 1`` steadies the timings.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

TARGET = 1.1


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
    """Random tokens; the first half of each row is the prompt (label -100)."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        ids = torch.randint(4, vocab, (batch_size, seq_len), generator=generator)
        labels = ids.clone()
        labels[:, : seq_len // 2] = -100
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return batches


def random_neurons(model: nn.Module, fraction: float, seed: int):  # type: ignore[no-untyped-def]
    """``fraction`` of the neurons of every layer, drawn at random."""
    from lsn_mech.neurons import NeuronSet
    from lsn_mech.peft import mlp_shape

    n_layers, d_mlp = mlp_shape(model)
    k = max(1, round(fraction * d_mlp))
    generator = torch.Generator().manual_seed(seed)
    return NeuronSet(
        [torch.randperm(d_mlp, generator=generator)[:k] for _ in range(n_layers)], d_mlp=d_mlp
    )


def build(base: nn.Module, args: argparse.Namespace) -> dict[str, nn.Module]:
    """The masked and the plain PEFT model, each on its own copy of ``base``."""
    from peft import LoraConfig, get_peft_model

    from lsn_mech.peft import masked_lora, masked_lora_spec

    neurons = random_neurons(base, args.fraction, seed=0)
    masked = masked_lora(copy.deepcopy(base), neurons, r=args.r, alpha=args.alpha)
    config = LoraConfig(
        r=args.r,
        lora_alpha=args.alpha,
        target_modules=masked_lora_spec(masked).target_modules,
        fan_in_fan_out=base.config.model_type == "gpt2",
        task_type="CAUSAL_LM",
    )
    plain = get_peft_model(copy.deepcopy(base), config)
    return {"masked": masked, "plain": plain}


def step_seconds(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: list[dict[str, Tensor]],
    steps: int,
    warmup: int,
) -> list[float]:
    """Seconds of each of ``steps`` training steps, after ``warmup`` untimed ones."""
    from lsn_mech.training.selective import target_loss

    model.train()
    times = []
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        target_loss(model, batch).backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma-3-270m", help="gemma-3-270m or a tiny-* name")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per method")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--r", type=int, default=8)
    parser.add_argument("--alpha", type=int, default=16)
    parser.add_argument("--fraction", type=float, default=0.01, help="neurons per layer")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    base = load(args.model)
    batches = make_batches(4, args.batch_size, args.seq_len, int(base.config.vocab_size), seed=0)
    models = build(base, args)
    del base
    optimizers = {
        name: torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.1
        )
        for name, model in models.items()
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            times[name] += step_seconds(model, optimizers[name], batches, args.steps, args.warmup)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["masked"] / medians["plain"]
    result = {
        "model": args.model,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "r": args.r,
        "fraction": args.fraction,
        "median_step_seconds": medians,
        "trainable_parameters": {
            name: sum(p.numel() for p in model.parameters() if p.requires_grad)
            for name, model in models.items()
        },
        "ratio_masked_over_plain": ratio,
        "target": TARGET,
        "passed": ratio <= TARGET,
    }
    print(json.dumps(result, indent=1))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
