"""Neuron sets as HF weight rows/columns, and plain HF copies of bridged models."""

from __future__ import annotations

import pytest
import torch

from lsn_mech.errors import NeuronShapeMismatchError, UnsupportedArchitectureError
from lsn_mech.models import build_tiny, load_model
from lsn_mech.models.hf import plain_hf_model
from lsn_mech.models.modules import mlp_module_names
from lsn_mech.neurons import NeuronSet
from lsn_mech.peft import mlp_shape, neuron_module_masks, parameter_masks

PAIRS = [(0, 3), (0, 5), (2, 0), (2, 127)]


def _set(n_layers: int = 3, d_mlp: int = 128) -> NeuronSet:
    return NeuronSet.from_pairs(PAIRS, n_layers=n_layers, d_mlp=d_mlp)


def test_shape_of_every_tiny_model(tiny_name: str) -> None:
    assert mlp_shape(build_tiny(tiny_name).model) == (3, 128)


def test_llama_parameter_masks_by_hand() -> None:
    model = build_tiny("tiny-llama").model
    masks = parameter_masks(model, _set())
    assert sorted(masks) == sorted(
        f"model.layers.{layer}.mlp.{proj}.weight"
        for layer in (0, 2)
        for proj in ("gate_proj", "up_proj", "down_proj")
    )
    gate = masks["model.layers.0.mlp.gate_proj.weight"]
    assert gate.shape == (128, 64)
    assert gate.any(dim=1).nonzero().flatten().tolist() == [3, 5]
    assert bool(gate[[3, 5]].all())
    down = masks["model.layers.2.mlp.down_proj.weight"]
    assert down.shape == (64, 128)
    assert down.any(dim=0).nonzero().flatten().tolist() == [0, 127]
    assert bool(down[:, [0, 127]].all())


def test_gpt2_conv1d_is_transposed_and_has_biases() -> None:
    model = build_tiny("tiny-gpt2").model
    masks = parameter_masks(model, _set())
    c_fc = masks["transformer.h.0.mlp.c_fc.weight"]
    assert c_fc.shape == (64, 128)  # Conv1D: [in, out]; neurons are columns
    assert c_fc.any(dim=0).nonzero().flatten().tolist() == [3, 5]
    assert masks["transformer.h.0.mlp.c_fc.bias"].nonzero().flatten().tolist() == [3, 5]
    c_proj = masks["transformer.h.2.mlp.c_proj.weight"]
    assert c_proj.shape == (128, 64)  # neurons are rows of the down projection
    assert c_proj.any(dim=1).nonzero().flatten().tolist() == [0, 127]
    assert "transformer.h.2.mlp.c_proj.bias" not in masks  # belongs to no neuron
    module = neuron_module_masks(model, _set())["transformer.h.0.mlp.c_fc"]
    assert module.transposed and module.side == "output" and module.neuron_dim == 1
    assert module.columns is not None and module.rows is None


def test_bloom_first_projection_bias() -> None:
    model = build_tiny("tiny-bloom").model
    masks = parameter_masks(model, _set())
    first = masks["transformer.h.2.mlp.dense_h_to_4h.weight"]
    assert first.any(dim=1).nonzero().flatten().tolist() == [0, 127]
    assert masks["transformer.h.2.mlp.dense_h_to_4h.bias"].nonzero().flatten().tolist() == [0, 127]
    assert "transformer.h.2.mlp.dense_4h_to_h.bias" not in masks


def test_masks_select_exactly_the_neurons(tiny_name: str) -> None:
    """Perturbing masked entries changes exactly the set's neurons, in every architecture."""
    model = build_tiny(tiny_name).model
    neurons = _set()
    masks = parameter_masks(model, neurons)
    params = dict(model.named_parameters())
    kind = model.config.model_type
    torch.manual_seed(0)
    for layer in (0, 2):
        names = mlp_module_names(kind, layer)
        wanted = neurons.indices(layer).tolist()
        x = torch.randn(5, model.config.get_text_config().hidden_size)
        for role in [r for r in ("gate", "up") if r in names]:
            module = model.get_submodule(names[role])
            with torch.no_grad():
                before = module(x)
                for suffix in ("weight", "bias"):
                    key = f"{names[role]}.{suffix}"
                    if key in masks:
                        params[key].add_(masks[key].to(params[key].dtype))
                after = module(x)
            changed = (after != before).any(dim=0).nonzero().flatten().tolist()
            assert changed == wanted, (tiny_name, role, layer)
        down = model.get_submodule(names["down"])
        key = f"{names['down']}.weight"
        d_mlp = neurons.d_mlp
        with torch.no_grad():
            basis = torch.eye(d_mlp)
            before = down(basis)
            params[key].add_(masks[key].to(params[key].dtype))
            after = down(basis)
        changed = (after != before).any(dim=1).nonzero().flatten().tolist()
        assert changed == wanted, (tiny_name, "down", layer)


def test_empty_layers_are_left_out() -> None:
    masks = neuron_module_masks(build_tiny("tiny-qwen2").model, _set())
    assert {m.layer for m in masks.values()} == {0, 2}
    assert not any(m.bias for m in masks.values())  # Qwen2's MLP has no biases
    assert parameter_masks(build_tiny("tiny-qwen2").model, NeuronSet.empty(3, 128)) == {}


def test_shape_mismatch_errors() -> None:
    model = build_tiny("tiny-mistral").model
    with pytest.raises(NeuronShapeMismatchError, match="d_mlp"):
        parameter_masks(model, NeuronSet([[1], [], []], d_mlp=256))
    with pytest.raises(NeuronShapeMismatchError, match="layers"):
        neuron_module_masks(model, NeuronSet([[1], [], [], []], d_mlp=128))


def test_plain_copy_of_a_bridge_matches_hf(tiny_name: str) -> None:
    bridge = load_model(tiny_name)
    hf_inner = bridge.original_model
    with pytest.raises(UnsupportedArchitectureError, match="plain_hf_model"):
        parameter_masks(hf_inner, _set())
    plain = plain_hf_model(bridge)
    assert not any("_original_component" in k for k in plain.state_dict())
    reference = build_tiny(tiny_name).model
    ids = torch.randint(4, 260, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(plain(input_ids=ids).logits, reference(input_ids=ids).logits)
    assert parameter_masks(plain, _set())  # plain names address the plain model


def test_plain_model_is_returned_or_copied() -> None:
    model = build_tiny("tiny-gpt2").model
    assert plain_hf_model(model) is model
    copied = plain_hf_model(model, copy=True)
    assert copied is not model
    for (name, a), (_, b) in zip(model.state_dict().items(), copied.state_dict().items()):
        assert torch.equal(a, b), name
        assert a.data_ptr() != b.data_ptr() or a.numel() == 0


def test_masks_of_a_peft_wrapped_model() -> None:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        build_tiny("tiny-llama").model, LoraConfig(r=2, target_modules=["up_proj"])
    )
    masks = parameter_masks(model, _set())
    key = "base_model.model.model.layers.0.mlp.up_proj.base_layer.weight"
    assert key in masks and masks[key].any(dim=1).nonzero().flatten().tolist() == [3, 5]
    assert "base_model.model.model.layers.0.mlp.gate_proj.weight" in masks
    assert "model.layers.0.mlp.up_proj" in neuron_module_masks(model, _set())
