"""Perplexity without wasted work: batches of windows trimmed of their padding.

The PPL-change matrix runs one forward pass per batch of windows for every row; these
tests pin that no forward pass computes padding it can skip, and that skipping it
changes no number.
"""

from __future__ import annotations

import pytest
import torch

from lsn_mech.corpora import concat_windows, tokenize_windows
from lsn_mech.evaluate.perplexity import perplexity, token_nll_sum

TEXT = "in the beginning god created the heaven and the earth. " * 3


def test_trimmed_batches_never_mix_full_and_short_windows(llama) -> None:  # type: ignore[no-untyped-def]
    windows = tokenize_windows(llama.tokenizer, [TEXT], window=16, max_tokens=3 * 15 + 2)
    assert windows.real_lengths.tolist() == [16, 16, 16, 3]
    parts = list(windows.batches(2, trim=True))
    assert [len(p) for p in parts] == [2, 1, 1]
    assert [p.seq_len for p in parts] == [16, 16, 3]
    assert sum(p.n_tokens for p in parts) == windows.n_tokens
    assert torch.equal(parts[-1].input_ids, windows.input_ids[3:, :3])
    untrimmed = list(windows.batches(2))
    assert [p.seq_len for p in untrimmed] == [16, 16]


def test_trimmed_batches_cut_each_batch_to_its_longest_window(llama) -> None:  # type: ignore[no-untyped-def]
    texts = ["in the", "beginning god created", "and", "the earth was"]
    windows = tokenize_windows(llama.tokenizer, texts, window=32, pack=False)
    lengths = windows.real_lengths.tolist()
    parts = list(windows.batches(2, trim=True))
    assert max(lengths) < 32
    assert [p.seq_len for p in parts] == [max(lengths[:2]), max(lengths[2:])]
    for part, start in zip(parts, (0, 2)):
        kept = windows.attention_mask[start : start + 2]
        assert not kept[:, part.seq_len :].any()  # only padding was cut
        assert torch.equal(part.attention_mask, kept[:, : part.seq_len])
    padded = concat_windows([windows[i] for i in range(len(windows))])
    assert torch.equal(padded.input_ids, windows.input_ids)


def test_perplexity_forward_passes_skip_the_padding(llama) -> None:  # type: ignore[no-untyped-def]
    """A budget one token past a full window used to cost a second, all-padding window."""
    windows = tokenize_windows(llama.tokenizer, [TEXT], window=16, max_tokens=16)
    assert windows.real_lengths.tolist() == [16, 2]
    shapes: list[tuple[int, ...]] = []
    hook = ("blocks.0.hook_resid_pre", lambda act, hook: shapes.append(tuple(act.shape[:2])))
    with llama.hooks(fwd_hooks=[hook]):
        perplexity(llama, windows, batch_size=4)
    assert shapes == [(1, 16), (1, 2)]


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_trimming_changes_no_perplexity(llama, batch_size: int) -> None:  # type: ignore[no-untyped-def]
    texts = ["in the beginning", "god created the heaven and the earth", "and the earth"]
    windows = tokenize_windows(llama.tokenizer, texts * 2, window=24, pack=False)
    total, count = 0.0, 0
    for batch in windows.batches(batch_size):  # untrimmed: the old way
        nll, n = token_nll_sum(llama, batch.input_ids, batch.attention_mask)
        total, count = total + nll, count + n
    got = perplexity(llama, windows, batch_size=batch_size)
    assert got.tokens == count
    assert got.nll == pytest.approx(total / count, rel=1e-5)
