"""The jobs ``lsn-mech`` runs, by name: each is a config dataclass, a ``run_*`` function
that writes a result folder with ``config.json``, and the help text of its flags.

The command line is generated from this table (`lsn_mech.pipelines.flags`), so adding a
job is one config, one run function and one `Job` entry here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from lsn_mech.pipelines.configs import JobConfigError, config_from_dict, read_config
from lsn_mech.pipelines.dashboard import DashboardConfig, run_dashboard
from lsn_mech.pipelines.inputs import DTYPES
from lsn_mech.pipelines.landermt import LandermtConfig, run_landermt
from lsn_mech.pipelines.landermt_methods import ALL_METHODS
from lsn_mech.pipelines.lape import LapeConfig, run_lape
from lsn_mech.pipelines.ppl import PplConfig, run_ppl
from lsn_mech.pipelines.stats import StatsConfig, run_stats
from lsn_mech.pipelines.transfer import TransferConfig, run_transfer

__all__ = ["JOBS", "Job", "JobConfigError", "job_config"]


@dataclasses.dataclass(frozen=True)
class Job:
    """One ``lsn-mech`` subcommand: what it runs and how its flags read.

    ``help`` maps config fields to their flag's text (the default is appended);
    ``choices`` to allowed values; ``aliases`` to older flag spellings that keep working;
    ``metavars`` to the value placeholder of ``--help``;
    ``ignored`` names old flags that are accepted but no longer do anything (with why);
    ``complete`` fills fields that follow from others when neither the command line
    nor ``--config`` set them; ``printout`` is what the command prints when done.
    """

    name: str
    config: type
    run: Callable[..., Any]
    summary: str
    description: str
    help: Mapping[str, str]
    choices: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    aliases: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    metavars: Mapping[str, str] = dataclasses.field(default_factory=dict)
    ignored: Mapping[str, str] = dataclasses.field(default_factory=dict)
    complete: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    printout: Callable[[Any], str] = lambda report: report.report_path.read_text()


def job_config(job: Job, given: Mapping[str, Any], config_file: str | Path | None = None) -> Any:
    """The job's config: its defaults, then ``config_file``'s values, then ``given``.

    ``given`` holds the values set on the command line, so a flag always overrides the
    file; a field neither sets keeps the config's default (or what ``job.complete``
    derives from the others).
    """
    values: dict[str, Any] = dict(read_config(job.config, config_file)) if config_file else {}
    values.update(given)
    if job.complete is not None:
        values = job.complete(values)
    return config_from_dict(job.config, values)


def languages_of_files(values: dict[str, Any]) -> dict[str, Any]:
    """With ``text_files`` and no ``languages``: every language of the files."""
    if "languages" not in values and values.get("text_files"):
        return {**values, "languages": list(values["text_files"])}
    return values


def ignored_dest(flag: str) -> str:
    """The namespace attribute an ignored old flag is parsed into."""
    return "ignored_" + flag.lstrip("-").replace("-", "_")


MODEL_HELP = {
    "model": "zoo name (gemma-3-270m, tiny-llama, ...), local HF directory or hub id",
    "device": "cpu, cuda, cuda:1, mps, or None for the best available",
    "dtype": "model dtype, or None for float32 on CPU and bfloat16 on CUDA",
}

CORPUS_HELP = {
    "languages": "language codes; with --text-files and no --languages: the files' languages",
    "text_files": "use local text/JSONL/Parquet files instead of the Bible, e.g. fr=fr.txt",
    "split": "corpus split to read",
    "window": "tokens per window",
    "batch_size": "windows per batch",
}

STATS_HELP = {
    **MODEL_HELP,
    **CORPUS_HELP,
    "max_tokens": "counted tokens per language",
    "output": "output folder (rerunning into it resumes)",
    "checkpoint_every": "batches between checkpoints",
    "nonfinite": "on a NaN/inf activation: raise (stop, naming layer and language) or count "
    "(skip such batches; reported in summary.json)",
}

PPL_INTERVALS_HELP = {
    "resamples": "bootstrap resamples of the evaluation windows behind every PPL interval",
    "confidence": "level of the PPL intervals and tests (0.95: 95 %)",
    "bootstrap_seed": "seed of the bootstrap resampling",
}

PPL_HELP = {
    **MODEL_HELP,
    **CORPUS_HELP,
    **PPL_INTERVALS_HELP,
    "max_tokens": "tokens per language",
    "neurons": "LanguageNeurons file (.safetensors) to deactivate, or None for perplexity only",
    "output": "output folder",
}

LAPE_HELP = {
    **MODEL_HELP,
    **CORPUS_HELP,
    **PPL_INTERVALS_HELP,
    "output": "report folder",
    "stats_tokens": "statistics tokens per language",
    "eval_tokens": "held-out tokens per language for PPL",
    "detector": "detector by registry name (lm.detect.available()) that reads statistics; "
    "the job's --top-rate/--filter-rate/--activation-bar-ratio go to it where it has them",
    "top_rate": "fraction of neurons selected",
    "filter_rate": "percentile of P a neuron must exceed",
    "activation_bar_ratio": "percentile of P that assigns a neuron to a language",
    "random_seed": "seed of the random baseline",
    "batch_size": "windows per statistics batch",
    "eval_batch_size": "windows per PPL batch",
}

LANDERMT_HELP = {
    **MODEL_HELP,
    "model": "zoo name, HF id or local directory",
    "directions": "translation directions, e.g. en-fr,en-zh,en-de",
    "output": "report folder",
    "train_pairs": "training verse pairs per direction",
    "test_pairs": "held-out test pairs per direction",
    "seed": "seed of data order, templates, shots and initialisation",
    "k": "layers selected by representation analysis (paper: 4)",
    "attribute_to": "which layer a transition D_i names",
    "layer_batches": "batches per direction for layer selection",
    "epsilon": "fraction of language-general neurons per layer (paper: 0.9)",
    "awareness_source": "data a language's awareness comes from",
    "awareness_batches": "batches per language for awareness",
    "awareness_reduce": "granularity of |dL/dh * h|",
    "car_formula": "static CAR reading: paper, swapped, or a constant in [0, 1]",
    "learned_car": "learn a per-token CAR gate initialised to the static value",
    "methods": "methods to run",
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
    "report_to": "report each trained method's loss, learning rate, throughput and scores "
    "to TensorBoard or W&B, under OUTPUT/runs",
    "resamples": "bootstrap resamples of the test sentences (BLEU/chrF intervals, tests)",
    "confidence": "level of the intervals; tests decide at 1 - confidence",
    "bootstrap_seed": "seed of the resampling (sacreBLEU runs with 12345 + this)",
    "seeds": "training seeds of the training-based methods (mean ± sd over them)",
    "resume": "reuse the finished method runs saved in OUTPUT/methods (a killed job resumes)",
}

TRANSFER_HELP = {
    **MODEL_HELP,
    "model": "zoo name, HF id or local directory",
    "source": "language the classifier is trained on (paper: en)",
    "targets": "zero-shot test languages (paper's XQuAD targets: vi,hi,zh)",
    "detection_languages": "languages of the statistics and detectors (LAPE depends on the set)",
    "detectors": "detectors to run, by name (lm.detect.available())",
    "output": "report folder",
    "stats_tokens": "statistics tokens per detection language",
    "train_per_genre": "training verses per genre (source language)",
    "test_per_genre": "test verses per genre and language (held-out books)",
    "genres": "label set: genres (6), styles (4) or testaments (2) (lm.corpora.BIBLE_LABEL_SETS)",
    "context_verses": "verses per input: a verse and the next ones of its chapter",
    "template": "frame around each input; the classifier reads its last token",
    "seed": "seed of the data choice, the head and the random neurons",
    "interventions": "columns: none, zero, mean, p5 ... p95 or constants such as 1, -10",
    "read_site": "site the statistics are read at (mlp_pre: the reference code's mismatch)",
    "setups": "finetuning setups (empty: no finetuning table)",
    "finetune_targets": "targets the finetuning table trains for (empty: all targets)",
    "ppl_values": "values of the zero-vs-percentile PPL comparison (Fig. 1)",
    "ppl_tokens": "evaluation tokens per language for the PPL comparison",
    "ppl_window": "tokens per window of the PPL comparison (its intervals resample windows)",
    "lora_r": "LoRA rank (attention and masked MLP)",
    "lora_alpha": "LoRA alpha",
    "lr": "AdamW learning rate",
    "epochs": "epochs over the training verses (paper: 2)",
    "batch_size": "training batch size (paper: 8)",
    "max_length": "tokens per verse at most",
    "eval_batch_size": "verses per evaluation batch",
    "report_to": "report each classifier's loss, learning rate and throughput to TensorBoard "
    "or W&B, under OUTPUT/runs",
    "seeds": "train every classifier once per seed and report mean ± sd and per-seed values "
    "(empty: one run with --seed)",
    "resamples": "bootstrap resamples of the test rows behind every interval and paired test",
    "confidence": "level of every interval and paired test (0.95: 95 %)",
    "bootstrap_seed": "seed of the bootstrap resampling",
}

DASHBOARD_HELP = {
    **MODEL_HELP,
    **CORPUS_HELP,
    "neurons": "LanguageNeurons file (.safetensors), e.g. lsn-mech lape's neurons.safetensors "
    "(required)",
    "stats": "statistics file (stats.safetensors) for the per-language bars, or None to "
    "collect them first",
    "languages": "languages of the contexts, or None for the neurons' languages",
    "max_tokens": "tokens per language read for the top contexts",
    "stats_tokens": "statistics tokens per language when --stats is not given",
    "top_k": "top-activating contexts kept per neuron and language",
    "context": "tokens shown either side of each top activation",
    "max_neurons": "neuron pages at most (taken in turn from each language's set)",
    "output": "site folder (index.html, neurons/*.html)",
}

_MODEL_CHOICES: dict[str, tuple[Any, ...]] = {"dtype": DTYPES}
_CORPUS_METAVARS = {"languages": "LANGS", "text_files": "LANG=PATH"}
# Written out rather than imported so that `lsn-mech --help` does not import the detectors
# and the training code; tests/test_cli_jobs.py checks they equal the library's own.
ATTRIBUTIONS = ("next", "previous")
AWARENESS_REDUCTIONS = ("batch", "example", "token")
SITES = ("mlp_pre", "mlp_post")
SETUPS = ("none", "source", "target", "both", "random")
LABEL_SETS = ("genres", "styles", "testaments")  # lsn_mech.corpora.BIBLE_LABEL_SETS
REPORT_TO = ("none", "tensorboard", "wandb")

JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job(
            name="stats",
            config=StatsConfig,
            run=run_stats,
            summary="collect per-language activation statistics (resumable)",
            description="Run the model over each language's text and accumulate, per neuron, "
            "the activation probability (> 0 at mlp_pre), mean and variance at mlp_pre and "
            "mlp_post. Checkpoints to OUTPUT; rerunning the same command resumes.",
            help=STATS_HELP,
            choices=_MODEL_CHOICES,
            metavars=_CORPUS_METAVARS,
            complete=languages_of_files,
            printout=lambda report: report.text(),
        ),
        Job(
            name="ppl",
            config=PplConfig,
            run=run_ppl,
            summary="perplexity per language, optionally with neurons deactivated",
            description="Perplexity on each language's held-out text. With --neurons, also "
            "the PPL-change matrix: each language's neurons deactivated in turn (rows) and "
            "every language evaluated (columns).",
            help=PPL_HELP,
            choices=_MODEL_CHOICES,
            metavars=_CORPUS_METAVARS,
            complete=languages_of_files,
            printout=lambda report: report.text(),
        ),
        Job(
            name="lape",
            config=LapeConfig,
            run=run_lape,
            summary="the LAPE reproduction (Tang et al.): statistics, neurons, PPL matrix, report",
            description="Collect statistics, detect language-specific neurons with LAPE, "
            "deactivate each language's neurons (and random neurons with the same per-layer "
            "counts) and measure every language's perplexity; write report.md, neurons in "
            "lsn_mech and published LAPE formats, CSV/JSON data, figures (HTML that opens "
            "offline; PNG where kaleido and Chromium are installed) and report.html to OUTPUT. "
            "Resumable.",
            help=LAPE_HELP,
            choices=_MODEL_CHOICES,
            metavars=_CORPUS_METAVARS,
            aliases={"random_seed": ("--seed",)},
            ignored={"--split": "LAPE reads statistics from train and PPL from test"},
            complete=languages_of_files,
        ),
        Job(
            name="landermt",
            config=LandermtConfig,
            run=run_landermt,
            summary="the LANDeRMT reproduction (Zhu et al.): layers, awareness, routing, "
            "finetuning, BLEU",
            description="Select language-pair-relevant layers, score neuron awareness by "
            "Taylor expansion, split language-general and language-specific neurons, "
            "finetune them selectively with conditional awareness routing, and compare with "
            "0-shot, 5-shot, full finetuning, LoRA and the ablations on held-out Bible verses "
            "(sacreBLEU); write report.md, results and figures to OUTPUT.",
            help=LANDERMT_HELP,
            choices={
                **_MODEL_CHOICES,
                "attribute_to": ATTRIBUTIONS,
                "awareness_source": ("pairs", "monolingual"),
                "awareness_reduce": AWARENESS_REDUCTIONS,
                "methods": ALL_METHODS,
                "report_to": REPORT_TO,
            },
        ),
        Job(
            name="transfer",
            config=TransferConfig,
            run=run_transfer,
            summary="the cross-lingual transfer reproduction (Mondal et al.): interventions, "
            "masked LoRA",
            description="Train a genre classifier on English Bible verses and test it on "
            "other languages: percentile statistics, LAPE and Act-Prob-90p neurons, PPL of "
            "zero vs percentile deactivation, test-time statistic interventions, and "
            "masked-LoRA finetuning of source/target/both/random neurons; write report.md, "
            "results and figures to OUTPUT.",
            help=TRANSFER_HELP,
            choices={
                **_MODEL_CHOICES,
                "read_site": SITES,
                "setups": SETUPS,
                "genres": LABEL_SETS,
                "report_to": REPORT_TO,
            },
        ),
        Job(
            name="dashboard",
            config=DashboardConfig,
            run=run_dashboard,
            summary="a static HTML dashboard of language neurons: sets, statistics, top contexts",
            description="Write a site that opens offline: an index of the neuron sets (counts "
            "per layer, overlaps) and one page per neuron with its activation probability and "
            "mean per language and its top-activating contexts per language, the activating "
            "tokens highlighted. Contexts come from one streaming pass (a running top-k per "
            "neuron). Reads --neurons (from lsn-mech lape) and --stats, or collects them.",
            help=DASHBOARD_HELP,
            choices=_MODEL_CHOICES,
            metavars=_CORPUS_METAVARS,
            printout=lambda report: report.text(),
        ),
    )
}
