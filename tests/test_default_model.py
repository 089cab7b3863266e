"""The embedded default: Gemma 3 270M through the bridge, on the multilingual Bible.

Slow (the first run converts the model, ~2 minutes); still run in CI.
"""

from __future__ import annotations

import math

import pytest
import torch

import lsn_mech as lm

pytestmark = pytest.mark.slow
LANGUAGES = ["en", "fr", "zh"]


@pytest.fixture(scope="module")
def gemma():  # type: ignore[no-untyped-def]
    return lm.load_model("gemma-3-270m")


@pytest.fixture(scope="module")
def corpus():  # type: ignore[no-untyped-def]
    return lm.corpora.bible(LANGUAGES)


@pytest.fixture(scope="module")
def stats(gemma, corpus):  # type: ignore[no-untyped-def]
    return lm.collect_stats(
        gemma, corpus, max_tokens_per_language=1_024, window=256, progress=False
    )


def test_default_geometry_and_logits_match_hf(gemma) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    from lsn_mech.models.gemma_gguf import gemma_3_270m_dir

    sites = lm.hook_sites(gemma)
    assert (sites.n_layers, sites.d_mlp) == (18, 2048)
    assert gemma.cfg.d_vocab == 262_144
    reference = AutoModelForCausalLM.from_pretrained(
        str(gemma_3_270m_dir()), dtype=torch.float32, attn_implementation="eager"
    )
    ids = gemma.tokenizer("The Lord is my shepherd; I shall not want.", return_tensors="pt")
    with torch.no_grad():
        expected = reference(ids["input_ids"]).logits
        got = gemma(ids["input_ids"])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_statistics_on_the_bible(stats) -> None:  # type: ignore[no-untyped-def]
    assert stats.tokens.tolist() == [1_024] * 3
    probability = stats.activation_probability("mlp_pre")
    assert probability.shape == (18, 2048, 3)
    # GELU-gated neurons fire on a minority of tokens on average, never on none or all.
    mean = float(probability.mean())
    assert 0.05 < mean < 0.6
    # Languages differ: the activation probabilities of English and Chinese are not equal.
    assert float((probability[..., 0] - probability[..., 2]).abs().mean()) > 0.01


def test_perplexity_and_deactivation_on_the_bible(gemma, corpus) -> None:  # type: ignore[no-untyped-def]
    base = {
        x: lm.evaluate.perplexity(gemma, corpus.test(x), max_tokens=512, window=256)
        for x in LANGUAGES
    }
    assert all(1.0 < p.value < 500.0 and math.isfinite(p.nll) for p in base.values())
    everything_in_layer_0 = lm.NeuronSet([list(range(2048))] + [[]] * 17, d_mlp=2048)
    with lm.deactivate(gemma, everything_in_layer_0):
        broken = lm.evaluate.perplexity(gemma, corpus.test("en"), max_tokens=512, window=256)
    assert broken.value > 2 * base["en"].value


def test_readme_example_runs(gemma, corpus, stats) -> None:  # type: ignore[no-untyped-def]
    p = stats.activation_probability("mlp_pre")
    fr = lm.NeuronSet.from_mask(p[..., 1] > 0.9)
    with lm.deactivate(gemma, fr):
        assert lm.evaluate.perplexity(gemma, corpus.test("fr"), max_tokens=256).value > 1.0
    with lm.activate(gemma, fr, stats["fr"]):
        text = gemma.generate("In the beginning", max_new_tokens=5, verbose=False)
    assert isinstance(text, str) and text.startswith("In the beginning")
