"""Hook contexts change exactly the neurons they name, compose, and clean up after themselves."""

from __future__ import annotations

import pytest
import torch

import lsn_mech.errors as errors
from lsn_mech.interventions import activate, add, compose, deactivate, scale, set_to
from lsn_mech.models import build_tiny, load_model
from lsn_mech.models.modules import mlp_module_names
from lsn_mech.neurons import NeuronSet
from lsn_mech.stats import collect_stats

IDS = torch.randint(4, 260, (2, 10), generator=torch.Generator().manual_seed(3))


def some_neurons(d_mlp: int = 128) -> NeuronSet:
    return NeuronSet([[0, 5, 127], [], [3, 64]], d_mlp=d_mlp)


def post_activations(model, ids=IDS) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    names = [f"blocks.{layer}.mlp.hook_post" for layer in range(3)]
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names_filter=names)
    return {name: cache[name] for name in names}


def test_deactivate_equals_zeroing_down_projection_inputs(tiny_name: str) -> None:
    """The paper's deactivation: zero the neurons at the input of the down projection."""
    neurons = some_neurons()
    reference = build_tiny(tiny_name).model
    handles = []
    for layer in range(3):
        down = reference.get_submodule(mlp_module_names(reference.config.model_type, layer)["down"])
        index = neurons.indices(layer)

        def zero_inputs(module, inputs, index=index):  # type: ignore[no-untyped-def]
            hidden = inputs[0].clone()
            hidden[..., index] = 0.0
            return (hidden, *inputs[1:])

        handles.append(down.register_forward_pre_hook(zero_inputs))
    with torch.no_grad():
        expected = reference(IDS).logits
    for handle in handles:
        handle.remove()
    model = load_model(tiny_name)
    with torch.no_grad():
        baseline = model(IDS)
        with deactivate(model, neurons):
            got = model(IDS)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(got, baseline), "deactivating neurons must change the logits"


def test_edits_touch_only_their_neurons(llama) -> None:  # type: ignore[no-untyped-def]
    neurons = some_neurons()
    edited = neurons.to_mask()[0]
    before = post_activations(llama)["blocks.0.mlp.hook_post"]
    cases = [
        (deactivate(llama, neurons), torch.zeros_like(before)),
        (set_to(llama, neurons, 2.5), torch.full_like(before, 2.5)),
        (scale(llama, neurons, -3.0), before * -3.0),
        (add(llama, neurons, 0.75), before + 0.75),
    ]
    for context, expected in cases:
        with context:
            after = post_activations(llama)
        # Layer 0 sees no upstream edit: other neurons are bit-identical, edited ones exact.
        first = after["blocks.0.mlp.hook_post"]
        assert torch.equal(first[..., ~edited], before[..., ~edited])
        torch.testing.assert_close(first[..., edited], expected[..., edited], rtol=0, atol=0)
        if context.edits[0].kind == "set":
            top = after["blocks.2.mlp.hook_post"][..., neurons.indices(2)]
            assert torch.all(top == float(expected.flatten()[0]))


def test_per_neuron_values_in_set_order(llama) -> None:  # type: ignore[no-untyped-def]
    neurons = some_neurons()
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])  # (0,0) (0,5) (0,127) (2,3) (2,64)
    with set_to(llama, neurons, values):
        after = post_activations(llama)
    assert torch.all(after["blocks.0.mlp.hook_post"][..., 127] == 3.0)
    assert torch.all(after["blocks.2.mlp.hook_post"][..., 3] == 4.0)
    dense = torch.zeros(3, 128)
    dense[2, 64] = -7.0
    with set_to(llama, NeuronSet([[], [], [64]], d_mlp=128), dense):
        assert torch.all(post_activations(llama)["blocks.2.mlp.hook_post"][..., 64] == -7.0)


def test_activate_writes_the_language_mean(llama, texts) -> None:  # type: ignore[no-untyped-def]
    stats = collect_stats(llama, texts, window=32, progress=False)
    neurons = NeuronSet([[1], [2], [3]], d_mlp=128)
    mean = stats["fr"].mean["mlp_post"].float()
    for value in (stats["fr"], stats["fr"].mean):
        with activate(llama, neurons, value):
            after = post_activations(llama)
        for layer, index in neurons:
            assert torch.all(
                after[f"blocks.{layer}.mlp.hook_post"][..., index] == mean[layer, index]
            )


def test_composition_order_and_cleanup(llama) -> None:  # type: ignore[no-untyped-def]
    neurons = some_neurons()
    baseline = post_activations(llama)
    with compose(deactivate(llama, neurons), set_to(llama, neurons, 9.0)):
        assert torch.all(post_activations(llama)["blocks.0.mlp.hook_post"][..., 5] == 9.0)
    with set_to(llama, neurons, 9.0), deactivate(llama, neurons):
        assert torch.all(post_activations(llama)["blocks.0.mlp.hook_post"][..., 5] == 0.0)
    with pytest.raises(RuntimeError, match="boom"), deactivate(llama, neurons):
        raise RuntimeError("boom")
    after = post_activations(llama)
    assert all(torch.equal(after[k], baseline[k]) for k in baseline)
    assert all(not hp.fwd_hooks for name, hp in llama.hook_dict.items() if "mlp.hook_post" in name)


def test_interventions_act_during_generation(llama) -> None:  # type: ignore[no-untyped-def]
    fired = []
    everything = NeuronSet.full(3, 128)
    prompt = torch.tensor([[1, 80, 81, 82]])
    with (
        deactivate(llama, everything),
        llama.hooks(
            fwd_hooks=[
                ("blocks.2.mlp.hook_post", lambda x, hook: fired.append(float(x.abs().max())))
            ]
        ),
    ):
        llama.generate(prompt, max_new_tokens=3, do_sample=False, verbose=False)
    assert len(fired) >= 3
    assert max(fired) == 0.0


def test_neurons_from_another_model_are_refused(llama) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.NeuronShapeMismatchError, match="Detect neurons on this model"):
        deactivate(llama, NeuronSet([[1]] * 4, d_mlp=128)).__enter__()
    with pytest.raises(errors.NeuronShapeMismatchError, match="does not fit"):
        set_to(llama, some_neurons(), torch.ones(7)).__enter__()
