"""Zero-shot transfer classifier, scores and intervention tables (Mondal et al.)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from datasets import Dataset

import lsn_mech as lm
from lsn_mech.corpora.tasks import ClassificationTask, TaskDataError
from lsn_mech.evaluate import classification_scores, evaluate_classifier
from lsn_mech.experiments import (
    TransferTable,
    finetuning_table,
    intervention_table,
    intervention_value,
    setup_neurons,
)
from lsn_mech.experiments.transfer import TransferExperimentError
from lsn_mech.models import load_model
from lsn_mech.models.hf import plain_hf_model
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.stats import MomentAccumulator, QuantileAccumulator
from lsn_mech.training import (
    ClassifierConfig,
    TransferClassifier,
    finetune_classifier,
    last_token_index,
)
from lsn_mech.training.classifier import decoder_hidden, pool_last, tokenize

FAST = ClassifierConfig(epochs=6, lr=1e-2, batch_size=4, max_length=32)


def toy_rows(prefix: str = "") -> Dataset:
    """A task a tiny model learns in a few steps: the first word decides the label."""
    texts = [f"{prefix}{w} {x}" for w in ("abc", "xyz") for x in ("q", "rr", "sss", "t")]
    return Dataset.from_dict({"text": texts, "label": [0] * 4 + [1] * 4})


def toy_task() -> ClassificationTask:
    rows = toy_rows()
    return ClassificationTask("toy", ("a", "x"), "en", rows, {"en": rows, "vi": toy_rows("- ")})


@pytest.fixture(scope="module")
def llama_stats():  # type: ignore[no-untyped-def]
    model = load_model("tiny-llama")
    corpus = lm.corpora.bible(["en", "vi", "zh"], max_verses_per_language=60)
    sites = ("mlp_pre", "mlp_post")
    stats = lm.collect_stats(
        model,
        corpus,
        max_tokens_per_language=2000,
        progress=False,
        accumulators=[MomentAccumulator(sites), QuantileAccumulator(sites)],
    )
    return model, stats


def test_last_token_index_for_left_and_right_padding() -> None:
    right = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]])
    assert last_token_index(right).tolist() == [2, 0, 3]
    assert last_token_index(left).tolist() == [3, 3, 3]


def test_classification_scores_hand_computed() -> None:
    # per-label F1: 1, 2/3, 2/3 -> macro 7/9; accuracy 3/4
    scores = classification_scores(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), 3)
    assert scores.accuracy == 75.0
    assert scores.macro_f1 == pytest.approx(700 / 9, abs=1e-3)
    assert scores.n == 4
    # a label in neither gold nor predictions does not count in the macro average
    assert classification_scores(torch.tensor([0, 0]), torch.tensor([0, 0]), 3).macro_f1 == 100.0
    with pytest.raises(ValueError, match="differ in shape"):
        classification_scores(torch.tensor([0]), torch.tensor([0, 1]), 2)


def test_task_rejects_bad_rows() -> None:
    rows = toy_rows()
    with pytest.raises(TaskDataError, match="missing column"):
        ClassificationTask("t", ("a", "b"), "en", rows.remove_columns("label"), {})
    with pytest.raises(TaskDataError, match=r"outside 0\.\.1"):
        bad = Dataset.from_dict({"text": ["x"], "label": [-1]})
        ClassificationTask("t", ("a", "b"), "en", bad, {})
    with pytest.raises(TaskDataError, match="has en, vi"):
        toy_task().test_set("zh")


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def test_classifier_learns_and_leaves_the_model_unchanged(name: str) -> None:
    model = load_model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = model.cfg.n_layers
    neurons = NeuronSet([[1, 2], *([[]] * (layers - 1))], d_mlp=model.cfg.d_mlp)
    task = toy_task()
    classifier = finetune_classifier(model, task, neurons, config=FAST, progress=False)
    assert classifier.record.losses[-1] < classifier.record.losses[0]
    assert evaluate_classifier(classifier, task.train).accuracy == 100.0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # training path (HF decoder) and evaluation path (bridge, hookable) agree
    texts = task.train["text"][:4]
    batch = tokenize(model.tokenizer, texts, 32, torch.device("cpu"))
    with torch.no_grad():
        hidden = decoder_hidden(classifier.peft_model, batch["input_ids"], batch["attention_mask"])
        via_hf = classifier.head(pool_last(hidden, batch["attention_mask"]))
    torch.testing.assert_close(via_hf, classifier.logits(texts), atol=1e-5, rtol=1e-4)


def test_classifier_config_template_and_zero_head() -> None:
    with pytest.raises(lm.errors.LsnMechError, match="must contain"):
        ClassifierConfig(template="Verse:")
    model = load_model("tiny-llama")
    config = ClassifierConfig(max_steps=1, batch_size=4, max_length=32, template="V: {text} G:")
    classifier = finetune_classifier(model, toy_task(), config=config, progress=False)
    # the head starts at zero: uniform predictions, loss ln(2) on the first step
    assert classifier.record.losses[0] == pytest.approx(math.log(2), abs=1e-6)
    framed = tokenize(model.tokenizer, ["V: abc q G:"], 32, torch.device("cpu"))
    with torch.no_grad():
        hidden = decoder_hidden(classifier.peft_model, **framed)
        expected = classifier.head(pool_last(hidden, framed["attention_mask"]))
    torch.testing.assert_close(classifier.logits(["abc q"]), expected, atol=1e-5, rtol=1e-4)


def test_classifier_needs_a_bridge() -> None:
    hf = plain_hf_model(load_model("tiny-llama"), copy=True)
    with pytest.raises(lm.errors.LsnMechError, match=r"lsn_mech\.load_model"):
        finetune_classifier(hf, toy_task(), config=FAST, progress=False)


def test_masked_neurons_are_the_only_mlp_rows_that_change() -> None:
    model = load_model("tiny-llama")
    base = plain_hf_model(model, copy=True)
    chosen = [[1, 2], [5], *([[]] * (model.cfg.n_layers - 2))]
    neurons = NeuronSet(chosen, d_mlp=model.cfg.d_mlp)
    classifier = finetune_classifier(model, toy_task(), neurons, config=FAST, progress=False)
    merged = classifier.peft_model.merge_and_unload()
    for layer, rows in enumerate(chosen):
        name = f"model.layers.{layer}.mlp.gate_proj.weight"
        diff = (merged.state_dict()[name] - base.state_dict()[name]).abs().sum(dim=1)
        assert sorted(torch.nonzero(diff).flatten().tolist()) == rows
        up = f"model.layers.{layer}.mlp.up_proj.weight"
        assert torch.equal(merged.state_dict()[up], base.state_dict()[up])


def test_classifier_save_load_gives_the_same_logits(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = load_model("tiny-qwen2")
    neurons = NeuronSet([[0, 7], [3], *([[]] * (model.cfg.n_layers - 2))], d_mlp=model.cfg.d_mlp)
    classifier = finetune_classifier(model, toy_task(), neurons, config=FAST, progress=False)
    classifier.save(tmp_path / "clf")
    loaded = TransferClassifier.load(tmp_path / "clf", model)
    texts = toy_rows()["text"]
    torch.testing.assert_close(classifier.logits(texts), loaded.logits(texts))
    assert loaded.labels == ("a", "x") and loaded.record.steps == classifier.record.steps
    # Neurons detected on the base model apply to the merged bridges without a warning.
    for bridge in (classifier.bridge, loaded.bridge):
        assert lm.models.model_id(bridge) == lm.models.model_id(model) == "tiny-qwen2"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with lm.deactivate(bridge, neurons):
                bridge(bridge.to_tokens("abc q"))
    with pytest.raises(lm.errors.LsnMechError, match=r"TransferClassifier\.save"):
        TransferClassifier.load(tmp_path, model)


def test_intervention_values(llama_stats) -> None:  # type: ignore[no-untyped-def]
    _, stats = llama_stats
    assert intervention_value(stats, "vi", "none") is None
    assert intervention_value(stats, "vi", "zero") == 0.0
    assert intervention_value(stats, "vi", "-10") == -10.0
    p90 = intervention_value(stats, "vi", "p90")
    assert torch.equal(p90["mlp_post"], stats["vi"].statistic("p90")["mlp_post"])
    mismatch = intervention_value(stats, "vi", "mean", read_site="mlp_pre")
    assert torch.equal(mismatch["mlp_post"], stats["vi"].mean["mlp_pre"])
    with pytest.raises(TransferExperimentError, match="percentile such as 'p90'"):
        intervention_value(stats, "vi", "median")


def test_intervention_table_properties(llama_stats, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model, stats = llama_stats
    task = toy_task()
    classifier = finetune_classifier(model, task, config=FAST, progress=False)
    d_mlp, layers = model.cfg.d_mlp, model.cfg.n_layers
    empty = NeuronSet([[]] * layers, d_mlp=d_mlp)
    everything = NeuronSet([list(range(d_mlp))] * layers, d_mlp=d_mlp)
    neurons = {
        "empty": LanguageNeurons({"en": empty, "vi": empty}),
        "all": LanguageNeurons({"en": everything, "vi": everything}),
    }
    table = intervention_table(
        classifier, task, neurons, stats, interventions=("none", "zero", "p90"), progress=False
    )
    empty_row = table.find(detector="empty", language="vi")
    assert table.delta()[empty_row] == [0.0, 0.0, 0.0]  # nothing written, nothing changes
    # the "zero" cell is exactly the classifier evaluated under set_to(..., 0.0)
    all_row = table.find(detector="all", language="vi")
    with lm.deactivate(classifier.bridge, everything):
        expected = evaluate_classifier(classifier, task.test_set("vi"))
    assert table.cells[all_row]["zero"] == expected.to_dict()
    table.save(tmp_path / "table")
    assert TransferTable.load(tmp_path / "table") == table
    assert "accuracy (macro-F1)" in str(table)
    with pytest.raises(TransferExperimentError, match="no set for"):
        intervention_table(
            classifier, task, {"x": LanguageNeurons({"en": empty})}, stats, progress=False
        )


def test_setup_neurons_and_finetuning_table(llama_stats) -> None:  # type: ignore[no-untyped-def]
    model, stats = llama_stats
    d_mlp, rest = model.cfg.d_mlp, [[]] * (model.cfg.n_layers - 2)
    neurons = LanguageNeurons(
        {
            "en": NeuronSet([[1, 2], [3], *rest], d_mlp=d_mlp),
            "vi": NeuronSet([[2, 9], [], *rest], d_mlp=d_mlp),
        }
    )
    assert setup_neurons("none", neurons, "en", "vi") is None
    assert setup_neurons("both", neurons, "en", "vi") == neurons["en"] | neurons["vi"]
    drawn = setup_neurons("random", neurons, "en", "vi", seed=3)
    assert drawn.per_layer() == neurons["vi"].per_layer()
    with pytest.raises(TransferExperimentError, match="choose from"):
        setup_neurons("all", neurons, "en", "vi")
    config = ClassifierConfig(epochs=1, batch_size=4, max_length=32)
    base = finetune_classifier(model, toy_task(), config=config, setup="none", progress=False)
    table = finetuning_table(
        model,
        toy_task(),
        neurons,
        stats,
        setups=("none", "source", "target"),
        interventions=("none", "zero"),
        config=config,
        base=base,
        progress=False,
    )
    # the given "none" classifier is evaluated, not trained again
    assert table.score(0, "none") == evaluate_classifier(base, toy_task().test_set("vi")).accuracy
    assert table.training["none"]["last_loss"] == base.record.losses[-1]
    assert [r["setup"] for r in table.rows] == ["none", "source", "target"]
    assert set(table.training) == {"none", "source", "target:vi"}
    assert table.training["source"]["mlp_neurons"] == 3
    assert table.training["target:vi"]["mlp_neurons"] == 2
