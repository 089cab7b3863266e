"""Translation-instruction data: templates, examples, loss masks, truncation, batches."""

from __future__ import annotations

import time

import pytest
import torch
from datasets import Dataset

from lsn_mech.corpora import (
    TRANSLATION_TEMPLATES,
    TranslationDataError,
    TranslationTemplate,
    bible_pairs,
    from_hub_parallel,
    language_name,
    parallel_dataset,
    tokenize_translation,
    translation_batches,
    translation_examples,
)
from lsn_mech.errors import EmptyCorpusError, HubUnavailableError, LsnMechError
from lsn_mech.models import byte_tokenizer
from lsn_mech.models.byte_tokenizer import BOS_ID, EOS_ID, PAD_ID


def pairs(n: int = 4, src: str = "en", tgt: str = "fr") -> Dataset:
    return Dataset.from_dict(
        {
            "src_lang": [src] * n,
            "tgt_lang": [tgt] * n,
            "src_text": [f"Sentence number {i}." for i in range(n)],
            "tgt_text": [f"Phrase numéro {i}." for i in range(n)],
        }
    )


@pytest.fixture(scope="module")
def tok():  # type: ignore[no-untyped-def]
    return byte_tokenizer()


# ----- templates -----------------------------------------------------------------------
def test_ten_templates_each_end_with_a_newline_and_hold_the_source() -> None:
    assert len(TRANSLATION_TEMPLATES) == 10
    assert len({t.name for t in TRANSLATION_TEMPLATES}) == 10
    assert len({t.prompt for t in TRANSLATION_TEMPLATES}) == 10
    for t in TRANSLATION_TEMPLATES:
        assert t.prompt.endswith("\n") and "{src}" in t.prompt
        prompt = t.render("Hello.", "en", "fr")
        assert "Hello." in prompt and "French" in prompt and prompt.endswith("\n")
    assert TRANSLATION_TEMPLATES[0].render("Hi.", "en", "zh") == (
        "Translate the following sentence from English to Chinese.\nHi.\n"
    )


def test_language_names_fall_back_to_the_code() -> None:
    assert language_name("fr") == "French"
    assert language_name("zh") == "Chinese"
    assert language_name("pt-BR") == "Portuguese"
    assert language_name("xx") == "xx"


def test_a_template_must_end_the_prompt_line() -> None:
    with pytest.raises(TranslationDataError, match="end with"):
        TranslationTemplate("bad", "Translate {src} to {tgt_name}:")
    with pytest.raises(TranslationDataError):
        TranslationTemplate("no-source", "Translate to {tgt_name}.\n")


# ----- examples -------------------------------------------------------------------------
def test_examples_add_prompt_target_and_template_columns() -> None:
    data = translation_examples(pairs(3), seed=0)
    assert data.column_names == [
        "src_lang",
        "tgt_lang",
        "src_text",
        "tgt_text",
        "prompt",
        "target",
        "template_id",
        "template",
    ]
    for row in data:
        template = TRANSLATION_TEMPLATES[row["template_id"]]
        assert row["prompt"] == template.render(row["src_text"], "en", "fr")
        assert row["target"] == row["tgt_text"] + "\n"
        assert row["template"] == template.prompt


def test_template_draw_is_deterministic_seed_dependent_and_order_free() -> None:
    data = pairs(60)
    first = translation_examples(data, seed=0)["template_id"]
    assert translation_examples(data, seed=0)["template_id"] == first
    assert translation_examples(data, seed=1)["template_id"] != first
    assert len(set(first)) >= 8  # sixty draws spread over the ten templates
    reversed_ids = translation_examples(data.select(range(59, -1, -1)), seed=0)["template_id"]
    assert reversed_ids == first[::-1]


def test_a_fixed_template_by_index_or_object() -> None:
    assert set(translation_examples(pairs(5), template=3)["template_id"]) == {3}
    own = TranslationTemplate("mine", "{src}\n=> {tgt_name}\n")
    data = translation_examples(pairs(2), template=own)
    assert data["template_id"] == [0, 0]
    assert data["prompt"][0] == "Sentence number 0.\n=> French\n"
    with pytest.raises(TranslationDataError, match="out of range"):
        translation_examples(pairs(2), template=10)


def test_line_breaks_inside_texts_become_spaces() -> None:
    data = Dataset.from_dict(
        {
            "src_lang": ["en"],
            "tgt_lang": ["fr"],
            "src_text": ["one\ntwo"],
            "tgt_text": ["un\r\ndeux "],
        }
    )
    row = translation_examples(data, template=0)[0]
    assert row["target"] == "un deux\n"
    assert row["prompt"].endswith("\none two\n")


def test_examples_say_how_to_fix_bad_input() -> None:
    bad = Dataset.from_dict({"en": ["a"], "fr": ["b"]})
    with pytest.raises(TranslationDataError, match="parallel_dataset") as info:
        translation_examples(bad)
    assert isinstance(info.value, LsnMechError) and isinstance(info.value, ValueError)
    with pytest.raises(EmptyCorpusError, match="no rows"):
        translation_examples(pairs(0))


# ----- parallel datasets ----------------------------------------------------------------
def test_parallel_dataset_reads_a_translation_column() -> None:
    wmt = Dataset.from_dict(
        {"translation": [{"de": "Hallo", "en": "Hello"}, {"de": "Welt", "en": "World"}]}
    )
    data = parallel_dataset(wmt, src_lang="de", tgt_lang="en")
    assert data.column_names == ["src_lang", "tgt_lang", "src_text", "tgt_text"]
    assert data["src_text"] == ["Hallo", "Welt"] and data["tgt_text"] == ["Hello", "World"]
    assert data["src_lang"] == ["de", "de"] and data["tgt_lang"] == ["en", "en"]
    with pytest.raises(TranslationDataError, match=r"keys \['de', 'en'\]"):
        parallel_dataset(wmt, src_lang="fr", tgt_lang="en")


def test_parallel_dataset_reads_language_or_named_columns() -> None:
    two = Dataset.from_dict({"en": ["a", "", "c"], "fr": ["x", "y", None], "id": [1, 2, 3]})
    data = parallel_dataset(two, src_lang="en", tgt_lang="fr")
    assert data["src_text"] == ["a"] and data["tgt_text"] == ["x"]  # empty sides dropped
    named = Dataset.from_dict({"source": ["s"], "reference": ["r"]})
    data = parallel_dataset(
        named, src_lang="en", tgt_lang="fr", src_column="source", tgt_column="reference"
    )
    assert data[0] == {"src_lang": "en", "tgt_lang": "fr", "src_text": "s", "tgt_text": "r"}
    with pytest.raises(TranslationDataError, match="src_column"):
        parallel_dataset(named, src_lang="en", tgt_lang="fr")
    with pytest.raises(EmptyCorpusError):
        parallel_dataset(Dataset.from_dict({"en": [""], "fr": ["x"]}), src_lang="en", tgt_lang="fr")


def test_from_hub_parallel_offline_is_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(HubUnavailableError, match="unreachable"):
        from_hub_parallel("wmt/wmt16", "de-en", "test", "de", "en")
    assert time.perf_counter() - start < 5


# ----- tokenisation ---------------------------------------------------------------------
def test_labels_mask_exactly_the_target_on_a_byte_tokenizer(tok) -> None:  # type: ignore[no-untyped-def]
    example = {"prompt": "Translate to French:\n\nHi.\n", "target": "Salut.\n"}
    (item,) = tokenize_translation(tok, [example])
    ids, labels = item["input_ids"], item["labels"]
    n_prompt = 1 + len(example["prompt"].encode())  # BOS + one token per byte
    n_target = len(example["target"].encode())
    assert ids.dtype == torch.long and ids.shape == (n_prompt + n_target,)
    assert int(ids[0]) == BOS_ID
    assert torch.equal(item["attention_mask"], torch.ones_like(ids))
    assert (labels[:n_prompt] == -100).all()
    assert torch.equal(labels[n_prompt:], ids[n_prompt:])
    assert tok.decode(ids[n_prompt:]) == "Salut.\n"
    assert tok.decode(ids[1:n_prompt]) == example["prompt"]


def test_non_ascii_targets_count_bytes(tok) -> None:  # type: ignore[no-untyped-def]
    (item,) = tokenize_translation(tok, [{"prompt": "A\n", "target": "起初\n"}])
    assert int((item["labels"] != -100).sum()) == len("起初\n".encode())  # 7 bytes


def test_append_eos_puts_eos_after_the_newline_with_a_label(tok) -> None:  # type: ignore[no-untyped-def]
    (item,) = tokenize_translation(tok, [{"prompt": "A\n", "target": "b\n"}], append_eos=True)
    assert item["input_ids"].tolist()[-1] == EOS_ID
    assert item["labels"].tolist()[-3:] == [*tok("b\n", add_special_tokens=False)["input_ids"], 2]


def test_truncation_cuts_the_source_and_keeps_instruction_and_target(tok) -> None:  # type: ignore[no-untyped-def]
    long = Dataset.from_dict(
        {
            "src_lang": ["en"],
            "tgt_lang": ["fr"],
            "src_text": ["word " * 40 + "END"],
            "tgt_text": ["Court."],
        }
    )
    example = translation_examples(long, template=9)  # the instruction follows the source
    with pytest.warns(UserWarning, match="truncated"):
        (item,) = tokenize_translation(tok, example, max_length=100)
    ids, labels = item["input_ids"], item["labels"]
    assert ids.shape[0] <= 100
    n_target = int((labels != -100).sum())
    assert n_target == len(b"Court.\n")
    prompt = tok.decode(ids[1 : ids.shape[0] - n_target])
    assert prompt.startswith("word word") and "END" not in prompt
    assert prompt.endswith("\n\nThe sentence above is in English. Translate it into French.\n")


def test_a_target_longer_than_max_length_is_cut_not_dropped(tok) -> None:  # type: ignore[no-untyped-def]
    example = {"prompt": "P\n", "target": "x" * 50 + "\n"}
    with pytest.warns(UserWarning):
        (item,) = tokenize_translation(tok, [example], max_length=20)
    assert item["input_ids"].shape[0] == 20
    assert int(item["input_ids"][0]) == BOS_ID
    assert 1 <= int((item["labels"] != -100).sum()) < 20


def test_right_padded_batches(tok) -> None:  # type: ignore[no-untyped-def]
    data = translation_examples(pairs(5), seed=0)
    singles = tokenize_translation(tok, data)
    batches = list(translation_batches(tok, data, batch_size=2, shuffle=False))
    assert [b["input_ids"].shape[0] for b in batches] == [2, 2, 1]
    first = batches[0]
    for row in range(2):
        item = singles[row]
        n = item["input_ids"].shape[0]
        assert torch.equal(first["input_ids"][row, :n], item["input_ids"])
        assert torch.equal(first["labels"][row, :n], item["labels"])
        assert (first["input_ids"][row, n:] == PAD_ID).all()
        assert (first["labels"][row, n:] == -100).all()
        assert int(first["attention_mask"][row].sum()) == n


def test_shuffle_is_seeded_and_covers_every_example(tok) -> None:  # type: ignore[no-untyped-def]
    data = translation_examples(pairs(9), seed=0)

    def order(seed: int) -> list[str]:
        texts = []
        for batch in translation_batches(tok, data, batch_size=4, seed=seed):
            for ids, labels in zip(batch["input_ids"], batch["labels"]):
                texts.append(tok.decode(ids[labels != -100]))
        return texts

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == sorted(data["target"])


def test_bible_pairs_to_batches_round_trip(tok) -> None:  # type: ignore[no-untyped-def]
    data = bible_pairs("en", "fr", split="train", max_pairs=20)
    examples = translation_examples(data, seed=0)
    assert len(examples) == 20 and set(examples["split"]) == {"train"}
    targets = []
    for batch in translation_batches(tok, examples, batch_size=8, max_length=1024):
        assert batch["input_ids"].shape == batch["labels"].shape
        for ids, labels in zip(batch["input_ids"], batch["labels"]):
            target = tok.decode(ids[labels != -100])
            assert target.endswith("\n") and target.count("\n") == 1
            targets.append(target)
    assert sorted(targets) == sorted(t + "\n" for t in data["tgt_text"])
