"""Masked LoRA: after real AdamW steps only the neurons' rows/columns change; save/load is
standard PEFT, bridge-proof and verified."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from lsn_mech.errors import LsnMechError, NeuronShapeMismatchError
from lsn_mech.models import TINY_MODELS, build_tiny, load_model
from lsn_mech.neurons import NeuronSet
from lsn_mech.peft import (
    AdapterLoadError,
    MaskedLoraError,
    MaskedLoraLinear,
    attention_modules,
    check_adapter_loaded,
    enforce_masks,
    load_masked_lora,
    masked_lora,
    masked_lora_spec,
    mlp_lora_masks,
    save_masked_lora,
)
from lsn_mech.training.baselines import ATTENTION_MODULES

# layer 1 holds no neuron: it must get no MLP LoRA and keep its MLP bit-identical
NEURONS = NeuronSet([[3, 5, 64], [], [0, 127]], d_mlp=128)
ALL_MLP = ("gate", "up", "down")


def batches(n: int, seed: int = 0) -> list[dict[str, Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(4, 260, (2, 16), generator=generator)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    return out


def train(model: nn.Module, steps: int = 4, seed: int = 0) -> list[float]:
    """Real AdamW steps with the paper's weight decay (0.1) and gradient clipping (10)."""
    # Only the adapter: a booted GPT-2 adds split q/k/v weights that require a gradient.
    params = [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
    model.train()
    losses = []
    batch = batches(1, seed)[0]  # one batch, so the loss must go down
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def logits(model: nn.Module) -> Tensor:
    with torch.no_grad():
        return model(input_ids=batches(1, seed=99)[0]["input_ids"]).logits


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def merged_state(peft_model: PeftModel) -> dict[str, Tensor]:
    """The weights after ``merge_and_unload`` (on a copy, so training can go on)."""
    return snapshot(copy.deepcopy(peft_model).merge_and_unload())


# ---------------------------------------------------------------------------- the guarantee


@pytest.mark.parametrize("name", TINY_MODELS)
def test_merged_weights_change_only_the_neurons(name: str) -> None:
    model = build_tiny(name).model
    base = snapshot(model)
    targets = mlp_lora_masks(model, NEURONS, ALL_MLP)
    attention = set(attention_modules(model))
    peft_model = masked_lora(model, NEURONS, targets=ALL_MLP)
    losses = train(peft_model, steps=5)
    assert losses[-1] < losses[0]
    after = merged_state(peft_model)
    assert after.keys() == base.keys()
    seen_mlp, seen_attention = set(), set()
    for key, old in base.items():
        new = after[key]
        module, _, kind = key.rpartition(".")
        if module in targets and kind == "weight":
            mm = targets[module]
            inside = mm.weight_mask()
            assert torch.equal(new[~inside], old[~inside]), key  # bit-identical outside
            moved = (new != old).any(dim=1 - mm.neuron_dim)  # per neuron, along its axis
            assert moved.tolist() == mm.neuron_mask().tolist(), key  # every neuron changed
            seen_mlp.add(module)
        elif module in attention and kind == "weight":
            changed = (new != old).float().mean()
            assert changed > 0.9, (key, changed)  # ordinary LoRA: not restricted
            seen_attention.add(module)
        else:  # embeddings, norms, biases, MLPs of layer 1, ...
            assert torch.equal(new, old), key
    assert seen_mlp == set(targets) and seen_attention == attention
    assert not any(".1.mlp." in m for m in targets)  # no neuron there, no LoRA there


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-bloom"])
def test_default_targets_the_gate_or_first_projection(name: str) -> None:
    model = build_tiny(name).model
    spec = masked_lora_spec(masked_lora(model, NEURONS))
    roles = {mm.role for mm in spec.mlp.values()}
    first = {"tiny-llama": "gate_proj", "tiny-gpt2": "c_fc", "tiny-bloom": "dense_h_to_4h"}
    assert all(m.endswith(first[name]) for m in spec.mlp)
    assert roles == ({"gate"} if name == "tiny-llama" else {"up"})  # the first projection
    assert sorted(spec.mlp) == sorted(
        m for m in mlp_lora_masks(model, NEURONS, ("gate",)) if ".1." not in m
    )


def test_raw_factors_stay_zero_outside_and_forward_matches_merge() -> None:
    """Masked entries of B (rows) and A (columns) are exactly 0 after AdamW + decay."""
    model = build_tiny("tiny-qwen2").model
    peft_model = masked_lora(model, NEURONS, targets=ALL_MLP, dropout=0.1)
    train(peft_model, steps=3)
    masked = [m for m in peft_model.modules() if isinstance(m, MaskedLoraLinear)]
    assert len(masked) == 3 * 2  # gate, up, down in layers 0 and 2
    for module in masked:
        assert torch.equal(module.weight * (1 - module.mask), torch.zeros_like(module.weight))
        assert bool((module.weight * module.mask).ne(0).any())
    assert enforce_masks(peft_model) == len(masked)
    merged = copy.deepcopy(peft_model).merge_and_unload()
    torch.testing.assert_close(logits(merged), logits(peft_model), rtol=1e-4, atol=1e-5)


def test_load_state_dict_cannot_smuggle_values_outside() -> None:
    peft_model = masked_lora(build_tiny("tiny-llama").model, NEURONS, attention=())
    state = {k: torch.ones_like(v) for k, v in peft_model.state_dict().items() if "lora_" in k}
    peft_model.load_state_dict(state, strict=False)
    for module in peft_model.modules():
        if isinstance(module, MaskedLoraLinear):
            assert torch.equal(module.weight, module.mask.expand_as(module.weight))


def test_trainable_parameters_are_the_lora_factors_only() -> None:
    peft_model = masked_lora(build_tiny("tiny-mistral").model, NEURONS, r=4, attention=("q",))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * (2 + 3)  # A, B of gate in layers 0, 2 and q in 3 layers


# ---------------------------------------------------------------------------- arguments


def test_bridge_is_not_modified(llama) -> None:  # type: ignore[no-untyped-def]
    before = {k: v.clone() for k, v in llama.state_dict().items()}
    peft_model = masked_lora(llama, NEURONS)
    train(peft_model, steps=2)
    after = llama.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())
    assert not any("lora_" in name for name, _ in llama.named_parameters())


def test_bad_arguments_raise() -> None:
    model = build_tiny("tiny-llama").model
    with pytest.raises(MaskedLoraError, match="roles"):
        masked_lora(model, NEURONS, targets=("gate_proj",))
    with pytest.raises(MaskedLoraError, match="roles"):
        masked_lora(model, NEURONS, targets="gate")  # a string, not a tuple
    with pytest.raises(MaskedLoraError, match="use_dora"):
        masked_lora(model, NEURONS, use_dora=True)
    with pytest.raises(MaskedLoraError, match="rewrites"):
        masked_lora(model, NEURONS, init_lora_weights="pissa")
    with pytest.raises(MaskedLoraError, match="Nothing to adapt"):
        masked_lora(model, NeuronSet.empty(3, 128), attention=())
    with pytest.raises(NeuronShapeMismatchError):
        masked_lora(model, NeuronSet([[1]] * 4, d_mlp=128))
    assert not any("lora_" in name for name, _ in model.named_parameters())
    peft_model = masked_lora(model, NEURONS)
    with pytest.raises(MaskedLoraError, match="already carries"):
        masked_lora(peft_model, NEURONS)
    assert issubclass(MaskedLoraError, LsnMechError) and issubclass(AdapterLoadError, LsnMechError)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_attention_roles_agree_with_the_lora_baseline(name: str) -> None:
    model = build_tiny(name).model
    kind = model.config.model_type
    leaves = {m.rsplit(".", 1)[-1] for m in attention_modules(model)}
    assert leaves == set(ATTENTION_MODULES[kind])
    assert len(attention_modules(model, ("q", "k", "v"))) == 3 * (1 if len(leaves) == 2 else 3)


# ---------------------------------------------------------------------------- save / load


@pytest.mark.parametrize("name", TINY_MODELS)
def test_round_trip_gives_identical_logits(name: str, tmp_path: Path) -> None:
    peft_model = masked_lora(build_tiny(name).model, NEURONS, targets=ALL_MLP)
    train(peft_model, steps=3)
    expected = logits(peft_model)
    path = save_masked_lora(peft_model, tmp_path / "adapter")
    assert {p.name for p in path.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
        "lsn_masks.safetensors",
        "lsn_masks.json",
    }
    loaded = load_masked_lora(build_tiny(name).model, path, is_trainable=True)
    assert torch.equal(logits(loaded), expected)
    assert masked_lora_spec(loaded).mlp.keys() == masked_lora_spec(peft_model).mlp.keys()
    assert masked_lora_spec(loaded).neurons == NEURONS
    # masks are back: training the loaded model keeps the guarantee
    n_mlp = len(masked_lora_spec(loaded).mlp)  # 2 layers x (3, or 2 without a gate)
    assert sum(isinstance(m, MaskedLoraLinear) for m in loaded.modules()) == n_mlp
    # and any PEFT user can load the same directory into a clean model
    plain = PeftModel.from_pretrained(build_tiny(name).model, str(path))
    check_adapter_loaded(plain, path)
    assert torch.equal(logits(plain), expected)


def test_plain_peft_save_pretrained_works_too(tmp_path: Path) -> None:
    peft_model = masked_lora(build_tiny("tiny-gemma3").model, NEURONS, targets=ALL_MLP)
    train(peft_model, steps=2)
    peft_model.save_pretrained(str(tmp_path))
    plain = PeftModel.from_pretrained(build_tiny("tiny-gemma3").model, str(tmp_path))
    check_adapter_loaded(plain, tmp_path)
    torch.testing.assert_close(logits(plain), logits(peft_model), rtol=0, atol=0)


# A booted GPT-2/BLOOM computes attention from its own split of the fused QKV weight and
# bypasses a LoRA on c_attn / query_key_value: there only the output projection is adapted.
BOOTED = [("tiny-llama", ("q", "k", "v", "o")), ("tiny-gpt2", ("o",))]


@pytest.mark.parametrize(("name", "attention"), BOOTED)
def test_adapter_of_a_booted_model_loads_cleanly(
    name: str, attention: tuple[str, ...], tmp_path: Path
) -> None:
    """PEFT before booting works, but PEFT's own save writes '._original_component' keys."""
    zoo = build_tiny(name)
    peft_model = masked_lora(zoo.model, NEURONS, targets=ALL_MLP, attention=attention)
    train(peft_model, steps=3)
    expected = logits(peft_model)
    bridge = load_model(peft_model.base_model.model, tokenizer=zoo.tokenizer, device="cpu")
    assert any("._original_component" in k for k in peft_model.state_dict())
    train(peft_model, steps=2, seed=1)  # training goes on through the booted model
    expected_after = logits(peft_model)
    assert not torch.equal(expected_after, expected)
    del bridge

    path = save_masked_lora(peft_model, tmp_path / "ours")
    keys = load_file(str(path / "adapter_model.safetensors"))
    assert keys and not any("_original_component" in k for k in keys)
    loaded = load_masked_lora(build_tiny(name).model, path)
    torch.testing.assert_close(logits(loaded), expected_after, rtol=1e-5, atol=1e-6)

    # What the bridge does to a plain PEFT save: keys that load nowhere, caught by us.
    naive = tmp_path / "naive"
    peft_model.save_pretrained(str(naive))
    assert any(
        "_original_component" in k for k in load_file(str(naive / "adapter_model.safetensors"))
    )
    for extra in ("lsn_masks.safetensors", "lsn_masks.json"):
        (naive / extra).write_bytes((path / extra).read_bytes())
    with pytest.raises(AdapterLoadError, match="_original_component"):
        load_masked_lora(build_tiny(name).model, naive)


def test_mismatched_keys_raise(tmp_path: Path) -> None:
    peft_model = masked_lora(build_tiny("tiny-llama").model, NEURONS)
    train(peft_model, steps=2)
    path = save_masked_lora(peft_model, tmp_path)
    tensors = load_file(str(path / "adapter_model.safetensors"))
    renamed = {k.replace(".mlp.", ".feed_forward."): v for k, v in tensors.items()}
    save_file(renamed, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(AdapterLoadError, match="match no module"):
        load_masked_lora(build_tiny("tiny-llama").model, path)
    dropped = {k: v for k, v in tensors.items() if "layers.2.mlp" not in k}
    save_file(dropped, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(AdapterLoadError, match="not in the file"):
        load_masked_lora(build_tiny("tiny-llama").model, path)


def test_file_changing_other_neurons_is_refused(tmp_path: Path) -> None:
    path = save_masked_lora(masked_lora(build_tiny("tiny-llama").model, NEURONS), tmp_path)
    tensors = load_file(str(path / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight"
    tensors[key] = torch.ones_like(tensors[key])
    save_file(tensors, str(path / "adapter_model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(AdapterLoadError, match="outside the stored neurons"):
        load_masked_lora(build_tiny("tiny-llama").model, path)


def test_loading_needs_the_masks_and_the_same_architecture(tmp_path: Path) -> None:
    peft_model = masked_lora(build_tiny("tiny-llama").model, NEURONS)
    peft_model.save_pretrained(str(tmp_path / "plain"))
    with pytest.raises(MaskedLoraError, match=r"lsn_masks\.json"):
        load_masked_lora(build_tiny("tiny-llama").model, tmp_path / "plain")
    path = save_masked_lora(peft_model, tmp_path / "ours")
    with pytest.raises(MaskedLoraError, match="differ"):
        load_masked_lora(build_tiny("tiny-gpt2").model, path)
    with pytest.raises(MaskedLoraError, match="not built by"):
        save_masked_lora(
            PeftModel.from_pretrained(build_tiny("tiny-llama").model, str(path)), tmp_path
        )


def test_trains_with_the_selective_finetune_loop() -> None:
    """lsn_mech's own loop (AdamW, weight decay, masks over LoRA factors) keeps the rows."""
    from lsn_mech.training.selective import selective_finetune

    model = build_tiny("tiny-llama").model
    base = snapshot(model)
    peft_model = masked_lora(model, NEURONS, targets=ALL_MLP, attention=())
    every = {n: torch.ones_like(p, dtype=torch.bool) for n, p in peft_model.named_parameters()}
    trainable = {("en", "fr"): {n: m for n, m in every.items() if "lora_" in n}}
    data = {("en", "fr"): batches(4)}
    selective_finetune(
        peft_model,
        data,
        trainable,
        steps=4,
        lr=1e-2,
        weight_decay=0.1,
        grad_accumulation=1,
        progress=False,
    )
    after = merged_state(peft_model)
    for module, mm in mlp_lora_masks(model, NEURONS, ALL_MLP).items():
        key = f"{module}.weight"
        outside = ~mm.weight_mask()
        assert torch.equal(after[key][outside], base[key][outside])
        assert not torch.equal(after[key], base[key])
