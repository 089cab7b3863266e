"""Perplexity against Hugging Face's own loss, and the PPL-change matrix."""

from __future__ import annotations

import math

import pytest
import torch

import lsn_mech.errors as errors
from lsn_mech.corpora.windows import tokenize_windows
from lsn_mech.evaluate import PPLChangeMatrix, perplexity, ppl_change_matrix
from lsn_mech.interventions import deactivate
from lsn_mech.models import build_tiny, load_model
from lsn_mech.neurons import LanguageNeurons, NeuronSet


def hf_mean_nll(name: str, windows) -> float:  # type: ignore[no-untyped-def]
    """Mean token NLL from HF's own loss (it shifts the labels itself)."""
    model = build_tiny(name).model
    labels = windows.input_ids.masked_fill(~windows.attention_mask, -100)
    total, count = 0.0, 0
    with torch.no_grad():
        for row in range(windows.input_ids.shape[0]):
            ids, mask, lab = (
                t[row : row + 1] for t in (windows.input_ids, windows.attention_mask, labels)
            )
            n = int((lab[:, 1:] != -100).sum())
            loss = model(ids, attention_mask=mask.long(), labels=lab).loss
            total += float(loss) * n
            count += n
    return total / count


def test_perplexity_equals_hf_loss(tiny_name: str, texts) -> None:  # type: ignore[no-untyped-def]
    model = load_model(tiny_name)
    windows = tokenize_windows(model.tokenizer, texts["fr"], window=40)
    assert not bool(windows.attention_mask.all()), "the test needs padding"
    result = perplexity(model, windows, batch_size=2)
    expected = hf_mean_nll(tiny_name, windows)
    assert result.tokens == int(windows.attention_mask[:, 1:].sum())
    assert result.nll == pytest.approx(expected, rel=1e-5)
    assert result.value == pytest.approx(math.exp(expected), rel=1e-5)


def test_perplexity_by_hand_from_full_logits(llama) -> None:  # type: ignore[no-untyped-def]
    windows = tokenize_windows(llama.tokenizer, ["abc abd", "xyz"], window=6)
    with torch.no_grad():
        logits = llama(windows.input_ids, attention_mask=windows.attention_mask.long())
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    nll, count = 0.0, 0
    for row in range(windows.input_ids.shape[0]):
        for t in range(1, windows.input_ids.shape[1]):
            if windows.attention_mask[row, t]:
                nll -= float(log_probs[row, t - 1, windows.input_ids[row, t]])
                count += 1
    result = perplexity(llama, windows, logits_chunk=3)
    assert result.tokens == count
    assert result.nll == pytest.approx(nll / count, rel=1e-6)
    assert perplexity(llama, ["abc abd", "xyz"], window=6).value == pytest.approx(result.value)


def test_perplexity_inputs_and_errors(llama, texts) -> None:  # type: ignore[no-untyped-def]
    from datasets import Dataset

    as_list = perplexity(llama, texts["en"], window=32)
    as_dataset = perplexity(llama, Dataset.from_dict({"text": texts["en"]}), window=32)
    assert as_list == as_dataset
    with pytest.raises(errors.EmptyCorpusError):
        perplexity(llama, ["", " "])


def small_matrix() -> PPLChangeMatrix:
    return PPLChangeMatrix(
        rows=["en", "fr"],
        columns=["en", "fr"],
        base=[10.0, 20.0],
        ppl=[[30.0, 22.0], [11.0, 80.0]],
        tokens=[100, 120],
    )


def test_matrix_kinds_by_hand(tmp_path) -> None:  # type: ignore[no-untyped-def]
    matrix = small_matrix()
    assert matrix.values("delta") == [[20.0, 2.0], [1.0, 60.0]]
    assert matrix.values("ratio") == [[3.0, 1.1], [1.1, 4.0]]
    assert matrix.values("log_ratio")[0][0] == pytest.approx(math.log(3.0))
    assert matrix.diagonal_dominance() == {"en": True, "fr": True}
    assert PPLChangeMatrix.load(matrix.save(tmp_path / "m")) == matrix
    csv = matrix.to_csv(tmp_path / "m.csv", kind="delta").read_text().splitlines()
    assert csv[0] == "deactivated,en,fr"
    assert csv[2] == "en,20.0,2.0"
    assert "en" in str(matrix)
    figure = matrix.plot()
    assert list(figure.data[0].y) == ["en", "fr"]
    with pytest.raises(ValueError, match="Unknown kind"):
        matrix.values("absolute")


def test_ppl_change_matrix_on_a_tiny_model(llama, texts) -> None:  # type: ignore[no-untyped-def]
    neurons = LanguageNeurons(
        {
            "en": NeuronSet([[1, 2, 3], [4], []], d_mlp=128),
            "fr": NeuronSet([[], [5, 6], [7]], d_mlp=128),
        }
    )
    rows = {**neurons, "random": neurons["en"].random_like(seed=0)}
    matrix = ppl_change_matrix(llama, rows, texts, window=32, progress=False)
    assert matrix.rows == ["en", "fr", "random"]
    assert matrix.columns == ["en", "fr"]
    assert matrix.base[1] == pytest.approx(perplexity(llama, texts["fr"], window=32).value)
    with deactivate(llama, neurons["fr"]):
        assert matrix.ppl[1][0] == pytest.approx(perplexity(llama, texts["en"], window=32).value)
    assert matrix.provenance.model_id == "tiny-llama"
    assert matrix.provenance.parameters["neuron_counts"] == {"en": 4, "fr": 3, "random": 4}
