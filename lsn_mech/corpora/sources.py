"""Turn whatever a user passes as "a corpus" into token windows for one language.

Accepted: a `MultilingualCorpus`, a ``datasets.Dataset`` with ``language`` and
``text`` columns, a mapping ``language -> texts`` or ``language -> TokenWindows``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lsn_mech.errors import EmptyCorpusError, MissingLanguageError, WrongInputError
from lsn_mech.provenance import Provenance


def corpus_languages(corpus: Any) -> list[str]:
    """The languages a corpus offers, in its own order."""
    from lsn_mech.corpora.corpus import MultilingualCorpus

    if isinstance(corpus, MultilingualCorpus):
        return list(corpus.languages)
    if isinstance(corpus, Mapping):
        return [str(k) for k in corpus]
    column = _dataset_column(corpus, "language")
    if column is not None:
        return list(dict.fromkeys(column))
    raise WrongInputError(
        "A corpus must be a lsn_mech MultilingualCorpus, a datasets.Dataset with 'language' "
        "and 'text' columns, or a mapping from language to texts / TokenWindows; got "
        f"{type(corpus).__name__}."
    )


def corpus_provenance(
    corpus: Any, *, model_id: str | None, method: str, parameters: dict[str, Any]
) -> Provenance:
    """Provenance of a result computed by running a model over ``corpus``.

    The corpus name and fingerprint come from `corpus_identity`, so statistics, PPL
    matrices and sweeps record their inputs the same way and can be matched later.
    """
    corpus_name, corpus_hash = corpus_identity(corpus)
    return Provenance(
        model_id=model_id,
        corpus=corpus_name,
        corpus_hash=corpus_hash,
        method=method,
        parameters=parameters,
    )


def corpus_identity(corpus: Any) -> tuple[str, str | None]:
    """(name, content fingerprint) of a corpus, for provenance and checkpoint keys."""
    from lsn_mech.corpora.corpus import MultilingualCorpus
    from lsn_mech.provenance import stable_hash

    if isinstance(corpus, MultilingualCorpus):
        return corpus.name, corpus.fingerprint
    if isinstance(corpus, Mapping):
        parts = []
        for language, value in corpus.items():
            if hasattr(value, "input_ids"):
                parts.append([language, value.input_ids.shape, int(value.input_ids.sum())])
            else:
                parts.append([language, list(value)])
        return "mapping", stable_hash(parts)
    fingerprint = getattr(corpus, "_fingerprint", None)
    return "dataset", str(fingerprint) if fingerprint else None


def language_windows(
    corpus: Any,
    language: str,
    tokenizer: Any,
    *,
    split: str | None,
    window: int,
    max_tokens: int | None,
    pack: bool = True,
) -> Any:
    """Token windows of one language of ``corpus`` (at most ``max_tokens`` counted tokens)."""
    from lsn_mech.corpora.windows import tokenize_windows

    if isinstance(corpus, Mapping):
        if language not in corpus:
            raise MissingLanguageError(
                f"Language {language!r} is not in the corpus "
                f"(it has {', '.join(map(str, corpus))})."
            )
        value = corpus[language]
        if hasattr(value, "input_ids"):
            if value.n_tokens == 0:
                raise EmptyCorpusError(f"The token windows given for {language!r} count no token.")
            return value
        texts = [value] if isinstance(value, str) else list(value)
    else:
        texts = language_texts(corpus, language, split)
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise EmptyCorpusError(
            f"Language {language!r} has no non-empty text in this corpus"
            + (f" (split {split!r})." if split else ".")
            + " Give it text or leave it out of languages=[...]."
        )
    return tokenize_windows(
        tokenizer, texts, window=window, pack=pack, max_tokens=max_tokens, language=language
    )


def language_texts(corpus: Any, language: str, split: str | None) -> list[str]:
    """Plain texts of one language (``split`` applies to corpora that have splits)."""
    from lsn_mech.corpora.corpus import MultilingualCorpus

    if isinstance(corpus, MultilingualCorpus):
        return corpus.texts(language, split=split or "train")
    if isinstance(corpus, Mapping):
        value = corpus[language]
        return [value] if isinstance(value, str) else list(value)
    languages = _dataset_column(corpus, "language")
    texts = _dataset_column(corpus, "text")
    if languages is None or texts is None:
        raise TypeError("A datasets.Dataset corpus needs 'language' and 'text' columns.")
    if split is not None and "split" in getattr(corpus, "column_names", []):
        splits = corpus["split"]
        chosen = [
            t for t, lang, s in zip(texts, languages, splits) if lang == language and s == split
        ]
    else:
        chosen = [t for t, lang in zip(texts, languages) if lang == language]
    if not chosen:
        raise MissingLanguageError(
            f"Language {language!r} has no rows in this dataset "
            f"(languages: {', '.join(dict.fromkeys(languages))})."
        )
    return chosen


def as_text_list(texts: Any, text_column: str = "text") -> list[str]:
    """A string, a sequence of strings, or a ``datasets.Dataset`` column as a list."""
    if isinstance(texts, str):
        return [texts]
    column = _dataset_column(texts, text_column)
    if column is not None:
        return list(column)
    if isinstance(texts, Sequence) or (
        isinstance(texts, Iterable) and not isinstance(texts, (bytes, Mapping))
    ):
        return [str(t) for t in texts]
    raise WrongInputError(
        f"Expected texts (a string, a list of strings or a datasets.Dataset with a "
        f"{text_column!r} column), got {type(texts).__name__}; for one language of a corpus "
        "pass corpus.test('fr') or corpus.train('fr')."
    )


def _dataset_column(data: Any, column: str) -> list[Any] | None:
    names = getattr(data, "column_names", None)
    if names is None or column not in names:
        return None
    return list(data[column])
