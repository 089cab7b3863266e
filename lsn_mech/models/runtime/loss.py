"""Next-token loss at target positions only, logits computed only where they count.

One convention for every loss in lsn_mech (perplexity, Taylor awareness, selective
finetuning), the Hugging Face one: ``labels`` has the shape of ``input_ids`` and holds
`IGNORE_INDEX` wherever no loss counts; the logits at position ``t`` predict
``labels[t + 1]``. `target_positions` marks those ``t``. The forward pass stops at the
final hidden states (`final_residual` on a hooked model, the decoder body of a Hugging
Face model); the unembedding is applied to the target positions only, ``logits_chunk``
rows at a time, so a 262k-token vocabulary never meets a whole batch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int, Shaped
from torch import Tensor, nn

from lsn_mech.corpora.prompt_target import IGNORE_INDEX as IGNORE_INDEX  # the labels' owner
from lsn_mech.errors import LsnMechError
from lsn_mech.models.protocol import HookedModel, HookFn, model_device
from lsn_mech.models.runtime.capture import final_residual

Unembed = Callable[[Tensor], Tensor]
"""Final hidden states ``[n, d_model]`` → logits ``[n, vocab]``."""


class LossArgumentError(LsnMechError, ValueError):
    """Arguments of a target loss do not fit together."""


def target_positions(labels: Int[Tensor, "batch seq"]) -> Bool[Tensor, "batch seq"]:
    """Positions ``t`` whose logits are needed: those where ``labels[t + 1]`` is a target."""
    where = torch.zeros_like(labels, dtype=torch.bool)
    where[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return where


def target_tokens(labels: Int[Tensor, "batch seq"]) -> Int[Tensor, " n"]:
    """The tokens predicted at `target_positions`, in the same (row-major) order."""
    following = labels[:, 1:]
    return following[following != IGNORE_INDEX]


def next_token_labels(
    input_ids: Int[Tensor, "batch seq"], attention_mask: Shaped[Tensor, "batch seq"]
) -> Int[Tensor, "batch seq"]:
    """Labels of plain language modelling: every real token whose predecessor is real.

    A padding position never predicts, and is never predicted (left or right padding).
    """
    real = attention_mask.bool()
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, 1:] = input_ids[:, 1:].masked_fill(~(real[:, 1:] & real[:, :-1]), IGNORE_INDEX)
    return labels


def unembed(model: HookedModel, hidden: Float[Tensor, "n d_model"]) -> Float[Tensor, "n vocab"]:
    """Logits for a flat batch of final residuals, through the model's own unembedding."""
    return model.unembed(hidden.unsqueeze(0)).squeeze(0)


def chunked_cross_entropy(
    hidden: Float[Tensor, "n d_model"],
    targets: Int[Tensor, " n"],
    unembed_rows: Unembed,
    *,
    logits_chunk: int | None = 512,
) -> Float[Tensor, " n"]:
    """Each row's cross-entropy of ``targets`` under ``unembed_rows(hidden)`` (float32).

    Logits exist for ``logits_chunk`` rows at a time (all rows at once with ``None``).
    Differentiable when autograd is on; without it (evaluation), each chunk's loss is
    taken in place on that chunk's fresh logits (`_cross_entropy_in_place`), which saves
    one vocabulary-sized tensor per chunk. Chunking bounds memory only without autograd:
    a backward pass keeps every chunk's log-probabilities.
    """
    if logits_chunk is not None and logits_chunk < 1:
        raise LossArgumentError(
            f"logits_chunk must be a positive integer or None; got {logits_chunk}."
        )
    rows = hidden.shape[0]
    step = max(rows, 1) if logits_chunk is None else logits_chunk
    in_place = not (torch.is_grad_enabled() and hidden.requires_grad)
    pieces = []
    for start in range(0, rows, step):
        logits = unembed_rows(hidden[start : start + step]).float()
        chunk_targets = targets[start : start + step]
        if in_place and not _shares_storage(logits, hidden):
            pieces.append(_cross_entropy_in_place(logits, chunk_targets))
        else:
            pieces.append(F.cross_entropy(logits, chunk_targets, reduction="none"))
    return torch.cat(pieces) if pieces else hidden.new_zeros(0, dtype=torch.float32)


def _shares_storage(first: Tensor, second: Tensor) -> bool:
    """Whether two tensors are views of one storage (an unembedding that returns its input)."""
    return first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()


def _cross_entropy_in_place(
    logits: Float[Tensor, "n vocab"], targets: Int[Tensor, " n"]
) -> Float[Tensor, " n"]:
    """``logsumexp(logits) - logits[target]`` per row, overwriting ``logits``.

    Only for logits nothing else holds (a chunk just unembedded, without autograd):
    with a 262k-token vocabulary, `F.cross_entropy`'s log-softmax copy costs about as
    much as the rest of the loss (benchmarks/bench_ppl_matrix.py).
    """
    target_logits = logits.gather(1, targets[:, None])[:, 0]
    peak = logits.amax(dim=1, keepdim=True)
    summed = logits.sub_(peak).exp_().sum(dim=1)
    return summed.log_().add_(peak[:, 0]).sub_(target_logits)


def chunked_cross_entropy_sum(
    hidden: Float[Tensor, "n d_model"],
    targets: Int[Tensor, " n"],
    unembed_rows: Unembed,
    *,
    logits_chunk: int | None = 512,
) -> Float[Tensor, ""]:
    """Summed cross-entropy of ``targets`` under ``unembed_rows(hidden)``, in float64.

    The rows of `chunked_cross_entropy` added in float64, so the result does not depend
    on the chunk size beyond float32 rounding. Differentiable.
    """
    losses = chunked_cross_entropy(hidden, targets, unembed_rows, logits_chunk=logits_chunk)
    return losses.double().sum()


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a PEFT wrapper (LoRA layers stay injected in it)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def hf_unembed(hf: nn.Module, hidden: Float[Tensor, "n d_model"]) -> Float[Tensor, "n vocab"]:
    """A Hugging Face causal LM's output projection, with Gemma's final logit softcapping."""
    logits = hf.get_output_embeddings()(hidden)  # type: ignore[operator]
    cap = getattr(hf.config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def target_nll(
    model: HookedModel | nn.Module,
    batch: Mapping[str, Any],
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    *,
    logits_chunk: int | None = 512,
) -> tuple[Float[Tensor, " n"], Bool[Tensor, "batch seq"]]:
    """Next-token cross-entropy of each target token of ``batch`` (float32, row-major
    order), and the `target_positions` they were predicted from.

    ``batch`` is a Hugging Face dict: ``input_ids``, ``attention_mask`` and ``labels``
    (`IGNORE_INDEX` where no loss counts). ``model`` is a hooked model (a bridge: the
    forward stops at the unembedding input, ``fwd_hooks`` run during it) or a Hugging
    Face causal LM, possibly inside PEFT (its decoder body runs, then its output
    projection at target positions). Gradients flow as usual (no ``no_grad`` here).
    """
    if isinstance(model, HookedModel):
        device = model_device(model)
        labels = batch["labels"].to(device)
        residual = final_residual(
            model,
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            fwd_hooks=fwd_hooks,
        )

        def unembed_rows(rows: Tensor) -> Tensor:
            return unembed(model, rows)  # type: ignore[arg-type]

    else:
        if fwd_hooks:
            raise LossArgumentError(
                "fwd_hooks need a hooked model (lsn_mech.load_model); a Hugging Face model "
                "takes PyTorch hooks on its modules instead."
            )
        hf = unwrap_peft(model)
        device = next(hf.parameters()).device
        labels = batch["labels"].to(device)
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        residual = hf.get_decoder()(**inputs, use_cache=False)[0]  # type: ignore[operator]

        def unembed_rows(rows: Tensor) -> Tensor:
            return hf_unembed(hf, rows)

    where = target_positions(labels)
    losses = chunked_cross_entropy(
        residual[where], target_tokens(labels), unembed_rows, logits_chunk=logits_chunk
    )
    return losses, where


def target_nll_sum(
    model: HookedModel | nn.Module,
    batch: Mapping[str, Any],
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    *,
    logits_chunk: int | None = 512,
) -> tuple[Float[Tensor, ""], int]:
    """Summed next-token cross-entropy over the target tokens of ``batch`` (float64), and
    how many target tokens there are (`target_nll`'s losses, added in float64)."""
    losses, _ = target_nll(model, batch, fwd_hooks, logits_chunk=logits_chunk)
    return losses.double().sum(), int(losses.numel())


def target_loss(
    model: HookedModel | nn.Module,
    batch: Mapping[str, Any],
    fwd_hooks: Sequence[tuple[str, HookFn]] = (),
    *,
    logits_chunk: int | None = 512,
) -> Float[Tensor, ""]:
    """Mean cross-entropy over the target tokens (float32): what ``hf(**batch).loss`` gives.

    A batch without a target token gives 0.
    """
    total, count = target_nll_sum(model, batch, fwd_hooks, logits_chunk=logits_chunk)
    return (total / max(count, 1)).float()
