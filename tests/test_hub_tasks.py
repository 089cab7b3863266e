"""XNLI / XQuAD hub tasks (fake loaders with the hub schemas) and QA batches, answers, EM/F1."""

from __future__ import annotations

import warnings

import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from lsn_mech.corpora.hub_tasks import (
    QA_TEMPLATE,
    XNLI_LABELS,
    HubTaskError,
    QATask,
    qa_prompt,
    xnli,
    xnli_text,
    xquad,
)
from lsn_mech.corpora.tasks import ClassificationTask, TaskDataError
from lsn_mech.errors import HubUnavailableError, LsnMechError
from lsn_mech.evaluate import qa as qa_mod
from lsn_mech.evaluate.qa import (
    QAResult,
    QAScores,
    answer_questions,
    evaluate_qa,
    qa_batches,
    qa_scores,
    tokenize_qa,
)
from lsn_mech.models import build_tiny

IGNORE = -100

# ----- fake hub data with the real schemas -------------------------------------------------
XNLI_FEATURES = Features(
    {
        "premise": Value("string"),
        "hypothesis": Value("string"),
        "label": ClassLabel(names=list(XNLI_LABELS)),
    }
)
SQUAD_ANSWERS = Sequence({"text": Value("string"), "answer_start": Value("int32")})
XQUAD_FEATURES = Features(
    {
        "id": Value("string"),
        "context": Value("string"),
        "question": Value("string"),
        "answers": SQUAD_ANSWERS,
    }
)
SQUAD_FEATURES = Features({"title": Value("string"), **XQUAD_FEATURES})


def xnli_split(language: str, n: int, unlabelled: tuple[int, ...] = ()) -> Dataset:
    labels = [-1 if i in unlabelled else i % 3 for i in range(n)]
    return Dataset.from_dict(
        {
            "premise": [f"{language} premise {i}." for i in range(n)],
            "hypothesis": [f"{language} hypothesis {i}." for i in range(n)],
            "label": labels,
        },
        features=XNLI_FEATURES,
    )


def qa_split(language: str, n: int, *, title: bool = False, empty: tuple[int, ...] = ()) -> Dataset:
    contexts = [f"{language} context {i}: the answer is Paris{i} today." for i in range(n)]
    data = {
        "id": [f"q{i}" for i in range(n)],
        "context": contexts,
        "question": [f"{language} question {i}?" for i in range(n)],
        "answers": [
            {"text": [], "answer_start": []}
            if i in empty
            else {"text": [f"Paris{i}", f"the Paris{i}"], "answer_start": [c.index("Paris"), 0]}
            for i, c in enumerate(contexts)
        ],
    }
    if title:
        data = {"title": ["Topic"] * n, **data}
    return Dataset.from_dict(data, features=SQUAD_FEATURES if title else XQUAD_FEATURES)


class FakeHub:
    """``loader(path, name, split)`` over in-memory splits; records every call."""

    def __init__(self, splits: dict[tuple[str, str | None, str], Dataset]) -> None:
        self.splits = splits
        self.calls: list[tuple[str, str | None, str]] = []

    def __call__(self, path: str, name: str | None, split: str) -> Dataset:
        self.calls.append((path, name, split))
        return self.splits[(path, name, split)]


def xnli_hub(n_train: int = 7, n_test: int = 6) -> FakeHub:
    splits = {("facebook/xnli", "en", "train"): xnli_split("en", n_train, unlabelled=(2,))}
    for language in ("en", "vi", "hi", "ur"):
        splits[("facebook/xnli", language, "test")] = xnli_split(language, n_test)
        splits[("facebook/xnli", language, "validation")] = xnli_split(language, 3)
    return FakeHub(splits)


def xquad_hub(n_train: int = 6, n_test: int = 5) -> FakeHub:
    splits = {("rajpurkar/squad", None, "train"): qa_split("en", n_train, title=True, empty=(1,))}
    for language in ("en", "vi", "hi", "zh"):
        splits[("google/xquad", f"xquad.{language}", "validation")] = qa_split(language, n_test)
    return FakeHub(splits)


# ----- XNLI -------------------------------------------------------------------------------
def test_xnli_formats_text_drops_unlabelled_rows_and_loads_the_right_splits() -> None:
    hub = xnli_hub()
    task = xnli(loader=hub, max_train=None)
    assert isinstance(task, ClassificationTask)
    assert task.name == "xnli" and task.source == "en"
    assert task.labels == ("entailment", "neutral", "contradiction")
    assert list(task.test) == ["en", "vi", "hi", "ur"] and task.targets == ["vi", "hi", "ur"]
    assert hub.calls == [
        ("facebook/xnli", "en", "train"),
        ("facebook/xnli", "en", "test"),
        ("facebook/xnli", "vi", "test"),
        ("facebook/xnli", "hi", "test"),
        ("facebook/xnli", "ur", "test"),
    ]
    train = task.train
    assert len(train) == 6  # 7 rows, the -1 one dropped
    assert train["index"] == [0, 1, 3, 4, 5, 6]
    assert train["label"] == [0, 1, 0, 1, 2, 0]
    assert train["text"][0] == "Premise: en premise 0.\nHypothesis: en hypothesis 0.\nRelation:"
    assert set(train.column_names) >= {"text", "label", "premise", "hypothesis", "language"}
    assert set(train["language"]) == {"en"}
    assert task.test["hi"]["text"][1] == (
        "Premise: hi premise 1.\nHypothesis: hi hypothesis 1.\nRelation:"
    )
    assert set(task.test["ur"]["language"]) == {"ur"} and len(task.test["ur"]) == 6
    assert task.metadata["rows"]["train"] == {"rows": 7, "unlabelled": 1, "kept": 6}
    assert xnli_text("a\nb", " c ") == "Premise: a b\nHypothesis: c\nRelation:"


def test_xnli_subsets_are_seeded_deterministic_and_parallel_across_languages() -> None:
    hub = xnli_hub(n_train=40, n_test=30)
    a = xnli(loader=hub, max_train=10, max_test=8, seed=0)
    b = xnli(loader=hub, max_train=10, max_test=8, seed=0)
    c = xnli(loader=hub, max_train=10, max_test=8, seed=1)
    assert len(a.train) == 10 and a.train["index"] == b.train["index"]
    assert a.train["index"] != c.train["index"]
    assert a.train["index"] == sorted(a.train["index"])  # hub order kept
    assert 2 not in a.train["index"] and all(label >= 0 for label in a.train["label"])
    chosen = a.test["vi"]["index"]
    assert len(chosen) == 8 and all(a.test[lang]["index"] == chosen for lang in a.test)
    assert a.test["vi"]["premise"] == [f"vi premise {i}." for i in chosen]


def test_xnli_validation_split_and_targets_without_source() -> None:
    hub = xnli_hub()
    task = xnli(targets="vi", split_test="validation", include_source=False, loader=hub)
    assert list(task.test) == ["vi"] and len(task.test["vi"]) == 3
    assert hub.calls[-1] == ("facebook/xnli", "vi", "validation")


@pytest.mark.parametrize("error", [ConnectionError("no route"), OSError("network down")])
def test_xnli_without_the_hub_names_the_offline_alternative(error: Exception) -> None:
    def offline(path: str, name: str | None, split: str) -> Dataset:
        raise error

    with pytest.raises(HubTaskError) as info:
        xnli(loader=offline)
    message = str(info.value)
    assert "needs the Hugging Face hub" in message
    assert "'facebook/xnli'" in message and "'train'" in message
    assert "lsn_mech.corpora.bible_genre_task" in message
    assert isinstance(info.value, (LsnMechError, HubUnavailableError, OSError))
    assert info.value.__cause__ is error


def test_the_default_loader_fails_fast_when_the_hub_is_unreachable(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import datasets.config

    if datasets.config.HF_HUB_OFFLINE:
        pytest.skip("datasets is in offline mode: the hub is never contacted")
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(HubTaskError, match="bible_genre_task") as info:
        xquad(["vi"])
    assert "127.0.0.1:9" in str(info.value) and "'rajpurkar/squad'" in str(info.value)


def test_other_loader_errors_and_bad_schemas_are_not_hidden() -> None:
    def broken(path: str, name: str | None, split: str) -> Dataset:
        raise ValueError("unknown config")

    with pytest.raises(ValueError, match="unknown config"):
        xnli(loader=broken)
    wrong = xnli_split("en", 4).cast_column("label", ClassLabel(names=["a", "b", "c"]))
    with pytest.raises(TaskDataError, match="entailment"):
        xnli(loader=lambda path, name, split: wrong)
    with pytest.raises(TaskDataError, match="hypothesis"):
        xnli(loader=lambda path, name, split: wrong.remove_columns("hypothesis"))
    with pytest.raises(TaskDataError, match="max_train"):
        xnli(loader=xnli_hub(), max_train=0)


# ----- XQuAD ------------------------------------------------------------------------------
def test_xquad_builds_prompts_answers_and_loads_squad_and_xquad() -> None:
    hub = xquad_hub()
    task = xquad(loader=hub)
    assert isinstance(task, QATask) and task.source == "en"
    assert hub.calls == [
        ("rajpurkar/squad", None, "train"),
        ("google/xquad", "xquad.en", "validation"),
        ("google/xquad", "xquad.vi", "validation"),
        ("google/xquad", "xquad.hi", "validation"),
        ("google/xquad", "xquad.zh", "validation"),
    ]
    assert task.targets == ["vi", "hi", "zh"]
    assert len(task.train) == 5 and "q1" not in task.train["id"]  # unanswered row dropped
    row = task.test["vi"][2]
    assert row["prompt"] == (
        "Context: vi context 2: the answer is Paris2 today.\nQuestion: vi question 2?\nAnswer:"
    )
    assert row["prompt"] == QA_TEMPLATE.format(context=row["context"], question=row["question"])
    assert row["answer"] == "Paris2"
    assert row["answers"]["text"] == ["Paris2", "the Paris2"] and row["language"] == "vi"
    assert row["id"] == "q2"
    assert task.summary()["test"] == {"en": 5, "vi": 5, "hi": 5, "zh": 5}
    small = xquad(loader=hub, max_train=2, max_test=3, seed=0)
    again = xquad(loader=hub, max_train=2, max_test=3, seed=0)
    assert small.train["id"] == again.train["id"] and len(small.train) == 2
    assert small.test["zh"]["id"] == small.test["vi"]["id"] and len(small.test["zh"]) == 3
    assert qa_prompt("a\nb", "why\n?") == "Context: a b\nQuestion: why ?\nAnswer:"


def test_xquad_errors() -> None:
    with pytest.raises(TaskDataError, match="ur"):
        xquad(["ur"])

    def offline(path: str, name: str | None, split: str) -> Dataset:
        raise ConnectionError("offline")

    with pytest.raises(HubTaskError, match="bible_genre_task"):
        xquad(loader=offline)


# ----- scores -----------------------------------------------------------------------------
def test_qa_scores_follow_squad_normalisation_and_token_f1() -> None:
    assert qa_scores(["the cat"], [["a cat"]]) == QAScores(exact_match=100.0, f1=100.0, n=1)
    assert qa_scores(["Cat!"], ["cat"]).exact_match == 100.0
    partial = qa_scores(["big red dog"], [["red dog runs"]])  # P = R = 2/3
    assert partial.exact_match == 0.0 and partial.f1 == pytest.approx(200 / 3, abs=1e-4)
    best = qa_scores(["red dog"], [["blue", "red dog runs"]])  # P = 1, R = 2/3 → 0.8
    assert best.f1 == pytest.approx(80.0, abs=1e-4)
    both = qa_scores(["the cat", "big red dog", "x"], [["a cat"], ["red dog runs"], ["y"]])
    assert both.n == 3 and both.exact_match == pytest.approx(100 / 3, abs=1e-4)
    assert both.f1 == pytest.approx((100 + 200 / 3 + 0) / 3, abs=1e-4)
    zh = qa_scores(["北京大学"], [["北京"]])
    assert (zh.exact_match, zh.f1) == (0.0, 0.0)  # one whitespace token each
    chars = qa_scores(["北京大学。"], [["北京"]], cjk_chars=True)  # P = 2/4, R = 1
    assert chars.f1 == pytest.approx(200 / 3, abs=1e-4)
    data = Dataset.from_dict(
        {"answers": [{"text": ["Paris", "in Paris"], "answer_start": [0, 0]}]},
        features=Features({"answers": SQUAD_ANSWERS}),
    )
    assert qa_scores(["in Paris"], data).exact_match == 100.0
    with pytest.raises(qa_mod.QAEvalError, match="2 predictions"):
        qa_scores(["a", "b"], [["a"]])


# ----- batches ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_llama():  # type: ignore[no-untyped-def]
    """A plain (unbooted) tiny Llama and its byte tokenizer."""
    zoo = build_tiny("tiny-llama")
    return zoo.model, zoo.tokenizer


def test_qa_batches_put_the_loss_on_the_answer_only(hf_llama) -> None:  # type: ignore[no-untyped-def]
    _, tok = hf_llama
    task = xquad(loader=xquad_hub())
    batches = list(qa_batches(tok, task.train, batch_size=2, shuffle=False))
    assert [b["input_ids"].shape[0] for b in batches] == [2, 2, 1]
    answers = task.train["answer"]
    prompts = task.train["prompt"]
    row = 0
    for batch in batches:
        for ids, mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
            real = ids[mask.bool()]
            assert tok.decode(real[:1]) == "<bos>"
            scored = labels != IGNORE
            assert tok.decode(ids[scored]) == f" {answers[row]}\n"
            assert tok.decode(real[~scored[mask.bool()]], skip_special_tokens=True) == prompts[row]
            assert torch.equal(labels[scored], ids[scored])
            assert (labels[~mask.bool()] == IGNORE).all()
            row += 1
    shuffled = [b["input_ids"] for b in qa_batches(tok, task.train, batch_size=2, seed=3)]
    again = [b["input_ids"] for b in qa_batches(tok, task.train, batch_size=2, seed=3)]
    assert all(torch.equal(x, y) for x, y in zip(shuffled, again))


def test_long_contexts_are_cut_around_the_answer(hf_llama) -> None:  # type: ignore[no-untyped-def]
    _, tok = hf_llama
    before = " ".join(f"w{i}" for i in range(80))
    after = " ".join(f"v{i}" for i in range(80))
    context = f"{before} The capital is Paris today. {after}"
    row = {
        "context": context,
        "question": "What is the capital?",
        "answers": {"text": ["Paris"], "answer_start": [context.index("Paris")]},
    }
    with pytest.warns(UserWarning, match="1 of 1 QA examples"):
        (item,) = tokenize_qa(tok, [row], max_length=100)
    ids, labels = item["input_ids"], item["labels"]
    assert len(ids) <= 100
    assert tok.decode(ids[labels != IGNORE]) == " Paris\n"
    prompt = tok.decode(ids[labels == IGNORE], skip_special_tokens=True)
    assert prompt.startswith("Context: ") and "Paris today." in prompt
    assert prompt.endswith("\nQuestion: What is the capital?\nAnswer:")
    assert "w0 " not in prompt and "v79" not in prompt  # both ends were cut
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (whole,) = tokenize_qa(tok, [row], max_length=1000)
    assert tok.decode(whole["input_ids"], skip_special_tokens=True).startswith(
        f"Context: {context}\n"
    )


# ----- answering --------------------------------------------------------------------------
def test_answer_questions_gives_one_line_per_row(hf_llama, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    task = xquad(loader=xquad_hub(), include_source=False)
    data = task.test["vi"]
    answers = answer_questions(
        model, data, tokenizer=tok, max_new_tokens=6, batch_size=2, progress=False
    )
    assert len(answers) == len(data) and all(isinstance(a, str) for a in answers)
    assert all("\n" not in a for a in answers)
    results = evaluate_qa(
        model, task, languages=["vi", "zh"], tokenizer=tok, max_new_tokens=6, progress=False
    )
    assert list(results) == ["vi", "zh"]
    vi = results["vi"]
    assert vi.predictions == answers and vi.scores.n == len(data)
    assert vi.scores == qa_scores(answers, data)
    assert vi.scores.exact_match == pytest.approx(sum(vi.exact_match) / len(data))
    assert vi.ids == data["id"] and vi.references[0] == ["Paris0", "the Paris0"]
    loaded = QAResult.load(vi.save(tmp_path / "vi"))
    assert loaded.to_dict() == vi.to_dict()
    single = evaluate_qa(model, data, tokenizer=tok, max_new_tokens=6, progress=False)
    assert list(single) == ["vi"] and single["vi"].predictions == answers


def test_answer_questions_cut_long_prompts_blind_to_the_answer(hf_llama, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model, tok = hf_llama
    seen: list[str] = []

    def capture(model, tokenizer, prompts, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(prompts)
        return [""] * len(prompts)

    monkeypatch.setattr(qa_mod, "generate_lines", capture)
    context = " ".join(f"w{i}" for i in range(100)) + " The answer is Paris."
    row = {"context": context, "question": "Where?", "answer": "Paris"}
    answer_questions(model, [row], tokenizer=tok, max_new_tokens=10, max_length=80)
    (prompt,) = seen
    assert len(tok(prompt)["input_ids"]) <= 70
    assert prompt.startswith("Context: w0 w1") and "Paris" not in prompt
    assert prompt.endswith("\nQuestion: Where?\nAnswer:")
    seen.clear()
    answer_questions(model, [row], tokenizer=tok, max_length=None)
    assert seen == [qa_prompt(context, "Where?")]
    with pytest.raises(qa_mod.QAEvalError, match="tokenizer"):
        answer_questions(model, [row])
