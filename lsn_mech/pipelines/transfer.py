"""The cross-lingual transfer job (Mondal et al., 2025) on the embedded default.

Stages, each timed and written into one output folder:

1. the task: Bible genre (`lsn_mech.corpora.bible_genre_task`), train on the source,
   test on the targets;
2. statistics with percentiles (mean, P5…P95 at ``mlp_pre`` and ``mlp_post``) on the
   detection languages;
3. neurons of each detector in ``detectors``, chosen by registry name (default LAPE and
   Act-Prob-90p), and the overlap of the first two (Fig. 18–19);
4. the PPL change of zero versus percentile "deactivation" (Fig. 1);
5. the source classifier and the test-time intervention table (Tables 1/4);
6. masked-LoRA finetuning of source / target / both / random neurons, then the same
   interventions (Tables 3/7/8);
7. ``report.md`` with every table, plus JSON/CSV results and HTML figures.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsn_mech.corpora.genre import GENRE_TEMPLATE
from lsn_mech.errors import LsnMechError
from lsn_mech.pipelines.configs import IntervalSettings
from lsn_mech.pipelines.inputs import load_job_model
from lsn_mech.pipelines.stages import start_job
from lsn_mech.pipelines.validation import check_fits_model, fitted_window, validate_config

__all__ = ["TransferConfig", "TransferConfigError", "TransferReport", "run_transfer"]


class TransferConfigError(LsnMechError, ValueError):
    """A transfer-job setting that cannot work."""


@dataclasses.dataclass
class TransferConfig(IntervalSettings):
    """Every parameter of the job.

    The paper's choices where they apply (source en; XQuAD's targets vi, hi, zh; the
    columns of Tables 1–3; LAPE and Act-Prob-90p with their papers' defaults, by
    registry name in ``detectors``, the first also used for finetuning; AdamW with weight
    decay 0.1, clipping 10, 1 % warm-up, batch 8, 2 epochs); the data sizes are sized for
    2 CPU cores (measured times in docs/transfer.md). The task (``genres``,
    ``context_verses``, ``template``) is the one whose zero-shot transfer was measured
    clearly above chance (docs/transfer_tasks.md): the bare verse transfers at chance.

    ``seeds`` (empty: one run with ``seed``) trains every classifier once per seed and
    reports mean ± sd over them with the per-seed values; ``resamples``, ``confidence``
    and ``bootstrap_seed`` set the bootstrap of every interval and paired test.
    """

    model: str = "gemma-3-270m"
    source: str = "en"
    targets: tuple[str, ...] = ("vi", "hi", "zh")
    detection_languages: tuple[str, ...] = ("en", "vi", "hi", "zh", "fr", "ja")
    detectors: tuple[str, ...] = ("lape", "act-prob-90p")
    output: Path = Path("lsn_runs/transfer")
    stats_tokens: int = 10_000
    train_per_genre: int = 60
    test_per_genre: int = 50
    genres: str = "genres"
    context_verses: int = 1
    template: str = GENRE_TEMPLATE
    seed: int = 0
    interventions: tuple[str, ...] = ("none", "mean", "p90", "zero", "p10")
    read_site: str = "mlp_post"
    setups: tuple[str, ...] = ("none", "source", "target", "both", "random")
    finetune_targets: tuple[str, ...] = ("vi",)
    ppl_values: tuple[str, ...] = ("zero", "p10", "p5", "mean")
    ppl_tokens: int = 4096
    ppl_window: int = 128
    lora_r: int = 8
    lora_alpha: int = 16
    lr: float = 1e-3
    epochs: float | int = 2.0
    batch_size: int = 8
    max_length: int = 128
    eval_batch_size: int = 16
    device: str | None = None
    dtype: str | None = None
    report_to: str = "none"
    seeds: tuple[int, ...] = ()
    resamples: int = 1000
    confidence: float = 0.95
    bootstrap_seed: int = 0

    def __post_init__(self) -> None:
        self.output = Path(self.output)
        for name in ("targets", "detection_languages", "detectors", "interventions", "setups"):
            setattr(self, name, tuple(getattr(self, name)))
        self.finetune_targets = tuple(self.finetune_targets)
        self.ppl_values = tuple(self.ppl_values)
        self.seeds = tuple(self.seeds)

    def check(self) -> None:
        """Raise `TransferConfigError` for settings that cannot work together."""
        needed = {self.source, *self.targets}
        missing = sorted(needed - set(self.detection_languages))
        if missing:
            raise TransferConfigError(
                f"detection_languages must include the source and every target; add "
                f"{missing} (neurons and statistics are needed for each)."
            )
        check_detectors(self.detectors)
        stray = sorted(set(self.finetune_targets) - set(self.targets))
        if stray:
            raise TransferConfigError(
                f"finetune_targets {stray} are not among targets {list(self.targets)}."
            )

    def training_seeds(self) -> tuple[int, ...]:
        """The seeds every classifier is trained with: ``seeds``, or ``(seed,)``."""
        return self.seeds or (self.seed,)

    def detector_labels(self) -> list[str]:
        """The detectors' names for tables and plots, e.g. ``["LAPE", "Act-Prob-90p"]``."""
        from lsn_mech import detect

        return [detect.get(name).label for name in self.detectors]

    def classifier_config(self) -> Any:
        from lsn_mech.training.classifier import ClassifierConfig

        return ClassifierConfig(
            r=self.lora_r,
            alpha=self.lora_alpha,
            lr=self.lr,
            epochs=self.epochs,
            batch_size=self.batch_size,
            max_length=self.max_length,
            template=self.template,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["output"] = str(self.output)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def check_detectors(names: tuple[str, ...]) -> None:
    """Raise `TransferConfigError` unless every name is a registered statistics detector."""
    from lsn_mech import detect

    if not names:
        raise TransferConfigError(
            f"detectors is empty; name at least one of {', '.join(detect.available())}."
        )
    if len(set(names)) != len(names):
        raise TransferConfigError(f"detectors {list(names)} repeats a name; list each once.")
    for name in names:
        spec_type = detect.get(name)  # UnknownDetectorError lists the available ones
        if not spec_type.reads_statistics:
            raise TransferConfigError(
                f"The transfer job detects on activation statistics, but {name!r} reads "
                f"{spec_type.reads}; choose a statistics detector."
            )


@dataclasses.dataclass
class TransferReport:
    """Where the job wrote its results, and the objects themselves."""

    output: Path
    task: Any
    neurons: dict[str, Any]
    overlap: Any  # None with a single detector
    ppl: Any
    interventions: Any
    finetuning: Any
    seconds: dict[str, float]

    @property
    def report_path(self) -> Path:
        return self.output / "report.md"


def run_transfer(
    config: TransferConfig, *, progress: bool = True, log: Callable[[str], None] = print
) -> TransferReport:
    """Run the whole reproduction and write ``config.output`` (see the module doc)."""
    from lsn_mech import detect
    from lsn_mech.corpora import bible
    from lsn_mech.corpora.genre import bible_genre_task
    from lsn_mech.experiments.deactivation_values import deactivation_value_ppl
    from lsn_mech.experiments.method_overlap import method_overlap
    from lsn_mech.experiments.transfer import finetuning_table, intervention_table, pool_seeds
    from lsn_mech.pipelines.transfer_report import write_transfer_report
    from lsn_mech.stats import MomentAccumulator, QuantileAccumulator, collect_stats
    from lsn_mech.training.classifier import finetune_classifier

    validate_config(config)  # each field first, so a refusal names its flag
    config.check()
    output = config.output
    stage = start_job("transfer", config, output, log)
    with stage("load model and task"):
        model = load_job_model(config.model, device=config.device, dtype=config.dtype)
        check_fits_model(config, model)
        task = bible_genre_task(
            config.source,
            config.targets,
            train_per_genre=config.train_per_genre,
            test_per_genre=config.test_per_genre,
            seed=config.seed,
            genres=config.genres,
            context_verses=config.context_verses,
        )
        corpus = bible(list(config.detection_languages))
    with stage("statistics with percentiles"):
        sites = ("mlp_pre", "mlp_post")
        stats = collect_stats(
            model,
            corpus,
            languages=list(config.detection_languages),
            max_tokens_per_language=config.stats_tokens,
            window=fitted_window(model),
            accumulators=[MomentAccumulator(sites), QuantileAccumulator(sites)],
            output_dir=output / "stats",
            progress=progress,
        )
    labels = config.detector_labels()
    with stage(f"detect ({', '.join(labels)})"):
        neurons = {name: detect.run(name, stats).neurons for name in config.detectors}
        for name, found in neurons.items():
            found.save(output / f"neurons_{name}.safetensors")
        overlap = None
        if len(neurons) >= 2:
            first, second = config.detectors[:2]
            overlap = method_overlap(neurons[first], neurons[second], names=labels[:2])
            overlap.save(output / "method_overlap.json")
    with stage("PPL: zero vs percentile deactivation (Fig. 1)"):
        ppl = {
            name: deactivation_value_ppl(
                model,
                found,
                stats,
                corpus,
                values=config.ppl_values,
                languages=[config.source, *config.targets],
                site=None if config.read_site == "mlp_post" else config.read_site,
                max_tokens_per_language=config.ppl_tokens,
                window=min(config.ppl_window, fitted_window(model)),
                progress=progress,
                bootstrap=config.bootstrap(),
            )
            for name, found in neurons.items()
        }
        for name, result in ppl.items():
            result.save(output / f"deactivation_ppl_{name}.json")
    classifier_config = config.classifier_config()
    bootstrap = config.bootstrap()
    seeds = config.training_seeds()
    with stage("source classifier + test-time interventions (Tables 1/4)"):
        tables, classifier = {}, None
        for seed in seeds:
            trained = finetune_classifier(
                model,
                task,
                config=dataclasses.replace(classifier_config, seed=seed),
                setup="none",
                progress=progress,
                report_to=config.report_to,
                run_dir=output / "runs" if not config.seeds else output / "runs" / f"seed_{seed}",
            )
            tables[seed] = intervention_table(
                trained,
                task,
                neurons,
                stats,
                interventions=config.interventions,
                read_site=config.read_site,
                batch_size=config.eval_batch_size,
                progress=progress,
                bootstrap=bootstrap,
            )
            trained.release()
            if seed == seeds[0]:
                classifier = trained  # saved, and reused as the finetuning's "none"
        table = pool_seeds(tables, bootstrap=bootstrap) if config.seeds else tables[seeds[0]]
        table.save(output / "interventions.json")
        table.to_csv(output / "interventions_accuracy.csv")
        classifier.save(output / "classifier_none")
    finetuning = None
    if config.setups:
        with stage("masked-LoRA finetuning setups (Tables 3/7/8)"):
            finetuning = finetuning_table(
                model,
                task,
                neurons[config.detectors[0]],
                stats,
                detector=config.detectors[0],
                setups=config.setups,
                interventions=config.interventions,
                languages=list(config.finetune_targets or config.targets),
                config=classifier_config,
                read_site=config.read_site,
                base=classifier,
                seed=seeds[0],
                batch_size=config.eval_batch_size,
                progress=progress,
                report_to=config.report_to,
                run_dir=output / "runs",
                seeds=config.seeds or None,
                bootstrap=bootstrap,
            )
            finetuning.save(output / "finetuning.json")
            finetuning.to_csv(output / "finetuning_accuracy.csv")
    report = TransferReport(
        output=output,
        task=task,
        neurons=neurons,
        overlap=overlap,
        ppl=ppl,
        interventions=table,
        finetuning=finetuning,
        seconds=stage.seconds,
    )
    with stage("write report"):
        write_transfer_report(report, config.to_dict())
    stage.finish(output)
    return report
