"""Conditional awareness routing (LANDeRMT Eq. 6–9), folding and routed checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedModel

from lsn_mech.models import build_tiny
from lsn_mech.models.modules import mlp_module_names
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.peft import parameter_masks
from lsn_mech.training import (
    ConditionalAwarenessRouting,
    RoutingError,
    export_pair,
    load_routed,
    pair_awareness,
    save_routed,
    static_car,
)

LANGS = ["en", "fr", "zh"]
LAYERS = (0, 2)
N_LAYERS, D_MLP = 3, 128


def _ids(seed: int = 0) -> Tensor:
    return torch.randint(4, 260, (2, 11), generator=torch.Generator().manual_seed(seed))


def _logits(model: nn.Module, ids: Tensor) -> Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def _sets(seed: int = 0) -> tuple[NeuronSet, LanguageNeurons]:
    """Disjoint general / en / fr / zh neurons per layer; 28 neurons per layer in none."""
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[list[int]]] = {k: [] for k in ("g", *LANGS)}
    for _ in range(N_LAYERS):
        perm = torch.randperm(D_MLP, generator=generator).tolist()
        parts["g"].append(perm[:40])
        for i, lang in enumerate(LANGS):
            parts[lang].append(perm[40 + 20 * i : 60 + 20 * i])
    general = NeuronSet(parts["g"], d_mlp=D_MLP)
    specific = LanguageNeurons({lang: NeuronSet(parts[lang], d_mlp=D_MLP) for lang in LANGS})
    return general, specific


def _phi(seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(N_LAYERS, D_MLP, len(LANGS), generator=generator) + 0.05


def _routing(**kwargs: object) -> ConditionalAwarenessRouting:
    general, specific = _sets()
    return ConditionalAwarenessRouting(LAYERS, general, specific, _phi(), LANGS, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- Eq. 6 by hand


def test_static_car_by_hand() -> None:
    phi = torch.zeros(1, 3, 2, dtype=torch.float64)
    phi[0, :, 0] = torch.tensor([1.0, 0.0, 4.0])  # en
    phi[0, :, 1] = torch.tensor([3.0, 2.0, 0.0])  # fr
    mean = pair_awareness(phi, ["en", "fr"], "en", "fr")
    assert mean.tolist() == [[2.0, 1.0, 2.0]]
    general = torch.tensor([[True, False, False]])
    specific = torch.tensor([[False, True, True]])
    assert static_car(mean, general, specific, [0]).item() == pytest.approx(3 / 5)
    assert static_car(mean, general, specific, [0], "swapped").item() == pytest.approx(2 / 5)
    top = pair_awareness(phi, ["en", "fr"], "en", "fr", "max")
    assert static_car(top, general, specific, [0]).item() == pytest.approx(6 / 9)
    with pytest.raises(RoutingError, match="zero total"):
        static_car(torch.zeros(1, 3, dtype=torch.float64), general, specific, [0])


def test_routing_static_car_uses_pair_union() -> None:
    routing = _routing()
    general, specific = _sets()
    phi = _phi().to(torch.float64)
    s = (specific["en"] | specific["fr"]).to_mask()
    g = general.to_mask()
    pair = (phi[..., 0] + phi[..., 1]) / 2
    expected = [
        float(pair[la][s[la]].sum() / (pair[la][s[la]].sum() + pair[la][g[la]].sum()))
        for la in LAYERS
    ]
    assert routing.static_car("en", "fr").tolist() == pytest.approx(expected)
    swapped = _routing(car_formula="swapped").static_car("en", "fr").tolist()
    assert swapped == pytest.approx([1 - v for v in expected])


# ---------------------------------------------------------------------- one MLP by hand


def _one_layer_llama() -> PreTrainedModel:
    config = LlamaConfig(
        num_hidden_layers=1,
        hidden_size=2,
        intermediate_size=3,
        num_attention_heads=1,
        num_key_value_heads=1,
        vocab_size=8,
        hidden_act="silu",
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    mlp = model.model.layers[0].mlp
    with torch.no_grad():
        mlp.gate_proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        mlp.up_proj.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, -1.0]]))
        mlp.down_proj.weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))
    return model


def _silu(v: float) -> float:
    return v / (1 + math.exp(-v))


def test_gated_mlp_by_hand() -> None:
    model = _one_layer_llama()
    general = NeuronSet([[0]], d_mlp=3)
    specific = {"en": NeuronSet([[1]], d_mlp=3), "fr": NeuronSet([[]], d_mlp=3)}
    routing = ConditionalAwarenessRouting([0], general, specific, car_formula=0.25)
    x = torch.tensor([[1.0, 2.0]])
    mlp = model.model.layers[0].mlp
    with routing.install(model):
        routing.set_pair("en", "fr")
        out = mlp(x)
    h0 = _silu(0.25 * 1.0) * (0.25 * 2.0)  # general: CAR · x
    h1 = _silu(0.75 * 2.0) * (0.75 * 4.0)  # specific: (1 − CAR) · x; neuron 2 is in neither
    assert out.tolist() == [pytest.approx([h0, h1], abs=1e-6)]
    assert torch.equal(mlp(x), mlp.down_proj(nn.functional.silu(mlp.gate_proj(x)) * mlp.up_proj(x)))


def test_overlapping_neuron_runs_in_both_branches() -> None:
    model = _one_layer_llama()
    general = NeuronSet([[0, 1]], d_mlp=3)
    specific = {"en": NeuronSet([[1]], d_mlp=3)}
    routing = ConditionalAwarenessRouting([0], general, specific, car_formula=0.25)
    x = torch.tensor([[1.0, 2.0]])
    with routing.install(model):
        routing.set_pair("en", "en")
        out = model.model.layers[0].mlp(x)
    h0 = _silu(0.25) * 0.5
    h1 = _silu(0.25 * 2) * (0.25 * 4) + _silu(0.75 * 2) * (0.75 * 4)
    assert out.tolist() == [pytest.approx([h0, h1], abs=1e-6)]


# ---------------------------------------------------------------------- every architecture


def test_all_general_car_one_is_the_original(tiny_name: str) -> None:
    model = build_tiny(tiny_name).model
    ids = _ids()
    before = _logits(model, ids)
    empty = {lang: NeuronSet.empty(N_LAYERS, D_MLP) for lang in LANGS}
    routing = ConditionalAwarenessRouting(
        range(N_LAYERS), NeuronSet.full(N_LAYERS, D_MLP), empty, car_formula=1.0
    )
    with routing.install(model):
        routing.set_pair("en", "fr")
        routed = _logits(model, ids)
    assert torch.allclose(routed, before, rtol=0, atol=1e-6)
    assert torch.equal(_logits(model, ids), before)  # removed: the original forward again
    assert all("forward" not in m.__dict__ for m in model.modules())


def _reference_mlp(
    mlp: nn.Module, kind: str, x: Tensor, car: float, g: Tensor, s: Tensor
) -> Tensor:
    """Eq. 7–9 written out: run the projections on CAR·x and (1−CAR)·x."""

    def hidden(scale: float) -> Tensor:
        if kind == "gpt2":
            return mlp.act(mlp.c_fc(scale * x))
        if kind == "bloom":
            return mlp.gelu_impl(mlp.dense_h_to_4h(scale * x))
        return mlp.act_fn(mlp.gate_proj(scale * x)) * mlp.up_proj(scale * x)

    h = hidden(car) * g + hidden(1 - car) * s
    down = {"gpt2": "c_proj", "bloom": "dense_4h_to_h"}.get(kind, "down_proj")
    return getattr(mlp, down)(h)


@pytest.mark.parametrize("overlap", [False, True])
def test_matches_equations_7_to_9(tiny_name: str, overlap: bool) -> None:
    model = build_tiny(tiny_name).model
    general, specific = _sets()
    if overlap:
        general = general | specific["fr"]
    routing = ConditionalAwarenessRouting(LAYERS, general, specific, car_formula=0.3)
    kind = model.config.model_type
    x = torch.randn(2, 5, model.config.get_text_config().hidden_size)
    g_mask, s_mask = routing.pair_masks("en", "fr")
    with routing.install(model), torch.no_grad():
        routing.set_pair("en", "fr")
        for layer in LAYERS:
            mlp = model.get_submodule(mlp_module_names(kind, layer)["down"].rsplit(".", 1)[0])
            g, s = g_mask[layer].float(), s_mask[layer].float()
            want = _reference_mlp(mlp, kind, x, 0.3, g, s)
            if kind == "bloom":
                residual = torch.randn_like(x)
                got = mlp(x, residual) - residual
            else:
                got = mlp(x)
            assert torch.allclose(got, want, atol=1e-5), (tiny_name, layer)


def test_other_neurons_do_not_matter(tiny_name: str) -> None:
    model = build_tiny(tiny_name).model
    routing = _routing()
    general, specific = _sets()
    ids = _ids()
    outside = (general | specific["en"] | specific["fr"]).complement().restrict_layers(LAYERS)
    inside = general.restrict_layers(LAYERS)
    with routing.install(model):
        routing.set_pair("en", "fr")
        before = _logits(model, ids)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, mask in parameter_masks(model, outside).items():
                params[name].add_(torch.randn_like(params[name]) * mask)
        assert torch.equal(_logits(model, ids), before)
        with torch.no_grad():
            for name, mask in parameter_masks(model, inside).items():
                params[name].add_(torch.randn_like(params[name]) * mask)
        assert not torch.allclose(_logits(model, ids), before)


def test_learned_gate_starts_at_the_static_value_and_trains(tiny_name: str) -> None:
    model = build_tiny(tiny_name).model
    ids = _ids()
    static, learned = _routing(), _routing(learned=True, pairs=[("en", "fr"), ("fr", "zh")])
    with static.install(model):
        static.set_pair("en", "fr")
        want = _logits(model, ids)
    with learned.install(model):
        learned.set_pair("en", "fr")
        assert torch.allclose(_logits(model, ids), want, atol=1e-5)
        gates = list(learned.parameters())
        assert len(gates) == 2 * 2 * len(LAYERS)  # weight + bias, per pair and layer
        model(input_ids=ids).logits.square().mean().backward()
        used = learned.gates["en->fr"]
        assert all(p.grad is not None for p in used.parameters())
        assert all(p.grad is None for p in learned.gates["fr->zh"].parameters())
        with pytest.raises(Exception, match="No learned gates"):
            learned.set_pair("zh", "en")


# ---------------------------------------------------------------------- lifecycle


def test_errors_and_lifecycle() -> None:
    model = build_tiny("tiny-llama").model
    routing = _routing()
    with pytest.raises(RoutingError, match="set_pair"), routing.install(model):
        _logits(model, _ids())
    assert not routing.installed
    routing.install(model)
    with pytest.raises(RoutingError, match="already installed"):
        routing.install(model)
    with pytest.raises(RoutingError, match="already routed"):
        _routing().install(model)
    routing.remove()
    routing.remove()  # idempotent
    with pytest.raises(RoutingError, match="awareness"):
        ConditionalAwarenessRouting(LAYERS, *_sets())
    with pytest.raises(RoutingError, match="out of range"):
        ConditionalAwarenessRouting([3], *_sets(), car_formula=0.5)
    with pytest.raises(KeyError, match="de"):
        _routing().set_pair("en", "de")


def test_save_and_load_spec(tmp_path: Path) -> None:
    routing = _routing(learned=True, d_model=64, car_formula="swapped", pair_awareness="max")
    with torch.no_grad():
        for p in routing.parameters():
            p.add_(torch.randn_like(p))
    routing.set_pair("fr", "zh")
    loaded = ConditionalAwarenessRouting.load(routing.save(tmp_path / "r"))
    assert loaded.spec() == routing.spec()
    for (k, a), (_, b) in zip(routing.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert loaded.general == routing.general
    assert loaded.static_car("en", "zh").tolist() == routing.static_car("en", "zh").tolist()


# ---------------------------------------------------------------------- checkpoints


def test_export_pair_folds_into_plain_weights(tiny_name: str, tmp_path: Path) -> None:
    model = build_tiny(tiny_name).model
    routing = _routing()
    ids = _ids()
    original = _logits(model, ids)
    path = export_pair(model, routing, "en", "fr", tmp_path / "en-fr")  # verifies itself
    assert torch.equal(_logits(model, ids), original)  # the source model is untouched
    exported = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    with routing.install(model):
        routing.set_pair("en", "fr")
        want = _logits(model, ids)
        export_pair(model, routing, "en", "fr", tmp_path / "again")  # while installed
    assert torch.allclose(_logits(exported, ids), want, atol=1e-5)
    assert not torch.allclose(want, original, atol=1e-3)


def test_export_refuses_what_cannot_be_folded(tmp_path: Path) -> None:
    model = build_tiny("tiny-qwen2").model
    with pytest.raises(RoutingError, match="save_routed"):
        export_pair(model, _routing(learned=True), "en", "fr", tmp_path / "x")
    general, specific = _sets()
    overlap = ConditionalAwarenessRouting(
        LAYERS, general | specific["en"], specific, car_formula=0.4
    )
    with pytest.raises(RoutingError, match="both general and specific"):
        export_pair(model, overlap, "en", "fr", tmp_path / "y")


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_save_routed_round_trip(name: str, tmp_path: Path) -> None:
    model = build_tiny(name).model
    routing = _routing(learned=True)
    ids = _ids()
    want = {}
    with routing.install(model):
        with torch.no_grad():
            for p in routing.parameters():
                p.add_(0.1 * torch.randn_like(p))
        for pair in [("en", "fr"), ("zh", "en")]:
            routing.set_pair(*pair)
            want[pair] = _logits(model, ids)
        save_routed(model, routing, tmp_path / "routed")
    loaded, loaded_routing = load_routed(tmp_path / "routed")
    assert loaded_routing.pair == ("zh", "en")
    for pair, logits in want.items():
        loaded_routing.set_pair(*pair)
        assert torch.allclose(_logits(loaded, ids), logits, atol=1e-6), pair
    assert not torch.allclose(want[("en", "fr")], want[("zh", "en")])


def test_routing_through_a_lora_wrapper() -> None:
    """Projections wrapped by PEFT LoRA are called as modules: the adapter takes part."""
    from peft import LoraConfig, get_peft_model

    base = build_tiny("tiny-llama").model
    config = LoraConfig(r=4, target_modules=["gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    ids = _ids()
    before = _logits(model, ids)
    empty = {lang: NeuronSet.empty(N_LAYERS, D_MLP) for lang in LANGS}
    full = ConditionalAwarenessRouting(
        LAYERS, NeuronSet.full(N_LAYERS, D_MLP), empty, car_formula=1.0
    )
    with full.install(model):
        full.set_pair("en", "fr")
        assert torch.allclose(_logits(model, ids), before, atol=1e-6)
    routing = _routing()
    with routing.install(model):
        routing.set_pair("en", "fr")
        routed = _logits(model, ids)
    with model.disable_adapter(), routing.install(model):
        routing.set_pair("en", "fr")
        assert not torch.allclose(_logits(model, ids), routed, atol=1e-4)
