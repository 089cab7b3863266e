"""Bible genre classification: an offline zero-shot cross-lingual transfer task.

A verse's label is the genre of its book (law, history, poetry, prophets, gospels,
letters), and every edition of the embedded Bible holds the same verse keys, so one
labelling serves all its languages without any download or annotation. A classifier is
trained on source-language verses and tested on the *same* held-out verses in every
target language, so accuracies are directly comparable across languages.

The split is by whole book within each genre (see `GENRE_SPLIT_RULE`): the test verses
come from books the classifier never saw in any language, so it has to learn genre (style,
register, vocabulary), not memorise passages, and no test verse leaks into training
through a translation.

```python
import lsn_mech as lm

task = lm.corpora.bible_genre_task("en", ["vi", "hi", "zh"])
task.summary()                     # rows per genre in train and in each test language
task.metadata["test_books"]        # {genre: [held-out book names]}
```
"""

from __future__ import annotations

import operator
import types
from collections.abc import Mapping, Sequence
from typing import Any

from datasets import Dataset

from lsn_mech.corpora.bible import (
    BOOK_NAMES,
    BOOK_VERSES,
    NORMALISATION_VERSION,
    bible,
    bible_languages,
)
from lsn_mech.corpora.corpus import column_list, hash_unit
from lsn_mech.corpora.tasks import ClassificationTask, TaskDataError
from lsn_mech.errors import MissingLanguageError

__all__ = [
    "BIBLE_GENRES",
    "BIBLE_LABEL_SETS",
    "DEFAULT_BOOK_GENRES",
    "GENRE_SPLIT_RULE",
    "GENRE_TEMPLATE",
    "bible_genre_task",
    "book_genre",
    "genre_test_books",
]

#: The labels of the default mapping, in label-index order.
BIBLE_GENRES: tuple[str, ...] = ("law", "history", "poetry", "prophets", "gospels", "letters")

_GENRE_BOOKS: dict[str, tuple[int, ...]] = {
    "law": tuple(range(1, 6)),  # Genesis–Deuteronomy (the Torah / Pentateuch)
    # Joshua–Esther, plus Acts (44): a narrative history of the early church, not a letter
    "history": (*range(6, 18), 44),
    "poetry": tuple(range(18, 23)),  # Job, Psalms, Proverbs, Ecclesiastes, Song of Songs
    # Isaiah–Malachi, plus Revelation (66): apocalyptic prophecy, close to Daniel/Ezekiel
    "prophets": (*range(23, 40), 66),
    "gospels": tuple(range(40, 44)),  # Matthew, Mark, Luke, John
    "letters": tuple(range(45, 66)),  # Romans–Jude
}

#: Book number (1–66, Protestant canon order: 1 Genesis … 40 Matthew … 66 Revelation)
#: → genre. Two judgement calls: Acts (44) is *history* (narrative, like Kings and
#: Chronicles) rather than a New Testament "letter"; Revelation (66) is *prophets*
#: (apocalyptic prophecy, like Daniel and Ezekiel) rather than a letter, although it
#: opens as one. Pass ``genres=`` to `bible_genre_task` to use another mapping.
DEFAULT_BOOK_GENRES: Mapping[int, str] = types.MappingProxyType(
    {book: genre for genre, books in _GENRE_BOOKS.items() for book in books}
)

_STYLES = {"law": "narrative", "history": "narrative", "gospels": "narrative"}

#: Named book → label mappings that ``genres=`` (and the transfer job's ``--genres``) take
#: by name: ``"genres"`` the six of `DEFAULT_BOOK_GENRES`; ``"styles"`` four literary
#: styles (narrative = law, history and gospels; poetry; prophets; letters);
#: ``"testaments"`` Old (1–39) against New (40–66).
BIBLE_LABEL_SETS: Mapping[str, Mapping[int, str]] = types.MappingProxyType(
    {
        "genres": DEFAULT_BOOK_GENRES,
        "styles": types.MappingProxyType(
            {n: _STYLES.get(g, g) for n, g in DEFAULT_BOOK_GENRES.items()}
        ),
        "testaments": types.MappingProxyType(
            {n: "old" if n <= 39 else "new" for n in range(1, 67)}
        ),
    }
)

#: The classifier frame of the transfer job (`ClassifierConfig.template`): the verse, then
#: a fixed English cue whose last token the head reads. Whatever the verse's language, that
#: token is the same and asks the same question (which book?), so the head's input is
#: comparable across languages; on the bare verse it is the verse's own last token, a
#: different word in every language, and transfer stays at chance (docs/transfer_tasks.md).
GENRE_TEMPLATE = "{text}\n\nThe passage above is from the Bible book of"

GENRE_SPLIT_RULE = (
    "By whole book within each genre. The books of a genre are ordered by "
    "(KJV verse count < test_per_genre, u(n), n) with u(n) = first 8 bytes of "
    "blake2b(f'{seed}\\x00genre-book-{n}', digest_size=8) / 2**64, i.e. books large enough "
    "to fill the test cap first, each group in seeded-hash order; the first "
    "test_books_per_genre books are held out for 'test', the others supply 'train'. "
    "Test verses: the keys of the held-out books present and non-empty in the source and "
    "every target edition, at most test_per_genre per genre (the smallest "
    "u('genre-verse-{book}:{chapter}:{verse}')), the same keys in every test language. "
    "Train verses: the keys of the other books present in the source edition, at most "
    "train_per_genre per genre, chosen the same way (they depend only on the source, not "
    "on the targets). Rows are interleaved round by round (one row of each genre per "
    "round, genres in seeded order), so every prefix is balanced; every test language "
    "has the same row order."
)


# ----- the mapping ----------------------------------------------------------------------
def _check_genres(
    genres: Mapping[int, str | None] | str | None,
) -> tuple[dict[int, str], tuple[str, ...], list[int]]:
    """Validate a book → genre mapping; return (mapped books, labels, excluded books).

    Labels are the genres in order of first appearance along the books 1..66 (for the
    default mapping that is `BIBLE_GENRES`), so the label indices do not depend on how
    the caller's dict happened to be built.
    """
    if genres is None:
        return dict(sorted(DEFAULT_BOOK_GENRES.items())), BIBLE_GENRES, []
    if isinstance(genres, str):
        if genres not in BIBLE_LABEL_SETS:
            raise TaskDataError(
                f"genres={genres!r} names no label set; name one of "
                f"{', '.join(BIBLE_LABEL_SETS)} or pass a {{book: genre}} mapping."
            )
        genres = BIBLE_LABEL_SETS[genres]
    if not isinstance(genres, Mapping):
        raise TaskDataError(
            f"genres must map book numbers 1..66 to genre names; got {type(genres).__name__}. "
            "Start from dict(lsn_mech.corpora.DEFAULT_BOOK_GENRES) and change what you need."
        )
    mapping: dict[int, str | None] = {}
    bad_keys: list[Any] = []
    for key, value in genres.items():
        try:
            book = operator.index(key)
        except TypeError:
            bad_keys.append(key)
            continue
        if isinstance(key, bool) or not 1 <= book <= 66:
            bad_keys.append(key)
            continue
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise TaskDataError(
                f"genres[{key!r}] is {value!r}; every book must map to a non-empty genre "
                "name, or to None to leave the book out of the task."
            )
        mapping[book] = value
    if bad_keys:
        raise TaskDataError(
            f"genres has keys {bad_keys[:10]} that are not book numbers 1..66 (1 Genesis … "
            "40 Matthew … 66 Revelation, Protestant canon order); use integer book numbers."
        )
    missing = [n for n in range(1, 67) if n not in mapping]
    if missing:
        names = ", ".join(f"{n} {BOOK_NAMES[n - 1]}" for n in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise TaskDataError(
            f"genres maps no genre to book(s) {names}{more}. Map every book 1..66 (start "
            "from dict(lsn_mech.corpora.DEFAULT_BOOK_GENRES)); map a book to None to leave "
            "it out of the task on purpose."
        )
    kept = {n: g for n, g in sorted(mapping.items()) if g is not None}
    labels = tuple(dict.fromkeys(kept.values()))
    if len(labels) < 2:
        raise TaskDataError(
            f"genres names {len(labels)} genre(s) {list(labels)}; a classification task "
            "needs at least two. Map the books to two or more genres."
        )
    return kept, labels, [n for n, g in sorted(mapping.items()) if g is None]


def book_genre(book: int, genres: Mapping[int, str | None] | str | None = None) -> str:
    """The genre of book number ``book`` (1–66) under ``genres`` (default mapping if None).

    Raises:
        TaskDataError: ``book`` is not a book number, or the mapping leaves it out.
    """
    try:
        number = operator.index(book)
    except TypeError:
        number = 0
    if isinstance(book, bool) or not 1 <= number <= 66:
        raise TaskDataError(
            f"book must be a book number 1..66 (1 Genesis … 40 Matthew … 66 Revelation); "
            f"got {book!r}."
        )
    mapped, _, _ = _check_genres(genres)
    if number not in mapped:
        raise TaskDataError(
            f"Book {number} ({BOOK_NAMES[number - 1]}) is mapped to None (left out) in the "
            "given genres; map it to a genre name to classify it."
        )
    return mapped[number]


# ----- the split ------------------------------------------------------------------------
def _check_count(value: int | None, name: str, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        hint = " or None (all available)" if allow_none else ""
        raise TaskDataError(f"{name} must be a positive integer{hint}; got {value!r}.")
    return number


def _genre_books(mapped: Mapping[int, str], labels: Sequence[str]) -> dict[str, list[int]]:
    return {g: [n for n in sorted(mapped) if mapped[n] == g] for g in labels}


def genre_test_books(
    *,
    seed: int = 0,
    test_books_per_genre: int = 1,
    test_per_genre: int | None = 50,
    genres: Mapping[int, str | None] | str | None = None,
) -> dict[str, list[int]]:
    """The held-out (test) book numbers of each genre, sorted (see `GENRE_SPLIT_RULE`).

    Depends only on these arguments, never on languages or editions, so every task
    built with them tests on the same books.

    Raises:
        TaskDataError: a genre has too few books to hold ``test_books_per_genre`` out
            and still train on one.
    """
    mapped, labels, _ = _check_genres(genres)
    k = _check_count(test_books_per_genre, "test_books_per_genre", allow_none=False)
    assert k is not None
    cap = _check_count(test_per_genre, "test_per_genre")
    held_out: dict[str, list[int]] = {}
    for genre, books in _genre_books(mapped, labels).items():
        if len(books) <= k:
            names = ", ".join(BOOK_NAMES[n - 1] for n in books)
            raise TaskDataError(
                f"Genre {genre!r} has {len(books)} book(s) ({names}); holding out "
                f"test_books_per_genre={k} leaves none to train on. Lower "
                f"test_books_per_genre (at most {len(books) - 1} here) or map more books "
                "to that genre."
            )
        order = sorted(
            books,
            key=lambda n: (
                cap is not None and BOOK_VERSES[n - 1] < cap,
                hash_unit(seed, f"genre-book-{n}"),
                n,
            ),
        )
        held_out[genre] = sorted(order[:k])
    return held_out


def _sample(keys: Sequence[tuple[int, int, int]], cap: int | None, seed: int) -> list[Any]:
    """Up to ``cap`` keys with the smallest seeded hash, in hash order (a seeded shuffle)."""
    ranked = sorted(keys, key=lambda k: (hash_unit(seed, f"genre-verse-{k[0]}:{k[1]}:{k[2]}"), k))
    return ranked if cap is None else ranked[:cap]


def _interleave(
    per_label: Sequence[list[tuple[int, int, int]]], seed: int, tag: str
) -> list[tuple[int, tuple[int, int, int]]]:
    """(label, key) rows, one of each label per round in a seeded order per round.

    Training and evaluation code may read only the first rows (`ClassificationTask.subset`),
    so every prefix has to hold every genre in about equal numbers.
    """
    rows: list[tuple[int, tuple[int, int, int]]] = []
    for r in range(max((len(keys) for keys in per_label), default=0)):
        present = [label for label, keys in enumerate(per_label) if r < len(keys)]
        present.sort(key=lambda label: hash_unit(seed, f"genre-{tag}-round-{r}-{label}"))
        rows.extend((label, per_label[label][r]) for label in present)
    return rows


def _passages(
    verses: Mapping[tuple[int, int, int], str],
    rows: Sequence[tuple[int, tuple[int, int, int]]],
    context: int,
) -> dict[tuple[int, int, int], str]:
    """Each row's text: its verse and the next ``context - 1`` verses of its chapter that
    the edition holds, joined by a space (a chapter's end stops the passage early)."""
    passages = {}
    for _, (book, chapter, verse) in rows:
        parts = [verses[(book, chapter, verse)]]
        for offset in range(1, context):
            text = verses.get((book, chapter, verse + offset))
            if text is None:
                break
            parts.append(text)
        passages[(book, chapter, verse)] = " ".join(parts)
    return passages


def _rows_dataset(
    rows: Sequence[tuple[int, tuple[int, int, int]]],
    verses: Mapping[tuple[int, int, int], str],
    language: str,
    context: int = 1,
) -> Dataset:
    """A task Dataset built in Arrow, with a fingerprint from its content (datasets would
    otherwise pickle the whole table to make one)."""
    import pyarrow as pa

    from lsn_mech.provenance import stable_hash

    keys = [key for _, key in rows]
    texts = [verses[k] for k in keys]
    columns = {
        "text": pa.array(texts, type=pa.string()),
        "label": pa.array([label for label, _ in rows], type=pa.int64()),
        "language": pa.array([language] * len(rows), type=pa.string()),
        "book": pa.array([k[0] for k in keys], type=pa.int64()),
        "chapter": pa.array([k[1] for k in keys], type=pa.int64()),
        "verse": pa.array([k[2] for k in keys], type=pa.int64()),
    }
    identity: tuple[Any, ...] = ("bible-genre", language, [(label, list(k)) for label, k in rows])
    if context > 1:
        identity = (*identity, context)
    return Dataset(pa.table(columns), fingerprint=stable_hash("lsn_mech", identity))


def _languages(source: str, targets: Sequence[str] | str) -> list[str]:
    if isinstance(targets, str):
        targets = [targets]
    languages = list(dict.fromkeys([str(source), *(str(t) for t in targets)]))
    unknown = [lang for lang in languages if lang not in bible_languages()]
    if unknown:
        raise MissingLanguageError(
            f"The embedded Bible has no edition in {unknown}, so the Bible genre task cannot "
            f"use it. Available languages: {', '.join(bible_languages())}. For other "
            "languages build a ClassificationTask from your own labelled data."
        )
    return languages


# ----- the task -------------------------------------------------------------------------
def bible_genre_task(
    source: str = "en",
    targets: Sequence[str] | str = ("vi", "hi", "zh"),
    *,
    train_per_genre: int | None = 200,
    test_per_genre: int | None = 50,
    test_books_per_genre: int = 1,
    seed: int = 0,
    genres: Mapping[int, str | None] | str | None = None,
    editions: Mapping[str, str] | None = None,
    context_verses: int = 1,
) -> ClassificationTask:
    """Classify a verse's genre: train in ``source``, test on the same verses everywhere.

    Args:
        source: training language (ISO 639-1 code of the embedded Bible).
        targets: test languages; the source is always tested too (the in-language
            reference), first in ``task.test``.
        train_per_genre: at most this many training verses per genre (None: all).
        test_per_genre: at most this many test verses per genre (None: all), the same
            verse keys in every test language.
        test_books_per_genre: whole books held out per genre for testing. A count, not a
            fraction: genres have 4 to 21 books, and a fraction would hold out no book
            of a small genre or many of a large one.
        seed: seed of the held-out books, the verse choice and the row order.
        genres: book number (1–66) → genre name, every book mapped (None leaves a book
            out), or the name of one of `BIBLE_LABEL_SETS`; default `DEFAULT_BOOK_GENRES`.
            Labels are the genres in order of first appearance along books 1..66.
        editions: ``{language: edition code}`` overriding the Bible's default editions.
        context_verses: each row's ``text`` is its verse and the verses after it in the
            same chapter, this many in all (fewer at a chapter's end), joined by a space:
            a longer input for the same key, label and split.

    Returns:
        A `ClassificationTask` named ``"bible-genre"``; rows have columns ``text, label,
        language, book, chapter, verse``. ``metadata`` records the editions, the mapping,
        the held-out and training books per genre (names and numbers), rows available
        and kept per genre, the seed and the split rule.

    Raises:
        MissingLanguageError: a language the embedded Bible does not have.
        TaskDataError: a bad mapping or count, a genre with too few books to hold one
            out, or a genre left with no rows.
    """
    mapped, labels, excluded = _check_genres(genres)
    train_cap = _check_count(train_per_genre, "train_per_genre")
    test_cap = _check_count(test_per_genre, "test_per_genre")
    context = _check_count(context_verses, "context_verses", allow_none=False)
    assert context is not None
    languages = _languages(source, targets)
    held_out = genre_test_books(
        seed=seed, test_books_per_genre=test_books_per_genre, test_per_genre=test_cap,
        genres=genres,
    )  # fmt: skip
    by_genre = _genre_books(mapped, labels)
    train_books = {g: [n for n in by_genre[g] if n not in held_out[g]] for g in labels}

    corpus = bible(
        languages, editions=editions, test_fraction=0.0, books=sorted(mapped), aligned=False
    )
    columns = {c: column_list(corpus.dataset, c) for c in ("language", "book", "chapter", "verse")}
    texts = column_list(corpus.dataset, "text")
    verses: dict[str, dict[tuple[int, int, int], str]] = {lang: {} for lang in languages}
    for lang, book, chapter, verse, text in zip(*columns.values(), texts):
        verses[lang][(book, chapter, verse)] = text

    genre_of = {n: labels.index(g) for n, g in mapped.items()}
    test_of = {n for books in held_out.values() for n in books}
    train_pool: list[list[tuple[int, int, int]]] = [[] for _ in labels]
    test_pool: list[list[tuple[int, int, int]]] = [[] for _ in labels]
    for key in verses[source]:  # canonical order
        if key[0] not in test_of:
            train_pool[genre_of[key[0]]].append(key)
        elif all(key in verses[lang] for lang in languages):
            test_pool[genre_of[key[0]]].append(key)

    for split, pool, books in (("train", train_pool, train_books), ("test", test_pool, held_out)):
        empty = [labels[i] for i, keys in enumerate(pool) if not keys]
        if empty:
            where = source if split == "train" else "all of " + ", ".join(languages)
            which = {g: [BOOK_NAMES[n - 1] for n in books[g]] for g in empty}
            raise TaskDataError(
                f"Genre(s) {empty} have no {split} verses in {where} (books {which}). "
                "Try another seed, more test_books_per_genre, other editions, or a mapping "
                "that gives these genres more books."
            )

    train_rows = _interleave([_sample(keys, train_cap, seed) for keys in train_pool], seed, "train")
    test_rows = _interleave([_sample(keys, test_cap, seed) for keys in test_pool], seed, "test")

    def names(books: Mapping[str, list[int]]) -> dict[str, list[str]]:
        return {g: [BOOK_NAMES[n - 1] for n in books[g]] for g in labels}

    def per_genre(rows: Sequence[tuple[int, Any]]) -> dict[str, int]:
        counts = dict.fromkeys(labels, 0)
        for label, _ in rows:
            counts[labels[label]] += 1
        return counts

    metadata: dict[str, Any] = {
        "task": "bible-genre",
        "data": corpus.metadata["source"],
        "languages": languages,
        "editions": corpus.metadata["editions"],
        "normalisation_version": NORMALISATION_VERSION,
        "skipped_verses": corpus.metadata["skipped_verses"],
        "labels": list(labels),
        "genres": {BOOK_NAMES[n - 1]: g for n, g in mapped.items()},
        "default_genres": genres is None or genres == "genres",
        "excluded_books": [BOOK_NAMES[n - 1] for n in excluded],
        "test_books": names(held_out),
        "test_book_numbers": {g: held_out[g] for g in labels},
        "train_books": names(train_books),
        "train_book_numbers": train_books,
        "available": {
            "train": {labels[i]: len(keys) for i, keys in enumerate(train_pool)},
            "test": {labels[i]: len(keys) for i, keys in enumerate(test_pool)},
        },
        "counts": {"train": per_genre(train_rows), "test": per_genre(test_rows)},
        "train_per_genre": train_cap,
        "test_per_genre": test_cap,
        "test_books_per_genre": test_books_per_genre,
        "context_verses": context,
        "seed": seed,
        "split_rule": GENRE_SPLIT_RULE,
    }
    return ClassificationTask(
        name="bible-genre",
        labels=labels,
        source=source,
        train=_rows_dataset(
            train_rows, _passages(verses[source], train_rows, context), source, context
        ),
        test={
            lang: _rows_dataset(
                test_rows, _passages(verses[lang], test_rows, context), lang, context
            )
            for lang in languages
        },
        metadata=metadata,
    )
