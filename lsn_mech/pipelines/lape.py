"""The LAPE job (Tang et al., 2024): statistics → LAPE neurons → deactivation matrix → report.

Every stage writes into one output folder, so the report, the neurons (lsn_mech and
published LAPE formats), the statistics and the figures stay together; statistics
checkpoint, so an interrupted run resumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsn_mech.errors import LsnMechError
from lsn_mech.files import atomic_write_json
from lsn_mech.pipelines.configs import IntervalSettings
from lsn_mech.pipelines.inputs import DEFAULT_LANGUAGES, collect_job_stats, load_job_inputs
from lsn_mech.pipelines.report import write_lape_report
from lsn_mech.pipelines.stages import start_job

__all__ = ["DEFAULT_LANGUAGES", "LapeConfig", "LapeReport", "run_lape"]


@dataclasses.dataclass
class LapeConfig(IntervalSettings):
    """Every parameter of the job; the paper's defaults for the method itself."""

    model: str = "gemma-3-270m"
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    output: Path = Path("lsn_runs/lape")
    stats_tokens: int = 20_000
    eval_tokens: int = 16_352
    """Held-out tokens per language for the PPL matrix: 32 windows of 511 predicted tokens,
    measured to keep every own-PPL ratio's 95 % interval within ±10 % on the embedded
    default (benchmarks/bench_lape_budget.py; docs/lape.md, "Evaluation budget")."""
    detector: str = "lape"
    top_rate: float = 0.01
    filter_rate: float = 0.95
    activation_bar_ratio: float = 0.95
    random_seed: int = 0
    window: int = 512
    batch_size: int = 8
    eval_batch_size: int = 4
    device: str | None = None
    dtype: str | None = None
    text_files: dict[str, str] | None = None
    resamples: int = 1000
    confidence: float = 0.95
    bootstrap_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["output"] = str(self.output)
        data["languages"] = list(self.languages)
        return data


LAPE_PARAMETERS = ("top_rate", "filter_rate", "activation_bar_ratio")
"""The job's method parameters; passed to ``detector`` where its spec has them."""


def detector_parameters(config: LapeConfig) -> dict[str, Any]:
    """The job's LAPE parameters that ``config.detector``'s spec takes (others keep the
    detector's own defaults), so ``--detector lave`` reuses ``--top-rate`` and friends."""
    from lsn_mech import detect

    spec_type = detect.get(config.detector)
    if not spec_type.reads_statistics:
        raise LapeConfigError(
            f"detector {config.detector!r} does not read statistics; the LAPE job needs one "
            f"that does, e.g. lape, lave, lap or act-prob-90p."
        )
    fields = {field.name for field in dataclasses.fields(spec_type)}
    return {name: getattr(config, name) for name in LAPE_PARAMETERS if name in fields}


class LapeConfigError(LsnMechError, ValueError):
    """A LAPE job setting that cannot work."""


@dataclasses.dataclass
class LapeReport:
    """Where the job wrote its results, and the objects themselves."""

    output: Path
    stats: Any
    neurons: Any
    random_neurons: Any
    matrix: Any
    random_matrix: Any
    seconds: dict[str, float]

    @property
    def report_path(self) -> Path:
        return self.output / "report.md"


def run_lape(
    config: LapeConfig, *, progress: bool = True, log: Callable[[str], None] = print
) -> LapeReport:
    """Run the whole LAPE reproduction and write ``config.output`` (see the module doc)."""
    from lsn_mech import detect
    from lsn_mech.evaluate import ppl_change_matrix
    from lsn_mech.neurons import to_lape_file

    parameters = detector_parameters(config)  # a bad detector name fails before any work
    output = Path(config.output)
    timer = start_job("lape", config, output, log)
    seconds = timer.seconds
    model, corpus = load_job_inputs(config, timer)
    stats = collect_job_stats(
        model,
        corpus,
        config,
        timer,
        max_tokens=config.stats_tokens,
        output_dir=output / "stats",
        progress=progress,
    )
    with timer("detect (LAPE + random baseline)"):
        neurons = detect.run(config.detector, stats, **parameters).neurons
        random_neurons = detect.random(neurons, seed=config.random_seed)
        neurons.save(output / "neurons.safetensors")
        random_neurons.save(output / "random_neurons.safetensors")
        to_lape_file(neurons, output / "lape_neurons.pt")
        languages = list(neurons.languages)
        atomic_write_json(output / "lape_neurons.languages.json", languages, indent=None)
    with timer("PPL-change matrix (LAPE + random rows)"):
        rows = matrix_rows(neurons, random_neurons)
        both = ppl_change_matrix(
            model,
            rows,
            corpus,
            languages=list(config.languages),
            max_tokens_per_language=config.eval_tokens,
            window=config.window,
            batch_size=config.eval_batch_size,
            progress=progress,
            bootstrap=config.bootstrap(),
        )
        matrix = both.select_rows(list(neurons.languages))
        random_matrix = both.select_rows([f"random:{k}" for k in neurons.languages])
    with timer("write report"):
        write_lape_report(
            output,
            config=config.to_dict(),
            stats=stats,
            neurons=neurons,
            random_neurons=random_neurons,
            matrix=matrix,
            random_matrix=random_matrix,
            seconds=seconds,
        )
    timer.finish(output)
    log(f"[lape] report: {output / 'report.md'}")
    return LapeReport(output, stats, neurons, random_neurons, matrix, random_matrix, seconds)


def matrix_rows(neurons: Any, random_neurons: Any) -> dict[str, Any]:
    """The PPL matrix's rows: each language's LAPE neurons, then ``random:LANG`` with the
    random baseline of the same per-layer counts (one matrix call evaluates both)."""
    return {**dict(neurons.items()), **{f"random:{k}": v for k, v in random_neurons.items()}}
