"""The statistics job: per-language activation statistics of a model, checkpointed into
one folder (rerunning the same job resumes), with a JSON summary."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from lsn_mech.files import atomic_write_json
from lsn_mech.pipelines.inputs import CorpusJobConfig, collect_job_stats, load_job_inputs
from lsn_mech.pipelines.stages import start_job

__all__ = ["StatsConfig", "StatsReport", "run_stats"]


@dataclasses.dataclass
class StatsConfig(CorpusJobConfig):
    """Every parameter of the statistics job: the corpus fields of `CorpusJobConfig`
    (split ``"train"``, 20,000 tokens a language), then these. ``dtype`` is a name
    (``"float32"``, ``"bfloat16"``, ``"float16"``; ``None``: the device's default).
    """

    output: Path = Path("lsn_runs/stats")
    checkpoint_every: int = 25
    device: str | None = None
    dtype: str | None = None
    nonfinite: Literal["raise", "count"] = "raise"


@dataclasses.dataclass
class StatsReport:
    """Where the job wrote its results, and the statistics themselves."""

    output: Path
    stats: Any
    summary: dict[str, Any]
    seconds: dict[str, float]

    @property
    def stats_path(self) -> Path:
        return self.output / "stats.safetensors"

    def text(self) -> str:
        """What ``lsn-mech stats`` prints when it is done."""
        return (
            f"{self.stats}\nStatistics written to {self.summary['stats_file']} "
            f"({self.summary['seconds']:.0f} s)."
        )


def run_stats(
    config: StatsConfig, *, progress: bool = True, log: Callable[[str], None] = print
) -> StatsReport:
    """Collect statistics into ``config.output``: ``stats.safetensors`` (resumable),
    ``summary.json`` (tokens and mean activation probability per language),
    ``config.json`` and ``timings.json``."""

    output = config.output
    timer = start_job("stats", config, output, log)
    model, corpus = load_job_inputs(config, timer)
    stats = collect_job_stats(
        model,
        corpus,
        config,
        timer,
        max_tokens=config.max_tokens,
        output_dir=output,
        progress=progress,
        split=config.split,
        checkpoint_every=config.checkpoint_every,
        nonfinite=config.nonfinite,
    )
    probability = stats.activation_probability("mlp_pre")
    summary = {
        "model": stats.provenance.model_id,
        "languages": stats.languages,
        "tokens": dict(zip(stats.languages, stats.tokens.tolist())),
        "mean_activation_probability": {
            language: round(float(probability[..., i].mean()), 4)
            for i, language in enumerate(stats.languages)
        },
        "seconds": round(timer.seconds["collect statistics"], 1),
        "stats_file": str(output / "stats.safetensors"),
        "nonfinite": stats.provenance.parameters.get("nonfinite"),
    }
    atomic_write_json(output / "summary.json", summary)
    timer.finish(output)
    return StatsReport(output, stats, summary, timer.seconds)
