"""Tokenise text into fixed-length windows, with masks saying which positions count.

Statistics and evaluation consume `TokenWindows`: a ``[window, seq]`` grid of
token ids, right-padded, with

* ``attention_mask``: ``True`` at real tokens (BOS included), ``False`` at padding;
* ``stats_mask``: ``True`` at the positions whose activations count for per-language
  statistics: real tokens, without the BOS position unless ``count_bos=True`` (the
  BOS token's activations are the same whatever the language);
* ``loss_mask`` (derived): ``True`` at the positions whose token is a next-token
  prediction target, i.e. real tokens with a real token before them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import Any

import numpy as np
import torch
from jaxtyping import Bool, Int64
from torch import Tensor

from lsn_mech.corpora.corpus import CorpusArgumentError, MultilingualCorpus, column_list
from lsn_mech.errors import EmptyCorpusError


@dataclasses.dataclass(frozen=True)
class TokenWindows:
    """Fixed-length token windows of one language.

    Attributes:
        input_ids: token ids, right-padded with the pad id.
        attention_mask: ``True`` at real tokens (BOS included), ``False`` at padding.
        stats_mask: ``True`` at positions that count for statistics (real tokens,
            excluding the BOS position unless the windows were built with ``count_bos``).
        language: the language of the text, when known.
    """

    input_ids: Int64[Tensor, "window seq"]
    attention_mask: Bool[Tensor, "window seq"]
    stats_mask: Bool[Tensor, "window seq"]
    language: str | None = None

    def __post_init__(self) -> None:
        shapes = {self.input_ids.shape, self.attention_mask.shape, self.stats_mask.shape}
        if len(shapes) != 1 or self.input_ids.ndim != 2:
            raise CorpusArgumentError(
                "input_ids, attention_mask and stats_mask must be 2-D with the same shape; "
                f"got {[tuple(s) for s in shapes]}."
            )
        if bool((self.stats_mask & ~self.attention_mask).any()):
            raise CorpusArgumentError("stats_mask may only be True where attention_mask is True.")

    @property
    def n_tokens(self) -> int:
        """Number of positions that count for statistics (``stats_mask.sum()``)."""
        return int(self.stats_mask.sum())

    @property
    def n_real_tokens(self) -> int:
        """Number of real (non-padding) positions, BOS included."""
        return int(self.attention_mask.sum())

    @property
    def seq_len(self) -> int:
        """Length of every window."""
        return int(self.input_ids.shape[1])

    @property
    def loss_mask(self) -> Bool[Tensor, "window seq"]:
        """``True`` at positions ``t`` whose token is predicted from ``logits[:, t - 1]``.

        These are the real tokens that have a real token before them: the BOS position
        (or, without BOS, a window's first token) is never a target, padding never is.
        """
        mask = self.attention_mask.clone()
        mask[:, 0] = False
        return mask

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> TokenWindows:
        """A subset of the windows (an ``int`` keeps a one-row grid)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return TokenWindows(
            self.input_ids[index],
            self.attention_mask[index],
            self.stats_mask[index],
            self.language,
        )

    def batches(self, batch_size: int, *, trim: bool = False) -> Iterator[TokenWindows]:
        """Consecutive slices of at most ``batch_size`` windows.

        ``trim=True`` keeps a forward pass from computing padding: a slice never mixes
        full windows with shorter ones (packing leaves one short window at the end), and
        each slice is cut to its longest real window. Exact for a causal model with right
        padding, where trailing padding never reaches a real position.
        """
        if batch_size < 1:
            raise CorpusArgumentError(f"batch_size must be at least 1; got {batch_size}.")
        if not trim:
            for start in range(0, len(self), batch_size):
                yield self[start : start + batch_size]
            return
        lengths = self.real_lengths
        for start, stop in _trimmed_slices(lengths, self.seq_len, batch_size):
            length = max(int(lengths[start:stop].max()), 1)
            part = self[start:stop]
            yield TokenWindows(
                part.input_ids[:, :length],
                part.attention_mask[:, :length],
                part.stats_mask[:, :length],
                self.language,
            )

    @property
    def real_lengths(self) -> Int64[Tensor, " window"]:
        """Each window's length up to its last real token (right padding excluded)."""
        mask = self.attention_mask
        positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
        return (positions * mask).amax(dim=1)

    def to(self, device: torch.device | str) -> TokenWindows:
        """The same windows on ``device``."""
        return TokenWindows(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.stats_mask.to(device),
            self.language,
        )

    def __repr__(self) -> str:
        lang = f"{self.language!r}, " if self.language is not None else ""
        return (
            f"TokenWindows({lang}{len(self)} windows x {self.seq_len} positions, "
            f"{self.n_tokens} counted tokens)"
        )


def _trimmed_slices(
    lengths: Int64[Tensor, " window"], seq_len: int, batch_size: int
) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive batches that never mix full and shorter windows."""
    full = (lengths == seq_len).tolist()
    start = 0
    while start < len(full):
        stop = start + 1
        while stop < len(full) and stop - start < batch_size and full[stop] == full[start]:
            stop += 1
        yield start, stop
        start = stop


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` puts its BOS token in front of a text by itself."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return len(ids) > 0 and ids[0] == bos


def pad_token_id(tokenizer: Any) -> int:
    """The id to pad with: the tokenizer's ``pad_token_id``, else its ``eos_token_id``, else 0."""
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            return int(value)
    return 0


def _as_texts(
    texts: Sequence[str] | Any, language: str | None, text_column: str
) -> tuple[list[str], str | None]:
    if isinstance(texts, MultilingualCorpus):
        if language is None:
            raise CorpusArgumentError(
                "Pass language=... to tokenise one language of a MultilingualCorpus "
                "(its training split is used; pass corpus.test(language) for the test split)."
            )
        return texts.texts(language, split="train"), language
    if isinstance(texts, str):
        return [texts], language
    names = getattr(texts, "column_names", None)
    if names is not None:
        if text_column not in names:
            raise CorpusArgumentError(
                f"The dataset has no {text_column!r} column ({', '.join(names)}); "
                "pass text_column=..."
            )
        if language is None and "language" in names:
            found = set(column_list(texts, "language"))
            if len(found) == 1:
                language = str(found.pop())
        return column_list(texts, text_column), language
    return list(texts), language


def _token_lists(tokenizer: Any, texts: list[str], batch_size: int) -> Iterator[list[int]]:
    """Token ids of each text (no special tokens), tokenised in batches by the fast path."""
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        yield from tokenizer(chunk, add_special_tokens=False)["input_ids"]


def tokenize_windows(
    tokenizer: Any,
    texts: Sequence[str] | Any,
    *,
    window: int = 512,
    pack: bool = True,
    add_bos: bool | None = None,
    separator: str = "\n",
    max_tokens: int | None = None,
    count_bos: bool = False,
    language: str | None = None,
    text_column: str = "text",
    batch_size: int = 1000,
) -> TokenWindows:
    """Tokenise texts into ``[n_windows, window]`` token ids with attention and stats masks.

    Args:
        tokenizer: a Hugging Face tokenizer (the fast batch call is used).
        texts: strings, a ``datasets.Dataset`` (its ``text_column``; its ``language``
            column fills ``language`` when it holds one value), or a
            `MultilingualCorpus` together with ``language`` (training split).
        window: length of every window, BOS included (at least 2).
        pack: ``True``: concatenate all texts (``separator`` between them) and cut the
            stream into chunks of ``window - 1`` tokens (``window`` without BOS), each
            prefixed with BOS; the last chunk is right-padded. ``False``: one text per
            window, truncated to fit, right-padded.
        add_bos: prefix each window with the tokenizer's BOS token. ``None`` follows
            the tokenizer: BOS is added iff ``tokenizer("a")`` starts with it.
        separator: text put between consecutive texts when packing (tokenised alone,
            without special tokens; ``""`` for none).
        max_tokens: stop once this many counted tokens (``stats_mask`` positions) are
            produced; the last window is cut so that ``n_tokens == max_tokens`` when
            the texts hold enough tokens.
        count_bos: let the BOS position count in ``stats_mask``.
        language: recorded on the windows.
        text_column: the text column when ``texts`` is a dataset.
        batch_size: texts per tokenizer call.

    Raises:
        CorpusArgumentError: ``window < 2``, ``max_tokens < 1``, or ``add_bos=True``
            for a tokenizer without a BOS token.
        EmptyCorpusError: no text yields a single token.
    """
    if not isinstance(window, int) or window < 2:
        raise CorpusArgumentError(
            f"window must be an integer of at least 2 (BOS + one token); got {window!r}."
        )
    if max_tokens is not None and max_tokens < 1:
        raise CorpusArgumentError(f"max_tokens must be positive or None; got {max_tokens!r}.")
    texts_list, language = _as_texts(texts, language, text_column)
    texts_list = [t for t in texts_list if t]

    if add_bos is None:
        add_bos = tokenizer_adds_bos(tokenizer)
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if add_bos and bos_id is None:
        raise CorpusArgumentError(
            "add_bos=True but the tokenizer has no bos_token_id; pass add_bos=False."
        )
    b = 1 if add_bos else 0
    per_window_bonus = 1 if (add_bos and count_bos) else 0
    pad_id = pad_token_id(tokenizer)
    lists = _token_lists(tokenizer, texts_list, batch_size)

    if pack:
        content = window - b
        sep = tokenizer(separator, add_special_tokens=False)["input_ids"] if separator else []
        pieces: list[list[int]] = []
        n_stream = 0
        for ids in lists:
            if not ids:
                continue
            if pieces and sep:
                pieces.append(sep)
                n_stream += len(sep)
            pieces.append(ids)
            n_stream += len(ids)
            if max_tokens is not None and n_stream >= max_tokens:
                break  # content tokens >= counted tokens needed
        if n_stream == 0:
            raise _empty(language)
        stream = np.fromiter(chain.from_iterable(pieces), dtype=np.int64, count=n_stream)
        lengths = [min(content, n_stream - start) for start in range(0, n_stream, content)]
        rows = [stream[start : start + content] for start in range(0, n_stream, content)]
    else:
        rows, lengths = [], []
        counted = 0
        for ids in lists:
            if not ids:
                continue
            row = np.asarray(ids[: window - b], dtype=np.int64)
            rows.append(row)
            lengths.append(len(row))
            counted += len(row) + per_window_bonus
            if max_tokens is not None and counted >= max_tokens:
                break
        if not rows:
            raise _empty(language)

    if max_tokens is not None:
        kept_rows, kept_lengths, counted = [], [], 0
        for row, length in zip(rows, lengths, strict=True):
            take = min(length, max_tokens - counted - per_window_bonus)
            if take < 0:
                break
            kept_rows.append(row[:take])
            kept_lengths.append(take)
            counted += take + per_window_bonus
            if counted >= max_tokens:
                break
        rows, lengths = kept_rows, kept_lengths

    n = len(rows)
    input_ids = np.full((n, window), pad_id, dtype=np.int64)
    if b:
        input_ids[:, 0] = bos_id
    for i, row in enumerate(rows):
        input_ids[i, b : b + len(row)] = row
    real = np.asarray(lengths, dtype=np.int64) + b
    positions = np.arange(window)[None, :]
    attention = positions < real[:, None]
    stats = attention.copy()
    if b and not count_bos:
        stats[:, 0] = False
    return TokenWindows(
        torch.from_numpy(input_ids),
        torch.from_numpy(attention),
        torch.from_numpy(stats),
        language,
    )


def _empty(language: str | None) -> EmptyCorpusError:
    which = f" for language {language!r}" if language is not None else ""
    return EmptyCorpusError(
        f"No text to tokenise{which}: every text is empty. Check the corpus and the split."
    )


def concat_windows(parts: Iterable[TokenWindows]) -> TokenWindows:
    """Stack several `TokenWindows` of the same window length (and language)."""
    parts = list(parts)
    if not parts:
        raise EmptyCorpusError("concat_windows needs at least one TokenWindows.")
    languages = {p.language for p in parts}
    return TokenWindows(
        torch.cat([p.input_ids for p in parts]),
        torch.cat([p.attention_mask for p in parts]),
        torch.cat([p.stats_mask for p in parts]),
        languages.pop() if len(languages) == 1 else None,
    )
