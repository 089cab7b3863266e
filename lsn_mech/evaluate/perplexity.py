"""Perplexity that never materialises full-vocabulary logits for a whole batch.

The forward pass stops at the input of the unembedding; logits are then computed in
chunks of target positions only. With Gemma 3's 262k-token vocabulary this keeps
memory bounded and skips the work for padding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from jaxtyping import Bool, Int64
from torch import Tensor
from tqdm.auto import tqdm

from lsn_mech.corpora.sources import as_text_list
from lsn_mech.corpora.windows import tokenize_windows
from lsn_mech.errors import EmptyCorpusError
from lsn_mech.models.limits import check_count, check_window
from lsn_mech.models.protocol import HookedModel, model_device
from lsn_mech.models.runtime import final_residual as final_residual  # lsn_mech.evaluate's
from lsn_mech.models.runtime import next_token_labels, target_nll_sum


@dataclasses.dataclass(frozen=True)
class Perplexity:
    """``exp(mean NLL)`` over ``tokens`` predicted tokens."""

    value: float
    nll: float
    tokens: int

    def __float__(self) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"Perplexity({self.value:.3f}, nll={self.nll:.4f}, tokens={self.tokens:,})"


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
) -> Perplexity:
    """Perplexity of ``model`` on ``texts`` (a string, a list, a ``datasets.Dataset``, or
    ``TokenWindows``).

    Texts are packed into windows of ``window`` tokens, each starting with BOS when the
    tokenizer uses one. The loss is the mean next-token NLL over every real (non-pad)
    target position: position ``t`` predicts token ``t+1``, shifted once here.
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
    total_nll = 0.0
    total_tokens = 0
    batches = list(windows.batches(batch_size, trim=True))
    for batch in tqdm(batches, desc="perplexity", disable=not progress):
        batch = batch.to(device)
        nll, count = token_nll_sum(
            model, batch.input_ids, batch.attention_mask, logits_chunk=logits_chunk
        )
        total_nll += nll
        total_tokens += count
    if total_tokens == 0:
        raise EmptyCorpusError("The texts gave no token to predict (each needs two tokens).")
    mean = total_nll / total_tokens
    return Perplexity(value=math.exp(mean), nll=mean, tokens=total_tokens)


@torch.no_grad()
def token_nll_sum(
    model: HookedModel,
    input_ids: Int64[Tensor, "batch seq"],
    attention_mask: Bool[Tensor, "batch seq"],
    *,
    logits_chunk: int = 512,
) -> tuple[float, int]:
    """Sum of next-token NLL over real target positions, and how many there were.

    `lsn_mech.models.runtime.target_nll_sum` with labels from `next_token_labels`: a
    position counts when it and the token it predicts are both real.
    """
    batch = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": next_token_labels(input_ids, attention_mask),
    }
    total, count = target_nll_sum(model, batch, logits_chunk=logits_chunk)
    return float(total), count
