"""Mondal et al. (2025) analyses: deactivation values (Fig. 1), LAPE's language-set
dependency (App. A.3), and the overlap of two detectors (Figs. 18–19). Hand-computed
counts on hand-built neurons and statistics; wiring checks on the tiny Llama."""

from __future__ import annotations

import pytest
import torch

from lsn_mech.corpora.bible import bible_languages
from lsn_mech.errors import (
    MissingLanguageError,
    NeuronShapeMismatchError,
    StatisticsMismatchError,
)
from lsn_mech.evaluate import perplexity
from lsn_mech.evaluate.ppl_matrix import evaluation_windows, ppl_change_matrix
from lsn_mech.experiments._results import ResultFormatError
from lsn_mech.experiments.deactivation_values import (
    DEFAULT_VALUES,
    DeactivationValuePPL,
    deactivation_value_ppl,
    value_label,
)
from lsn_mech.experiments.language_sets import (
    BIBLE_SET1,
    BIBLE_SET6,
    SET1,
    SET6,
    LanguageSetDependency,
    compare_language_sets,
    lape_set_dependency,
)
from lsn_mech.experiments.method_overlap import MethodOverlap, method_overlap
from lsn_mech.interventions import deactivate, set_to
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.provenance import Provenance
from lsn_mech.stats import ActivationStats, MomentAccumulator, QuantileAccumulator, collect_stats

# ----------------------------------------------------------------------------- method overlap


def two_methods() -> tuple[LanguageNeurons, LanguageNeurons]:
    """3 layers × 8 neurons. en: A = {0,1,2 | 3}, B = {1,2 | 3,4}; zh: B is empty."""
    a = LanguageNeurons(
        {
            "en": NeuronSet([[0, 1, 2], [3], []], d_mlp=8),
            "zh": NeuronSet([[4], [5, 6], [7]], d_mlp=8),
            "fr": NeuronSet([[], [], []], d_mlp=8),
        },
        provenance=Provenance(method="lape", parameters={"top_rate": 0.01, "pair": (1, 2)}),
    )
    b = LanguageNeurons(
        {
            "ja": NeuronSet([[0], [], []], d_mlp=8),
            "en": NeuronSet([[1, 2], [3, 4], []], d_mlp=8),
            "zh": NeuronSet([[], [], []], d_mlp=8),
        },
        provenance=Provenance(method="act_prob_90p", parameters={"rate": 0.00125}),
    )
    return a, b


def test_method_overlap_counts_by_hand(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = two_methods()
    r = method_overlap(a, b)
    assert r.names == ["LAPE", "Act-Prob-90p"]
    assert r.languages == ["en", "zh"]  # shared, in A's order
    assert (r.size_a, r.size_b, r.intersection) == ([4, 4], [4, 0], [3, 0])
    assert r.union() == [5, 4]
    assert r.jaccard() == [0.6, 0.0]
    assert r.overlap_coefficient() == [0.75, 0.0]  # an empty set: 0, not NaN
    assert r.per_layer_a == [[3, 1, 0], [1, 2, 1]]
    assert r.per_layer_b == [[2, 2, 0], [0, 0, 0]]
    assert r.per_layer_intersection == [[2, 1, 0], [0, 0, 0]]
    assert r.chance_intersection() == [(3 * 2 + 1 * 2) / 8, 0.0]
    assert r.row("en")["jaccard"] == 0.6
    assert r.provenance.method == "method_overlap"
    methods = r.provenance.parameters["methods"]
    assert methods["LAPE"]["method"] == "lape"
    assert methods["Act-Prob-90p"]["parameters"] == {"rate": 0.00125}
    # agrees with the neurons' own overlap
    assert r.jaccard()[0] == a["en"].overlap(b["en"]).jaccard

    again = MethodOverlap.load(r.save(tmp_path / "overlap"))
    assert again == r
    assert (tmp_path / "overlap.json").exists()
    text = str(r)
    assert "|LAPE|" in text and "0.600" in text and "0.750" in text
    figure = r.plot()
    assert len(figure.data) == 6
    assert list(figure.data[3].y) == [4, 3, 1]  # LAPE per layer, summed over en and zh
    assert list(r.plot("en").data[5].y) == [2, 1, 0]
    with pytest.raises(MissingLanguageError):
        r.plot("ja")
    r.to_csv(tmp_path / "overlap.csv")
    assert (tmp_path / "overlap.csv").read_text().splitlines()[1].startswith("en,4,4,3,0.6,0.75")


def test_method_overlap_languages_and_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    a, b = two_methods()
    only = method_overlap(a, b, languages=["zh"], names=("X", "Y"))
    assert only.languages == ["zh"] and only.names == ["X", "Y"]
    with pytest.raises(MissingLanguageError, match="fr"):
        method_overlap(a, b, languages=["fr"])  # b has no fr
    with pytest.raises(MissingLanguageError, match="share no language"):
        method_overlap(a.subset(["fr"]), b.subset(["ja"]))
    other = LanguageNeurons({"en": NeuronSet([[1], [2]], d_mlp=8)})  # 2 layers
    with pytest.raises(NeuronShapeMismatchError):
        method_overlap(a, other)
    with pytest.raises(ValueError, match="two labels"):
        method_overlap(a, b, names=("only one",))
    with pytest.raises(ResultFormatError):
        LanguageSetDependency.load(method_overlap(a, b).save(tmp_path / "mo"))


# ----------------------------------------------------------------------------- language sets


def crafted_stats() -> ActivationStats:
    """1 layer × 5 neurons; activation probabilities (en, fr, zh) per neuron, 10 tokens each.

    n0 fires for en and zh, n1 for en and fr, n2 for all, n3 for fr and zh, n4 for en only.
    """
    probs = torch.tensor(
        [
            [0.8, 0.0, 0.8],
            [0.8, 0.8, 0.0],
            [0.4, 0.4, 0.4],
            [0.0, 0.6, 0.6],
            [0.9, 0.0, 0.0],
        ],
        dtype=torch.float64,
    )
    tokens = torch.tensor([10, 10, 10], dtype=torch.int64)
    return ActivationStats(
        languages=["en", "fr", "zh"],
        n_layers=1,
        d_mlp=5,
        sites=("mlp_pre",),
        tokens=tokens,
        state={"mlp_pre/positive": (probs * 10).round().unsqueeze(0)},
        accumulators=[MomentAccumulator(("mlp_pre",)).config()],
        provenance=Provenance(model_id="hand", corpus="hand", corpus_hash="abc"),
    )


# With top_rate = 0.6 LAPE selects round(0.6 · 5) = 3 neurons; with filter_rate = 0 and
# activation_bar_ratio = 0 both bars are the smallest probability, 0.
# {en, fr}: entropies n0 0, n1 ln 2, n2 ln 2, n3 0, n4 0 -> n0, n3, n4; en = {n0, n4}, fr = {n3}
# {en, zh}: entropies n0 ln 2, n1 0, n2 ln 2, n3 0, n4 0 -> n1, n3, n4; en = {n1, n4}, zh = {n3}
HAND = {"top_rate": 0.6, "filter_rate": 0.0, "activation_bar_ratio": 0.0}


def test_lape_set_dependency_by_hand(tmp_path) -> None:  # type: ignore[no-untyped-def]
    stats = crafted_stats()
    dep = lape_set_dependency(stats, ["en", "fr"], ["en", "zh"], **HAND)
    assert dep.names == ["A", "B"]
    assert dep.languages == ["en"]
    assert (dep.size_a, dep.size_b, dep.intersection) == ([2], [2], [1])
    assert dep.jaccard() == [1 / 3]
    assert dep.totals_a == [2, 1] and dep.totals_b == [2, 1]
    params = dep.provenance.parameters
    assert dep.provenance.method == "lape_set_dependency"
    assert dep.provenance.corpus_hash == "abc" and dep.provenance.model_id == "hand"
    assert params["set_a"] == ["en", "fr"] and params["detector_kwargs"] == HAND
    assert params["runs"]["A"]["filter_bar"] == 0.0
    assert params["runs"]["B"]["languages"] == ["en", "zh"]
    assert LanguageSetDependency.load(dep.save(tmp_path / "dep")) == dep
    text = str(dep)
    assert "|A∩B|" in text and "0.333" in text and "A: en=2, fr=1" in text
    assert "filter bar 0" in text
    figure = dep.plot()
    assert len(figure.data) == 5
    assert list(figure.data[0].x) == ["en", "fr", "zh"]
    assert list(figure.data[0].y) == [2, 1, None]  # zh is not in set A
    assert [list(t.y) for t in figure.data[2:]] == [[1], [1], [1]]  # only A, both, only B
    assert list(figure.data[4].base) == [2]

    # the same set twice: nothing depends on anything
    same = lape_set_dependency(stats, ["en", "fr", "zh"], ["en", "fr", "zh"], **HAND)
    assert same.jaccard() == [1.0, 1.0, 1.0]
    assert same.names == ["A", "B"]


def test_compare_language_sets_and_errors() -> None:
    a, b = two_methods()
    dep = compare_language_sets(a, b, names=("Set1", "Set6"))
    assert dep.languages == ["en", "zh"]
    assert dep.intersection == [3, 0] and dep.jaccard() == [0.6, 0.0]
    stats = crafted_stats()
    with pytest.raises(MissingLanguageError, match="share no language"):
        compare_language_sets(a.subset(["fr"]), b.subset(["ja"]))
    with pytest.raises(MissingLanguageError, match="de"):
        lape_set_dependency(stats, ["en", "de"], ["en", "fr"], **HAND)
    with pytest.raises(ValueError, match="at least two"):
        lape_set_dependency(stats, ["en"], ["en", "fr"], **HAND)
    with pytest.raises(ValueError, match="at least two"):
        lape_set_dependency(stats, ["en", "en"], ["en", "fr"], **HAND)


def test_named_sets() -> None:
    assert SET1 == ("en", "fr", "es", "vi", "id", "ja", "zh")
    assert SET6 == ("en", "bn", "hi", "ta", "te", "mr", "ur", "kn", "ml", "pa")
    bible = set(bible_languages())
    assert set(BIBLE_SET1) <= bible and set(BIBLE_SET6) <= bible
    assert set(BIBLE_SET1) & set(BIBLE_SET6) == {"en"}  # like Set1 and Set6
    assert set(SET1) & set(SET6) == {"en"}


# ----------------------------------------------------------------------------- deactivation values


@pytest.fixture(scope="module")
def windows(llama, texts_module):  # type: ignore[no-untyped-def]
    return evaluation_windows(
        llama, texts_module, list(texts_module), split=None, window=24, max_tokens=None
    )


@pytest.fixture(scope="module")
def texts_module() -> dict[str, list[str]]:
    from conftest import TEXTS

    return {k: list(v) for k, v in TEXTS.items()}


@pytest.fixture(scope="module")
def qstats(llama, windows) -> ActivationStats:  # type: ignore[no-untyped-def]
    sites = ("mlp_post",)
    return collect_stats(
        llama,
        windows,
        sites=list(sites),
        accumulators=[MomentAccumulator(sites), QuantileAccumulator(sites, 64)],
        progress=False,
    )


def tiny_neurons() -> LanguageNeurons:
    return LanguageNeurons(
        {
            "en": NeuronSet([list(range(0, 40)), list(range(10, 50)), [1, 2, 3]], d_mlp=128),
            "fr": NeuronSet([[5, 6, 7], list(range(60, 120)), []], d_mlp=128),
            "zh": NeuronSet([[], [], []], d_mlp=128),
        },
        provenance=Provenance(method="hand"),
    )


def test_value_labels() -> None:
    assert DEFAULT_VALUES == ("zero", "p5", "p10", "mean")
    assert [value_label(v) for v in ("zero", "mean", "p10", "p2.5", 0, -0.17, "-0.5")] == [
        "zero",
        "mean",
        "p10",
        "p2.5",
        "0",
        "-0.17",
        "-0.5",
    ]
    for bad in ("bogus", "p101", "inf", float("nan"), True):
        with pytest.raises(ValueError):
            value_label(bad)


def test_deactivation_values_on_tiny_llama(llama, windows, texts_module, qstats, tmp_path) -> None:  # type: ignore[no-untyped-def]
    neurons = tiny_neurons()
    result = deactivation_value_ppl(
        llama,
        neurons,
        qstats,
        texts_module,
        values=("zero", "p10", "mean", -0.1),
        window=24,
        max_tokens_per_language=None,
        progress=False,
    )
    assert result.values == ["zero", "p10", "mean", "-0.1"]
    assert result.languages == result.columns == ["en", "fr", "zh"]
    assert result.n_neurons == [83, 63, 0]
    for j, language in enumerate(result.columns):
        assert result.base[j] == perplexity(llama, windows[language]).value
    own = result.own("ppl")
    # "zero" is exactly Tang et al.'s deactivation
    for i, language in enumerate(["en", "fr"]):
        with deactivate(llama, neurons[language]):
            assert own[0][i] == perplexity(llama, windows[language]).value
    # a percentile is the row language's own statistic at the neurons' site
    p10 = qstats["en"].statistic("p10")
    with set_to(llama, neurons["en"], p10):
        assert own[1][0] == perplexity(llama, windows["en"]).value
    mean_fr = qstats["fr"].mean["mlp_post"]
    assert result.written[2][1] == pytest.approx(float(mean_fr[neurons["fr"].to_mask()].mean()))
    assert result.written[0][:2] == [0.0, 0.0] and result.written[3][:2] == [-0.1, -0.1]
    # the empty set changes nothing, whatever the value
    assert [row[2] for row in result.own("delta")] == [0.0] * 4
    assert [w[2] for w in result.written] == [None] * 4
    assert result.own("ratio")[0][0] == own[0][0] / result.base[0]
    # the values really differ in effect (otherwise the experiment says nothing)
    assert len({own[v][0] for v in range(4)}) == 4
    # diagonal only
    assert result.ppl[0][0][1] is None and not result.full
    with pytest.raises(ValueError, match="full_matrix=True"):
        result.plot_matrix("zero")

    again = DeactivationValuePPL.load(result.save(tmp_path / "values"))
    assert again == result
    assert result.provenance.model_id == "tiny-llama"
    assert result.provenance.parameters["stat_site"] == "mlp_post"
    assert result.provenance.parameters["neurons_method"] == "hand"
    text = str(result)
    assert "p10" in text and "zh" in text and "+0.00 (x1.000)" in text
    assert len(result.plot().data) == 4 and len(result.plot("ppl").data) == 5
    lines = result.to_csv(tmp_path / "v.csv", kind="delta").read_text().splitlines()
    assert lines[0] == "language,neurons,base_ppl,zero,p10,mean,-0.1"
    assert lines[3].startswith("zh,0,") and lines[3].endswith(",0.0,0.0,0.0,0.0")


def test_full_matrix_matches_ppl_change_matrix(llama, texts_module, qstats) -> None:  # type: ignore[no-untyped-def]
    neurons = tiny_neurons().subset(["en", "fr"])
    result = deactivation_value_ppl(
        llama,
        neurons,
        qstats,
        texts_module,
        values=["zero"],
        full_matrix=True,
        window=24,
        max_tokens_per_language=None,
        progress=False,
    )
    assert result.full and result.columns == ["en", "fr"]
    matrix = ppl_change_matrix(
        llama, neurons, texts_module, window=24, max_tokens_per_language=None, progress=False
    )
    assert result.ppl[0] == matrix.ppl and result.base == matrix.base
    assert result.matrix("zero", "ppl") == matrix.ppl
    assert len(result.plot_matrix("zero").data) == 1


def test_deactivation_value_errors(llama, windows, texts_module, qstats) -> None:  # type: ignore[no-untyped-def]
    neurons = tiny_neurons()
    moments = collect_stats(llama, windows, sites=["mlp_post"], progress=False)  # no histograms
    kwargs = {"window": 24, "progress": False, "max_tokens_per_language": None}
    with pytest.raises(StatisticsMismatchError, match=r"QuantileAccumulator") as caught:
        deactivation_value_ppl(llama, neurons, moments, texts_module, **kwargs)
    assert "'p5'" in str(caught.value) and "collect_stats" in str(caught.value)
    # statistics read at a site they were not collected at
    with pytest.raises(StatisticsMismatchError, match="mlp_pre"):
        deactivation_value_ppl(
            llama, neurons, qstats, texts_module, values=["p10"], site="mlp_pre", **kwargs
        )
    # mean and constants need no histograms
    ok = deactivation_value_ppl(
        llama, neurons, moments, texts_module, values=["zero", "mean"], languages=["zh"], **kwargs
    )
    assert ok.own("delta") == [[0.0], [0.0]]
    with pytest.raises(MissingLanguageError, match="de"):
        deactivation_value_ppl(llama, neurons, qstats, texts_module, languages=["de"], **kwargs)
    with pytest.raises(ValueError, match="repeats"):
        deactivation_value_ppl(
            llama, neurons, qstats, texts_module, values=["p10", "p10"], **kwargs
        )
    small = LanguageNeurons({"en": NeuronSet([[1], [2]], d_mlp=128)})
    with pytest.raises(NeuronShapeMismatchError):
        deactivation_value_ppl(llama, small, qstats, texts_module, **kwargs)
