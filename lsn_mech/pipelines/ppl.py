"""The perplexity job: each language's perplexity on held-out text or, given neurons, the
PPL-change matrix (each language's neurons deactivated in turn, every language
evaluated), written into one folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsn_mech.files import atomic_write_json
from lsn_mech.pipelines.configs import IntervalSettings
from lsn_mech.pipelines.inputs import CorpusJobConfig, load_job_inputs
from lsn_mech.pipelines.stages import start_job
from lsn_mech.plots.export import save_figure

__all__ = ["PplConfig", "PplReport", "run_ppl"]


@dataclasses.dataclass
class PplConfig(CorpusJobConfig, IntervalSettings):
    """Every parameter of the perplexity job: the corpus fields of `CorpusJobConfig`
    (here split ``"test"``, 10,000 tokens a language), then these. ``dtype`` is a name
    (``"float32"``, ``"bfloat16"``, ``"float16"``; ``None``: the device's default).
    """

    split: str = "test"
    max_tokens: int = 10_000
    neurons: Path | None = None
    output: Path = Path("lsn_runs/ppl")
    device: str | None = None
    dtype: str | None = None
    resamples: int = 1000
    confidence: float = 0.95
    bootstrap_seed: int = 0


@dataclasses.dataclass
class PplReport:
    """Where the job wrote its results: perplexities, or the matrix when neurons were given."""

    output: Path
    perplexities: dict[str, Any] | None
    matrix: Any
    seconds: dict[str, float]

    def text(self) -> str:
        """What ``lsn-mech ppl`` prints when it is done."""
        if self.matrix is not None:
            return f"{self.matrix}\nMatrix written to {self.output}."
        return "\n".join(f"{language}: {p}" for language, p in (self.perplexities or {}).items())


def run_ppl(
    config: PplConfig, *, progress: bool = True, log: Callable[[str], None] = print
) -> PplReport:
    """Write ``perplexity.json`` (``ppl``, ``ppl_low``, ``ppl_high``, ``level``, ``nll``,
    ``tokens``, ``windows`` per language; the bounds by the bootstrap over windows) or, with
    ``config.neurons``, ``ppl_matrix.json``/``.csv``/``.html`` (and ``.png`` where a static
    exporter works); plus ``config.json`` and ``timings.json``."""
    from lsn_mech.corpora.sources import language_windows
    from lsn_mech.evaluate import perplexity, ppl_change_matrix
    from lsn_mech.neurons import LanguageNeurons

    output = config.output
    timer = start_job("ppl", config, output, log)
    model, corpus = load_job_inputs(config, timer)
    if config.neurons is None:
        results = {}
        with timer("perplexity"):
            for language in config.languages:
                windows = language_windows(
                    corpus,
                    language,
                    model.tokenizer,
                    split=config.split,
                    window=config.window,
                    max_tokens=config.max_tokens,
                )
                results[language] = perplexity(
                    model,
                    windows,
                    batch_size=config.batch_size,
                    progress=progress,
                    bootstrap=config.bootstrap(),
                )
                log(f"[ppl] {language}: {results[language]}")
        table = {
            k: {
                "ppl": v.value,
                "ppl_low": v.low,
                "ppl_high": v.high,
                "level": v.level,
                "nll": v.nll,
                "tokens": v.tokens,
                "windows": v.windows,
            }
            for k, v in results.items()
        }
        atomic_write_json(output / "perplexity.json", table)
        timer.finish(output)
        return PplReport(output, results, None, timer.seconds)
    with timer("PPL-change matrix"):
        matrix = ppl_change_matrix(
            model,
            LanguageNeurons.load(config.neurons),
            corpus,
            languages=list(config.languages),
            split=config.split,
            max_tokens_per_language=config.max_tokens,
            window=config.window,
            batch_size=config.batch_size,
            progress=progress,
            bootstrap=config.bootstrap(),
        )
        matrix.save(output / "ppl_matrix.json")
        matrix.to_csv(output / "ppl_matrix.csv")
        matrix.to_csv(output / "ppl_matrix_intervals.csv", form="long", intervals=True)
        save_figure(matrix.plot(), output / "ppl_matrix")
    timer.finish(output)
    return PplReport(output, None, matrix, timer.seconds)
