"""The LANDeRMT job (Zhu et al., 2024): data → layers → awareness → split → finetune → BLEU.

One call runs the paper's whole method and its baselines/ablations on the same data and
step budget, and writes everything into one folder: the layer selection, awareness and
neuron split (with their plots), one training log and one BLEU/chrF table per method,
sample translations, the transfer matrix when asked, and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lsn_mech.errors import LsnMechError
from lsn_mech.intervals import Estimate, SeedSummary, seed_summary
from lsn_mech.pipelines.configs import INTERVAL_FIELDS, IntervalSettings
from lsn_mech.pipelines.inputs import load_job_model
from lsn_mech.pipelines.landermt_methods import (
    ALL_METHODS,
    FIVE_SHOT,
    METHOD_LABELS,  # noqa: F401  (still importable from this module)
    TRAINED_METHODS,
    ZERO_SHOT,
)
from lsn_mech.pipelines.landermt_records import load_method_run, save_method_run
from lsn_mech.pipelines.landermt_significance import compare_with_landermt
from lsn_mech.pipelines.stages import start_job
from lsn_mech.pipelines.validation import check_fits_model, validate_config


class LandermtConfigError(LsnMechError, ValueError):
    """A LANDeRMT job setting that cannot work."""


@dataclasses.dataclass
class LandermtConfig(IntervalSettings):
    """Every parameter of the job.

    The method's parameters default to the paper's (``k = 4``, ``ε = 0.9``, AdamW, batch
    8, weight decay as AdamW's default 0.01); the step budget, learning rate and gradient
    accumulation default to a CPU-sized run (the paper: 12,500 iterations per pair,
    lr 5e-5, accumulation 10), documented in docs/landermt.md with measured results.
    """

    model: str = "gemma-3-270m"
    directions: tuple[str, ...] = ("en-fr", "en-zh", "en-de")
    output: Path = Path("lsn_runs/landermt")
    train_pairs: int = 2_000
    test_pairs: int = 200
    seed: int = 0
    # detection
    k: int = 4
    attribute_to: str = "next"
    layer_batches: int = 4
    epsilon: float = 0.9
    awareness_source: str = "pairs"
    awareness_batches: int = 6
    awareness_reduce: str = "batch"
    # routing
    car_formula: str = "paper"
    learned_car: bool = True
    # finetuning
    methods: tuple[str, ...] = ALL_METHODS
    steps: int = 45
    batch_size: int = 8
    grad_accumulation: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.01
    lora_r: int = 8
    lora_alpha: int = 16
    max_length: int = 128
    # evaluation
    shots: int = 5
    max_new_tokens: int = 48
    eval_batch_size: int = 8
    transfer: bool = False
    # uncertainty: BLEU/chrF intervals and paired tests (sacreBLEU's bootstrap), and the
    # training seeds of the training-based methods (mean ± sd over them)
    resamples: int = 1000
    confidence: float = 0.95
    bootstrap_seed: int = 0
    seeds: tuple[int, ...] = (0,)
    resume: bool = False
    device: str | None = None
    dtype: str | None = None
    report_to: str = "none"

    def pairs(self) -> list[tuple[str, str]]:
        """``directions`` as ``(src, tgt)`` tuples."""
        result = []
        for direction in self.directions:
            parts = direction.split("-")
            if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
                raise LandermtConfigError(
                    f"Direction {direction!r} is not 'src-tgt' with two different language "
                    "codes; write e.g. 'en-fr'."
                )
            result.append((parts[0], parts[1]))
        return result

    def languages(self) -> list[str]:
        """Every language of the directions, in first-seen order."""
        return list(dict.fromkeys(lang for pair in self.pairs() for lang in pair))

    def check(self) -> None:
        self.pairs()
        unknown = [m for m in self.methods if m not in ALL_METHODS]
        if unknown:
            raise LandermtConfigError(
                f"Unknown methods {unknown}; choose from {', '.join(ALL_METHODS)}."
            )
        if self.awareness_source not in ("pairs", "monolingual"):
            raise LandermtConfigError(
                f"awareness_source must be 'pairs' or 'monolingual', got {self.awareness_source!r}."
            )
        if self.steps < 1 or self.batch_size < 1 or self.test_pairs < 1:
            raise LandermtConfigError("steps, batch_size and test_pairs must be at least 1.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise LandermtConfigError(
                f"seeds must name one or more different seeds, got {list(self.seeds)}; "
                "e.g. --seeds 0 1 2."
            )

    def result_key(self) -> dict[str, Any]:
        """The settings a method's translations depend on: a saved method run is reused
        by ``--resume`` only when they are unchanged (intervals are recomputed anyway)."""
        skip = {"output", "methods", "seeds", "transfer", "report_to", "resume"}
        skip |= set(INTERVAL_FIELDS)
        return {k: v for k, v in self.to_dict().items() if k not in skip}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["output"] = str(self.output)
        data["directions"] = list(self.directions)
        data["methods"] = list(self.methods)
        data["seeds"] = list(self.seeds)
        return data


@dataclasses.dataclass
class MethodResult:
    """One row of Table 1/2: a method's scores per direction and what it trained."""

    method: str
    bleu: dict[str, float]
    chrf: dict[str, float]
    trainable_parameters: int
    train_seconds: float
    eval_seconds: float
    final_loss: float | None = None
    unchanged_outside_masks: bool | None = None
    #: each direction's score with its interval (sacreBLEU's bootstrap over the test
    #: sentences) for the first seed; empty in results from before intervals existed
    bleu_intervals: dict[str, Estimate] = dataclasses.field(default_factory=dict)
    chrf_intervals: dict[str, Estimate] = dataclasses.field(default_factory=dict)
    #: ``{direction: {seed: score}}`` of a training-based method run with several seeds
    #: (``bleu``/``chrf`` then hold the mean over the seeds); one seed otherwise
    bleu_per_seed: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)
    chrf_per_seed: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)

    @property
    def mean_bleu(self) -> float:
        return sum(self.bleu.values()) / len(self.bleu)

    def seed_summary(self, direction: str, metric: str = "bleu") -> SeedSummary:
        """Mean ± sd over the seeds and each seed's value (one seed: sd 0)."""
        per_seed = (self.bleu_per_seed if metric == "bleu" else self.chrf_per_seed).get(direction)
        if not per_seed:
            return seed_summary({0: (self.bleu if metric == "bleu" else self.chrf)[direction]})
        return seed_summary(per_seed)

    def estimate(self, direction: str, metric: str = "bleu") -> Estimate:
        """The first seed's score with its interval (a point without one)."""
        found = (self.bleu_intervals if metric == "bleu" else self.chrf_intervals).get(direction)
        if found is not None:
            return found
        return Estimate.point((self.bleu if metric == "bleu" else self.chrf)[direction])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MethodResult:
        """Inverse of `to_dict`; files from before intervals and seeds load too."""
        fields = dict(data)
        for name in ("bleu_intervals", "chrf_intervals"):
            fields[name] = {d: Estimate.from_dict(e) for d, e in fields.get(name, {}).items()}
        for name in ("bleu_per_seed", "chrf_per_seed"):
            fields[name] = {
                d: {int(s): float(v) for s, v in by_seed.items()}
                for d, by_seed in fields.get(name, {}).items()
            }
        return cls(**fields)


def combine_seeds(per_seed: Mapping[int, MethodResult]) -> MethodResult:
    """One table row from a method's runs with several seeds: ``bleu``/``chrf`` the mean
    over seeds, every seed's score kept, the intervals and final loss of the first seed,
    training seconds the mean per seed, "unchanged outside the masks" only if in every run."""
    runs = list(per_seed.values())
    first = runs[0]
    if len(runs) == 1:
        return dataclasses.replace(
            first,
            bleu_per_seed={d: {s: r.bleu[d] for s, r in per_seed.items()} for d in first.bleu},
            chrf_per_seed={d: {s: r.chrf[d] for s, r in per_seed.items()} for d in first.chrf},
        )
    bleu = {d: {s: r.bleu[d] for s, r in per_seed.items()} for d in first.bleu}
    chrf = {d: {s: r.chrf[d] for s, r in per_seed.items()} for d in first.chrf}
    flags = {r.unchanged_outside_masks for r in runs}
    return dataclasses.replace(
        first,
        bleu={d: seed_summary(v).mean for d, v in bleu.items()},
        chrf={d: seed_summary(v).mean for d, v in chrf.items()},
        train_seconds=round(sum(r.train_seconds for r in runs) / len(runs), 1),
        eval_seconds=round(sum(r.eval_seconds for r in runs) / len(runs), 1),
        unchanged_outside_masks=(None if flags == {None} else flags == {True}),
        bleu_per_seed=bleu,
        chrf_per_seed=chrf,
    )


@dataclasses.dataclass
class LandermtReport:
    """Where the job wrote its results, and the main objects."""

    output: Path
    layers: Any
    awareness: Any
    split: Any
    results: dict[str, MethodResult]
    samples: dict[str, dict[str, list[str]]]
    transfer: dict[str, dict[str, float]] | None
    seconds: dict[str, float]
    #: LANDeRMT against each other method (`landermt_significance.Comparison`)
    significance: list[Any] = dataclasses.field(default_factory=list)

    @property
    def report_path(self) -> Path:
        return self.output / "report.md"


# ----- data --------------------------------------------------------------------------
def load_translation_data(
    config: LandermtConfig,
) -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], Any]]:
    """Train and test translation examples per direction, from the embedded Bible."""
    from lsn_mech.corpora import bible_pairs, translation_examples

    train, test = {}, {}
    for src, tgt in config.pairs():
        train[(src, tgt)] = translation_examples(
            bible_pairs(src, tgt, split="train", max_pairs=config.train_pairs, seed=config.seed),
            seed=config.seed,
        )
        test[(src, tgt)] = translation_examples(
            bible_pairs(src, tgt, split="test", max_pairs=config.test_pairs, seed=config.seed),
            seed=config.seed,
        )
    return train, test


def training_batches(
    tokenizer: Any, train: Mapping[tuple[str, str], Any], config: LandermtConfig
) -> dict[tuple[str, str], list[dict[str, Tensor]]]:
    """Enough shuffled batches per direction for the step budget (and for detection)."""
    from lsn_mech.corpora import translation_batches

    n_pairs = len(train)
    per_pair_steps = -(-config.steps // n_pairs)
    needed = max(
        per_pair_steps * config.grad_accumulation, config.layer_batches, config.awareness_batches
    )
    result = {}
    for pair, examples in train.items():
        stream = translation_batches(
            tokenizer,
            examples,
            batch_size=config.batch_size,
            max_length=config.max_length,
            shuffle=True,
            seed=config.seed,
        )
        result[pair] = [batch for _, batch in zip(range(needed), stream)]
    return result


def awareness_batches(
    tokenizer: Any,
    batches: Mapping[tuple[str, str], Sequence[dict[str, Tensor]]],
    config: LandermtConfig,
) -> dict[str, list[dict[str, Tensor]]]:
    """Per language, the batches its awareness is scored on (``config.awareness_source``).

    ``"pairs"``: translation batches of every direction in which the language is the
    source or the target, interleaved, ``awareness_batches`` in all. ``"monolingual"``:
    windows of the language's own Bible text (training books) with the LM loss.
    """
    languages = config.languages()
    if config.awareness_source == "pairs":
        result = {}
        for lang in languages:
            streams = [list(b) for pair, b in batches.items() if lang in pair]
            mixed = [batch for group in zip(*streams) for batch in group]
            result[lang] = mixed[: config.awareness_batches]
        return result
    from lsn_mech.corpora import bible, tokenize_windows

    corpus = bible(languages)
    result = {}
    budget = config.awareness_batches * config.batch_size * config.max_length
    for lang in languages:
        windows = tokenize_windows(
            tokenizer, corpus.texts(lang), window=config.max_length, max_tokens=budget
        )
        result[lang] = [
            {
                "input_ids": w.input_ids,
                "attention_mask": w.attention_mask.long(),
                "labels": w.input_ids.masked_fill(~w.loss_mask, -100),
            }
            for w in windows.batches(config.batch_size)
        ][: config.awareness_batches]
    return result


# ----- methods -----------------------------------------------------------------------
def _masks_for(
    method: str, hf: torch.nn.Module, pairs: list[tuple[str, str]], layers: list[int], split: Any
) -> tuple[torch.nn.Module, dict[tuple[str, str], dict[str, Tensor]]]:
    from lsn_mech.training import baselines

    if method == "full":
        return hf, baselines.full(hf, pairs)
    if method == "layers":
        return hf, baselines.layers(hf, pairs, layers)
    if method == "lg":
        return hf, baselines.lg(hf, pairs, split.general)
    if method == "ls":
        return hf, baselines.ls(hf, pairs, split.specific)
    if method == "landermt":
        return hf, baselines.landermt(hf, pairs, split.general, split.specific)
    raise LandermtConfigError(f"{method!r} is not a trained method.")  # pragma: no cover


def _car_formula(value: str | float) -> str | float:
    """``"paper"`` / ``"swapped"`` stay names; a number (also given as text) is a constant."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _unchanged_outside(
    model: torch.nn.Module,
    before: Mapping[str, Tensor],
    masks: Mapping[tuple[str, str], Mapping[str, Tensor]],
) -> bool:
    """Every entry outside the union of the pairs' masks is bit-identical to ``before``."""
    for name, param in model.named_parameters():
        if name not in before:
            continue  # routing gates
        allowed = torch.zeros(param.shape, dtype=torch.bool, device=param.device)
        for pair_masks in masks.values():
            if name in pair_masks:
                allowed |= pair_masks[name].to(param.device)
        if not torch.equal(param.detach()[~allowed], before[name][~allowed]):
            return False
    return True


def _evaluate(
    model: Any,
    tokenizer: Any,
    test: Mapping[tuple[str, str], Any],
    config: LandermtConfig,
    *,
    routing: Any = None,
    shots: int = 0,
    train: Mapping[tuple[str, str], Any] | None = None,
) -> dict[str, Any]:
    """``{direction: TranslationResult}``; a router is set to each pair first."""
    from lsn_mech.evaluate import evaluate_translation

    results = {}
    for (src, tgt), examples in test.items():
        if routing is not None:
            routing.set_pair(src, tgt)
        results[f"{src}-{tgt}"] = evaluate_translation(
            model,
            tokenizer,
            examples,
            shots=shots,
            train_examples=(train or {}).get((src, tgt)) if shots else None,
            seed=config.seed,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.eval_batch_size,
            progress=False,
            bootstrap=config.bootstrap(),
        )
    return results


@dataclasses.dataclass(frozen=True)
class MethodRun:
    """What `run_method` returns: the table row, every direction's `TranslationResult`,
    and what training left (``log``, ``model`` and ``routing`` are ``None`` when the
    method does not train / route)."""

    result: MethodResult
    evaluated: dict[str, Any]
    log: Any = None
    model: Any = None
    routing: Any = None

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as the old ``(result, evaluated, (log, model, routing))`` tuple."""
        return iter((self.result, self.evaluated, (self.log, self.model, self.routing)))


def run_method(
    method: str,
    bridge: Any,
    tokenizer: Any,
    batches: Mapping[tuple[str, str], list[dict[str, Tensor]]],
    test: Mapping[tuple[str, str], Any],
    config: LandermtConfig,
    *,
    layers: list[int],
    split: Any,
    awareness: Any,
    train: Mapping[tuple[str, str], Any] | None = None,
    progress: bool = True,
    run_name: str | None = None,
) -> MethodRun:
    """Train (if the method trains) a fresh HF copy and evaluate every test direction.

    With ``config.report_to`` other than ``"none"``, training reports to
    ``config.output/runs/<run_name>`` (default: the method's name), and the run ends
    with the evaluation's BLEU and chrF per direction.
    """
    from lsn_mech.models.hf import plain_hf_model
    from lsn_mech.training import (
        ConditionalAwarenessRouting,
        baselines,
        selective_finetune,
        trainable_parameter_count,
    )
    from lsn_mech.training.tracking import Tracker

    hf = plain_hf_model(bridge, copy=True)
    pairs = list(batches)
    log = None
    routing = None
    trainable = 0
    unchanged: bool | None = None
    tracker: Tracker | None = None
    train_start = time.perf_counter()
    if method in (ZERO_SHOT, FIVE_SHOT):
        model = hf
    else:
        if method == "lora":
            model, masks = baselines.lora(hf, pairs, r=config.lora_r, alpha=config.lora_alpha)
        else:
            model, masks = _masks_for(method, hf, pairs, layers, split)
        extra: list[torch.nn.Parameter] = []
        on_pair = None
        if method == "landermt":
            routing = ConditionalAwarenessRouting(
                layers,
                split.general,
                split.specific,
                awareness=awareness.full(),
                languages=awareness.languages,
                car_formula=_car_formula(config.car_formula),
                learned=config.learned_car,
                # gates for every evaluated direction; untrained ones keep their static start
                pairs=list(dict.fromkeys([*pairs, *test])),
                d_model=int(hf.config.hidden_size),
            ).to(next(hf.parameters()).device)
            routing.install(hf)
            extra = list(routing.parameters())
            on_pair = routing.set_pair
        before = (
            {name: p.detach().clone() for name, p in hf.named_parameters()}
            if method != "full" and method != "lora"
            else None
        )
        tracker = _method_tracker(config, run_name or method, method)
        try:
            log = selective_finetune(
                model,
                batches,
                masks,
                steps=config.steps,
                lr=config.lr,
                weight_decay=config.weight_decay,
                grad_accumulation=config.grad_accumulation,
                extra_parameters=extra,
                on_pair=on_pair,
                progress=progress,
                report_to=tracker,
            )
        except BaseException:
            tracker.finish()  # what was logged stays readable; the scores never come
            raise
        trainable = trainable_parameter_count(masks) + sum(p.numel() for p in extra)
        if before is not None:
            unchanged = _unchanged_outside(hf, before, masks)
            del before
    train_seconds = time.perf_counter() - train_start
    eval_start = time.perf_counter()
    shots = config.shots if method == FIVE_SHOT else 0
    evaluated = _evaluate(model, tokenizer, test, config, routing=routing, shots=shots, train=train)
    result = MethodResult(
        method=method,
        bleu={d: r.scores.bleu for d, r in evaluated.items()},
        chrf={d: r.scores.chrf for d, r in evaluated.items()},
        trainable_parameters=int(trainable),
        train_seconds=round(train_seconds, 1),
        eval_seconds=round(time.perf_counter() - eval_start, 1),
        final_loss=(log.steps[-1].loss if log is not None and log.steps else None),
        unchanged_outside_masks=unchanged,
        bleu_intervals={d: r.scores.bleu_interval for d, r in evaluated.items()},
        chrf_intervals={d: r.scores.chrf_interval for d, r in evaluated.items()},
    )
    if tracker is not None:
        _report_scores(tracker, result, step=len(log.steps) if log is not None else 0)
    return MethodRun(result, evaluated, log=log, model=model, routing=routing)


def _method_tracker(config: LandermtConfig, run_name: str, method: str) -> Any:
    """The tracker of one trained method: ``OUTPUT/runs/<run_name>`` (none: a no-op)."""
    from lsn_mech.training.tracking import make_tracker

    settings = {**config.to_dict(), "method": method}
    return make_tracker(config.report_to, Path(config.output) / "runs", run_name, settings)


def _report_scores(tracker: Any, result: MethodResult, *, step: int) -> None:
    """End a method's run with its BLEU and chrF per direction (after the last step)."""
    try:
        scores = {f"eval/bleu_{d}": v for d, v in result.bleu.items()}
        scores |= {f"eval/chrf_{d}": v for d, v in result.chrf.items()}
        tracker.log({**scores, "eval/mean_bleu": result.mean_bleu}, step)
    finally:
        tracker.finish()


def transfer_matrix(
    bridge: Any,
    tokenizer: Any,
    batches: Mapping[tuple[str, str], list[dict[str, Tensor]]],
    test: Mapping[tuple[str, str], Any],
    config: LandermtConfig,
    *,
    layers: list[int],
    split: Any,
    awareness: Any,
    baseline: Mapping[str, float],
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Fig. 3: LANDeRMT trained on one direction, BLEU change on every direction."""
    matrix: dict[str, dict[str, float]] = {}
    for pair in batches:
        single = dataclasses.replace(config, steps=max(1, config.steps // len(batches)))
        result = run_method(
            "landermt",
            bridge,
            tokenizer,
            {pair: batches[pair]},
            test,
            single,
            layers=layers,
            split=split,
            awareness=awareness,
            progress=progress,
            run_name=f"transfer_{pair[0]}-{pair[1]}",
        ).result
        matrix[f"{pair[0]}-{pair[1]}"] = {d: result.bleu[d] - baseline[d] for d in result.bleu}
        gc.collect()
    return matrix


# ----- the job -----------------------------------------------------------------------
def run_landermt(
    config: LandermtConfig, *, progress: bool = True, log: Callable[[str], None] = print
) -> LandermtReport:
    """Run the whole LANDeRMT reproduction and write ``config.output`` (module doc)."""
    from lsn_mech.detect import select_layers, split_awareness, taylor_awareness
    from lsn_mech.experiments import neuron_projection
    from lsn_mech.pipelines.landermt_report import write_landermt_report

    validate_config(config)  # each field first, so a refusal names its flag
    config.check()
    output = Path(config.output)
    timer = start_job("landermt", config, output, log)
    seconds = timer.seconds
    torch.manual_seed(config.seed)
    with timer("load model and data"):
        bridge = load_job_model(config.model, device=config.device, dtype=config.dtype)
        check_fits_model(config, bridge)
        tokenizer = bridge.tokenizer
        n_layers = int(bridge.cfg.n_layers)
        if not 1 <= config.k <= n_layers - 1:
            raise LandermtConfigError(
                f"k = {config.k} layers cannot be selected from the {n_layers - 1} transitions "
                f"of a {n_layers}-layer model; pass --k between 1 and {n_layers - 1}."
            )
        train, test = load_translation_data(config)
        batches = training_batches(tokenizer, train, config)
    with timer("layer selection (Eq. 1-2)"):
        selection = select_layers(
            bridge,
            {p: b[: config.layer_batches] for p, b in batches.items()},
            k=config.k,
            attribute_to=config.attribute_to,  # type: ignore[arg-type]
            progress=progress,
        )
        layers = selection.layers()
        selection.save(output / "layers.json")
    with timer("awareness (Eq. 3-4)"):
        awareness = taylor_awareness(
            bridge,
            awareness_batches(tokenizer, batches, config),
            layers,
            reduce=config.awareness_reduce,  # type: ignore[arg-type]
            progress=progress,
        )
    with timer("general/specific split (Eq. 5)"):
        split = split_awareness(awareness, epsilon=config.epsilon)
        split.save(output / "neurons")
        top = layers[-1]
        texts = {}
        for (src, tgt), examples in test.items():
            texts.setdefault(src, list(examples["src_text"]))
            texts.setdefault(tgt, list(examples["tgt_text"]))
        projections = {
            kind: neuron_projection(bridge, texts, neurons, top, name=kind)
            for kind, neurons in (("general", split.general), ("specific", split.specific.union()))
        }
        for kind, projection in projections.items():
            projection.save(output / f"projection_{kind}.json")
    results: dict[str, MethodResult] = {}
    translations: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for method in config.methods:
        with timer(f"method {method}"):
            per_seed: dict[int, MethodResult] = {}
            seeds = config.seeds if method in TRAINED_METHODS else config.seeds[:1]
            for index, seed in enumerate(seeds):
                suffix = "" if index == 0 else f"_seed{seed}"
                saved = load_method_run(output, method, seed, config) if config.resume else None
                if saved is not None:
                    per_seed[seed] = MethodResult.from_dict(saved[0])
                    runs.setdefault(method, {})[seed] = saved[1]
                    log(f"[landermt] {method} (seed {seed}): reused the saved run (--resume)")
                    continue
                torch.manual_seed(seed)
                seed_batches = (
                    batches
                    if seed == config.seed
                    else training_batches(tokenizer, train, dataclasses.replace(config, seed=seed))
                )
                result, evaluated, (train_log, _, _) = run_method(
                    method,
                    bridge,
                    tokenizer,
                    seed_batches,
                    test,
                    config,
                    layers=layers,
                    split=split,
                    awareness=awareness,
                    train=train,
                    progress=progress,
                    run_name=f"{method}{suffix}",
                )
                per_seed[seed], runs.setdefault(method, {})[seed] = result, evaluated
                if train_log is not None:
                    train_log.save(output / "training" / f"{method}{suffix}.json")
                save_method_run(output, method, seed, config, result, evaluated, suffix)
                gc.collect()
            results[method] = combine_seeds(per_seed)
            translations[method] = runs[method][seeds[0]]
            row = results[method]
            bleu = ", ".join(f"{d} {row.estimate(d).format()}" for d in row.bleu)
            log(f"[landermt] {method}: BLEU {bleu}")
        gc.collect()
    with timer("significance (sacreBLEU paired bootstrap)"):
        significance = compare_with_landermt(runs, config.bootstrap())
    transfer = None
    if config.transfer:
        with timer("transfer matrix (Fig. 3)"):
            baseline = (
                results[ZERO_SHOT].bleu
                if ZERO_SHOT in results
                else run_method(
                    ZERO_SHOT,
                    bridge,
                    tokenizer,
                    batches,
                    test,
                    config,
                    layers=layers,
                    split=split,
                    awareness=awareness,
                ).result.bleu
            )
            transfer = transfer_matrix(
                bridge,
                tokenizer,
                batches,
                test,
                config,
                layers=layers,
                split=split,
                awareness=awareness,
                baseline=baseline,
                progress=progress,
            )
    samples = _samples(translations)
    report = LandermtReport(
        output=output,
        layers=selection,
        awareness=awareness,
        split=split,
        results=results,
        samples=samples,
        transfer=transfer,
        seconds=seconds,
        significance=significance,
    )
    write_landermt_report(report, config=config, projections=projections)
    timer.finish(output)
    log(f"[landermt] report: {output / 'report.md'}")
    return report


def _samples(
    translations: Mapping[str, Mapping[str, Any]], n: int = 3
) -> dict[str, dict[str, list[str]]]:
    """The first ``n`` sources, references and each method's outputs, per direction."""
    samples: dict[str, dict[str, list[str]]] = {}
    for method, by_direction in translations.items():
        for direction, result in by_direction.items():
            entry = samples.setdefault(
                direction,
                {"source": list(result.sources[:n]), "reference": list(result.references[:n])},
            )
            entry[method] = list(result.hypotheses[:n])
    return samples
