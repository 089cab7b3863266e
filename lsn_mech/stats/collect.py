"""``collect_stats``: one streaming, resumable pass; memory independent of the corpus size."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lsn_mech._version import __version__
from lsn_mech.corpora.sources import (
    corpus_languages,
    corpus_provenance,
    language_windows,
)
from lsn_mech.errors import (
    EmptyCorpusError,
    InvalidSettingError,
    MissingLanguageError,
    WrongInputError,
)
from lsn_mech.files import prepare_folder
from lsn_mech.models.fingerprint import weights_fingerprint
from lsn_mech.models.limits import check_count, check_window
from lsn_mech.models.protocol import HookedModel, model_device, model_id
from lsn_mech.models.runtime import capture
from lsn_mech.models.sites import SITES, hook_sites
from lsn_mech.provenance import Provenance
from lsn_mech.stats.accumulators import Accumulator, MomentAccumulator
from lsn_mech.stats.checkpoint import Checkpointer, Position
from lsn_mech.stats.container import ActivationStats
from lsn_mech.stats.nonfinite import NonFiniteGuard, NonFiniteMode


@dataclasses.dataclass(frozen=True)
class BatchDone:
    """What ``callback`` receives after every batch."""

    language: str
    batch: int
    n_batches: int
    tokens: int


def collect_stats(
    model: HookedModel,
    corpus: Any,
    *,
    languages: Sequence[str] | None = None,
    max_tokens_per_language: int | None = 100_000,
    batch_size: int = 8,
    window: int = 512,
    sites: Sequence[str] = SITES,
    split: str | None = "train",
    accumulators: Sequence[Accumulator] | None = None,
    output_dir: str | Path | None = None,
    checkpoint_every: int = 25,
    checkpoint_seconds: float = 120.0,
    progress: bool = True,
    callback: Callable[[BatchDone], None] | None = None,
    nonfinite: NonFiniteMode = "raise",
) -> ActivationStats:
    """Per-language activation statistics of every MLP neuron, in one streaming pass.

    For each language, up to ``max_tokens_per_language`` counted tokens of ``split`` are
    packed into windows of ``window`` tokens and run through the model under
    ``no_grad``; hooks at ``sites`` fold the activations of counted positions (never
    padding, not the BOS position) into accumulators on the model's device. The pass
    stops after the last hooked layer, so the unembedding is never computed.

    With ``output_dir`` the run checkpoints every ``checkpoint_every`` batches or
    ``checkpoint_seconds`` seconds, whichever comes first, and when it is interrupted:
    Ctrl-C or SIGTERM stops it after the current batch, checkpoints and raises
    ``KeyboardInterrupt``. Calling again with the same arguments resumes and gives
    statistics identical to an uninterrupted run. The final statistics are written to
    ``output_dir/stats.safetensors``.

    ``nonfinite``: on a NaN or inf activation, ``"raise"`` a `NonFiniteActivationError`
    naming the layer, site and language, or ``"count"``: skip that batch and record the
    skips in ``stats.provenance.parameters["nonfinite"]`` (`lsn_mech.stats.nonfinite`).
    """
    check_window(model, window, texts=corpus)  # fail before any forward pass, not inside one
    sites = tuple(sites)
    unknown = [s for s in sites if s not in SITES]
    if unknown or not sites:
        raise InvalidSettingError(f"Unknown sites {unknown}; choose from {', '.join(SITES)}.")
    check_count("batch_size", batch_size)
    check_count("checkpoint_every", checkpoint_every)
    if output_dir is not None:
        prepare_folder(output_dir, argument="output_dir")
    for accumulator in accumulators or ():
        if not isinstance(accumulator, Accumulator):
            raise WrongInputError(
                f"accumulators holds {accumulator!r}, not an accumulator; pass instances, "
                "e.g. [MomentAccumulator(sites), QuantileAccumulator(sites)] from lsn_mech.stats."
            )
    geometry = hook_sites(model)
    available = corpus_languages(corpus)
    chosen = list(languages) if languages is not None else available
    missing = [x for x in chosen if x not in available]
    if missing:
        raise MissingLanguageError(
            f"Languages {', '.join(missing)} are not in the corpus "
            f"(it has {', '.join(available)}). "
            "Load them, e.g. lsn_mech.corpora.bible([...])."
        )
    if not chosen:
        raise EmptyCorpusError("No languages to collect statistics for.")
    accumulator_list = list(accumulators) if accumulators else [MomentAccumulator(sites)]
    device = model_device(model)
    parameters = {
        "languages": chosen,
        "max_tokens_per_language": max_tokens_per_language,
        "batch_size": batch_size,
        "window": window,
        "sites": list(sites),
        "split": split,
    }
    if output_dir is not None:
        # The run key covers the weights: a model finetuned in place keeps its id. Only a
        # run that can resume needs it (reading every weight costs ~0.7 s for 270M).
        parameters["weights_fingerprint"] = weights_fingerprint(model)
    provenance = corpus_provenance(
        corpus, model_id=model_id(model), method="collect_stats", parameters=parameters
    )
    checkpointer = None
    if output_dir is not None:
        run_key = {
            "model_id": provenance.model_id,
            "corpus_hash": provenance.corpus_hash,
            "accumulators": [a.config() for a in accumulator_list],
            **parameters,
        }
        checkpointer = Checkpointer(output_dir, run_key)
    stats, position = _start(checkpointer, chosen, geometry, accumulator_list, provenance, device)
    if position.finished:
        return stats
    guard = NonFiniteGuard(nonfinite)
    runner = _HookedRun(model, geometry, accumulator_list, sites, stats, guard)
    with _deferred_interrupts() as stop_requested:
        return _run(
            runner,
            stats,
            position,
            chosen,
            corpus,
            model,
            checkpointer,
            device,
            callback,
            stop_requested,
            split=split,
            window=window,
            batch_size=batch_size,
            max_tokens=max_tokens_per_language,
            checkpoint_every=checkpoint_every,
            checkpoint_seconds=checkpoint_seconds,
            progress=progress,
        )


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[list[bool]]:
    """Let Ctrl-C / SIGTERM stop the run between batches, never in the middle of one.

    The first signal sets a flag the batch loop checks; it then checkpoints and raises
    ``KeyboardInterrupt``. A second signal interrupts at once (without a checkpoint).
    """
    requested = [False]
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def request_stop(signum: int, frame: Any) -> None:
        if requested[0]:
            raise KeyboardInterrupt(f"signal {signum}")
        requested[0] = True

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _run(
    runner: _HookedRun,
    stats: ActivationStats,
    position: Position,
    chosen: list[str],
    corpus: Any,
    model: HookedModel,
    checkpointer: Checkpointer | None,
    device: torch.device,
    callback: Callable[[BatchDone], None] | None,
    stop_requested: list[bool],
    *,
    split: str | None,
    window: int,
    batch_size: int,
    max_tokens: int | None,
    checkpoint_every: int,
    checkpoint_seconds: float,
    progress: bool,
) -> ActivationStats:
    """The batch loop of `collect_stats`, checkpointing as it goes."""
    bar = tqdm(desc="collect_stats", unit="tok", unit_scale=True, disable=not progress)
    last_save = time.monotonic()
    mid_batch = False
    try:
        for language_index in range(position.language, len(chosen)):
            language = chosen[language_index]
            windows = language_windows(
                corpus,
                language,
                model.tokenizer,
                split=split,
                window=window,
                max_tokens=max_tokens,
            )
            batches = list(windows.batches(batch_size))
            first = position.batch if language_index == position.language else 0
            if checkpointer is not None and first > len(batches):
                raise checkpointer.batch_out_of_range(language, first, len(batches))
            bar.set_description(f"collect_stats [{language}]")
            for batch_index in range(first, len(batches)):
                mid_batch = True  # a failure now leaves a partial batch in the state
                counted = runner.run(batches[batch_index].to(device), language_index)
                position = Position(language=language_index, batch=batch_index + 1)
                mid_batch = False
                bar.update(counted)
                if callback is not None:
                    callback(BatchDone(language, batch_index, len(batches), counted))
                due = (batch_index + 1) % checkpoint_every == 0
                if checkpointer and (due or time.monotonic() - last_save > checkpoint_seconds):
                    checkpointer.save(stats, position)
                    last_save = time.monotonic()
                if stop_requested[0]:
                    raise KeyboardInterrupt("stopped by signal; rerun to resume")
            position = Position(language=language_index + 1, batch=0)
    except BaseException:
        if checkpointer is not None and not mid_batch:
            checkpointer.save(stats, position)
        raise
    finally:
        bar.close()
    if checkpointer is not None:
        checkpointer.save(stats, Position(language=len(chosen), finished=True))
    return stats


def _start(
    checkpointer: Checkpointer | None,
    languages: list[str],
    geometry: Any,
    accumulators: list[Accumulator],
    provenance: Provenance,
    device: torch.device,
) -> tuple[ActivationStats, Position]:
    if checkpointer is not None:
        restored = checkpointer.restore(device)
        if restored is not None:
            return restored
    state: dict[str, torch.Tensor] = {}
    for accumulator in accumulators:
        state.update(
            accumulator.init_state(geometry.n_layers, geometry.d_mlp, len(languages), device)
        )
    stats = ActivationStats(
        languages=languages,
        n_layers=geometry.n_layers,
        d_mlp=geometry.d_mlp,
        sites=tuple(dict.fromkeys(s for a in accumulators for s in a.sites)),
        tokens=torch.zeros(len(languages), dtype=torch.int64, device=device),
        state=state,
        accumulators=[a.config() for a in accumulators],
        provenance=provenance.replace(library_version=__version__),
    )
    return stats, Position()


class _HookedRun:
    """Folds the activations of one batch into ``stats``; the capture stops after the last
    hooked site, so the unembedding is never computed."""

    def __init__(
        self,
        model: HookedModel,
        geometry: Any,
        accumulators: list[Accumulator],
        sites: tuple[str, ...],
        stats: ActivationStats,
        guard: NonFiniteGuard,
    ) -> None:
        self.model = model
        self.stats = stats
        self.guard = guard
        self.mask: torch.Tensor | None = None
        self.language = 0
        self.targets: dict[str, tuple[str, int, list[Accumulator]]] = {
            geometry.name(site, layer): (site, layer, [a for a in accumulators if site in a.sites])
            for layer in range(geometry.n_layers)
            for site in SITES
            if site in sites
        }
        self.names = list(self.targets)

    def _fold(self, name: str, activation: torch.Tensor) -> None:
        site, layer, users = self.targets[name]
        counted = activation[self.mask]
        if not self.guard.admits(site, layer, self.stats.languages[self.language], counted):
            return
        for accumulator in users:
            accumulator.update(self.stats.state, site, layer, self.language, counted)

    @torch.no_grad()
    def run(self, batch: Any, language: int) -> int:
        self.mask = batch.stats_mask
        self.language = language
        self.guard.begin(self.stats.state)
        capture(
            self.model,
            batch.input_ids,
            self.names,
            attention_mask=batch.attention_mask,
            callback=self._fold,
        )
        counted = int(batch.stats_mask.sum())
        if not self.guard.end(self.stats, counted):
            return 0
        self.stats.tokens[language] += counted
        return counted
