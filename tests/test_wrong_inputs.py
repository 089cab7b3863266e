"""Wrong objects in the right places (issue 12): each is refused by a `LsnMechError` that
says what was meant, before any forward pass; NaN/inf activations never reach the
statistics; detectors say why when their input cannot select anything."""

from __future__ import annotations

import warnings

import pytest
import torch

import lsn_mech as lm
from lsn_mech import detect
from lsn_mech.corpora.windows import tokenize_windows
from lsn_mech.detect.awareness import Awareness
from lsn_mech.errors import (
    InvalidSettingError,
    LsnMechError,
    NeuronShapeMismatchError,
    NonFiniteActivationError,
    NothingToSelectError,
    StatisticsMismatchError,
    WrongInputError,
)
from lsn_mech.interventions import Edit, SetToStatistic, SetValue, apply
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.peft import MaskedLoraError, masked_lora, neuron_module_masks, parameter_masks
from lsn_mech.provenance import Provenance
from lsn_mech.stats import ActivationStats, MomentAccumulator, QuantileAccumulator, collect_stats

LANGS = ["en", "fr", "zh"]


@pytest.fixture
def untyped():  # type: ignore[no-untyped-def]
    """Switch off the test suite's run-time type checks (conftest.py), which would refuse a
    wrong object before lsn_mech's own checks: a user runs without them."""
    import jaxtyping

    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    yield
    jaxtyping.config.update("jaxtyping_disable", before)


def language_neurons(n_layers: int = 3, d_mlp: int = 128) -> LanguageNeurons:
    sets = {
        lang: NeuronSet([[i], [i + 1], [i + 2]][:n_layers], d_mlp=d_mlp, model_id="tiny-llama")
        for i, lang in enumerate(LANGS)
    }
    return LanguageNeurons(sets)


def hand_stats(n_layers: int, d_mlp: int, model_id: str) -> ActivationStats:
    """Moment statistics of a model of the given shape (values: a ramp, 10 tokens each)."""
    shape = (n_layers, d_mlp, len(LANGS))
    ramp = torch.arange(n_layers * d_mlp * len(LANGS), dtype=torch.float64).reshape(shape)
    state = {}
    for site in ("mlp_pre", "mlp_post"):
        state[f"{site}/positive"] = torch.full(shape, 5, dtype=torch.int64)
        state[f"{site}/sum"] = ramp.clone()
        state[f"{site}/sum_sq"] = ramp.square()
    return ActivationStats(
        languages=list(LANGS),
        n_layers=n_layers,
        d_mlp=d_mlp,
        sites=("mlp_pre", "mlp_post"),
        tokens=torch.full((len(LANGS),), 10, dtype=torch.int64),
        state=state,
        accumulators=[MomentAccumulator(("mlp_pre", "mlp_post")).config()],
        provenance=Provenance(model_id=model_id),
    )


def logits(model, ids):  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return model(ids)


# ----------------------------------------------------------- LanguageNeurons for a NeuronSet


def test_language_neurons_where_one_set_is_meant_names_the_language(llama, untyped) -> None:  # type: ignore[no-untyped-def]
    neurons = language_neurons()
    stats = hand_stats(3, 128, "tiny-llama")
    calls = {
        "deactivate": lambda: lm.deactivate(llama, neurons),
        "activate": lambda: lm.activate(llama, neurons, stats["en"]),
        "set_to": lambda: lm.set_to(llama, neurons, 0.0),
        "scale": lambda: lm.scale(llama, neurons, 2.0),
        "add": lambda: lm.add(llama, neurons, 1.0),
        "SetValue": lambda: SetValue(neurons, 0.0),  # type: ignore[arg-type]
        "SetToStatistic": lambda: SetToStatistic(neurons, language="en"),  # type: ignore[arg-type]
        "Edit": lambda: Edit("set", neurons, 0.0),  # type: ignore[arg-type]
    }
    for name, call in calls.items():
        with pytest.raises(WrongInputError, match=r"neurons\['en'\]") as caught:
            call()
        assert "en, fr, zh" in str(caught.value), name
        assert isinstance(caught.value, TypeError), name  # still the builtin callers expect
    before = logits(llama, torch.tensor([[1, 2, 3]]))
    with lm.deactivate(llama, neurons["en"]):  # the fix works
        pass
    assert torch.equal(logits(llama, torch.tensor([[1, 2, 3]])), before)  # no hook left


def test_set_algebra_and_peft_refuse_language_neurons(hf_copy, untyped) -> None:  # type: ignore[no-untyped-def]
    neurons = language_neurons()
    one = neurons["fr"]
    for call in (lambda: one | neurons, lambda: neurons | one, lambda: one & neurons):
        with pytest.raises(WrongInputError, match=r"neurons\['en'\]"):
            call()
    with pytest.raises(WrongInputError, match="Both operands"):
        one.overlap(neurons)  # type: ignore[arg-type]
    hf = hf_copy("tiny-llama")
    for call in (
        lambda: masked_lora(hf, neurons),  # type: ignore[arg-type]
        lambda: parameter_masks(hf, neurons),  # type: ignore[arg-type]
        lambda: neuron_module_masks(hf, neurons),  # type: ignore[arg-type]
    ):
        with pytest.raises(WrongInputError, match=r"neurons\['en'\]"):
            call()
    with pytest.raises(WrongInputError, match="from_mask"):
        masked_lora(hf, one.to_mask())  # type: ignore[arg-type]
    assert not any("lora_" in name for name, _ in hf.named_parameters())


def test_wrong_model_objects_are_refused_with_the_fix(llama, hf_copy, untyped) -> None:  # type: ignore[no-untyped-def]
    fr = language_neurons()["fr"]
    hf = hf_copy("tiny-llama")
    with pytest.raises(WrongInputError, match=r"Hugging Face LlamaForCausalLM.*load_model") as hit:
        lm.deactivate(hf, fr)
    assert isinstance(hit.value, ValueError)  # hook_sites raised a ValueError for it before
    with pytest.raises(WrongInputError, match="the model comes first"):
        lm.deactivate(fr, llama)  # type: ignore[arg-type]
    with pytest.raises(WrongInputError, match="load_model"):
        lm.evaluate.ppl_change_matrix(hf, {"fr": fr}, {"fr": ["x"]})
    with pytest.raises(WrongInputError, match=r"neuron_sets\['fr'\].*\['en'\]"):
        lm.evaluate.ppl_change_matrix(llama, {"fr": language_neurons()}, {"fr": ["x"]})
    with pytest.raises(WrongInputError, match="mapping of row names"):
        lm.evaluate.ppl_change_matrix(llama, fr, {"fr": ["x"]})  # type: ignore[arg-type]
    with pytest.raises(WrongInputError, match="takes intervention specs"):
        apply(llama, fr)  # type: ignore[arg-type]


# ------------------------------------------------------------------ statistics of another model


def test_statistics_of_another_model_are_refused_before_any_forward(llama, untyped) -> None:  # type: ignore[no-untyped-def]
    fr = language_neurons()["fr"]
    other = hand_stats(2, 3, "toy-model")
    for call in (
        lambda: lm.activate(llama, fr, other["fr"]),
        lambda: lm.set_to(llama, fr, other["fr"]),
        lambda: apply(llama, SetToStatistic(fr, language="fr", statistic="mean"), stats=other),
    ):
        with pytest.raises(StatisticsMismatchError, match=r"2 layers x 3 neurons.*'toy-model'"):
            call()
    with pytest.raises(NeuronShapeMismatchError, match="does not fit"):
        lm.set_to(llama, fr, other["fr"].mean)  # a bare tensor: no id, but the shape fails
    with pytest.raises(WrongInputError, match="not stats\\['fr'\\]"):
        apply(llama, SetToStatistic(fr, language="fr"), stats=other["fr"])  # type: ignore[arg-type]
    same_shape = hand_stats(3, 128, "another-checkpoint")
    with pytest.raises(StatisticsMismatchError, match="collected on 'another-checkpoint'"):
        lm.activate(llama, fr, same_shape["fr"])


# -------------------------------------------------------------------------- values of set_to


def test_set_to_values_of_the_wrong_type(llama, untyped) -> None:  # type: ignore[no-untyped-def]
    fr = language_neurons()["fr"]
    stats = hand_stats(3, 128, "tiny-llama")
    with pytest.raises(WrongInputError, match=r"statistic of a language.*stats\['fr'\]"):
        lm.set_to(llama, fr, "mean")
    with pytest.raises(WrongInputError, match=r"statistic\('p90'\)"):
        lm.activate(llama, fr, "p90")
    with pytest.raises(WrongInputError, match="'zero', a number"):
        lm.set_to(llama, fr, "banana")
    with pytest.raises(WrongInputError, match=r"every language \(en, fr, zh\).*stats\['en'\]"):
        lm.set_to(llama, fr, stats)  # type: ignore[arg-type]
    for value in (None, [["a"]], {"mlp_post": 1.0}):
        with pytest.raises(WrongInputError):
            lm.set_to(llama, fr, value)  # type: ignore[arg-type]
    with pytest.raises(WrongInputError, match="parse_intervention"):
        lm.scale(llama, fr, "2")  # type: ignore[arg-type]
    ids = torch.tensor([[1, 5, 9, 2]])
    with lm.deactivate(llama, fr):
        zeroed = logits(llama, ids)
    with lm.set_to(llama, fr, "zero"):  # constant words of the mini-language are values
        assert torch.equal(logits(llama, ids), zeroed)
    with lm.set_to(llama, fr, "-1"), lm.set_to(llama, fr, -1.0):
        pass
    assert issubclass(WrongInputError, LsnMechError)


# ------------------------------------------------------------------------ masked LoRA, empty


def test_masked_lora_with_an_empty_set_needs_allow_empty(hf_copy) -> None:  # type: ignore[no-untyped-def]
    hf = hf_copy("tiny-llama")
    with pytest.raises(MaskedLoraError, match="allow_empty=True"):
        masked_lora(hf, NeuronSet.empty(3, 128))
    assert not any("lora_" in name for name, _ in hf.named_parameters())
    peft_model = masked_lora(hf, NeuronSet.empty(3, 128), allow_empty=True)
    names = [name for name, _ in peft_model.named_parameters() if "lora_" in name]
    assert names and not any(".mlp." in name for name in names)  # attention only


# ------------------------------------------------------------------------------ NaN and inf


def _windows(model):  # type: ignore[no-untyped-def]
    from conftest import TEXTS

    return {x: tokenize_windows(model.tokenizer, TEXTS[x][:2], window=32) for x in ("en", "fr")}


def test_nan_raises_naming_layer_site_language_and_count_resumes(llama, tmp_path, untyped) -> None:  # type: ignore[no-untyped-def]
    windows = _windows(llama)
    poison = [False]

    def inject(activation, hook):  # type: ignore[no-untyped-def]
        if poison[0]:
            activation = activation.clone()
            activation[:, 1:, 7] = float("inf")
        return activation

    def after(done) -> None:  # type: ignore[no-untyped-def]
        if done.language == "en" and done.batch == done.n_batches - 1:
            poison[0] = True  # every fr batch gets an inf at layer 1

    options = {"batch_size": 2, "checkpoint_every": 1, "progress": False}
    clean = collect_stats(llama, windows, batch_size=2, progress=False)
    with llama.hooks(fwd_hooks=[("blocks.1.mlp.hook_post", inject)]):
        with pytest.raises(NonFiniteActivationError, match=r"layer 1, site 'mlp_post', on 'fr'"):
            collect_stats(llama, windows, output_dir=tmp_path, callback=after, **options)
        assert poison[0]  # en was checkpointed batch by batch; fr failed in its first batch
        with pytest.warns(UserWarning, match="layer 1, site 'mlp_post', on 'fr'"):
            counted = collect_stats(
                llama, windows, output_dir=tmp_path, nonfinite="count", **options
            )
    report = counted.provenance.parameters["nonfinite"]
    fr_batches = len(list(windows["fr"].batches(2)))
    assert report["batches"] == fr_batches
    assert report["first"] == {"language": "fr", "site": "mlp_post", "layer": 1}
    assert report["tokens"] == int(clean.tokens[1])
    assert counted.tokens.tolist() == [int(clean.tokens[0]), 0]  # fr skipped whole
    for key, value in counted.state.items():  # en kept from the checkpoint, bit for bit
        assert torch.equal(value[..., 0], clean.state[key][..., 0]), key
        assert bool(torch.isfinite(value.double()).all()), key
    with pytest.raises(InvalidSettingError, match="nonfinite='ignore'"):
        collect_stats(llama, windows, progress=False, nonfinite="ignore")  # type: ignore[arg-type]


def test_count_mode_counts_exactly_what_was_injected(llama) -> None:  # type: ignore[no-untyped-def]
    windows = _windows(llama)
    calls = [0]
    last = f"blocks.{llama.cfg.n_layers - 1}.mlp.hook_post"  # nothing hooked after it

    def inject(activation, hook):  # type: ignore[no-untyped-def]
        calls[0] += 1
        activation = activation.clone()
        activation[0, 0, :] = float("nan")  # BOS: never counted, never flagged
        if calls[0] % 2 == 0:
            activation[0, 1, :5] = float("nan")
            activation[0, 2, 3] = float("-inf")
        return activation

    clean = collect_stats(llama, windows, batch_size=2, progress=False)
    with llama.hooks(fwd_hooks=[(last, inject)]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counted = collect_stats(llama, windows, batch_size=2, progress=False, nonfinite="count")
    poisoned = calls[0] // 2
    report = counted.provenance.parameters["nonfinite"]
    assert report["values"] == 6 * poisoned and report["batches"] == poisoned
    assert int(clean.tokens.sum() - counted.tokens.sum()) == report["tokens"]
    assert all(bool(torch.isfinite(v.double()).all()) for v in counted.state.values())

    def bos_nan(activation, hook):  # type: ignore[no-untyped-def]
        return activation.index_fill(1, torch.tensor([0]), float("nan"))

    with llama.hooks(fwd_hooks=[(last, bos_nan)]):
        bos_only = collect_stats(llama, windows, batch_size=2, progress=False)
    assert bos_only.equal(clean)  # uncounted positions are not checked


# --------------------------------------------------------------- detectors: nothing to select


def test_detectors_say_why_nothing_can_be_selected() -> None:
    zeros = torch.zeros(2, 4, 3, dtype=torch.float64)
    for call in (
        lambda: detect.lape(zeros, languages=LANGS),
        lambda: detect.lap(zeros, languages=LANGS, threshold=0.5),
        lambda: detect.run(
            "lape", torch.full((2, 4, 3), 0.3, dtype=torch.float64), languages=LANGS
        ),
        lambda: detect.lave(torch.full((2, 4, 3), 0.7), languages=LANGS),
        lambda: detect.pv_from_rates(torch.ones(2, 4, 3), LANGS),
    ):
        with pytest.raises(NothingToSelectError, match="same for all 8 neurons in every"):
            call()
    with pytest.raises(NothingToSelectError, match="en: all 0; fr: all 0; zh: all 0"):
        detect.lape(zeros, languages=LANGS)
    probs = torch.rand(2, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    probs[..., 2] = 0.0  # zh: no neuron fires; en and fr are sound
    with pytest.warns(UserWarning, match="zh: all 0"):
        neurons = detect.lap(probs, languages=LANGS, threshold=0.5)
    assert len(neurons["zh"]) == 0 and len(neurons["en"]) + len(neurons["fr"]) > 0


def test_act_prob_and_awareness_refuse_flat_scores() -> None:
    tokens = torch.full((6, 2, 4), -1.0)  # [token, layer, d_mlp]: nothing ever fires
    accumulators = [QuantileAccumulator(("mlp_pre",), 16)]
    state = accumulators[0].init_state(2, 4, 2, torch.device("cpu"))
    for language in range(2):
        for layer in range(2):
            accumulators[0].update(state, "mlp_pre", layer, language, tokens[:, layer])
    stats = ActivationStats(
        languages=["en", "fr"],
        n_layers=2,
        d_mlp=4,
        sites=("mlp_pre",),
        tokens=torch.tensor([6, 6]),
        state=state,
        accumulators=[a.config() for a in accumulators],
    )
    with pytest.raises(NothingToSelectError, match="No neuron exceeds its threshold"):
        detect.act_prob_90p(stats, rate=0.5)
    awareness = Awareness(
        languages=["en", "fr"],
        layers=[0, 1],
        scores=torch.zeros(2, 4, 2),
        passes=[1, 1],
        losses=[1.0, 1.0],
        n_layers=2,
    )
    with pytest.raises(NothingToSelectError, match="Zero gradients"):
        detect.split_awareness(awareness)


def test_detectors_and_sets_refuse_wrong_objects_by_name(untyped) -> None:  # type: ignore[no-untyped-def]
    stats = hand_stats(2, 3, "toy-model")
    with pytest.raises(WrongInputError, match=r"one language \('fr'\).*whole ActivationStats"):
        detect.lape(stats["fr"])  # type: ignore[arg-type]
    with pytest.raises(WrongInputError, match="collect_stats"):
        detect.lap(language_neurons())  # type: ignore[arg-type]
    with pytest.raises(WrongInputError, match="Language 'fr': expected a NeuronSet"):
        LanguageNeurons({"fr": torch.zeros(3, 128, dtype=torch.bool)})  # type: ignore[dict-item]
