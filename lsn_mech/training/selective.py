"""Selective finetuning (LANDeRMT §3.3): train only some entries of some parameters,
with a different set of entries for each language pair.

Why not simply zero the gradients outside the mask? Because AdamW moves a parameter
even where its gradient is zero: the decoupled weight decay shrinks every entry of a
tensor, and the first moment left over from an earlier pair (whose mask covered the
entry) keeps pushing it. So the loop enforces each pair's mask at three places:

1. only the tensors that the current pair's mask touches require a gradient during its
   turn; the others get no gradient, and AdamW skips tensors without one entirely;
2. gradient entries outside the mask are zeroed before the step (the optimiser state
   of those entries stays free of this pair's signal);
3. the entries outside the mask are copied before ``optimizer.step()`` and written back
   after it with ``torch.where``, so they are bit-identical whatever AdamW did.

Batches are Hugging Face dicts (``input_ids``, ``attention_mask``, ``labels`` with -100
outside the target). The loss is computed at target positions only, so a 262k-token
vocabulary never meets every position of a batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn
from tqdm.auto import tqdm

from lsn_mech import display
from lsn_mech.errors import EmptyCorpusError, LsnMechError
from lsn_mech.models.runtime import IGNORE_INDEX as IGNORE_INDEX  # kept importable here
from lsn_mech.models.runtime import target_nll_sum, target_positions, unwrap_peft
from lsn_mech.provenance import Provenance
from lsn_mech.results import Result, ResultTable
from lsn_mech.training.tracking import Tracker, open_tracker

Pair = tuple[str, str]
ParameterMasks = dict[str, Bool[Tensor, "..."]]
PairMasks = dict[Pair, ParameterMasks]
Batch = Mapping[str, Any]

LOG_FORMAT = "lsn_mech.TrainingLog"


class TrainingSetupError(LsnMechError, ValueError):
    """Masks, batches or parameters handed to the training loop do not fit together."""


def _check_settings(steps: int | None, lr: float, weight_decay: float) -> None:
    """Refuse settings AdamW or the step loop would reject with a raw error (or run on
    with a NaN learning rate)."""
    if steps is not None and (isinstance(steps, bool) or steps < 0):
        raise TrainingSetupError(f"steps must be >= 0 or None (until every batch), got {steps}.")
    if not (math.isfinite(lr) and lr >= 0):
        raise TrainingSetupError(f"lr must be a finite number >= 0, got {lr} (the paper: 5e-5).")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise TrainingSetupError(f"weight_decay must be a finite number >= 0, got {weight_decay}.")


# ---------------------------------------------------------------------------- loss


unwrap = unwrap_peft
"""The Hugging Face model inside a PEFT wrapper (kept name; `lsn_mech.models.runtime`'s)."""


def target_loss_sum(model: nn.Module, batch: Batch) -> tuple[Float[Tensor, ""], int]:
    """Summed next-token cross-entropy over target tokens (float32), and how many there are.

    `lsn_mech.models.runtime.target_nll_sum` on the Hugging Face model inside ``model``:
    the decoder body runs, and the unembedding (with Gemma's final logit softcapping) is
    applied at target positions only, all at once (chunking saves no memory when the
    backward pass keeps every chunk's log-probabilities).
    """
    total, count = target_nll_sum(unwrap(model), batch, logits_chunk=None)
    return total.float(), count


def target_loss(model: nn.Module, batch: Batch) -> Float[Tensor, ""]:
    """Mean cross-entropy over target tokens: what ``model(**batch).loss`` returns."""
    total, count = target_loss_sum(model, batch)
    return total / max(count, 1)


def count_targets(batch: Batch) -> int:
    """Target tokens of a batch (labels after the first position that are not -100)."""
    return int(target_positions(batch["labels"]).sum())


# ---------------------------------------------------------------------------- log


@dataclasses.dataclass(frozen=True)
class TrainingStep:
    """One optimiser step: which pair, its loss over the turn's target tokens, and cost."""

    step: int
    pair: Pair
    loss: float
    lr: float
    seconds: float
    tokens: int


@dataclasses.dataclass
class TrainingLog(Result):
    """Every optimiser step of a run, with the run's settings in ``provenance``."""

    steps: list[TrainingStep] = dataclasses.field(default_factory=list)
    trainable_parameters: int = 0
    provenance: Provenance = dataclasses.field(default_factory=Provenance)

    def pairs(self) -> list[Pair]:
        """Language pairs in order of their first step."""
        return list(dict.fromkeys(s.pair for s in self.steps))

    def losses(self, pair: Pair | None = None) -> list[float]:
        """Loss of each step (of one pair, if given)."""
        return [s.loss for s in self.steps if pair is None or s.pair == pair]

    def median_seconds(self, skip: int = 0) -> float:
        """Median seconds per step after the first ``skip`` (warm-up) steps."""
        times = [s.seconds for s in self.steps[skip:]]
        if not times:
            raise ValueError(f"The log has {len(self.steps)} steps; none left after {skip}.")
        return statistics.median(times)

    @classmethod
    def _revive(cls, fields: dict[str, Any]) -> dict[str, Any]:
        fields["steps"] = [TrainingStep(**{**s, "pair": tuple(s["pair"])}) for s in fields["steps"]]
        return fields

    def tabulate(self) -> ResultTable:
        """One row per optimiser step; the pair as ``src`` and ``tgt`` columns."""
        header = ["step", "src", "tgt", "loss", "lr", "seconds", "tokens"]
        rows = [[s.step, *s.pair, s.loss, s.lr, s.seconds, s.tokens] for s in self.steps]
        return ResultTable(header, rows)

    def _display_summary(self) -> str:
        pairs = ", ".join(f"{a}→{b}" for a, b in self.pairs())
        losses = self.losses()
        loss = f"; loss {losses[0]:.4g} → {losses[-1]:.4g}" if losses else ""
        return (
            f"{display.plural(len(self.steps), 'step')} over {pairs or 'no pair'}{loss}; "
            f"{self.trainable_parameters:,} trainable parameters"
        )

    def plot(self, *, title: str | None = None) -> Any:
        """A plotly loss curve per language pair (``plotly.graph_objects.Figure``)."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for pair in self.pairs():
            chosen = [s for s in self.steps if s.pair == pair]
            fig.add_trace(
                go.Scatter(
                    x=[s.step for s in chosen],
                    y=[s.loss for s in chosen],
                    mode="lines+markers",
                    name=f"{pair[0]}→{pair[1]}",
                )
            )
        fig.update_layout(
            title=title or "Training loss per language pair",
            xaxis_title="optimiser step",
            yaxis_title="cross-entropy (target tokens)",
        )
        return fig


# ---------------------------------------------------------------------------- masks


@dataclasses.dataclass
class _Masked:
    """A trainable tensor and the entries one pair may change (``None``: all of them)."""

    name: str
    param: nn.Parameter
    mask: Bool[Tensor, "..."] | None
    outside: Bool[Tensor, "..."] | None


def _named_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Every name of every parameter, tied aliases (e.g. ``lm_head.weight``) included."""
    return dict(model.named_parameters(remove_duplicate=False))


def _resolve_pair(
    pair: Pair, masks: Mapping[str, Tensor], params: dict[str, nn.Parameter]
) -> list[_Masked]:
    """Check one pair's masks against the model; merge aliases of a tied tensor with OR."""
    merged: dict[int, tuple[str, nn.Parameter, Tensor]] = {}
    for name, mask in masks.items():
        param = params.get(name)
        if param is None:
            raise TrainingSetupError(
                f"Pair {pair}: mask for {name!r}, which is not a parameter of the model. Build "
                f"the masks from the model you train (for LoRA: from the PEFT model)."
            )
        if mask.shape != param.shape or mask.dtype != torch.bool:
            raise TrainingSetupError(
                f"Pair {pair}: mask for {name!r} is {mask.dtype} {tuple(mask.shape)}, the "
                f"parameter is {tuple(param.shape)}; masks must be bool and of the same shape."
            )
        mask = mask.to(param.device)
        if id(param) in merged:
            first, _, previous = merged[id(param)]
            merged[id(param)] = (first, param, previous | mask)
        else:
            merged[id(param)] = (name, param, mask)
    return [_masked(name, param, mask) for name, param, mask in merged.values() if mask.any()]


def _masked(name: str, param: nn.Parameter, mask: Tensor) -> _Masked:
    if bool(mask.all()):
        return _Masked(name, param, None, None)
    return _Masked(name, param, mask, mask.logical_not())


def _resolve(
    model: nn.Module, pairs: Sequence[Pair], trainable: Mapping[Pair, Mapping[str, Tensor]]
) -> dict[Pair, list[_Masked]]:
    missing = [p for p in pairs if p not in trainable]
    if missing:
        raise TrainingSetupError(
            f"No trainable masks for pairs {missing}; `trainable` must hold a mask dict for "
            f"every pair of `batches_by_pair` (e.g. from lsn_mech.training.baselines)."
        )
    params = _named_parameters(model)
    resolved = {pair: _resolve_pair(pair, trainable[pair], params) for pair in pairs}
    empty = [p for p, masked in resolved.items() if not masked]
    if empty:
        raise TrainingSetupError(
            f"Pairs {empty} have no True entry in any mask: nothing would train. Check the "
            f"neuron sets behind the masks."
        )
    return resolved


def _mask_gradients(masked: Iterable[_Masked]) -> None:
    """Zero gradient entries outside the pair's mask (keeps them out of Adam's moments)."""
    for m in masked:
        if m.outside is not None and m.param.grad is not None:
            m.param.grad.masked_fill_(m.outside, 0.0)


def _snapshot(masked: Iterable[_Masked]) -> list[tuple[_Masked, Tensor]]:
    """Copies of the partly masked tensors, taken just before the optimiser step."""
    return [(m, m.param.detach().clone()) for m in masked if m.mask is not None]


@torch.no_grad()
def _restore(saved: Iterable[tuple[_Masked, Tensor]]) -> None:
    """Write back every entry outside the mask: undoes weight decay and stale momentum."""
    for m, before in saved:
        m.param.copy_(torch.where(m.mask, m.param, before))


# ---------------------------------------------------------------------------- loop


@dataclasses.dataclass
class _Run:
    """What stays fixed over a training run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    masked: dict[Pair, list[_Masked]]
    trainable: list[nn.Parameter]


def _select_pair(run: _Run, pair: Pair) -> list[_Masked]:
    """Let only the pair's tensors (and the extra parameters) require a gradient."""
    mine = {id(m.param) for m in run.masked[pair]}
    for p in run.trainable:
        p.requires_grad_(id(p) in mine)
    return run.masked[pair]


def _turn(run: _Run, pair: Pair, chunk: list[Batch]) -> tuple[float, int]:
    """Accumulate gradients over ``chunk``, then one masked optimiser step."""
    tokens = sum(count_targets(b) for b in chunk)
    if tokens == 0:
        raise EmptyCorpusError(
            f"Pair {pair}: {len(chunk)} batches without a single target label; mark the "
            f"target tokens in `labels` (-100 elsewhere)."
        )
    run.optimizer.zero_grad(set_to_none=True)
    masked = _select_pair(run, pair)
    total = 0.0
    for batch in chunk:
        loss_sum, _ = target_loss_sum(run.model, batch)
        (loss_sum / tokens).backward()
        total += float(loss_sum.detach())
    _mask_gradients(masked)
    saved = _snapshot(masked)
    run.optimizer.step()
    _restore(saved)
    return total / tokens, tokens


def _collect_trainable(masked: Mapping[Pair, list[_Masked]]) -> list[nn.Parameter]:
    unique: dict[int, nn.Parameter] = {}
    for entries in masked.values():
        for m in entries:
            unique.setdefault(id(m.param), m.param)
    return list(unique.values())


def _check_extra(extra: Sequence[nn.Parameter], trainable: Sequence[nn.Parameter]) -> None:
    overlap = {id(p) for p in extra} & {id(p) for p in trainable}
    if overlap:
        raise TrainingSetupError(
            f"{len(overlap)} extra_parameters also appear in the masks; a tensor is either "
            f"masked or fully trainable, not both. Remove them from one of the two."
        )


def _turns(
    batches_by_pair: Mapping[Pair, Iterable[Batch]], size: int
) -> Iterator[tuple[Pair, list[Batch]]]:
    """Round robin over pairs, ``size`` batches per turn; a used-up pair drops out."""
    iterators = {pair: iter(batches) for pair, batches in batches_by_pair.items()}
    while iterators:
        for pair in list(iterators):
            chunk = list(itertools.islice(iterators[pair], size))
            if not chunk:
                del iterators[pair]
                continue
            yield pair, chunk


def _provenance(model: nn.Module, **parameters: Any) -> Provenance:
    config = getattr(unwrap(model), "config", None)
    model_id = getattr(config, "name_or_path", None) or None
    return Provenance(model_id=model_id, method="selective_finetune", parameters=parameters)


@contextlib.contextmanager
def _training_state(model: nn.Module, extra: Sequence[nn.Parameter]) -> Iterator[None]:
    """Training mode, everything frozen but ``extra``; flags and mode restored on exit."""
    params = [*model.parameters(), *extra]
    flags = [p.requires_grad for p in params]
    was_training = model.training
    try:
        for p in params:
            p.requires_grad_(False)
        for p in extra:
            p.requires_grad_(True)
        model.train()
        yield
    finally:
        model.train(was_training)
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def selective_finetune(
    hf_model: nn.Module,
    batches_by_pair: Mapping[Pair, Iterable[Batch]],
    trainable: Mapping[Pair, Mapping[str, Bool[Tensor, "..."]]],
    *,
    steps: int | None,
    lr: float = 5e-5,
    weight_decay: float = 0.01,
    grad_accumulation: int = 10,
    extra_parameters: Iterable[nn.Parameter] = (),
    on_pair: Callable[[str, str], object] | None = None,
    progress: bool = True,
    callback: Callable[[TrainingStep], object] | None = None,
    report_to: str | Tracker = "none",
    run_dir: str | os.PathLike[str] = "runs",
    run_name: str = "selective_finetune",
) -> TrainingLog:
    """Finetune ``hf_model`` in place, each language pair changing only its masked entries.

    Args:
        hf_model: a Hugging Face causal LM (or a PEFT model wrapping one), not booted.
        batches_by_pair: ``(src, tgt)`` → iterable of batches; its key order is the
            round-robin order.
        trainable: ``(src, tgt)`` → ``{parameter name: bool mask of the same shape}``;
            True entries may change during that pair's turns (see
            `lsn_mech.training.baselines` for builders). Parameters in no mask are frozen.
        steps: optimiser steps in all (one per pair turn); ``None`` runs until every
            pair's batches are used up (one epoch).
        lr: AdamW learning rate, constant (the paper: 5e-5).
        weight_decay: AdamW's decoupled weight decay; it never reaches masked-out entries.
        grad_accumulation: batches per pair turn; their gradients are summed into one
            optimiser step (the paper: 10).
        extra_parameters: fully trainable tensors outside the model's masks, e.g. routing
            gates; AdamW skips those that get no gradient in a turn.
        on_pair: called as ``on_pair(src, tgt)`` before each turn (a router sets its pair).
        progress: show a progress bar.
        callback: called with each `TrainingStep`; returning ``True`` stops training.
        report_to: ``"none"``, ``"tensorboard"`` or ``"wandb"``: report each step's
            loss (also per pair), learning rate and target tokens per second
            (`lsn_mech.training.tracking`); or a `Tracker` the caller opened (and
            finishes). Checked before any training starts.
        run_dir: the folder of the runs (TensorBoard: ``run_dir/run_name``).
        run_name: the name of this run.

    One turn = the next ``grad_accumulation`` batches of one pair, forward and backward
    each, then one masked AdamW step; turns go round robin over the pairs, so one
    optimiser step never mixes pairs (their masks differ). The loss of a turn is the mean
    cross-entropy over all its target tokens. A pair whose batches run out drops out;
    its last turn may hold fewer batches.
    """
    if grad_accumulation < 1:
        raise TrainingSetupError(f"grad_accumulation must be at least 1, got {grad_accumulation}.")
    _check_settings(steps, lr, weight_decay)
    pairs = list(batches_by_pair)
    if not pairs:
        raise TrainingSetupError(
            "batches_by_pair is empty: give at least one language pair's batches, e.g. "
            "{('en', 'fr'): batches}."
        )
    masked = _resolve(hf_model, pairs, trainable)
    trainable_params = _collect_trainable(masked)
    extra = list(dict.fromkeys(extra_parameters))
    _check_extra(extra, trainable_params)
    log = TrainingLog(
        trainable_parameters=trainable_parameter_count({p: dict(trainable[p]) for p in pairs}),
        provenance=_provenance(
            hf_model,
            lr=lr,
            weight_decay=weight_decay,
            grad_accumulation=grad_accumulation,
            steps=steps,
            pairs=[list(p) for p in pairs],
        ),
    )
    settings = {**log.provenance.parameters, "trainable_parameters": log.trainable_parameters}
    tracker, owned = open_tracker(report_to, run_dir, run_name, settings)
    try:
        with _training_state(hf_model, extra):
            optimizer = torch.optim.AdamW(
                [*trainable_params, *extra], lr=lr, weight_decay=weight_decay
            )
            run = _Run(hf_model, optimizer, masked, trainable_params)
            _loop(
                run,
                batches_by_pair,
                log,
                steps,
                grad_accumulation,
                on_pair,
                progress,
                callback,
                tracker,
            )
    finally:
        if owned:
            tracker.finish()
    return log


def _loop(
    run: _Run,
    batches_by_pair: Mapping[Pair, Iterable[Batch]],
    log: TrainingLog,
    steps: int | None,
    grad_accumulation: int,
    on_pair: Callable[[str, str], object] | None,
    progress: bool,
    callback: Callable[[TrainingStep], object] | None,
    tracker: Tracker,
) -> None:
    bar = tqdm(total=steps, desc="selective finetuning", disable=not progress)
    turns = _turns(batches_by_pair, grad_accumulation)
    for step, (pair, chunk) in enumerate(itertools.islice(turns, steps)):
        start = time.perf_counter()
        if on_pair is not None:
            on_pair(*pair)
        loss, tokens = _turn(run, pair, chunk)
        lr = float(run.optimizer.param_groups[0]["lr"])
        record = TrainingStep(step, pair, loss, lr, time.perf_counter() - start, tokens)
        log.steps.append(record)
        tracker.log(step_metrics(record), record.step)
        bar.update(1)
        bar.set_postfix(pair=f"{pair[0]}-{pair[1]}", loss=f"{loss:.3f}")
        if callback is not None and callback(record) is True:
            break
    bar.close()


def step_metrics(record: TrainingStep) -> dict[str, float]:
    """What a tracker gets for one step: loss (overall and under the pair's name), learning
    rate, target tokens per second and seconds per step."""
    per_second = record.tokens / record.seconds if record.seconds > 0 else 0.0
    return {
        "train/loss": record.loss,
        f"train/loss_{record.pair[0]}-{record.pair[1]}": record.loss,
        "train/learning_rate": record.lr,
        "train/target_tokens_per_second": per_second,
        "train/seconds_per_step": record.seconds,
    }


def trainable_parameter_count(masks: Mapping[Pair, Mapping[str, Bool[Tensor, "..."]]]) -> int:
    """Distinct parameter entries that some pair may change (union over pairs)."""
    union: dict[str, Tensor] = {}
    for per_pair in masks.values():
        for name, mask in per_pair.items():
            previous = union.get(name)
            union[name] = mask if previous is None else previous | mask.to(previous.device)
    return int(sum(int(mask.sum()) for mask in union.values()))
