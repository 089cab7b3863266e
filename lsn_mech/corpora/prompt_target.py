"""Prompt → target examples as token batches, with the loss on the target only.

Every supervised task here (translation instructions, QA answers) is a prompt followed
by a target; training scores the target tokens only. This module owns the task-free
part: one example as text (`TextExample`), truncation that keeps the target
(`fit_prompt_target`), the label layout (`target_only_example`, `IGNORE_INDEX`) and
right-padded batches (`pad_right`, `shuffled_padded_batches`). A task adds how its rows
become `TextExample`s and, optionally, how to shorten its prompt:

```python
from lsn_mech.corpora.prompt_target import TextExample, fit_prompt_target, target_only_example

row = TextExample("Question: 2+2?\\nAnswer:", " 4\\n", None, None, None, None)
prompt = tokenizer(row.prompt)["input_ids"]
target = tokenizer(row.target, add_special_tokens=False)["input_ids"]
prompt, target, cut = fit_prompt_target(tokenizer, row, prompt, target, max_length=256)
item = target_only_example(prompt, target)   # input_ids, attention_mask, labels
```
"""

from __future__ import annotations

import dataclasses
import random
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
from jaxtyping import Int64
from torch import Tensor

from lsn_mech.corpora.corpus import CorpusArgumentError
from lsn_mech.corpora.windows import pad_token_id

IGNORE_INDEX = -100
"""Label of a position whose token is not a target: PyTorch's ``cross_entropy`` and Hugging
Face's value. Defined once here, where labels are built; the runtime's loss imports it."""

_Row = TypeVar("_Row")


class PromptTargetError(CorpusArgumentError):
    """A prompt/target example cannot be tokenised as asked."""


@dataclasses.dataclass(frozen=True)
class TextExample:
    """One training example as text: what tokenisation needs, and what truncation re-renders.

    ``prompt`` and ``target`` are tokenised (the loss falls on the target); ``pattern``
    (the template), ``src_text``, ``src_lang`` and ``tgt_lang`` let a task re-render a
    shorter prompt (see ``shorten_prompt`` in `fit_prompt_target`), and are ``None``
    when there is no template to re-render.
    """

    prompt: str
    target: str
    pattern: str | None
    src_text: str | None
    src_lang: str | None
    tgt_lang: str | None


PromptShortener = Callable[[Any, TextExample, list[int], int], list[int] | None]
"""``(tokenizer, row, prompt_ids, budget)`` → prompt ids of at most ``budget`` tokens, or
``None`` when the row cannot be shortened that way."""


def token_ids(tokenizer: Any, texts: list[str], special: bool) -> list[list[int]]:
    """Token ids of each text, with or without the tokenizer's special tokens."""
    return [list(x) for x in tokenizer(texts, add_special_tokens=special)["input_ids"]]


def _bos_prefix(tokenizer: Any, prompt_ids: list[int]) -> int:
    bos = getattr(tokenizer, "bos_token_id", None)
    return 1 if prompt_ids and bos is not None and prompt_ids[0] == bos else 0


def fit_prompt_target(
    tokenizer: Any,
    row: TextExample,
    prompt_ids: list[int],
    target_ids: list[int],
    max_length: int,
    *,
    shorten_prompt: PromptShortener | None = None,
) -> tuple[list[int], list[int], bool]:
    """Truncate one example's token ids to ``max_length`` tokens in all.

    ``shorten_prompt`` (a task's own way to cut its prompt, e.g. translation re-renders
    its template on a shorter source) is tried first; without it, or when it cannot, or
    when the target alone leaves no room, the target is cut at its end (keeping one
    token) and the prompt's start after BOS dropped. Returns the prompt ids, the target
    ids, and whether anything was cut.

    Raises:
        PromptTargetError: ``max_length`` leaves no room for one prompt and one target token.
    """
    if len(prompt_ids) + len(target_ids) <= max_length:
        return prompt_ids, target_ids, False
    budget = max_length - len(target_ids)
    if shorten_prompt is not None and budget > 0:
        shorter = shorten_prompt(tokenizer, row, prompt_ids, budget)
        if shorter is not None:
            return shorter, target_ids, True
    # No way to shorten the prompt (or the target alone is too long): cut the prompt's
    # start after BOS, keeping at least one target token.
    b = _bos_prefix(tokenizer, prompt_ids)
    target_ids = target_ids[: max(1, max_length - b - 1)]
    room = max_length - len(target_ids) - b
    if room < 1:
        raise PromptTargetError(
            f"max_length={max_length} leaves no room for a prompt token and a target "
            "token; raise max_length."
        )
    return prompt_ids[:b] + prompt_ids[len(prompt_ids) - room :], target_ids, True


def target_only_example(prompt_ids: list[int], target_ids: list[int]) -> dict[str, Tensor]:
    """One training item: 1-D ``input_ids`` (the prompt then the target), ``attention_mask``
    (ones) and ``labels`` (``input_ids`` with `IGNORE_INDEX` on the prompt), all int64."""
    ids = torch.tensor(prompt_ids + target_ids, dtype=torch.long)
    labels = ids.clone()
    labels[: len(prompt_ids)] = IGNORE_INDEX
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def pad_right(
    items: Sequence[Mapping[str, Tensor]], pad_id: int
) -> dict[str, Int64[Tensor, "batch seq"]]:
    """Stack tokenised examples, padding on the right (labels with ``-100``)."""
    length = max(int(item["input_ids"].shape[0]) for item in items)
    fill = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    batch = {}
    for key, value in fill.items():
        out = torch.full((len(items), length), value, dtype=torch.long)
        for row, item in enumerate(items):
            out[row, : item[key].shape[0]] = item[key]
        batch[key] = out
    return batch


def shuffled_padded_batches(
    tokenizer: Any,
    rows: list[_Row],
    encode: Callable[[Any, list[_Row], int, bool], tuple[list[dict[str, Tensor]], int]],
    *,
    batch_size: int,
    max_length: int,
    shuffle: bool,
    seed: int,
    append_eos: bool,
) -> Generator[dict[str, Int64[Tensor, "batch seq"]], None, int]:
    """Encode ``rows`` one batch at a time and yield them right-padded (`pad_right`).

    ``encode(tokenizer, chunk, max_length, append_eos)`` gives the items of a chunk and
    how many were truncated; ``shuffle`` permutes the rows with ``random.Random(seed)``
    first. The generator returns the number of truncated rows (``yield from``'s value).
    """
    order = list(range(len(rows)))
    if shuffle:
        random.Random(seed).shuffle(order)
    pad_id = pad_token_id(tokenizer)
    truncated = 0
    for start in range(0, len(order), batch_size):
        chunk = [rows[i] for i in order[start : start + batch_size]]
        encoded, cut = encode(tokenizer, chunk, max_length, append_eos)
        truncated += cut
        yield pad_right(encoded, pad_id)
    return truncated


Encoder = Callable[[Any, list[_Row], int, bool], tuple[list[dict[str, Tensor]], int]]
"""``encode(tokenizer, rows, max_length, append_eos)`` → the items and how many were cut."""


def _check_sizes(error: type[Exception], max_length: int, batch_size: int = 1) -> None:
    if batch_size < 1:
        raise error(f"batch_size must be at least 1; got {batch_size}.")
    if max_length < 2:
        raise error(f"max_length must be at least 2; got {max_length}.")


def encode_all(
    tokenizer: Any,
    rows: list[_Row],
    encode: Encoder[_Row],
    *,
    max_length: int,
    append_eos: bool,
    error: type[Exception],
    warning: str,
) -> list[dict[str, Tensor]]:
    """Every row encoded at once, with a task's checks and truncation warning.

    The task-free half of a ``tokenize_<task>`` function: ``error`` is the task's
    exception for a bad ``max_length``; ``warning`` is its message, formatted with
    ``truncated``, ``total`` and ``max_length`` when any row was cut.
    """
    _check_sizes(error, max_length)
    encoded, truncated = encode(tokenizer, rows, max_length, append_eos)
    if truncated:
        message = warning.format(truncated=truncated, total=len(encoded), max_length=max_length)
        warnings.warn(message, stacklevel=3)
    return encoded


def warned_padded_batches(
    tokenizer: Any,
    rows: list[_Row],
    encode: Encoder[_Row],
    *,
    batch_size: int,
    max_length: int,
    shuffle: bool,
    seed: int,
    append_eos: bool,
    error: type[Exception],
    warning: str,
) -> Iterator[dict[str, Int64[Tensor, "batch seq"]]]:
    """`shuffled_padded_batches` with a task's checks and truncation warning.

    The task-free half of a ``<task>_batches`` function (``error`` and ``warning`` as
    in `encode_all`; the warning comes once the last batch is out).
    """
    _check_sizes(error, max_length, batch_size)
    truncated = yield from shuffled_padded_batches(
        tokenizer,
        rows,
        encode,
        batch_size=batch_size,
        max_length=max_length,
        shuffle=shuffle,
        seed=seed,
        append_eos=append_eos,
    )
    if truncated:
        message = warning.format(truncated=truncated, total=len(rows), max_length=max_length)
        warnings.warn(message, stacklevel=3)
