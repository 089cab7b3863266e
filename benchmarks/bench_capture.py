"""Capture against the plainest correct code, on the embedded default.

    python benchmarks/bench_capture.py            # 8k tokens, 5 rounds (a few minutes on 2 cores)
    python benchmarks/bench_capture.py --quick    # 4k tokens, 3 rounds

Both sides count positive gate pre-activations (``mlp_pre``: the input of Gemma 3's
``act_fn``, i.e. ``gate_proj``'s output) over the same real tokens (not padding, not
BOS) of the same batches (window 256, batch 4), and both stop after the last layer's
gate, so neither computes the unembedding:

* lsn_mech: ``collect_stats(..., sites=("mlp_pre",), accumulators=[PositiveCountAccumulator])``
  on the bridge, through `lsn_mech.models.runtime.capture`;
* plain: a Hugging Face ``Gemma3ForCausalLM`` with a forward hook on every layer's
  ``mlp.gate_proj`` that adds ``(out[mask] > 0).sum(0)`` to a counter and raises in
  the last layer's hook.

The rounds alternate the two (ABBA), so CPU contention from other processes hits both
alike; the reported number is the ratio of median tokens/s (target >= 0.95), from wall
time and, less sensitive to other processes on a shared machine, from this process's CPU
time (meaningful with ``--threads 1``, where no thread waits spinning). The counts
of both sides are compared too (they differ only where the bridge and HF disagree
about the sign of a value within rounding of zero).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch

LANGUAGE = "en"


class _Stop(Exception):
    """Raised by the plain loop's last hook."""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4k tokens, 3 rounds")
    parser.add_argument("--tokens", type=int, default=None, help="token budget (default 8192)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per side")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/capture.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_tokens = args.tokens or (4_096 if args.quick else 8_192)
    rounds = args.rounds or (3 if args.quick else 5)
    report = compare(n_tokens=n_tokens, window=256, batch_size=4, rounds=rounds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(
        f"collect_stats(mlp_pre counts) / plain HF hooks, tokens/s: "
        f"{report['ratio_tokens_per_s']:.3f}  (target >= 0.95; per round "
        f"{', '.join(f'{r:.3f}' for r in report['ratio_per_round'])})"
    )
    print(f"same, from process CPU time: {report['ratio_cpu_time']:.3f}")


def compare(n_tokens: int, window: int, batch_size: int, rounds: int) -> dict[str, object]:
    from transformers import AutoModelForCausalLM

    import lsn_mech as lm
    from lsn_mech.corpora.windows import tokenize_windows
    from lsn_mech.detect import PositiveCountAccumulator
    from lsn_mech.models.gemma_gguf import gemma_3_270m_dir

    torch.manual_seed(0)
    model = lm.load_model("gemma-3-270m", device="cpu")
    plain = AutoModelForCausalLM.from_pretrained(
        str(gemma_3_270m_dir()), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    texts = lm.corpora.bible([LANGUAGE]).texts(LANGUAGE)
    windows = tokenize_windows(model.tokenizer, texts, window=window, max_tokens=n_tokens)
    batches = list(windows.batches(batch_size))
    layers = plain.model.layers
    d_mlp = int(model.cfg.d_mlp)
    counts = torch.zeros(len(layers), d_mlp, dtype=torch.int64)
    mask_holder: list[torch.Tensor] = []

    def gate_hook(layer: int):  # type: ignore[no-untyped-def]
        last = layer == len(layers) - 1

        def count(module, inputs, output) -> None:  # type: ignore[no-untyped-def]
            counts[layer] += (output[mask_holder[0]] > 0).sum(dim=0)
            if last:
                raise _Stop

        return count

    handles = [
        layer.mlp.gate_proj.register_forward_hook(gate_hook(i)) for i, layer in enumerate(layers)
    ]

    @torch.no_grad()
    def plain_pass(batches: list = batches) -> None:  # type: ignore[type-arg]
        counts.zero_()
        for batch in batches:
            mask_holder[:] = [batch.stats_mask]
            with contextlib.suppress(_Stop):
                plain(batch.input_ids, attention_mask=batch.attention_mask.long())

    result: dict[str, object] = {}

    def stats_pass(windows: object = windows) -> None:
        accumulator = PositiveCountAccumulator(("mlp_pre",))
        result["stats"] = lm.collect_stats(
            model,
            {LANGUAGE: windows},
            sites=("mlp_pre",),
            accumulators=[accumulator],
            batch_size=batch_size,
            window=window,
            progress=False,
        )

    # warm-up, both sides, on one batch
    plain_pass(batches[:1])
    stats_pass(tokenize_windows(model.tokenizer, texts, window=window, max_tokens=window))
    plain_times: list[float] = []
    stats_times: list[float] = []
    plain_cpu: list[float] = []
    stats_cpu: list[float] = []
    for index in range(rounds):
        order = [(plain_pass, plain_times, plain_cpu), (stats_pass, stats_times, stats_cpu)]
        if index % 2:
            order.reverse()
        for run, times, cpu in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    for handle in handles:
        handle.remove()
    stats = result["stats"]
    ours = stats.state["mlp_pre/positive"][..., 0]  # type: ignore[attr-defined]
    counted = int(stats.tokens[0])  # type: ignore[attr-defined]
    differing = int((ours != counts).sum())
    plain_median = statistics.median(plain_times)
    stats_median = statistics.median(stats_times)
    return {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "tokens_counted": counted,
        "batches": len(batches),
        "window": window,
        "batch_size": batch_size,
        "rounds": rounds,
        "plain_s": plain_times,
        "collect_stats_s": stats_times,
        "plain_tokens_per_s": counted / plain_median,
        "collect_stats_tokens_per_s": counted / stats_median,
        "ratio_tokens_per_s": plain_median / stats_median,
        "ratio_per_round": [p / s for p, s in zip(plain_times, stats_times)],
        "plain_cpu_s": plain_cpu,
        "collect_stats_cpu_s": stats_cpu,
        "ratio_cpu_time": statistics.median(plain_cpu) / statistics.median(stats_cpu),
        "counts_differing": differing,
        "counts_max_abs_difference": int((ours - counts).abs().max()),
        "neurons": int(counts.numel()),
    }


if __name__ == "__main__":
    main()
