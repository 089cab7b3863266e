"""Sentence embeddings per layer, and aligned texts to compute them on.

Both the sentence-embedding similarity (Tang et al., Fig. 6) and language dominance
(Eq. 6, Fig. 7) start from the same embeddings: compute them once with
`sentence_embeddings` and pass them to both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lsn_mech._version import __version__
from lsn_mech.corpora.corpus import (
    CorpusArgumentError,
    MultilingualCorpus,
    column_list,
    hash_unit,
)
from lsn_mech.corpora.windows import tokenizer_adds_bos
from lsn_mech.errors import EmptyCorpusError, MissingLanguageError, UnsupportedArchitectureError
from lsn_mech.experiments._results import canonical
from lsn_mech.models.protocol import HookedModel, model_device, model_id
from lsn_mech.models.runtime import capture
from lsn_mech.provenance import Provenance, stable_hash

Pooling = Literal["mean", "last"]
RESID_HOOK = "blocks.{layer}.hook_resid_post"


def _pooled_batch(
    model: HookedModel,
    names: list[str],
    tokens: Tensor,
    mask: Tensor,
    bos: int | None,
    pooling: str,
) -> Float[Tensor, "batch layer d_model"]:
    """Pooled residuals of one right-padded batch after every block."""
    lengths = mask.sum(dim=1)
    pool = mask.clone()
    if bos is not None:
        pool[:, 0] = lengths == 1  # keep BOS only for a text that has nothing else
    weights = (pool.float() / pool.sum(dim=1, keepdim=True)).unsqueeze(-1)
    rows = torch.arange(tokens.shape[0], device=tokens.device)
    pooled: list[Tensor] = []

    def pool(name: str, activation: Tensor) -> None:
        hidden = activation.float()
        if pooling == "mean":
            pooled.append((hidden * weights).sum(dim=1))
        else:
            pooled.append(hidden[rows, lengths - 1])

    capture(model, tokens, names, attention_mask=mask, callback=pool)
    return torch.stack(pooled, dim=1)


def aligned_verses(
    corpus: Any,
    languages: Sequence[str] | None = None,
    n: int | None = 200,
    *,
    split: str | None = "test",
    seed: int = 0,
) -> dict[str, list[str]]:
    """Texts with the same verse key in every language: ``{language: [text, ...]}``.

    Args:
        corpus: a `MultilingualCorpus` with ``book``, ``chapter`` and ``verse`` columns
            (e.g. `lsn_mech.corpora.bible`), or a dataset from
            `lsn_mech.corpora.bible_pairs` (two languages, already aligned).
        languages: the languages, in order (default: all the corpus has).
        n: how many aligned texts per language (``None``: all). The choice among the
            keys present in every language is a seeded hash of the key (the same for
            every language), returned in canonical (book, chapter, verse) order.
        split: ``"train"``, ``"test"`` or ``None`` (both).
        seed: seed of the choice.

    Text ``i`` of every language is a translation of text ``i`` of the others.
    """
    if n is not None and n < 1:
        raise CorpusArgumentError(f"n must be positive or None; got {n}.")
    names = getattr(corpus, "column_names", None)
    if names is not None and {"src_text", "tgt_text", "src_lang", "tgt_lang"} <= set(names):
        return _aligned_pairs(corpus, languages, n, split, seed)
    if not isinstance(corpus, MultilingualCorpus):
        raise CorpusArgumentError(
            "aligned_verses needs a MultilingualCorpus with verse keys (lsn_mech.corpora.bible) "
            f"or a bible_pairs dataset; got {type(corpus).__name__}. For other parallel text, "
            "pass {language: [aligned texts]} to the experiment directly."
        )
    keys_columns = ("book", "chapter", "verse")
    missing = [c for c in keys_columns if c not in corpus.dataset.column_names]
    if missing:
        raise CorpusArgumentError(
            f"The corpus has no {', '.join(missing)} column, so its texts cannot be aligned "
            "by verse; pass {language: [aligned texts]} to the experiment directly."
        )
    chosen = list(languages) if languages is not None else list(corpus.languages)
    columns = {c: column_list(corpus.dataset, c) for c in (*keys_columns, "text")}
    per_language: dict[str, dict[tuple[int, int, int], str]] = {}
    for language in chosen:
        rows = corpus.indices(language, split)
        per_language[language] = {
            (columns["book"][i], columns["chapter"][i], columns["verse"][i]): columns["text"][i]
            for i in rows
        }
    common = set.intersection(*(set(v) for v in per_language.values()))
    if not common:
        raise EmptyCorpusError(
            f"No verse is present in every one of {', '.join(chosen)} in split {split!r}."
        )
    keys = _choose(sorted(common), n, seed)
    return {language: [per_language[language][k] for k in keys] for language in chosen}


def _choose(keys: list[Any], n: int | None, seed: int) -> list[Any]:
    if n is None or n >= len(keys):
        return keys
    ranked = sorted(keys, key=lambda k: (hash_unit(seed, f"aligned-{k}"), k))
    keep = set(ranked[:n])
    return [k for k in keys if k in keep]


def _aligned_pairs(
    pairs: Any, languages: Sequence[str] | None, n: int | None, split: str | None, seed: int
) -> dict[str, list[str]]:
    if len(pairs) == 0:
        raise EmptyCorpusError("The pairs dataset is empty.")
    src, tgt = str(pairs["src_lang"][0]), str(pairs["tgt_lang"][0])
    if src == tgt:
        raise CorpusArgumentError(
            f"Both sides of these pairs are {src!r} (two editions); aligned texts are keyed by "
            "language, so build {name: texts} yourself with two distinct names."
        )
    if languages is not None and list(languages) not in ([src, tgt], [tgt, src]):
        raise MissingLanguageError(
            f"These pairs are {src}–{tgt}; ask for languages=[{src!r}, {tgt!r}]."
        )
    splits = column_list(pairs, "split") if "split" in pairs.column_names else [None] * len(pairs)
    rows = [i for i, s in enumerate(splits) if split is None or s is None or s == split]
    if not rows:
        raise EmptyCorpusError(f"The pairs have no row in split {split!r}.")
    rows = _choose(rows, n, seed)
    src_text, tgt_text = column_list(pairs, "src_text"), column_list(pairs, "tgt_text")
    result = {src: [src_text[i] for i in rows], tgt: [tgt_text[i] for i in rows]}
    order = list(languages) if languages is not None else [src, tgt]
    return {x: result[x] for x in order}


def check_aligned(aligned: Mapping[str, Sequence[str]]) -> tuple[list[str], int]:
    """Languages and texts per language of an aligned mapping (all must have as many)."""
    languages = [str(x) for x in aligned]
    if len(languages) < 1:
        raise EmptyCorpusError("Pass aligned texts as {language: [text, ...]}.")
    counts = {x: len(aligned[x]) for x in languages}
    if len(set(counts.values())) != 1 or not next(iter(counts.values())):
        raise CorpusArgumentError(
            "Aligned texts need the same, non-zero number of texts in every language (text i "
            f"of each language translates the others'); got {counts}."
        )
    return languages, counts[languages[0]]


@torch.no_grad()
def sentence_embeddings(
    model: HookedModel,
    aligned: Mapping[str, Sequence[str]],
    *,
    pooling: Pooling = "mean",
    batch_size: int = 16,
    max_length: int = 256,
    add_bos: bool | None = None,
    progress: bool = True,
) -> Float[Tensor, "lang layer text d_model"]:
    """Sentence embedding of every text after every block, on the model's device (float32).

    The embedding of a text at layer ``i`` pools the residual stream after block ``i``
    (hook ``blocks.{i}.hook_resid_post``) over the text's tokens:

    * ``pooling="mean"``: the mean over its tokens, excluding the BOS position and
      padding;
    * ``pooling="last"``: the last token's residual.

    Texts are tokenised one by one (no packing; BOS as the tokenizer adds it, or as
    ``add_bos`` says), truncated to ``max_length`` tokens, sorted by length and run in
    right-padded batches; the forward pass stops after the last block.

    Returns ``[lang, layer, text, d_model]`` in the order of ``aligned``.
    """
    if pooling not in ("mean", "last"):
        raise ValueError(f"pooling must be 'mean' or 'last'; got {pooling!r}.")
    if batch_size < 1 or max_length < 2:
        raise ValueError("batch_size must be >= 1 and max_length >= 2.")
    languages, n_texts = check_aligned(aligned)
    n_layers = int(model.cfg.n_layers)
    names = [RESID_HOOK.format(layer=layer) for layer in range(n_layers)]
    absent = [name for name in names if name not in model.hook_dict]
    if absent:
        raise UnsupportedArchitectureError(
            f"The model has no residual-stream hook {absent[0]!r}; load it with "
            "lsn_mech.load_model (TransformerLens names the output of block i so)."
        )
    tokenizer = model.tokenizer
    if add_bos is None:
        add_bos = tokenizer_adds_bos(tokenizer)
    bos = getattr(tokenizer, "bos_token_id", None) if add_bos else None
    texts = [str(t) for language in languages for t in aligned[language]]
    encoded = []
    for text, ids in zip(texts, tokenizer(texts, add_special_tokens=False)["input_ids"]):
        ids = ([int(bos)] if bos is not None else []) + list(ids)
        if len(ids) == (1 if bos is not None else 0):
            raise EmptyCorpusError(f"The text {text!r} gives no token; remove empty texts.")
        encoded.append(ids[:max_length])
    device = model_device(model)
    d_model = int(model.cfg.d_model)
    out = torch.zeros(len(texts), n_layers, d_model, dtype=torch.float32, device=device)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    pad = getattr(tokenizer, "pad_token_id", None)
    pad = int(pad) if pad is not None else 0
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc="sentence embeddings", disable=not progress):
        length = len(encoded[batch[0]])
        tokens = torch.full((len(batch), length), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), length), dtype=torch.bool)
        for row, i in enumerate(batch):
            tokens[row, : len(encoded[i])] = torch.tensor(encoded[i])
            mask[row, : len(encoded[i])] = True
        pooled = _pooled_batch(model, names, tokens.to(device), mask.to(device), bos, pooling)
        out[torch.tensor(batch, device=device)] = pooled
    return out.view(len(languages), n_texts, n_layers, d_model).permute(0, 2, 1, 3).contiguous()


def center_embeddings(
    embeddings: Float[Tensor, "lang layer text d_model"],
) -> Float[Tensor, "lang layer text d_model"]:
    """Subtract, at every layer, the mean embedding over all texts of all languages.

    ``ẽ_i(k, t) = e_i(k, t) − μ_i`` with ``μ_i = mean over k, t of e_i(k, t)``. Residual
    streams share a large common component (a few dimensions of large magnitude at every
    token), which pushes the cosine of any two raw sentence embeddings towards 1;
    centring removes it, and what remains compares the texts with each other.
    """
    return embeddings - embeddings.mean(dim=(0, 2), keepdim=True)


def embeddings_for(
    model: HookedModel | None,
    aligned: Mapping[str, Sequence[str]],
    embeddings: Float[Tensor, "lang layer text d_model"] | None,
    *,
    method: str,
    pooling: Pooling,
    center: bool,
    batch_size: int,
    max_length: int,
    progress: bool,
    extra: Mapping[str, Any] | None = None,
) -> tuple[list[str], Float[Tensor, "lang layer text d_model"], Provenance]:
    """Languages, embeddings and provenance of an analysis of ``aligned``: the given
    ``embeddings`` after a shape check, else `sentence_embeddings` of ``model``.

    Shared by the analyses that accept ready embeddings so that one forward pass can
    serve several of them (`sentence_similarity`, `language_dominance`); ``method`` and
    ``extra`` parameters name the analysis in the provenance.
    """
    languages, n_texts = check_aligned(aligned)
    given = embeddings is not None
    if embeddings is None:
        if model is None:
            raise ValueError("Pass a model, or embeddings=sentence_embeddings(model, aligned).")
        embeddings = sentence_embeddings(
            model,
            aligned,
            pooling=pooling,
            batch_size=batch_size,
            max_length=max_length,
            progress=progress,
        )
    elif (embeddings.shape[0], embeddings.shape[2]) != (len(languages), n_texts):
        raise ValueError(
            f"The embeddings ({tuple(embeddings.shape)}) do not match the aligned texts "
            f"({len(languages)} languages × {n_texts} texts)."
        )
    parameters = {
        "pooling": pooling,
        "languages": languages,
        "n_texts": n_texts,
        "max_length": max_length,
        "embeddings_given": given,
        "center": center,
        "layer_hook": "blocks.{i}.hook_resid_post",
        **(extra or {}),
    }
    provenance = Provenance(
        model_id=model_id(model) if model is not None else None,
        corpus="aligned texts",
        corpus_hash=stable_hash({k: list(v) for k, v in aligned.items()}),
        method=method,
        parameters=canonical(parameters),
        library_version=__version__,
    )
    return languages, embeddings, provenance


def named_embeddings(
    embeddings: Float[Tensor, "lang layer text d_model"],
    languages: Sequence[str],
    *,
    center: bool,
) -> Float[Tensor, "lang layer text d_model"]:
    """Check one language name per embedding row; centre them if asked (`center_embeddings`)."""
    if len(languages) != embeddings.shape[0]:
        raise ValueError(
            f"{len(languages)} language names for embeddings of {embeddings.shape[0]} languages."
        )
    return center_embeddings(embeddings) if center else embeddings
