"""The analyses of Tang et al. §3.2–3.3: hand-computed values on small inputs, structure and
round trips on the tiny Llama."""

from __future__ import annotations

import dataclasses
import math
import sys

import pytest
import torch

import lsn_mech.experiments as ex
from lsn_mech.corpora import MultilingualCorpus
from lsn_mech.errors import MissingDependencyError, MissingLanguageError
from lsn_mech.evaluate import perplexity
from lsn_mech.experiments import language_id
from lsn_mech.interventions import activate, deactivate
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.provenance import Provenance
from lsn_mech.stats import ActivationStats, collect_stats

# ----------------------------------------------------------------------------- fixtures


def flat(rows: list[list[float]]) -> list[float]:
    return [v for row in rows for v in row]


def hand_neurons() -> LanguageNeurons:
    """3 layers × 8 neurons; zh and ja share neurons (0,1), (0,2) and (2,7)."""
    return LanguageNeurons(
        {
            "en": NeuronSet([[0], [], [5, 6]], d_mlp=8),
            "zh": NeuronSet([[1, 2, 3], [4], [7]], d_mlp=8),
            "ja": NeuronSet([[1, 2], [], [7]], d_mlp=8),
            "fr": NeuronSet([[], [], []], d_mlp=8),
        },
        provenance=Provenance(method="hand", parameters={"rates": (0.1, 0.2)}),
    )


@pytest.fixture(scope="module")
def stats(llama, texts_module) -> ActivationStats:  # type: ignore[no-untyped-def]
    return collect_stats(llama, texts_module, window=32, progress=False)


@pytest.fixture(scope="module")
def texts_module() -> dict[str, list[str]]:
    from conftest import TEXTS

    return {k: list(v) for k, v in TEXTS.items()}


def stand_in_detector(stats: ActivationStats, top_rate: float) -> LanguageNeurons:
    """Top ``round(top_rate · layers · d_mlp)`` neurons per language by how much more often
    they fire for it than on average (a simple, deterministic stand-in for LAPE)."""
    prob = stats.activation_probability("mlp_pre")  # [layer, d_mlp, lang]
    k = round(top_rate * stats.n_layers * stats.d_mlp)
    masks = []
    for i in range(len(stats.languages)):
        score = (prob[..., i] - prob.mean(dim=-1)).flatten()
        mask = torch.zeros(score.numel(), dtype=torch.bool)
        if k:
            mask[score.topk(k).indices] = True
        masks.append(mask.view(stats.n_layers, stats.d_mlp))
    return LanguageNeurons.from_mask(torch.stack(masks), stats.languages)


@pytest.fixture(scope="module")
def loud_stats(stats) -> ActivationStats:  # type: ignore[no-untyped-def]
    """The tiny model's mean activations at mlp_post are ~0.003, so setting neurons to them
    is indistinguishable from zeroing them; these statistics have means ~1."""
    state = dict(stats.state)
    state["mlp_post/sum"] = state["mlp_post/sum"] * 300.0
    return dataclasses.replace(stats, state=state)


def big_neurons(stats: ActivationStats) -> LanguageNeurons:
    """A quarter of all neurons per language: strong enough to change greedy outputs."""
    return stand_in_detector(stats, 0.25)


# ----------------------------------------------------------------------------- distribution


def test_layer_distribution_counts_are_exact(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dist = ex.layer_distribution(hand_neurons())
    assert dist.languages == ["en", "zh", "ja", "fr"]
    assert dist.counts == [[1, 0, 2], [3, 1, 1], [2, 0, 1], [0, 0, 0]]
    assert dist.union == [4, 1, 3]  # layer 0: {0,1,2,3}; layer 1: {4}; layer 2: {5,6,7}
    assert dist.shared == [2, 0, 1]  # (0,1), (0,2), (2,7)
    assert dist.totals() == {"en": 3, "zh": 5, "ja": 3, "fr": 0, "union": 8}
    assert dist.of("zh") == [3, 1, 1] and dist.n_layers == 3 and dist.d_mlp == 8
    assert dist.provenance.method == "layer_distribution"
    assert dist.provenance.parameters["neurons_method"] == "hand"

    loaded = ex.LayerDistribution.load(dist.save(tmp_path / "dist"))
    assert loaded == dist and loaded.provenance == dist.provenance
    csv = dist.to_csv(tmp_path / "dist.csv").read_text().splitlines()
    assert csv[0] == "layer,en,zh,ja,fr,union,shared" and csv[1] == "0,1,3,2,0,4,2"
    figure = dist.plot()
    assert [t.name for t in figure.data] == ["en", "zh", "ja", "fr", "union"]
    assert list(figure.data[-1].y) == [4, 1, 3]
    assert list(dist.plot(share=True).data[1].y) == [100 * 3 / 8, 100 / 8, 100 / 8]
    text = str(dist)
    assert "union" in text and text.splitlines()[-1].split() == [
        "total",
        "3",
        "5",
        "3",
        "0",
        "8",
        "3",
    ]


def test_overlap_views_and_sorted_pairs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    neurons = hand_neurons()
    result = ex.overlap(neurons)
    # zh = 5 neurons, ja = 3, shared 3: Jaccard 3/5, fraction of ja's in zh: 3/3.
    assert result["zh", "ja"] == pytest.approx(3 / 5)
    assert result.values("intersection")[1] == [0.0, 5.0, 3.0, 0.0]
    assert result.values("fraction")[2][1] == 1.0 and result.values("fraction")[1][2] == 0.6
    assert result.values("jaccard")[3][3] == 0.0  # an empty set overlaps nothing, even itself
    assert result.sizes == [3, 5, 3, 0]
    assert result.pairs_sorted()[0] == ("zh", "ja", pytest.approx(0.6))
    assert len(result.pairs_sorted()) == 6 and len(result.pairs_sorted("fraction")) == 12
    assert result.pairs_sorted("fraction")[0] == ("ja", "zh", 1.0)
    expected = neurons.overlap_matrix("jaccard").values.tolist()
    assert flat(result.values()) == pytest.approx(flat(expected))
    loaded = ex.OverlapResult.load(result.save(tmp_path / "overlap.json"))
    assert loaded == result
    assert "zh–ja 0.600" in str(result)
    heat = result.plot("intersection").data[0]
    assert heat.type == "heatmap" and list(heat.x) == ["en", "zh", "ja", "fr"]
    with pytest.raises(ValueError, match="kind"):
        result.values("dice")
    with pytest.raises(ex.ResultFormatError):
        ex.LayerDistribution.load(tmp_path / "overlap.json")


# ----------------------------------------------------------------------------- selection sweep


def test_selection_sweep_on_tiny_llama(llama, stats, texts_module, tmp_path) -> None:  # type: ignore[no-untyped-def]
    calls: list[float] = []

    def detector(s: ActivationStats, top_rate: float) -> LanguageNeurons:
        calls.append(top_rate)
        return stand_in_detector(s, top_rate)

    sweep = ex.selection_sweep(
        llama,
        stats,
        texts_module,
        language="fr",
        ratios=[0, 0.1],
        detector=detector,
        eval_languages=["en", "fr"],
        window=128,
        batch_size=8,
        progress=False,
    )
    assert calls == [0.1]  # ratio 0 selects nothing without asking the detector
    assert sweep.languages == ["en", "fr"] and sweep.ratios == [0.0, 0.1]
    assert len(sweep.ppl) == 2 and all(len(row) == 2 for row in sweep.ppl)
    assert sweep.ppl[0] == sweep.base  # nothing deactivated: exactly the base perplexity
    with deactivate(llama, stand_in_detector(stats, 0.0)["fr"]):  # an empty set is a no-op
        assert (
            perplexity(llama, texts_module["fr"], window=128, batch_size=8).value == sweep.base[1]
        )
    assert sweep.n_neurons == [0, round(0.1 * 3 * 128)]
    assert sum(sweep.per_layer[1]) == sweep.n_neurons[1]
    # Each row is the perplexity with that set deactivated, measured independently.
    chosen = stand_in_detector(stats, 0.1)["fr"]
    with deactivate(llama, chosen):
        again = perplexity(llama, texts_module["fr"], window=128, batch_size=8)
    assert sweep.ppl[1][1] == again.value and sweep.tokens[1] == again.tokens
    assert sweep.ppl[1] != sweep.base
    assert sweep.values("ratio")[0] == [1.0, 1.0]
    assert sweep.curve("fr", "delta")[0] == 0.0

    loaded = ex.SelectionSweep.load(sweep.save(tmp_path / "sweep"))
    assert loaded == sweep and loaded.provenance.parameters["ratios"] == [0.0, 0.1]
    figure = sweep.plot()
    assert len(figure.data) == 2 * 2  # two panels × two languages
    assert "x1.00" in str(sweep)
    assert sweep.to_csv(tmp_path / "s.csv").read_text().splitlines()[1].startswith("base,0,")
    with pytest.raises(MissingLanguageError):
        ex.selection_sweep(llama, stats, texts_module, language="de", detector=detector)


# ----------------------------------------------------------------------------- language ID


def test_language_id_on_real_sentences() -> None:
    pytest.importorskip("lingua", reason="install the demo extra: lingua-language-detector")
    ident = ex.LanguageIdentifier(["en", "fr", "es", "zh", "ja", "vi", "id"])
    cases = {
        "Au commencement, Dieu créa les cieux et la terre.": "fr",
        "In the beginning God created the heaven and the earth.": "en",
        "En el principio creó Dios los cielos y la tierra.": "es",
        "起初,神创造天地。": "zh",
        "はじめに神は天と地とを創造された。": "ja",
        "Ban đầu Đức Chúa Trời dựng nên trời đất.": "vi",
        "Pada mulanya Allah menciptakan langit dan bumi.": "id",
    }
    for text, code in cases.items():
        assert ident.detect(text) == code, text
    assert ident.detect("") is None and ident.detect("  12, 34 !") is None
    assert ident.confidence("") == {}
    confidence = ident.confidence("Dieu vit que la lumière était bonne.")
    assert next(iter(confidence)) == "fr" and sum(confidence.values()) == pytest.approx(1.0)
    # The built-in prompts are recognised as their own language.
    for code, prompts in ex.DEFAULT_PROMPTS.items():
        assert ident.detect_many(prompts) == [code] * len(prompts), code
    assert ex.identify_language("Dios dijo: Sea la luz.", ["es", "fr"]) == "es"
    assert ex.LanguageIdentifier("fr").languages == ("fr", "en")
    with pytest.raises(ex.UnsupportedLanguageError, match="xx"):
        ex.LanguageIdentifier(["en", "xx"])


def test_language_id_without_lingua(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "lingua", None)  # makes `import lingua` fail
    with pytest.raises(MissingDependencyError, match=r"lsn-mech\[demo\]"):
        language_id.LanguageIdentifier(["en", "fr"])


# ----------------------------------------------------------------------------- steering


def reference_greedy(model, prompt_ids: list[int], n: int, penalty: float) -> list[int]:  # type: ignore[no-untyped-def]
    """Greedy decoding from full logits, penalty as in transformers, no cache, no EOS stop."""
    ids = torch.tensor([prompt_ids])
    out = []
    for _ in range(n):
        with torch.no_grad():
            logits = model(ids)[0, -1].clone()
        seen = ids[0].unique()
        logits[seen] = torch.where(logits[seen] > 0, logits[seen] / penalty, logits[seen] * penalty)
        token = int(logits.argmax())
        if token == model.tokenizer.eos_token_id:
            break
        out.append(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return out


def test_greedy_generate_applies_the_repetition_penalty(llama) -> None:  # type: ignore[no-untyped-def]
    prompts = ["Au commencement, Dieu", "In the beginning God created the heaven"]
    tok = llama.tokenizer
    batched = ex.greedy_generate(llama, prompts, max_new_tokens=6, batch_size=2)
    one_by_one = ex.greedy_generate(llama, prompts, max_new_tokens=6, batch_size=1)
    loop = ex.greedy_generate(llama, prompts, max_new_tokens=6, use_model_generate=False)
    assert batched == one_by_one == loop
    for prompt, (text, n_tokens) in zip(prompts, batched):
        ids = [tok.bos_token_id, *tok(prompt, add_special_tokens=False)["input_ids"]]
        expected = reference_greedy(llama, ids, 6, 1.1)
        assert n_tokens == len(expected)
        assert text == tok.decode(expected, skip_special_tokens=True)
    without = ex.greedy_generate(llama, prompts[1:], max_new_tokens=6, repetition_penalty=1.0)
    assert without[0] != batched[1]  # without the penalty the tiny model repeats itself


def test_steering_on_tiny_llama(llama, stats, loud_stats, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("lingua", reason="install the demo extra: lingua-language-detector")
    neurons = big_neurons(stats)
    prompts = {"en": ["And God said"], "fr": ["Et Dieu dit"]}
    result = ex.steering(
        llama,
        prompts,
        neurons=neurons,
        stats=loud_stats,
        target="zh",
        max_new_tokens=8,
        progress=False,
    )
    assert result.settings == ["normal", "steered", "cross"] and result.target == "zh"
    assert len(result.generations) == 6
    for g in result.generations:
        assert g.expected == ("zh" if g.setting == "cross" else g.language)
        assert g.correct == (g.detected == g.expected)
        assert g.detected is None or g.detected in ("en", "fr", "zh")
        assert 0 <= g.n_tokens <= 8
    accuracy = result.accuracy()
    for setting in result.settings:
        for language in ("en", "fr"):
            chosen = result.select(setting, language)
            assert accuracy[setting][language] == sum(g.correct for g in chosen) / len(chosen)

    # Each setting is the documented intervention, run independently.
    def run() -> str:
        return ex.greedy_generate(llama, ["Et Dieu dit\n"], max_new_tokens=8)[0][0]

    with activate(llama, neurons["fr"], loud_stats["fr"]):
        steered = run()
    with deactivate(llama, neurons["fr"]), activate(llama, neurons["zh"], loud_stats["zh"]):
        cross = run()
    with deactivate(llama, neurons["fr"]):
        zeroed = run()
    with activate(llama, neurons["fr"], loud_stats["en"]):
        other_mean = run()
    assert result.select("normal", "fr")[0].output == run()
    assert result.select("steered", "fr")[0].output == steered
    assert result.select("cross", "fr")[0].output == cross
    assert len({run(), steered, zeroed, other_mean}) == 4  # the checks above can fail

    loaded = ex.SteeringResult.load(result.save(tmp_path / "steering.json"))
    assert loaded == result and isinstance(loaded.generations[0], ex.Generation)
    assert len(result.plot().data) == 3
    assert "cross (→zh)" in str(result) and "Et Dieu dit" in result.examples()
    assert result.provenance.parameters["intervals"]["resamples"] == 1000
    assert loaded.accuracy_estimates()["normal"]["all"].value == result.mean_accuracy()["normal"]
    assert result.provenance.parameters["id_languages"] == ["en", "fr", "zh"]
    with pytest.raises(MissingLanguageError, match="de"):
        ex.steering(llama, {"de": ["Und Gott sprach"]}, neurons=neurons, stats=stats)
    with pytest.raises(ValueError, match="target"):
        ex.steering(llama, prompts, neurons=neurons, stats=stats, settings=["cross"])


def test_steering_settings_write_the_documented_activations(llama, stats, loud_stats) -> None:  # type: ignore[no-untyped-def]
    from lsn_mech.experiments.steer import _setting

    neurons = big_neurons(stats)
    fr, zh = neurons["fr"].to_mask(), neurons["zh"].to_mask()
    tokens = llama.tokenizer("Et Dieu dit", return_tensors="pt")["input_ids"]
    names = [f"blocks.{i}.mlp.hook_post" for i in range(llama.cfg.n_layers)]

    def post(setting: str, deactivate_source: bool = True) -> torch.Tensor:
        with (
            _setting(
                llama,
                setting,
                "fr",
                neurons=neurons,
                stats=loud_stats,
                target="zh",
                deactivate_source=deactivate_source,
            ),
            torch.no_grad(),
        ):
            _, cache = llama.run_with_cache(tokens, names_filter=lambda n: n in names)
        return torch.stack([cache[n][0] for n in names], dim=1)  # [pos, layer, d_mlp]

    normal = post("normal")
    steered, cross, only_target = post("steered"), post("cross"), post("cross", False)
    fr_mean = loud_stats["fr"].mean["mlp_post"].float()
    zh_mean = loud_stats["zh"].mean["mlp_post"].float()
    assert torch.equal(steered[:, fr], fr_mean[fr].expand_as(steered[:, fr]))
    assert torch.equal(cross[:, zh], zh_mean[zh].expand_as(cross[:, zh]))
    assert bool((cross[:, fr & ~zh] == 0).all())
    assert not bool((only_target[:, fr & ~zh] == 0).all())
    assert torch.equal(only_target[:, zh], cross[:, zh])
    assert not torch.equal(normal, steered)


def test_steering_accuracy_counts_empty_outputs_as_wrong() -> None:
    def gen(setting: str, language: str, output: str, detected: str | None) -> ex.Generation:
        expected = "zh" if setting == "cross" else language
        return ex.Generation(
            setting, language, expected, "q", output, detected, detected == expected, 3
        )

    result = ex.SteeringResult(
        settings=["normal", "cross"],
        languages=["es", "zh"],
        target="zh",
        generations=[
            gen("normal", "es", "Hola, ¿qué tal?", "es"),
            gen("normal", "es", "", None),
            gen("normal", "zh", "你好", "zh"),
            gen("normal", "zh", "Hello", "en"),
            gen("cross", "es", "时间管理", "zh"),
            gen("cross", "es", "...", None),
        ],
    )
    assert result.accuracy() == {"normal": {"es": 0.5, "zh": 0.5}, "cross": {"es": 0.5}}
    assert result.mean_accuracy() == {"normal": 0.5, "cross": 0.5}
    assert result.empty() == {"normal": 1, "cross": 1}
    assert result.detected_counts("normal", "zh") == {"zh": 1, "en": 1}
    assert "–" in str(result)  # no cross generation for the target's own prompts


# ----------------------------------------------------------------------------- SES


def test_pair_similarity_by_hand() -> None:
    # 3 languages × 1 layer × 2 texts × 2-d.
    a = [[1.0, 0.0], [0.0, 1.0]]
    b = [[1.0, 1.0], [0.0, -1.0]]
    c = [[0.0, 2.0], [3.0, 0.0]]
    embeddings = torch.tensor([a, b, c]).unsqueeze(1)
    matrix = ex.pair_similarity(embeddings)
    ab = (1 / math.sqrt(2) + -1.0) / 2
    ac = (0.0 + 0.0) / 2
    bc = (1 / math.sqrt(2) + 0.0) / 2
    assert matrix.shape == (3, 3, 1)
    assert matrix[0, 1, 0].item() == pytest.approx(ab)
    assert matrix[1, 0, 0].item() == pytest.approx(ab)
    assert matrix[0, 2, 0].item() == pytest.approx(ac)
    assert matrix[1, 2, 0].item() == pytest.approx(bc)
    assert torch.diagonal(matrix[..., 0]).tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert ex.mean_over_pairs(matrix).tolist() == pytest.approx([(ab + ac + bc) / 3])
    result = ex.similarity_from_embeddings(embeddings, ["a", "b", "c"])
    assert result.curve("b", "c") == pytest.approx([bc]) and result.n_texts == 2


def test_centering_removes_the_common_component() -> None:
    # Two languages × 1 layer × 2 texts: a large shared offset (10, 0) plus (0, ±1).
    embeddings = torch.tensor([[[[10.0, 1.0], [10.0, -1.0]]], [[[10.0, 1.0], [10.0, -1.0]]]])
    centered = ex.center_embeddings(embeddings)
    assert centered[0, 0].tolist() == [[0.0, 1.0], [0.0, -1.0]]
    raw = ex.similarity_from_embeddings(embeddings, ["a", "b"])
    assert raw.mean == pytest.approx([1.0]) and raw.centered is False
    # Shuffle b's texts: raw cosines stay ~1, centred ones say the pairs disagree.
    shuffled = embeddings.clone()
    shuffled[1] = embeddings[1].flip(1)
    assert ex.similarity_from_embeddings(shuffled, ["a", "b"]).mean[0] == pytest.approx(
        (100 - 1) / 101
    )
    result = ex.similarity_from_embeddings(shuffled, ["a", "b"], center=True)
    assert result.mean == pytest.approx([-1.0]) and result.centered is True
    dominance = ex.dominance_from_embeddings(shuffled, ["a", "b"], center=True)
    assert dominance.scores == [pytest.approx([-1.0]), pytest.approx([-1.0])]


def test_sentence_embeddings_pool_resid_post_without_bos(llama, texts) -> None:  # type: ignore[no-untyped-def]
    aligned = {"en": texts["en"][:3], "fr": texts["fr"][:3]}
    emb = ex.sentence_embeddings(llama, aligned, batch_size=2, progress=False)
    assert emb.shape == (2, llama.cfg.n_layers, 3, llama.cfg.d_model)
    ids = llama.tokenizer(texts["fr"][1], add_special_tokens=True, return_tensors="pt")["input_ids"]
    assert int(ids[0, 0]) == llama.tokenizer.bos_token_id
    names = [f"blocks.{i}.hook_resid_post" for i in range(llama.cfg.n_layers)]
    with torch.no_grad():
        _, cache = llama.run_with_cache(ids, names_filter=lambda n: n in names)
    for layer, name in enumerate(names):
        expected = cache[name][0, 1:].mean(dim=0)
        torch.testing.assert_close(emb[1, layer, 1], expected, rtol=1e-4, atol=1e-5)
    last = ex.sentence_embeddings(llama, aligned, pooling="last", batch_size=3, progress=False)
    torch.testing.assert_close(last[1, 0, 1], cache[names[0]][0, -1], rtol=1e-4, atol=1e-5)


def test_identical_texts_have_ses_one_at_every_layer(llama, texts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    aligned = {"xx": texts["fr"], "yy": list(texts["fr"]), "en": texts["en"]}
    result = ex.sentence_similarity(llama, aligned, batch_size=3, progress=False)
    assert result.n_layers == llama.cfg.n_layers and result.languages == ["xx", "yy", "en"]
    assert result.curve("xx", "yy") == pytest.approx([1.0] * result.n_layers, abs=1e-5)
    assert result.curve("xx", "en") != pytest.approx([1.0] * result.n_layers, abs=1e-3)
    assert result.mean == pytest.approx(
        [sum(result.curve(a, b)[i] for a, b in result.pairs()) / 3 for i in range(result.n_layers)]
    )
    assert 0 <= result.peak_layer() < result.n_layers
    loaded = ex.SentenceSimilarity.load(result.save(tmp_path / "ses"))
    assert loaded == result
    dist = ex.layer_distribution(
        LanguageNeurons({"fr": NeuronSet([[1, 2], [], [3]], d_mlp=llama.cfg.d_mlp)})
    )
    figure = result.plot(dist)
    assert len(figure.data) == 3 + 1 + 1  # pairs, mean, neuron counts
    assert figure.data[-1].yaxis == "y2"
    assert "mean" in str(result)
    bounds = zip(result.mean_low, result.mean, result.mean_high)
    assert all(lo <= v + 1e-12 and v <= hi + 1e-12 for lo, v, hi in bounds)
    assert result.provenance.parameters["intervals"]["resamples"] == 1000


# ----------------------------------------------------------------------------- dominance


def test_language_dominance_by_hand() -> None:
    # A: (1,0), (3,0) → v_A = (2,0); B: (0,1), (1,2) → v_B = (0.5, 1.5).
    embeddings = torch.tensor(
        [[[[1.0, 0.0], [3.0, 0.0]]], [[[0.0, 1.0], [1.0, 2.0]]]]
    )  # [lang=2, layer=1, text=2, d=2]
    # Target A: B's texts move to (1.5, -0.5) and (2.5, 0.5); cosines with (1,0) and (3,0).
    to_a = (1.5 / math.sqrt(2.5) + 2.5 / math.sqrt(6.5)) / 2
    # Target B: A's texts move to (-0.5, 1.5) and (1.5, 1.5); cosines with (0,1) and (1,2).
    to_b = (1.5 / math.sqrt(2.5) + 4.5 / math.sqrt(4.5 * 5)) / 2
    matrix = ex.dominance_matrix(embeddings)
    assert matrix[0, 1, 0].item() == pytest.approx(to_a)
    assert matrix[1, 0, 0].item() == pytest.approx(to_b)
    assert matrix[0, 0, 0].item() == pytest.approx(1.0)
    assert ex.dominance_scores(matrix)[:, 0].tolist() == pytest.approx([to_a, to_b])
    result = ex.dominance_from_embeddings(embeddings, ["A", "B"])
    assert result.score("A") == pytest.approx([to_a])
    assert result.ranking()[0][0] == "A"


def test_language_dominance_three_languages_mean_over_sources() -> None:
    torch.manual_seed(0)
    embeddings = torch.randn(3, 2, 4, 5)
    matrix = ex.dominance_matrix(embeddings)
    scores = ex.dominance_scores(matrix)
    assert scores[1].tolist() == pytest.approx(((matrix[1, 0] + matrix[1, 2]) / 2).tolist())
    # Moving a language onto itself changes nothing: D[c, c] is its self-similarity.
    assert torch.diagonal(matrix, dim1=0, dim2=1).flatten().tolist() == pytest.approx([1.0] * 6)


def test_dominance_and_ses_share_embeddings(llama, texts, tmp_path) -> None:  # type: ignore[no-untyped-def]
    emb = ex.sentence_embeddings(llama, texts, batch_size=4, progress=False)
    dominance = ex.language_dominance(llama, texts, embeddings=emb)
    direct = ex.language_dominance(llama, texts, batch_size=4, progress=False)
    assert flat(dominance.scores) == pytest.approx(flat(direct.scores), abs=1e-6)
    assert len(dominance.scores) == 3 and len(dominance.scores[0]) == llama.cfg.n_layers
    assert dominance.provenance.parameters["embeddings_given"] is True
    assert ex.LanguageDominance.load(dominance.save(tmp_path / "dom")) == dominance
    assert [t.name for t in dominance.plot().data] == ["en", "fr", "zh"]
    assert "ranking" in str(dominance)
    ses = ex.sentence_similarity(None, texts, embeddings=emb)
    assert ses.n_texts == 4
    with pytest.raises(ValueError, match="do not match"):
        ex.sentence_similarity(None, {"en": texts["en"][:2], "fr": texts["fr"][:2]}, embeddings=emb)


# ----------------------------------------------------------------------------- aligned texts


def test_aligned_verses_by_key() -> None:
    from datasets import Dataset

    rows = []
    for language in ("en", "fr"):
        for book, split in ((1, "train"), (2, "test")):
            for verse in range(1, 6):
                if language == "fr" and (book, verse) == (2, 3):
                    continue  # missing in French: dropped from both
                rows.append(
                    {
                        "language": language,
                        "text": f"{language} {book}:1:{verse}",
                        "split": split,
                        "book": book,
                        "chapter": 1,
                        "verse": verse,
                    }
                )
    rows.reverse()  # order in the dataset does not matter
    corpus = MultilingualCorpus(Dataset.from_list(rows), name="toy", languages=["en", "fr"])
    aligned = ex.aligned_verses(corpus, n=None)
    assert aligned == {
        "en": ["en 2:1:1", "en 2:1:2", "en 2:1:4", "en 2:1:5"],
        "fr": ["fr 2:1:1", "fr 2:1:2", "fr 2:1:4", "fr 2:1:5"],
    }
    two = ex.aligned_verses(corpus, ["fr", "en"], n=2, seed=3)
    assert list(two) == ["fr", "en"] and len(two["fr"]) == 2
    assert [t[3:] for t in two["fr"]] == [t[3:] for t in two["en"]]
    assert len(ex.aligned_verses(corpus, n=None, split=None)["en"]) == 9
    pairs = Dataset.from_dict(
        {
            "src_lang": ["en", "en"],
            "tgt_lang": ["fr", "fr"],
            "src_text": ["a", "b"],
            "tgt_text": ["A", "B"],
            "split": ["test", "train"],
        }
    )
    assert ex.aligned_verses(pairs) == {"en": ["a"], "fr": ["A"]}
