"""Interventions as typed specs: the string forms parse into exact specs, specs record as
JSON and read back equal, applying a spec hooks exactly what the old builders hooked, and
a new kind (diff-of-means steering) writes hand-computed values and nothing else."""

from __future__ import annotations

import dataclasses
import json
from typing import ClassVar

import pytest
import torch

import lsn_mech as lm
from lsn_mech.errors import LsnMechError
from lsn_mech.experiments.transfer import TransferExperimentError, intervention_value
from lsn_mech.interventions import (
    Add,
    Edit,
    Intervention,
    InterventionSpec,
    InterventionSpecError,
    MeanDifference,
    NoIntervention,
    Scale,
    SetToStatistic,
    SetValue,
    UnknownInterventionError,
    apply,
    kinds,
    parse_intervention,
    parse_value,
    register,
    spec_class,
    steering_specs,
)
from lsn_mech.interventions.codec import SpecFormatError
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.stats import ActivationStats, MomentAccumulator, QuantileAccumulator, SiteValues
from lsn_mech.stats.percentiles import statistic_value

SITES = ("mlp_pre", "mlp_post")
IDS = torch.randint(4, 260, (2, 10), generator=torch.Generator().manual_seed(5))


def neurons(site: str = "mlp_post") -> NeuronSet:
    return NeuronSet([[0, 5, 127], [], [3, 64]], d_mlp=128, site=site)


@pytest.fixture(scope="module")
def qstats(llama) -> ActivationStats:  # type: ignore[no-untyped-def]
    from conftest import TEXTS

    return lm.collect_stats(
        llama,
        {k: list(v) for k, v in TEXTS.items()},
        window=32,
        progress=False,
        accumulators=[MomentAccumulator(SITES), QuantileAccumulator(SITES, 64)],
    )


def activations(model, site: str = "mlp_post") -> dict[int, torch.Tensor]:  # type: ignore[no-untyped-def]
    names = [f"blocks.{layer}.mlp.hook_{site.removeprefix('mlp_')}" for layer in range(3)]
    with torch.no_grad():
        _, cache = model.run_with_cache(IDS, names_filter=names)
    return {layer: cache[name] for layer, name in enumerate(names)}


def assert_same(a: dict[int, torch.Tensor], b: dict[int, torch.Tensor]) -> None:
    assert all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- parsing


def test_each_string_form_parses_into_its_exact_spec() -> None:
    n = neurons()
    assert parse_intervention("none", n) == NoIntervention(n)
    assert parse_intervention("zero", n) == SetValue(n, 0.0)
    assert parse_intervention("-10", n) == SetValue(n, -10.0)
    assert parse_intervention("+1", n) == SetValue(n, 1.0)
    assert parse_intervention("0.25", n, site="mlp_pre") == SetValue(n, 0.25, site="mlp_pre")
    assert parse_intervention(-0.5, n) == SetValue(n, -0.5)
    assert parse_intervention("mean", n, language="vi") == SetToStatistic(n, "vi", "mean")
    for word in ("p90", "p5", "p10", "p2.5", "p100", "p0"):
        spec = parse_intervention(word, n, language="fr")
        assert type(spec) is SetToStatistic and spec.statistic == word
        assert (spec.language, spec.read_site, spec.estimate, spec.site) == (
            "fr",
            None,
            "histogram",
            None,
        )
    mismatch = parse_intervention(
        "p90", n, language="vi", site="mlp_post", read_site="mlp_pre", estimate="batch_mean"
    )
    assert mismatch.to_dict() == {
        "kind": "statistic",
        "neurons": SetValue(n, 0.0).to_dict()["neurons"],
        "language": "vi",
        "statistic": "p90",
        "read_site": "mlp_pre",
        "estimate": "batch_mean",
        "site": "mlp_post",
    }
    assert SetValue(n, 0) == SetValue(n, 0.0) and SetValue(n, 0).value == 0.0
    labels = [parse_value(v).label for v in ("none", "zero", "mean", "p5", "-10", "+1", 0, 1e-3)]
    assert labels == ["none", "zero", "mean", "p5", "-10", "1", "0", "0.001"]
    assert parse_value("zero").constant == 0.0 and parse_value("p90").statistic == "p90"
    assert parse_value("none").is_none and not parse_value("zero").is_none


@pytest.mark.parametrize("bad", ["median", "p101", "bogus", "", "P90", "inf", "nan", True])
def test_bad_strings_raise_naming_the_accepted_forms(bad: object) -> None:
    with pytest.raises(UnknownInterventionError) as caught:
        parse_intervention(bad, neurons(), language="fr")  # type: ignore[arg-type]
    assert isinstance(caught.value, LsnMechError) and isinstance(caught.value, ValueError)
    for form in ("'none'", "'zero'", "'-10'", "'mean'", "'p90'"):
        assert form in str(caught.value)


def test_forms_without_none_and_statistics_without_a_language(qstats) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnknownInterventionError) as caught:
        parse_value("none", allow_none=False)
    assert ": use 'zero'," in str(caught.value) and "'p90'" in str(caught.value)
    with pytest.raises(InterventionSpecError, match="language="):
        parse_intervention("p90", neurons())
    with pytest.raises(UnknownInterventionError, match="percentile"):
        SetToStatistic(neurons(), "fr", "median")
    with pytest.raises(TransferExperimentError, match="a number such as '1'"):
        intervention_value(qstats, "fr", "inf")


def test_steering_settings_parse_into_specs_in_application_order() -> None:
    sets = LanguageNeurons({"fr": neurons(), "zh": NeuronSet([[1], [2], [3]], d_mlp=128)})
    assert steering_specs("normal", "fr", neurons=sets) == []
    assert steering_specs("steered", "fr", neurons=sets) == [
        SetToStatistic(sets["fr"], "fr", "mean")
    ]
    cross = [SetValue(sets["fr"], 0.0), SetToStatistic(sets["zh"], "zh", "mean")]
    assert steering_specs("cross", "fr", neurons=sets, target="zh") == cross
    assert steering_specs("cross", "fr", neurons=sets, target="zh", deactivate_source=False) == [
        cross[1]
    ]
    with pytest.raises(UnknownInterventionError, match="normal, steered, cross"):
        steering_specs("crossed", "fr", neurons=sets, target="zh")
    with pytest.raises(InterventionSpecError, match="target="):
        steering_specs("cross", "fr", neurons=sets)


# ----------------------------------------------------------------------------- records


def every_kind() -> list[InterventionSpec]:
    n = NeuronSet([[0, 5], [7], []], d_mlp=128, site="mlp_pre", model_id="tiny-llama")
    dense = torch.arange(3 * 128, dtype=torch.float64).reshape(3, 128) / 7
    return [
        NoIntervention(n),
        SetValue(n, -0.1, site="mlp_post"),
        SetValue(n, torch.tensor([1.0, 2.5, -3.25])),
        Scale(n, dense),
        Add(n, SiteValues({"mlp_pre": dense.float(), "mlp_post": -dense.float()})),
        SetToStatistic(n, "zh", "p2.5", read_site="mlp_post", estimate="batch_mean"),
        MeanDifference(n, source="en", target="fr", alpha=0.3),
    ]


def test_spec_to_dict_from_dict_round_trip_is_exact() -> None:
    assert set(kinds()) >= {"none", "set", "scale", "add", "statistic", "mean-difference"}
    for spec in every_kind():
        record = json.loads(json.dumps(spec.to_dict()))
        again = InterventionSpec.from_dict(record)
        assert type(again) is type(spec) and again == spec
        assert again.to_dict() == spec.to_dict() and hash(again) == hash(spec)
        assert spec_class(spec.kind) is type(spec)
    tensor_spec = every_kind()[3]
    back = InterventionSpec.from_dict(json.loads(json.dumps(tensor_spec.to_dict())))
    assert back.value.dtype == torch.float64 and torch.equal(back.value, tensor_spec.value)
    assert SetValue(neurons(), 1.0) != SetValue(neurons(), 1.5)
    assert SetValue(neurons(), 1.0) != Add(neurons(), 1.0)


def test_bad_records_and_registrations_are_refused() -> None:
    with pytest.raises(UnknownInterventionError, match="mean-difference"):
        InterventionSpec.from_dict({"kind": "median", "neurons": None})
    record = SetValue(neurons(), 1.0).to_dict()
    with pytest.raises(SpecFormatError, match="does not know"):
        InterventionSpec.from_dict({**record, "alpha": 2.0})
    with pytest.raises(SpecFormatError, match="tag"):
        InterventionSpec.from_dict({**record, "value": {"tensor": {}, "extra": 1}})

    class Loose(InterventionSpec):
        kind: ClassVar[str] = "loose"

    with pytest.raises(InterventionSpecError, match="frozen dataclass"):
        register(dataclasses.dataclass(Loose))

    @dataclasses.dataclass(frozen=True)
    class Taken(InterventionSpec):
        kind: ClassVar[str] = "set"
        neurons: NeuronSet
        site: str | None = None

    with pytest.raises(InterventionSpecError, match="taken by SetValue"):
        register(Taken)
    assert spec_class("set") is SetValue


# ----------------------------------------------------------------------------- applying


def test_applied_specs_hook_exactly_what_the_old_edits_hooked(llama, qstats) -> None:  # type: ignore[no-untyped-def]
    n = neurons()
    old_p90 = statistic_value(qstats, "fr", "p90", read_site="mlp_post", write_site="mlp_post")
    old_mismatch = statistic_value(qstats, "fr", "mean", read_site="mlp_pre")
    pairs = [
        (SetValue(n, 2.5), [Edit("set", n, 2.5)]),
        (parse_intervention("zero", n), [Edit("set", n, 0.0)]),
        (Scale(n, -3.0), [Edit("scale", n, -3.0)]),
        (Add(n, torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])), [Edit("add", n, torch.arange(1, 6.0))]),
        (parse_intervention("p90", n, language="fr"), [Edit("set", n, old_p90)]),
        (SetToStatistic(n, "fr", "mean", read_site="mlp_pre"), [Edit("set", n, old_mismatch)]),
        (SetToStatistic(n, "zh", "mean"), [Edit("set", n, qstats["zh"])]),
    ]
    baseline = activations(llama)
    for spec, old_edits in pairs:
        with apply(llama, spec, stats=qstats):
            new = activations(llama)
        with Intervention(llama, old_edits):
            old = activations(llama)
        assert_same(new, old)
        assert not torch.equal(new[0], baseline[0]), spec.kind  # the checks above can fail
    # the builders record the spec they made
    assert lm.deactivate(llama, n).specs == [SetValue(n, 0.0)]
    assert lm.activate(llama, n, qstats["fr"]).specs == [SetToStatistic(n, "fr", "mean")]
    assert lm.add(llama, n, 0.5).specs == [Add(n, 0.5)]
    # steering's cross setting equals the old nested deactivate + activate contexts
    sets = LanguageNeurons({"fr": n, "zh": NeuronSet([[0, 1], [2], [3]], d_mlp=128)})
    with apply(llama, *steering_specs("cross", "fr", neurons=sets, target="zh"), stats=qstats):
        new = activations(llama)
    with (
        lm.deactivate(llama, sets["fr"]),
        Intervention(llama, [Edit("set", sets["zh"], qstats["zh"])]),
    ):
        old = activations(llama)
    assert_same(new, old)
    with apply(llama, NoIntervention(n)):
        assert_same(activations(llama), baseline)


def test_specs_that_read_statistics_need_them(llama) -> None:  # type: ignore[no-untyped-def]
    for spec in (SetToStatistic(neurons(), "fr"), MeanDifference(neurons(), "en", "fr")):
        with pytest.raises(InterventionSpecError, match="stats=stats"):
            apply(llama, spec)


def test_a_spec_may_write_another_site_than_its_neurons(llama, qstats) -> None:  # type: ignore[no-untyped-def]
    pre_neurons = neurons("mlp_pre")
    spec = SetValue(pre_neurons, 7.0, site="mlp_post")
    with apply(llama, spec):
        post = activations(llama)
    with lm.set_to(llama, neurons("mlp_post"), 7.0):
        assert_same(post, activations(llama))


# ----------------------------------------------------------------------------- the new kind


def hand_stats() -> ActivationStats:
    """Two languages over a 3 x 128 model: sum_en[l, i] = i over 2 tokens (mean i / 2),
    sum_fr[l, i] = 3 i over 4 tokens (mean 3 i / 4); the gap fr − en is i / 4."""
    index = torch.arange(128, dtype=torch.float64).expand(3, 128)
    return ActivationStats(
        languages=["en", "fr"],
        n_layers=3,
        d_mlp=128,
        sites=("mlp_post",),
        tokens=torch.tensor([2, 4]),
        state={"mlp_post/sum": torch.stack([index, 3 * index], dim=-1)},
        accumulators=[],
    )


def test_mean_difference_adds_the_hand_computed_gap_and_nothing_else(llama) -> None:  # type: ignore[no-untyped-def]
    n = neurons()
    stats = hand_stats()
    spec = MeanDifference(n, source="en", target="fr", alpha=2)
    assert spec.alpha == 2.0
    (edit,) = spec.edits(stats)
    assert edit.kind == "add" and edit.write_site == "mlp_post"
    expected_gap = {(layer, i): i / 2 for layer, i in n}  # 2 * (3i/4 - i/2)
    intervention = apply(llama, spec, stats=stats)
    hooks = dict(intervention.hooks())
    assert sorted(hooks) == ["blocks.0.mlp.hook_post", "blocks.2.mlp.hook_post"]
    x = torch.randn(2, 5, 128, generator=torch.Generator().manual_seed(0))
    mask = n.to_mask()
    for layer in (0, 2):
        y = hooks[f"blocks.{layer}.mlp.hook_post"](x, None)
        assert torch.equal(y[..., ~mask[layer]], x[..., ~mask[layer]])
        for i in n.indices(layer).tolist():
            assert torch.equal(y[..., i], x[..., i] + expected_gap[(layer, i)])
    before = activations(llama)
    with intervention:
        after = activations(llama)
    edited = mask[0]
    assert torch.equal(after[0][..., ~edited], before[0][..., ~edited])
    gap = torch.tensor([expected_gap[(0, i)] for i in n.indices(0).tolist()])
    assert torch.equal(after[0][..., edited], before[0][..., edited] + gap)
    assert torch.equal(after[0][..., 0], before[0][..., 0])  # neuron 0: a gap of 0
    backwards = MeanDifference(n, source="fr", target="en", alpha=-1.0)
    assert torch.equal(backwards.edits(stats)[0].value, spec.edits(stats)[0].value / 2)
    with pytest.raises(InterventionSpecError, match="finite"):
        MeanDifference(n, "en", "fr", alpha=float("nan"))


def test_every_kind_leaves_other_neurons_bit_identical(llama, qstats) -> None:  # type: ignore[no-untyped-def]
    n = neurons()
    edited = n.to_mask()[0]
    specs = [
        SetValue(n, 3.0),
        Scale(n, 0.5),
        Add(n, -1.0),
        SetToStatistic(n, "zh", "p10"),
        MeanDifference(n, "en", "zh", alpha=5.0),
    ]
    before = activations(llama)
    for spec in specs:
        with apply(llama, spec, stats=qstats):
            after = activations(llama)
        assert torch.equal(after[0][..., ~edited], before[0][..., ~edited]), spec.kind
        assert not torch.equal(after[0][..., edited], before[0][..., edited]), spec.kind
