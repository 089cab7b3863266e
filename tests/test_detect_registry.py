"""The detector registry (specs by name, one implementation each) and the accumulator
registry (complete at import of `lsn_mech.stats`)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
import torch

from lsn_mech import detect
from lsn_mech.detect import (
    ActProbSpec,
    AwarenessSplitSpec,
    Detection,
    DetectorInputError,
    DetectorParameterError,
    DetectorResult,
    DetectorSpec,
    LapeSpec,
    LapSpec,
    LaveSpec,
    PvSpec,
    RandomSpec,
    UnknownDetectorError,
)
from lsn_mech.detect import registry as detector_registry
from lsn_mech.detect._common import read_input
from lsn_mech.detect.awareness import Awareness
from lsn_mech.errors import LsnMechError
from lsn_mech.neurons import LanguageNeurons
from lsn_mech.provenance import Provenance
from lsn_mech.stats import (
    ACCUMULATOR_TYPES,
    ActivationStats,
    MomentAccumulator,
    PositiveCountAccumulator,
    QuantileAccumulator,
    UnknownAccumulatorError,
    register_accumulator,
)
from lsn_mech.stats.container import build_accumulator

LANGS = ["en", "fr", "zh"]
STATS_DETECTORS = ("act-prob-90p", "lap", "lape", "lave", "random")


def toy_stats() -> ActivationStats:
    """Moments at mlp_pre/mlp_post and histograms at mlp_pre of 2 × 400 neurons, 3 languages.

    Each language shifts a different block of neurons, so every detector finds something
    at its paper defaults (1 % of 800 = 8 neurons; Act-Prob: round(0.00125 · 800) = 1).
    """
    generator = torch.Generator().manual_seed(0)
    accumulators = [
        MomentAccumulator(("mlp_pre", "mlp_post")),
        QuantileAccumulator(("mlp_pre",), 16, value_range=(-4.0, 4.0)),
    ]
    n_layers, d_mlp, n_tokens = 2, 400, 60
    state: dict[str, torch.Tensor] = {}
    for accumulator in accumulators:
        state.update(accumulator.init_state(n_layers, d_mlp, len(LANGS), torch.device("cpu")))
    for index in range(len(LANGS)):
        pre = torch.randn(n_tokens, n_layers, d_mlp, generator=generator)
        pre[:, :, index * 30 : index * 30 + 30] += 2.5
        post = torch.nn.functional.gelu(pre)
        for layer in range(n_layers):
            for accumulator in accumulators:
                for site, values in (("mlp_pre", pre), ("mlp_post", post)):
                    if site in accumulator.sites:
                        accumulator.update(state, site, layer, index, values[:, layer])
    return ActivationStats(
        languages=list(LANGS),
        n_layers=n_layers,
        d_mlp=d_mlp,
        sites=("mlp_pre", "mlp_post"),
        tokens=torch.full((len(LANGS),), n_tokens, dtype=torch.int64),
        state=state,
        accumulators=[a.config() for a in accumulators],
        provenance=Provenance(model_id="toy", corpus="hand", corpus_hash="abc"),
    )


@pytest.fixture(scope="module")
def stats() -> ActivationStats:
    return toy_stats()


@pytest.fixture
def restore_registry() -> Iterator[None]:
    saved = dict(detector_registry.DETECTORS)
    yield
    detector_registry.DETECTORS.clear()
    detector_registry.DETECTORS.update(saved)


# --------------------------------------------------------------------- names


def test_available_lists_every_method_and_get_returns_its_spec() -> None:
    assert detect.available() == (
        "act-prob-90p",
        "landermt-split",
        "lap",
        "lape",
        "lave",
        "pv",
        "random",
    )
    assert detect.get("lape") is LapeSpec and detect.get("act-prob-90p") is ActProbSpec
    assert detect.get("lave") is LaveSpec and detect.get("lap") is LapSpec
    assert detect.get("random") is RandomSpec and detect.get("pv") is PvSpec
    assert detect.get("landermt-split") is AwarenessSplitSpec
    labels = {name: detect.get(name).label for name in detect.available()}
    assert labels["lape"] == "LAPE" and labels["act-prob-90p"] == "Act-Prob-90p"
    # provenance method names stay what they were
    assert ActProbSpec.method == "act_prob_90p" and LapeSpec.method == "lape"


def test_unknown_detector_names_the_known_ones(stats: ActivationStats) -> None:
    with pytest.raises(UnknownDetectorError) as error:
        detect.get("lapse")
    message = str(error.value)
    assert isinstance(error.value, LsnMechError) and isinstance(error.value, KeyError)
    assert all(name in message for name in detect.available())
    with pytest.raises(UnknownDetectorError, match="act-prob-90p"):
        detect.run("act_prob", stats)
    with pytest.raises(UnknownDetectorError, match="lape"):
        RandomSpec(like="nope")


def test_unknown_parameter_is_a_type_error_naming_the_parameters(stats: ActivationStats) -> None:
    with pytest.raises(DetectorParameterError, match="top_rate, filter_rate") as error:
        detect.run("lape", stats, top_rat=0.1)
    assert isinstance(error.value, TypeError) and isinstance(error.value, LsnMechError)
    with pytest.raises(TypeError, match="'bogus'"):
        detect.lape(stats, bogus=1)
    with pytest.raises(TypeError, match="'filter_rate'"):
        detect.run(ActProbSpec(), stats, filter_rate=0.5)


# --------------------------------------------------------------------- one implementation


def assert_same_result(a: Any, b: Any) -> None:
    assert a.neurons == b.neurons
    assert a.neurons.provenance.method == b.neurons.provenance.method
    pa, pb = a.neurons.provenance.parameters, b.neurons.provenance.parameters
    assert json.dumps(pa, sort_keys=True) == json.dumps(pb, sort_keys=True)
    if a.scores is None:
        assert b.scores is None
    else:
        assert torch.equal(a.scores, b.scores)


@pytest.mark.parametrize("parameters", [{}, {"top_rate": 0.05, "filter_rate": 0.5}])
def test_run_lape_equals_the_functions(stats: ActivationStats, parameters: dict) -> None:  # type: ignore[type-arg]
    result = detect.run("lape", stats, **parameters)
    details = detect.lape_details(stats, **parameters)
    assert isinstance(result, DetectorResult)
    assert_same_result(result, details)
    assert result.neurons == detect.lape(stats, **parameters)
    assert torch.equal(result.scores, details.entropy)
    assert len(result.neurons.union()) > 0
    # a spec, or a spec class, runs the same
    assert_same_result(detect.run(LapeSpec(**parameters), stats), result)
    assert_same_result(detect.run(LapeSpec, stats, **parameters), result)
    assert_same_result(LapeSpec(**parameters).detect(stats), result)


def test_run_lave_lap_act_prob_equal_their_functions(stats: ActivationStats) -> None:
    lave = detect.run("lave", stats, negative="abs")
    assert_same_result(lave, detect.lave_details(stats, negative="abs"))
    assert lave.neurons == detect.lave(stats, negative="abs")
    lap = detect.run("lap", stats, threshold=0.6, top_rate=0.01)
    assert lap.neurons == detect.lap(stats, threshold=0.6, top_rate=0.01)
    assert torch.equal(lap.scores, stats.activation_probability("mlp_pre").double())
    for threshold in ("own", "pooled"):
        act = detect.run("act-prob-90p", stats, rate=0.01, threshold=threshold)
        details = detect.act_prob_details(stats, rate=0.01, threshold=threshold)
        assert_same_result(act, details)
        assert torch.equal(act.scores, details.scores)
        assert act.neurons == detect.act_prob_90p(stats, rate=0.01, threshold=threshold)
        assert [len(act.neurons[x]) for x in LANGS] == [8, 8, 8]
    # a subset of languages and an explicit model id go through run as through the functions
    sub = detect.run("lape", stats, languages=["zh", "en"], model_id="other")
    assert sub.neurons == detect.lape(stats, languages=["zh", "en"], model_id="other")
    assert sub.neurons.languages == ("zh", "en") and sub.neurons.model_id == "other"


def test_run_random_from_statistics_or_from_neurons(stats: ActivationStats) -> None:
    lape = detect.lape(stats)
    drawn = detect.run("random", stats, seed=3)
    assert drawn.scores is None and isinstance(drawn, Detection)
    assert drawn.neurons == detect.random(lape, seed=3)
    assert drawn.neurons.per_layer() == lape.per_layer()
    assert detect.run("random", lape, seed=3).neurons == drawn.neurons
    params = drawn.neurons.provenance.parameters
    assert params["like"] == "lape" and params["like_method"] == "lape" and params["seed"] == 3
    # copying another registered detector's counts
    act = detect.act_prob_90p(stats)  # `like` runs with its paper defaults
    other = detect.run("random", stats, like="act-prob-90p", seed=1).neurons
    assert other.per_layer() == act.per_layer() and other != act
    with pytest.raises(DetectorInputError, match="LanguageNeurons"):
        RandomSpec(like=None).detect(stats)


def test_pv_and_landermt_split_register_their_own_inputs() -> None:
    generator = torch.Generator().manual_seed(2)
    rates = torch.rand(2, 20, 3, generator=generator, dtype=torch.float64)
    result = detect.run("pv", rates, languages=LANGS, top_rate=0.2)
    expected = detect.pv_from_rates(rates, LANGS, top_rate=0.2)
    assert_same_result(result, expected)
    assert not PvSpec.reads_statistics and not AwarenessSplitSpec.reads_statistics
    with pytest.raises(DetectorInputError, match="languages="):
        detect.run("pv", rates)
    awareness = Awareness(
        languages=list(LANGS),
        layers=[1],
        scores=torch.rand(1, 20, 3, generator=generator, dtype=torch.float64),
        passes=[1, 1, 1],
        losses=[1.0, 1.0, 1.0],
        n_layers=2,
        provenance=Provenance(model_id="toy"),
    )
    split = detect.run("landermt-split", awareness, epsilon=0.5)
    reference = detect.split_awareness(awareness, epsilon=0.5)
    assert split.neurons == reference.specific
    assert split.details.general == reference.general
    assert torch.equal(split.scores, awareness.scores)
    with pytest.raises((DetectorInputError, TypeError), match="Awareness"):
        detect.run("landermt-split", rates)  # TypeError: the tests' run-time type checks


# --------------------------------------------------------------------- specs


def test_spec_defaults_are_the_papers() -> None:
    assert dataclasses.asdict(LapeSpec()) == {
        "top_rate": 0.01,
        "filter_rate": 0.95,
        "activation_bar_ratio": 0.95,
        "site": "mlp_pre",
        "neuron_site": "mlp_post",
        "quantile": "kthvalue",
    }
    assert dataclasses.asdict(LaveSpec()) == {
        "top_rate": 0.01,
        "filter_rate": 0.95,
        "activation_bar_ratio": 0.95,
        "negative": "clamp",
        "site": "mlp_post",
        "neuron_site": "mlp_post",
        "quantile": "kthvalue",
    }
    assert dataclasses.asdict(LapSpec()) == {
        "threshold": 0.95,
        "top_rate": None,
        "site": "mlp_pre",
        "neuron_site": "mlp_post",
    }
    assert dataclasses.asdict(ActProbSpec()) == {
        "rate": 0.00125,
        "percentile": 90.0,
        "threshold": "own",
        "own_estimate": "histogram",
        "site": "mlp_pre",
        "neuron_site": "mlp_post",
    }
    assert dataclasses.asdict(RandomSpec()) == {"like": "lape", "seed": 0, "exclude_own": False}
    assert dataclasses.asdict(PvSpec()) == {
        "top_rate": 0.01,
        "direction": "low",
        "share_threshold": None,
        "min_change": 0.0,
        "neuron_site": "mlp_post",
    }
    assert dataclasses.asdict(AwarenessSplitSpec()) == {"epsilon": 0.9, "correction": 0}
    # the thin functions show the spec's parameters and defaults
    for function, spec_type in (
        (detect.lape, LapeSpec),
        (detect.lape_details, LapeSpec),
        (detect.lave, LaveSpec),
        (detect.lap, LapSpec),
        (detect.act_prob_90p, ActProbSpec),
    ):
        parameters = inspect.signature(function).parameters
        for field in dataclasses.fields(spec_type):
            assert parameters[field.name].default == field.default


def test_specs_are_frozen_validated_and_normalised() -> None:
    spec = ActProbSpec(rate=1, percentile=95)
    assert (spec.rate, spec.percentile) == (1.0, 95.0)
    assert isinstance(spec.percentile, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.rate = 0.5  # type: ignore[misc]
    with pytest.raises(DetectorInputError, match="top_rate"):
        LapeSpec(top_rate=0.0)
    # a value outside a Literal: DetectorInputError (TypeError under the tests' type checks)
    with pytest.raises((DetectorInputError, TypeError), match="quantile"):
        LapeSpec(quantile="nearest")  # type: ignore[arg-type]
    with pytest.raises((DetectorInputError, TypeError), match="negative"):
        LaveSpec(negative="square")  # type: ignore[arg-type]
    with pytest.raises(DetectorInputError, match="percentile"):
        ActProbSpec(percentile=100)
    with pytest.raises(DetectorInputError, match="threshold"):
        LapSpec(threshold=2.0)
    assert detect.spec("lape", top_rate=0.02) == LapeSpec(top_rate=0.02)


def test_provenance_is_the_spec_plus_the_inputs(stats: ActivationStats) -> None:
    for name in STATS_DETECTORS:
        spec = detect.get(name)()
        result = detect.run(spec, stats)
        prov = result.neurons.provenance
        assert prov is not None and prov.method == spec.method
        assert (prov.model_id, prov.corpus, prov.corpus_hash) == ("toy", "hand", "abc")
        parameters = prov.parameters
        assert {k: parameters[k] for k in dataclasses.asdict(spec)} == dataclasses.asdict(spec)
        if name != "random":
            assert parameters["input"] == "ActivationStats"
            assert parameters["languages"] == LANGS
    # LAPE's parameters are exactly what they were before the registry
    result = detect.run("lape", stats)
    assert result.neurons.provenance.parameters == {
        "input": "ActivationStats",
        "languages": LANGS,
        **dataclasses.asdict(LapeSpec()),
        "tie_break": "flat_index",
        "filter_bar": result.filter_bar,
        "activation_bar": result.activation_bar,
        "n_selected": 8,
    }


# --------------------------------------------------------------------- a new detector


def test_a_new_detector_is_one_registered_spec(  # type: ignore[no-untyped-def]
    stats: ActivationStats, restore_registry
) -> None:
    # the worked example of docs/detectors.md ("Adding a detector")
    @detect.register("top-mean", label="Top mean")
    @dataclasses.dataclass(frozen=True)
    class TopMeanSpec(DetectorSpec):
        """Each language's ``k`` neurons with the highest mean activation."""

        k: int = 100
        site: str = "mlp_post"

        def detect(
            self,
            source: Any,
            *,
            languages: Sequence[str] | None = None,
            model_id: str | None = None,
        ) -> Detection:
            data = read_input(source, languages, kind="mean", site=self.site, model_id=model_id)
            flat = data.values.flatten(0, 1)  # [layer · d_mlp, lang]
            mask = torch.zeros(flat.T.shape, dtype=torch.bool)
            mask.scatter_(1, flat.T.topk(self.k).indices, True)  # [lang, layer · d_mlp]
            neurons = LanguageNeurons.from_mask(
                mask.view(-1, *data.values.shape[:2]),
                data.languages,
                site=self.site,
                model_id=data.model_id,
                provenance=self.provenance(data),
            )
            return Detection(neurons=neurons, scores=data.values)

    assert "top-mean" in detect.available()
    assert detect.get("top-mean") is TopMeanSpec and TopMeanSpec.label == "Top mean"
    result = detect.run("top-mean", stats, k=3)
    assert [len(result.neurons[x]) for x in LANGS] == [3, 3, 3]
    assert result.neurons.provenance.method == "top-mean"
    assert result.neurons.provenance.parameters == {
        "input": "ActivationStats",
        "languages": LANGS,
        "k": 3,
        "site": "mlp_post",
    }
    means = stats.mean("mlp_post")
    for index, language in enumerate(LANGS):  # the three largest means of each language
        top = means[..., index].flatten().topk(3).indices.tolist()
        assert sorted(result.neurons[language]) == sorted(divmod(i, 400) for i in top)
    # pipelines take it by name like the built-in ones
    from lsn_mech.pipelines.transfer import check_detectors

    check_detectors(("lape", "top-mean"))
    # a second class under a taken name, or a spec that is not a frozen dataclass, is refused
    with pytest.raises(DetectorInputError, match="taken"):

        @detect.register("lape")
        @dataclasses.dataclass(frozen=True)
        class Other(DetectorSpec):
            def detect(self, source, *, languages=None, model_id=None):  # type: ignore[no-untyped-def]
                raise AssertionError

    with pytest.raises(DetectorInputError, match="frozen dataclass"):

        @detect.register("loose")
        class Loose(DetectorSpec):  # no @dataclass: its fields would not be parameters
            reads: ClassVar[str] = "anything"

            def detect(self, source, *, languages=None, model_id=None):  # type: ignore[no-untyped-def]
                raise AssertionError


def test_transfer_config_checks_detector_names() -> None:
    from lsn_mech.pipelines.transfer import TransferConfig, TransferConfigError

    config = TransferConfig()
    assert config.detectors == ("lape", "act-prob-90p")
    assert config.detector_labels() == ["LAPE", "Act-Prob-90p"]
    with pytest.raises(UnknownDetectorError, match="act-prob-90p"):
        TransferConfig(detectors=("lape", "nope")).check()
    with pytest.raises(TransferConfigError, match="statistics"):
        TransferConfig(detectors=("pv",)).check()
    with pytest.raises(TransferConfigError, match="repeats"):
        TransferConfig(detectors=("lape", "lape")).check()
    with pytest.raises(TransferConfigError, match="at least one"):
        TransferConfig(detectors=()).check()


# --------------------------------------------------------------------- accumulators


def test_accumulator_registry_is_complete_without_the_detectors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    counts = torch.tensor([[[3, 1], [0, 2]]], dtype=torch.int64)  # [layer 1, d_mlp 2, lang 2]
    imported = ActivationStats(
        languages=["en", "fr"],
        n_layers=1,
        d_mlp=2,
        sites=("mlp_pre",),
        tokens=torch.tensor([4, 2]),
        state={"mlp_pre/positive": counts},
        accumulators=[PositiveCountAccumulator(("mlp_pre",)).config()],
    )
    path = imported.save(tmp_path / "imported")
    script = (
        "import sys, json\n"
        "import lsn_mech.stats as stats\n"
        f"loaded = stats.ActivationStats.load({str(path)!r})\n"
        "merged = loaded + loaded\n"
        "print(json.dumps({'known': sorted(stats.ACCUMULATOR_TYPES),\n"
        "  'detect_imported': 'lsn_mech.detect' in sys.modules,\n"
        "  'tokens': merged.tokens.tolist(),\n"
        "  'positive': merged.state['mlp_pre/positive'].tolist()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["known"] == ["batch_quantiles", "moments", "positive_counts", "quantiles"]
    assert report["detect_imported"] is False
    assert report["tokens"] == [8, 4] and report["positive"] == (counts * 2).tolist()


def test_unknown_accumulator_names_the_known_ones() -> None:
    with pytest.raises(UnknownAccumulatorError) as error:
        build_accumulator({"name": "maximum", "sites": ["mlp_post"]})
    message = str(error.value)
    assert isinstance(error.value, LsnMechError) and isinstance(error.value, KeyError)
    for name in ("batch_quantiles", "moments", "positive_counts", "quantiles"):
        assert name in message
    assert "register_accumulator" in message


def test_positive_counts_moved_but_importable_from_the_old_place() -> None:
    from lsn_mech.detect.lape_files import PositiveCountAccumulator as old_home
    from lsn_mech.stats import container

    assert old_home is PositiveCountAccumulator is detect.PositiveCountAccumulator
    assert container.ACCUMULATOR_TYPES is ACCUMULATOR_TYPES  # one registry, two names
    assert ACCUMULATOR_TYPES["positive_counts"] is PositiveCountAccumulator

    class Maximum(MomentAccumulator):
        name = "test-maximum"

    class Clash(MomentAccumulator):
        name = "test-maximum"

    try:
        assert register_accumulator(Maximum) is Maximum
        assert register_accumulator(Maximum) is Maximum  # again: a reloaded module
        assert type(build_accumulator({"name": "test-maximum", "sites": ["mlp_post"]})) is Maximum
        with pytest.raises(LsnMechError, match="taken"):
            register_accumulator(Clash)
    finally:
        ACCUMULATOR_TYPES.pop("test-maximum", None)
