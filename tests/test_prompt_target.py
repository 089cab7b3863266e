"""Task-free prompt/target tokenisation: truncation keeps the target, labels on it only."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lsn_mech.corpora.prompt_target import (
    IGNORE_INDEX,
    PromptTargetError,
    TextExample,
    fit_prompt_target,
    pad_right,
    shuffled_padded_batches,
    target_only_example,
)

BOS = 1
TOKENIZER = SimpleNamespace(bos_token_id=BOS, pad_token_id=0, eos_token_id=2)
ROW = TextExample("prompt", "target", None, None, None, None)


def test_short_examples_are_left_alone() -> None:
    assert fit_prompt_target(TOKENIZER, ROW, [BOS, 5], [6], 3) == ([BOS, 5], [6], False)


def test_without_a_shortener_the_prompt_start_after_bos_goes() -> None:
    prompt, target = [BOS, 10, 11, 12, 13], [20, 21]
    assert fit_prompt_target(TOKENIZER, ROW, prompt, target, 5) == ([BOS, 12, 13], [20, 21], True)
    # the target alone is too long: it keeps max_length - BOS - 1 tokens, the prompt one
    long_target = [20, 21, 22, 23, 24]
    assert fit_prompt_target(TOKENIZER, ROW, prompt, long_target, 4) == (
        [BOS, 13],
        [20, 21],
        True,
    )
    with pytest.raises(PromptTargetError, match="raise max_length"):
        fit_prompt_target(TOKENIZER, ROW, prompt, target, 2)


def test_a_shortener_is_tried_first_with_the_room_left() -> None:
    budgets: list[int] = []

    def shorten(tokenizer: Any, row: TextExample, ids: list[int], budget: int) -> list[int]:
        budgets.append(budget)
        return [BOS, 99]

    prompt, target = [BOS, 10, 11, 12, 13], [20, 21]
    got = fit_prompt_target(TOKENIZER, ROW, prompt, target, 5, shorten_prompt=shorten)
    assert got == ([BOS, 99], [20, 21], True) and budgets == [3]
    declined = fit_prompt_target(
        TOKENIZER, ROW, prompt, target, 5, shorten_prompt=lambda *args: None
    )
    assert declined == ([BOS, 12, 13], [20, 21], True)


def test_labels_fall_on_the_target_and_padding_is_ignored() -> None:
    item = target_only_example([BOS, 5], [6, 7])
    assert item["input_ids"].tolist() == [BOS, 5, 6, 7]
    assert item["labels"].tolist() == [IGNORE_INDEX, IGNORE_INDEX, 6, 7]
    batch = pad_right([item, target_only_example([BOS], [8])], pad_id=0)
    assert batch["input_ids"].tolist() == [[BOS, 5, 6, 7], [BOS, 8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"][1].tolist() == [IGNORE_INDEX, 8, IGNORE_INDEX, IGNORE_INDEX]


def test_shuffled_padded_batches_count_truncations() -> None:
    def encode(
        tokenizer: Any, rows: list[int], max_length: int, append_eos: bool
    ) -> tuple[list[dict[str, torch.Tensor]], int]:
        return [target_only_example([BOS], [r]) for r in rows], sum(r > 4 for r in rows)

    batches = shuffled_padded_batches(
        TOKENIZER,
        [3, 4, 5, 6, 7],
        encode,
        batch_size=2,
        max_length=8,
        shuffle=False,
        seed=0,
        append_eos=False,
    )
    seen = []
    with pytest.raises(StopIteration) as stop:
        while True:
            seen.append(next(batches)["input_ids"][:, 1].tolist())
    assert seen == [[3, 4], [5, 6], [7]] and stop.value.value == 3
