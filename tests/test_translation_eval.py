"""Translation evaluation: BLEU/chrF, newline stop, batched greedy decoding, few-shot prompts."""

from __future__ import annotations

import json

import pytest
import sacrebleu
import torch
from datasets import Dataset

from lsn_mech.corpora import TRANSLATION_TEMPLATES, translation_examples
from lsn_mech.errors import EmptyCorpusError
from lsn_mech.evaluate import (
    TranslationEvalError,
    TranslationResult,
    TranslationScores,
    TranslationTable,
    evaluate_directions,
    evaluate_translation,
    few_shot_prompt,
    icl_shots,
    translate,
    translation_scores,
)
from lsn_mech.intervals import Bootstrap
from lsn_mech.interventions import deactivate
from lsn_mech.models import build_tiny
from lsn_mech.models.runtime import generate as tr
from lsn_mech.neurons import NeuronSet

PROMPTS = [
    "Translate to French:\n\nHello.\n",
    "English: Good morning, friends.\nFrench translation:\n",
    "A\n",
    "How would you say the following English sentence in French?\nThe light was good.\n",
    "Translate to German:\n\nNo.\n",
]


def pairs(n: int, split: str = "train", offset: int = 0) -> Dataset:
    return Dataset.from_dict(
        {
            "src_lang": ["en"] * n,
            "tgt_lang": ["fr"] * n,
            "src_text": [f"Line {i + offset}." for i in range(n)],
            "tgt_text": [f"Ligne {i + offset}." for i in range(n)],
            "split": [split] * n,
        }
    )


@pytest.fixture(scope="module")
def hf_llama():  # type: ignore[no-untyped-def]
    """A plain (unbooted) tiny Llama and its byte tokenizer."""
    zoo = build_tiny("tiny-llama")
    return zoo.model, zoo.tokenizer


# ----- scores ---------------------------------------------------------------------------
def test_identical_text_scores_100() -> None:
    refs = ["The cat sat on the mat.", "It rained all day long."]
    scores = translation_scores(refs, refs, target_language="en")
    assert scores.bleu == pytest.approx(100.0) and scores.chrf == pytest.approx(100.0)
    assert scores.n == 2
    assert "tok:13a" in scores.bleu_signature and "nrefs:1" in scores.bleu_signature
    assert "nc:6" in scores.chrf_signature


def test_bleu_and_chrf_equal_sacrebleu_computed_directly() -> None:
    hyps = ["the cat is on the mat", "a dog barked loudly at night", "hello there"]
    refs = ["the cat sat on the mat", "the dog barked loudly all night", "hello there friend"]
    scores = translation_scores(hyps, refs, target_language="fr")
    # the paper's signature (smooth.none): no 4-gram matches here, so BLEU is exactly 0
    assert scores.bleu == sacrebleu.corpus_bleu(hyps, [refs], smooth_method="none").score == 0.0
    assert "smooth:none" in scores.bleu_signature
    assert scores.chrf == sacrebleu.corpus_chrf(hyps, [refs]).score
    smoothed = translation_scores(hyps, refs, target_language="fr", smooth_method="exp")
    assert smoothed.bleu == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert 0 < smoothed.bleu < 100


def test_tokenizer_follows_the_target_language() -> None:
    hyps, refs = ["神说要有光"], ["神说:要有光,就有了光。"]
    zh = translation_scores(hyps, refs, target_language="zh")
    assert "tok:zh" in zh.bleu_signature
    assert zh.bleu == sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh", smooth_method="none").score
    assert "tok:char" in translation_scores(hyps, refs, target_language="ja").bleu_signature
    assert "tok:char" in translation_scores(hyps, refs, target_language="ko").bleu_signature
    assert "tok:13a" in translation_scores(hyps, refs, target_language="de").bleu_signature
    assert (
        "tok:intl"
        in translation_scores(hyps, refs, target_language="de", tokenize="intl").bleu_signature
    )


def test_scores_reject_bad_input_and_round_trip() -> None:
    with pytest.raises(TranslationEvalError, match="one hypothesis per reference"):
        translation_scores(["a"], ["a", "b"], target_language="en")
    with pytest.raises(EmptyCorpusError):
        translation_scores([], [], target_language="en")
    scores = translation_scores(["a b c d"], ["a b c e"], target_language="en")
    assert TranslationScores.from_dict(json.loads(json.dumps(scores.to_dict()))) == scores


# ----- decoding -------------------------------------------------------------------------
def test_first_line_and_newline_tokens(hf_llama) -> None:  # type: ignore[no-untyped-def]
    assert tr.first_line(" Bonjour.\nHello\n") == "Bonjour."
    _, tok = hf_llama
    (newline,) = tok("\n", add_special_tokens=False)["input_ids"]
    assert tr.newline_token_ids(tok) == (newline,)  # one byte token holds "\n"
    stop = tr._stopping_criteria(torch.tensor([i == newline for i in range(260)]))
    rows = torch.tensor([[5, newline], [newline, 7]])
    assert stop(rows, None).tolist() == [True, False]


def test_output_is_cut_at_the_first_newline(hf_llama, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    text = tok("Salut.\nEt encore", add_special_tokens=False)["input_ids"]

    def fake(hf, input_ids, attention_mask, **kwargs):  # type: ignore[no-untyped-def]
        return torch.tensor([text] * input_ids.shape[0])

    monkeypatch.setattr(tr, "_generate", fake)
    assert translate(model, tok, PROMPTS[:2], progress=False) == ["Salut.", "Salut."]


def test_generation_stops_after_a_stop_token(hf_llama, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    monkeypatch.setattr(tr, "newline_token_ids", lambda tokenizer: ())
    ids = torch.tensor([tok(PROMPTS[0])["input_ids"]])
    raw = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False
    )[0, ids.shape[1] :].tolist()
    stopper = raw[3]
    cut = raw.index(stopper) + 1
    captured = {}
    original = tr._generate

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        captured["new"] = original(*args, **kwargs)
        return captured["new"]

    monkeypatch.setattr(tr, "_generate", spy)
    monkeypatch.setattr(tr, "newline_token_ids", lambda tokenizer: (stopper,))
    (text,) = translate(model, tok, [PROMPTS[0]], max_new_tokens=12, progress=False)
    assert captured["new"][0].tolist() == raw[:cut]
    assert text == tr.first_line(tok.decode(raw[:cut], skip_special_tokens=True))


def test_left_padded_batches_equal_one_by_one(hf_llama) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    batched = translate(model, tok, PROMPTS, max_new_tokens=10, batch_size=5, progress=False)
    single = translate(model, tok, PROMPTS, max_new_tokens=10, batch_size=1, progress=False)
    assert batched == single
    assert all("\n" not in text for text in batched)
    ids, mask = tr.left_pad([[1, 2], [3]], pad_id=0)
    assert ids.tolist() == [[1, 2], [0, 3]] and mask.tolist() == [[1, 1], [0, 1]]


def test_bridge_translates_like_the_hf_model(llama, hf_llama) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    expected = translate(model, tok, PROMPTS, max_new_tokens=10, progress=False)
    assert translate(llama, None, PROMPTS, max_new_tokens=10, progress=False) == expected


def test_interventions_on_the_bridge_reach_generation(llama) -> None:  # type: ignore[no-untyped-def]
    before = translate(llama, None, PROMPTS, max_new_tokens=10, progress=False)
    with deactivate(llama, NeuronSet.full(3, 128)):
        during = translate(llama, None, PROMPTS, max_new_tokens=10, progress=False)
    assert during != before
    assert translate(llama, None, PROMPTS, max_new_tokens=10, progress=False) == before


def test_models_that_cannot_generate_are_refused() -> None:
    with pytest.raises(TranslationEvalError, match="PreTrainedModel"):
        translate(torch.nn.Linear(2, 2), None, ["a\n"], progress=False)


# ----- few-shot prompts -----------------------------------------------------------------
def test_zero_shot_is_the_template_prompt() -> None:
    query = translation_examples(pairs(1, "test", offset=100), template=2)[0]
    assert few_shot_prompt(query, []) == query["prompt"]


def test_five_shot_prompt_holds_five_train_examples_never_the_query() -> None:
    train = pairs(30)
    query = translation_examples(pairs(1, "test", offset=7), template=4)[0]  # "Line 7."
    assert query["src_text"] == train[7]["src_text"]  # the query's own pair is in train
    for seed in range(20):
        shots = icl_shots(train, k=5, seed=seed, exclude=query)
        assert len(shots) == 5 and len({s["src_text"] for s in shots}) == 5
        assert all(s["src_text"] != "Line 7." for s in shots)
    shots = icl_shots(train, k=5, seed=0, exclude=query)
    prompt = few_shot_prompt(query, shots)
    pattern = TRANSLATION_TEMPLATES[4]
    demos = [pattern.render(s["src_text"], "en", "fr") + s["tgt_text"] + "\n" for s in shots]
    assert prompt == "\n".join([*demos, query["prompt"]])
    assert prompt.count("Translate to French:") == 6
    assert prompt.count("Line 7.") == 1 and "Ligne 7." not in prompt


def test_shots_are_seeded_per_query_and_from_train_only() -> None:
    train = pairs(30)
    a, b = pairs(2, "test", offset=100)
    assert icl_shots(train, 5, 0, exclude=a) == icl_shots(train, 5, 0, exclude=a)
    assert icl_shots(train, 5, 0, exclude=a) != icl_shots(train, 5, 1, exclude=a)
    assert icl_shots(train, 5, 0, exclude=a) != icl_shots(train, 5, 0, exclude=b)
    assert icl_shots(train, 0) == []
    with pytest.raises(TranslationEvalError, match="training split"):
        icl_shots(pairs(10, "test"), 2)
    with pytest.raises(TranslationEvalError, match="k=5"):
        icl_shots(pairs(3), 5)


# ----- evaluation -----------------------------------------------------------------------
def test_evaluate_translation_and_save_load(hf_llama, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    test = pairs(4, "test", offset=50)
    result = evaluate_translation(
        model, tok, test, max_examples=3, max_new_tokens=8, progress=False
    )
    assert result.direction == "en-fr" and result.shots == 0 and result.scores.n == 3
    assert result.references == ["Ligne 50.", "Ligne 51.", "Ligne 52."]
    assert result.prompts[0] == TRANSLATION_TEMPLATES[0].render("Line 50.", "en", "fr")
    assert result.hypotheses == translate(
        model, tok, result.prompts, max_new_tokens=8, progress=False
    )
    expected = translation_scores(
        result.hypotheses, result.references, target_language="fr", bootstrap=Bootstrap()
    )
    assert result.scores == expected
    loaded = TranslationResult.load(result.save(tmp_path / "en-fr"))
    assert loaded == result
    table = result.table()
    assert list(table.columns) == ["source", "reference", "hypothesis", "prompt"]
    assert len(table) == 3


def test_few_shot_evaluation_needs_train_pairs(hf_llama) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    test = pairs(2, "test", offset=50)
    with pytest.raises(TranslationEvalError, match="train_examples"):
        evaluate_translation(model, tok, test, shots=5, progress=False)
    result = evaluate_translation(
        model, tok, test, shots=2, train_examples=pairs(10), max_new_tokens=4, progress=False
    )
    assert result.shots == 2
    assert all(p.count("Translate the following sentence") == 3 for p in result.prompts)


def test_directions_table_save_csv_plot(hf_llama, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    forth = pairs(2, "test")
    back = Dataset.from_dict(
        {
            "src_lang": forth["tgt_lang"],
            "tgt_lang": forth["src_lang"],
            "src_text": forth["tgt_text"],
            "tgt_text": forth["src_text"],
        }
    )
    table = evaluate_directions(
        model, tok, {"en-fr": forth, "fr-en": back}, max_new_tokens=4, progress=False
    )
    assert list(table.scores) == ["en-fr", "fr-en"] and table.setting == "0-shot"
    assert "tok:13a" in table.scores["fr-en"].bleu_signature
    assert TranslationTable.load(table.save(tmp_path / "table.json")) == table
    csv = table.to_csv(tmp_path / "table.csv").read_text().splitlines()
    assert csv[0] == (
        "direction,src,tgt,n,bleu,bleu_low,bleu_high,chrf,chrf_low,chrf_high,level,"
        "bleu_signature,chrf_signature"
    )
    assert csv[1].startswith("en-fr,en,fr,2,")
    assert table.plot().data[0].type == "bar"
    heat = table.plot(metric="chrf", kind="heatmap")
    assert list(heat.data[0].x) == ["en", "fr"] and list(heat.data[0].y) == ["en", "fr"]
