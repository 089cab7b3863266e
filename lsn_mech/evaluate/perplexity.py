"""Perplexity that never materialises full-vocabulary logits for a whole batch.

The forward pass stops at the input of the unembedding; logits are then computed in
chunks of target positions only. With Gemma 3's 262k-token vocabulary this keeps
memory bounded and skips the work for padding.

The NLL sum and token count of every window are kept: windows are the units a
perplexity's confidence interval resamples (`lsn_mech.intervals`), and two conditions
measured on the same windows (base and intervention) are compared window by window.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from jaxtyping import Bool, Float64, Int64
from torch import Tensor
from tqdm.auto import tqdm

from lsn_mech.corpora.sources import as_text_list
from lsn_mech.corpora.windows import tokenize_windows
from lsn_mech.errors import EmptyCorpusError
from lsn_mech.intervals import DEFAULT, Bootstrap, Estimate
from lsn_mech.intervals import perplexity as perplexity_estimate
from lsn_mech.models.limits import check_count, check_window
from lsn_mech.models.protocol import HookedModel, model_device
from lsn_mech.models.runtime import final_residual as final_residual  # lsn_mech.evaluate's
from lsn_mech.models.runtime import next_token_labels, target_nll


@dataclasses.dataclass(frozen=True)
class Perplexity:
    """``exp(mean NLL)`` over ``tokens`` predicted tokens, with its confidence interval.

    ``low``/``high`` bound ``value`` at ``level`` by the bootstrap over the evaluation
    windows (NaN when there was a single window: windows are the independent units, the
    tokens of one window are not). ``window_nll`` and ``window_tokens`` hold each
    window's NLL sum and predicted-token count, what paired comparisons resample.
    """

    value: float
    nll: float
    tokens: int
    low: float = math.nan
    high: float = math.nan
    level: float = 0.95
    window_nll: tuple[float, ...] = ()
    window_tokens: tuple[int, ...] = ()

    def __float__(self) -> float:
        return self.value

    @property
    def estimate(self) -> Estimate:
        """The perplexity with its interval (`lsn_mech.intervals.Estimate`)."""
        return Estimate(self.value, self.low, self.high, self.level)

    @property
    def windows(self) -> int:
        """How many windows were evaluated (the units of the interval)."""
        return len(self.window_nll)

    def __repr__(self) -> str:
        interval = ""
        if self.estimate.has_interval:
            interval = f" [{self.low:.3f}, {self.high:.3f}]"
        return (
            f"Perplexity({self.value:.3f}{interval}, nll={self.nll:.4f}, "
            f"tokens={self.tokens:,}, windows={self.windows})"
        )


def perplexity_from_windows(
    window_nll: Any, window_tokens: Any, settings: Bootstrap = DEFAULT
) -> Perplexity:
    """The `Perplexity` of windows with these NLL sums and predicted-token counts, its
    interval from `lsn_mech.intervals.perplexity` (bootstrap over windows).

    Separate from the forward passes so that synthetic windows with a known perplexity
    test the interval (coverage, shrinkage); windows without a predicted token are
    dropped (they carry no information).
    """
    nll = torch.as_tensor(window_nll, dtype=torch.float64).reshape(-1)
    counts = torch.as_tensor(window_tokens, dtype=torch.float64).reshape(-1)
    keep = counts > 0
    nll, counts = nll[keep], counts[keep]
    total_tokens = int(counts.sum())
    if total_tokens == 0:
        raise EmptyCorpusError("The texts gave no token to predict (each needs two tokens).")
    mean = float(nll.sum()) / total_tokens
    estimate = perplexity_estimate(nll, counts, settings)
    return Perplexity(
        value=math.exp(mean),
        nll=mean,
        tokens=total_tokens,
        low=estimate.low,
        high=estimate.high,
        level=settings.level,
        window_nll=tuple(nll.tolist()),
        window_tokens=tuple(int(c) for c in counts.tolist()),
    )


def perplexity(
    model: HookedModel,
    texts: Any,
    *,
    window: int = 512,
    batch_size: int = 4,
    max_tokens: int | None = None,
    text_column: str = "text",
    logits_chunk: int = 512,
    progress: bool = False,
    bootstrap: Bootstrap = DEFAULT,
) -> Perplexity:
    """Perplexity of ``model`` on ``texts`` (a string, a list, a ``datasets.Dataset``, or
    ``TokenWindows``).

    Texts are packed into windows of ``window`` tokens, each starting with BOS when the
    tokenizer uses one. The loss is the mean next-token NLL over every real (non-pad)
    target position: position ``t`` predicts token ``t+1``, shifted once here. The
    interval resamples windows with ``bootstrap`` (`perplexity_from_windows`).
    """
    check_window(model, window, texts=texts)
    check_count("batch_size", batch_size)
    check_count("logits_chunk", logits_chunk)
    if hasattr(texts, "input_ids"):
        windows = texts
    else:
        items = as_text_list(texts, text_column)
        if not any(t.strip() for t in items):
            raise EmptyCorpusError("No text to evaluate: pass at least one non-empty text.")
        windows = tokenize_windows(model.tokenizer, items, window=window, max_tokens=max_tokens)
    device = model_device(model)
    window_nll: list[Tensor] = []
    window_tokens: list[Tensor] = []
    batches = list(windows.batches(batch_size, trim=True))
    for batch in tqdm(batches, desc="perplexity", disable=not progress):
        batch = batch.to(device)
        nll, count = window_nll_sums(
            model, batch.input_ids, batch.attention_mask, logits_chunk=logits_chunk
        )
        window_nll.append(nll.cpu())
        window_tokens.append(count.cpu())
    if not window_nll:
        raise EmptyCorpusError("The texts gave no token to predict (each needs two tokens).")
    return perplexity_from_windows(torch.cat(window_nll), torch.cat(window_tokens), bootstrap)


@torch.no_grad()
def window_nll_sums(
    model: HookedModel,
    input_ids: Int64[Tensor, "batch seq"],
    attention_mask: Bool[Tensor, "batch seq"],
    *,
    logits_chunk: int = 512,
) -> tuple[Float64[Tensor, " batch"], Int64[Tensor, " batch"]]:
    """Each window's summed next-token NLL (float64) and its number of target tokens.

    The positions and targets of `token_nll_sum` (a position counts when it and the
    token it predicts are both real), one forward pass for the batch; the logits exist
    for ``logits_chunk`` target positions at a time, and each position's loss is added
    to its window's sum.
    """
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": next_token_labels(input_ids, attention_mask),
    }
    losses, where = target_nll(model, batch, logits_chunk=logits_chunk)
    owner = where.nonzero()[:, 0].to(losses.device)  # row-major, as the losses
    sums = torch.zeros(input_ids.shape[0], dtype=torch.float64, device=losses.device)
    sums.index_add_(0, owner, losses.double())
    counts = torch.bincount(owner, minlength=input_ids.shape[0])
    return sums, counts


@torch.no_grad()
def token_nll_sum(
    model: HookedModel,
    input_ids: Int64[Tensor, "batch seq"],
    attention_mask: Bool[Tensor, "batch seq"],
    *,
    logits_chunk: int = 512,
) -> tuple[float, int]:
    """Sum of next-token NLL over real target positions, and how many there were.

    `window_nll_sums` over the whole batch: a position counts when it and the token it
    predicts are both real.
    """
    sums, counts = window_nll_sums(model, input_ids, attention_mask, logits_chunk=logits_chunk)
    return float(sums.sum()), int(counts.sum())
