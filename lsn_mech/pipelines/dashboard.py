"""The dashboard job: a static HTML site about a neuron file (`lsn-mech lape`'s
``neurons.safetensors``) on a model and corpus, written into one folder
(`lsn_mech.experiments.dashboard`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsn_mech.errors import InvalidSettingError, MissingLanguageError
from lsn_mech.pipelines.configs import config_to_dict, paths_from_strings
from lsn_mech.pipelines.inputs import load_job_corpus, load_job_model
from lsn_mech.pipelines.stages import start_job
from lsn_mech.pipelines.validation import (
    check_corpus_languages,
    check_fits_model,
    prepare_output,
    validate_config,
)

__all__ = ["DashboardConfig", "DashboardReport", "run_dashboard"]


@dataclasses.dataclass
class DashboardConfig:
    """Every parameter of the dashboard job. ``neurons`` is required; ``languages``
    ``None`` takes the neurons' languages; ``stats`` ``None`` collects statistics over
    ``stats_tokens`` tokens a language first."""

    model: str = "gemma-3-270m"
    neurons: Path | None = None
    stats: Path | None = None
    languages: tuple[str, ...] | None = None
    text_files: dict[str, str] | None = None
    split: str = "train"
    window: int = 512
    batch_size: int = 8
    max_tokens: int = 20_000
    stats_tokens: int = 20_000
    top_k: int = 10
    context: int = 8
    max_neurons: int = 200
    output: Path = Path("lsn_runs/dashboard")
    device: str | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        """Accept what Python callers pass loosely: a list of languages, paths as strings."""
        if self.languages is not None:
            self.languages = tuple(self.languages)
        paths_from_strings(self)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


@dataclasses.dataclass
class DashboardReport:
    """Where the job wrote the site, and what it holds."""

    output: Path
    dashboard: Any
    seconds: dict[str, float]

    @property
    def index(self) -> Path:
        return self.output / "index.html"

    def text(self) -> str:
        """What ``lsn-mech dashboard`` prints when it is done."""
        return f"{self.dashboard}\nOpen {self.index} in a browser (it works offline)."


def run_dashboard(
    config: DashboardConfig, *, progress: bool = True, log: Callable[[str], None] = print
) -> DashboardReport:
    """Write ``index.html``, ``neurons/*.html`` and ``dashboard.json`` into
    ``config.output``, plus ``config.json`` and ``timings.json``."""
    from lsn_mech.experiments.neuron_dashboard import dashboard
    from lsn_mech.neurons import LanguageNeurons
    from lsn_mech.stats import ActivationStats

    output = Path(config.output)
    validate_config(config)  # each field's own refusal first, then the folder, as every job
    prepare_output(output)
    if config.neurons is None:
        raise InvalidSettingError(
            "--neurons is required: pass the neurons.safetensors a `lsn-mech lape` run wrote, "
            "e.g. --neurons lsn_runs/lape/neurons.safetensors."
        )
    timer = start_job("dashboard", config, output, log)
    with timer("load neurons and statistics"):
        neurons = LanguageNeurons.load(config.neurons)
        languages = list(config.languages or neurons.languages)
        missing = [x for x in languages if x not in neurons]
        if missing:
            raise MissingLanguageError(
                f"--languages: {', '.join(missing)} not in the neuron file (it has "
                f"{', '.join(neurons.languages)}); drop {'it' if len(missing) == 1 else 'them'}."
            )
        check_corpus_languages(dataclasses.replace(config, languages=tuple(languages)))
        stats = ActivationStats.load(config.stats) if config.stats is not None else None
    with timer("load model"):
        model = load_job_model(config.model, device=config.device, dtype=config.dtype)
        check_fits_model(config, model)
    with timer("load corpus"):
        corpus = load_job_corpus(languages, config.text_files)
    if stats is None:
        from lsn_mech.stats import collect_stats

        with timer("collect statistics"):
            stats = collect_stats(
                model,
                corpus,
                languages=languages,
                max_tokens_per_language=config.stats_tokens,
                batch_size=config.batch_size,
                window=config.window,
                split=config.split,
                progress=progress,
            )
    with timer("top activations and pages"):
        site = dashboard(
            model,
            neurons,
            stats,
            corpus,
            output,
            languages=languages,
            top_k=config.top_k,
            context=config.context,
            max_tokens_per_language=config.max_tokens,
            max_neurons=config.max_neurons,
            batch_size=config.batch_size,
            window=config.window,
            split=config.split,
            progress=progress,
        )
    timer.finish(output)
    log(f"[dashboard] {site.index}")
    return DashboardReport(output, site, timer.seconds)
