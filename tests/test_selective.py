"""Selective finetuning: masks hold bit-exactly under AdamW, losses match HF, baselines count."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from lsn_mech.models import TINY_MODELS, build_tiny
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.peft.masks import parameter_masks
from lsn_mech.training import baselines
from lsn_mech.training.selective import (
    TrainingLog,
    TrainingSetupError,
    TrainingStep,
    selective_finetune,
    target_loss,
    target_loss_sum,
    trainable_parameter_count,
)

EN_FR = ("en", "fr")
FR_ZH = ("fr", "zh")
PAIRS = [EN_FR, FR_ZH]


def make_batches(n: int, seed: int, batch: int = 2, seq: int = 12) -> list[dict[str, Tensor]]:
    """Random byte-token batches: first half source (-100), second half target, one padded row."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(4, 260, (batch, seq), generator=generator)
        labels = ids.clone()
        labels[:, : seq // 2] = -100
        mask = torch.ones_like(ids)
        mask[-1, -3:] = 0
        labels[-1, -3:] = -100
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def neurons_of(model: nn.Module) -> tuple[NeuronSet, LanguageNeurons]:
    """A general set and disjoint-ish specific sets for en/fr/zh, over every layer."""
    n_layers = model.config.num_hidden_layers
    d_mlp = 128
    general = NeuronSet([[0, 1, 2]] * n_layers, d_mlp=d_mlp)
    specific = LanguageNeurons(
        {
            "en": NeuronSet([[10, 11]] * n_layers, d_mlp=d_mlp),
            "fr": NeuronSet([[20, 2]] + [[21]] * (n_layers - 1), d_mlp=d_mlp),
            "zh": NeuronSet([[]] * (n_layers - 1) + [[30, 31, 32]], d_mlp=d_mlp),
        }
    )
    return general, specific


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


Masks = dict[tuple[str, str], dict[str, Tensor]]


def train(model: nn.Module, masks: Masks, steps: int = 4, **kwargs: object) -> TrainingLog:
    batches = {pair: make_batches(2 * steps, seed=i) for i, pair in enumerate(PAIRS)}
    settings = {"lr": 1e-2, "weight_decay": 0.1, "grad_accumulation": 2, "progress": False}
    return selective_finetune(model, batches, masks, steps=steps, **{**settings, **kwargs})


# ---------------------------------------------------------------------------- loss


@pytest.mark.parametrize("name", TINY_MODELS)
def test_target_loss_equals_hf_loss(name: str) -> None:
    model = build_tiny(name).model
    for batch in make_batches(2, seed=3):
        with torch.no_grad():
            expected = model(**batch).loss
            got = target_loss(model, batch)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_target_loss_applies_gemma_softcapping() -> None:
    model = build_tiny("tiny-gemma3").model
    model.config.final_logit_softcapping = 0.5  # small: the cap changes the loss a lot
    batch = make_batches(1, seed=4)[0]
    with torch.no_grad():
        capped = target_loss(model, batch)
        torch.testing.assert_close(capped, model(**batch).loss, rtol=1e-5, atol=1e-6)
        model.config.final_logit_softcapping = None
        assert not torch.allclose(capped, target_loss(model, batch))


def test_loss_sum_counts_target_tokens() -> None:
    model = build_tiny("tiny-llama").model
    batch = make_batches(1, seed=5)[0]
    _, count = target_loss_sum(model, batch)
    assert count == 6 + 3  # row 0: 6 targets; row 1: 6 minus 3 padded


# ---------------------------------------------------------------------------- masks hold


def _union(masks: Masks, name: str, like: Tensor) -> Tensor:
    union = torch.zeros_like(like, dtype=torch.bool)
    for per_pair in masks.values():
        if name in per_pair:
            union |= per_pair[name]
    return union


@pytest.mark.parametrize("name", TINY_MODELS)
def test_entries_outside_masks_are_bit_identical(name: str) -> None:
    model = build_tiny(name).model
    general, specific = neurons_of(model)
    masks = baselines.landermt(model, PAIRS, general, specific)
    assert masks[EN_FR].keys() == masks[FR_ZH].keys()  # same tensors, different entries
    before = snapshot(model)
    log = train(model, masks, steps=4)
    assert [s.pair for s in log.steps] == [EN_FR, FR_ZH, EN_FR, FR_ZH]
    after = snapshot(model)
    inside_changed = []
    for param_name, old in before.items():
        union = _union(masks, param_name, old)
        new = after[param_name]
        assert torch.equal(new[~union], old[~union]), param_name
        inside_changed.append((new != old)[union])
    changed = torch.cat(inside_changed)
    assert changed.numel() == trainable_parameter_count(masks)
    assert changed.float().mean() > 0.95


def _layer_only_masks(model: nn.Module) -> Masks:
    """Pairs whose masks touch different tensors: en-fr layer 0, fr-zh layer 2."""
    first = NeuronSet([[1, 5], [], []], d_mlp=128)
    last = NeuronSet([[], [], [7]], d_mlp=128)
    return {EN_FR: parameter_masks(model, first), FR_ZH: parameter_masks(model, last)}


@pytest.mark.parametrize("kind", ["same tensors", "different tensors"])
def test_each_step_moves_only_its_pairs_entries(kind: str) -> None:
    """Momentum and weight decay from the other pair's turns never leak into this turn."""
    model = build_tiny("tiny-llama").model
    _, specific = neurons_of(model)
    if kind == "same tensors":
        masks = baselines.ls(model, PAIRS, specific)  # no general: the pairs differ more
    else:
        masks = _layer_only_masks(model)
    params = dict(model.named_parameters())
    previous = snapshot(model)
    checked: list[tuple[str, str]] = []

    def check(step: TrainingStep) -> None:
        nonlocal previous
        current = snapshot(model)
        mine = masks[step.pair]
        for param_name, old in previous.items():
            allowed = mine.get(param_name, torch.zeros_like(old, dtype=torch.bool))
            moved = current[param_name] != old
            assert not (moved & ~allowed).any(), (step.step, param_name)
        assert any((current[n] != previous[n]).any() for n in mine)
        checked.append(step.pair)
        previous = current

    train(model, masks, steps=5, callback=check)
    assert checked == [EN_FR, FR_ZH, EN_FR, FR_ZH, EN_FR]
    assert all(p.requires_grad for p in params.values())  # flags restored


def test_plain_adamw_would_leak() -> None:
    """Why the loop restores entries: zero gradients alone do not keep AdamW still."""
    weight = nn.Parameter(torch.ones(4))
    optimizer = torch.optim.AdamW([weight], lr=0.1, weight_decay=0.1)
    weight.grad = torch.tensor([1.0, 1.0, 1.0, 1.0])
    optimizer.step()
    after_first = weight.detach().clone()
    weight.grad = torch.zeros(4)  # the next pair's mask excludes every entry
    optimizer.step()
    assert not torch.equal(weight.detach(), after_first)


def test_flags_and_mode_are_restored() -> None:
    model = build_tiny("tiny-qwen2").model.eval()
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    general, _ = neurons_of(model)
    train(model, baselines.lg(model, PAIRS, general), steps=2)
    assert not model.training
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags


# ---------------------------------------------------------------------------- loop


def test_round_robin_accumulation_and_epoch_end() -> None:
    model = build_tiny("tiny-llama").model
    batches = {EN_FR: make_batches(3, seed=0), FR_ZH: make_batches(1, seed=1)}
    with torch.no_grad():
        sums = [target_loss_sum(model, b) for b in batches[EN_FR][:2]]
    expected = sum(float(s) for s, _ in sums) / sum(c for _, c in sums)
    calls: list[tuple[str, str]] = []
    log = selective_finetune(
        model,
        batches,
        baselines.full(model, PAIRS),
        steps=None,
        grad_accumulation=2,
        on_pair=lambda src, tgt: calls.append((src, tgt)),
        progress=False,
    )
    assert calls == [s.pair for s in log.steps] == [EN_FR, FR_ZH, EN_FR]
    assert [s.tokens for s in log.steps] == [18, 9, 9]  # last EN_FR turn: one batch left
    assert math.isclose(log.steps[0].loss, expected, rel_tol=1e-5)


def test_callback_true_stops_and_extra_parameters_train() -> None:
    model = build_tiny("tiny-mistral").model
    general, _ = neurons_of(model)
    gate = nn.Parameter(torch.zeros(()))
    handle = model.model.norm.register_forward_hook(lambda m, i, o: o * (1 + gate))
    try:
        log = train(
            model,
            baselines.lg(model, PAIRS, general),
            extra_parameters=[gate],
            callback=lambda s: True,
        )
    finally:
        handle.remove()
    assert len(log.steps) == 1
    assert float(gate.detach()) != 0.0


def test_setup_errors_name_the_problem() -> None:
    model = build_tiny("tiny-llama").model
    good = {"model.layers.0.mlp.up_proj.weight": torch.ones(128, 64, dtype=torch.bool)}
    with pytest.raises(TrainingSetupError, match="not a parameter"):
        train(model, {pair: {"nope.weight": torch.ones(2, dtype=torch.bool)} for pair in PAIRS})
    with pytest.raises(TrainingSetupError, match="same shape"):
        train(model, {pair: {next(iter(good)): torch.ones(3, dtype=torch.bool)} for pair in PAIRS})
    with pytest.raises(TrainingSetupError, match="No trainable masks"):
        train(model, {EN_FR: good})
    with pytest.raises(TrainingSetupError, match="no True entry"):
        train(model, {pair: {k: ~v for k, v in good.items()} for pair in PAIRS})


def test_training_log_round_trip_and_plot(tmp_path: Path) -> None:
    model = build_tiny("tiny-gpt2").model
    general, specific = neurons_of(model)
    log = train(model, baselines.landermt(model, PAIRS, general, specific), steps=3)
    path = log.save(tmp_path / "log")
    loaded = TrainingLog.load(path)
    assert loaded == log
    assert loaded.provenance.parameters["lr"] == 1e-2
    assert loaded.trainable_parameters > 0
    assert len(loaded.losses(EN_FR)) == 2
    fig = loaded.plot()
    assert [trace.name for trace in fig.data] == ["en→fr", "fr→zh"]


# ---------------------------------------------------------------------------- baselines


def test_lora_baseline_trains_only_lora_matrices() -> None:
    model = build_tiny("tiny-llama").model
    peft_model, masks = baselines.lora(model, PAIRS, r=4)
    before = snapshot(peft_model)
    train(peft_model, masks, steps=2)
    after = snapshot(peft_model)
    for name, old in before.items():
        if "lora_" in name:
            assert not torch.equal(after[name], old), name
        else:
            assert torch.equal(after[name], old), name
    # r (in + out) per projection: q 64+64, k 64+32, v 64+32, o 64+64, gate/up 64+128,
    # down 128+64; 3 layers.
    per_layer = 4 * (128 + 96 + 96 + 128 + 3 * 192)
    assert trainable_parameter_count(masks) == 3 * per_layer


def test_lora_on_gpt2_conv1d() -> None:
    peft_model, masks = baselines.lora(build_tiny("tiny-gpt2").model, PAIRS, r=2)
    assert any("c_fc" in name for name in masks[EN_FR])
    log = train(peft_model, masks, steps=2)
    assert all(math.isfinite(s.loss) for s in log.steps)


@pytest.mark.parametrize(
    ("name", "per_neuron"), [("tiny-llama", 3 * 64), ("tiny-gpt2", 129), ("tiny-bloom", 65)]
)
def test_neuron_method_counts_by_hand(name: str, per_neuron: int) -> None:
    """Gated MLP: gate row + up row + down column = 3 × d_model per neuron; GPT-2: c_fc
    column + bias + c_proj row = 64 + 1 + 64; BLOOM (d_model 32): 32 + 1 + 32."""
    model = build_tiny(name).model
    general, specific = neurons_of(model)
    lg = baselines.lg(model, PAIRS, general)
    ls = baselines.ls(model, PAIRS, specific)
    ours = baselines.landermt(model, PAIRS, general, specific)
    union = specific["en"] | specific["fr"] | specific["zh"]
    assert trainable_parameter_count(lg) == len(general) * per_neuron
    assert trainable_parameter_count(ls) == len(union) * per_neuron
    assert trainable_parameter_count(ours) == len(general | union) * per_neuron
    assert trainable_parameter_count({EN_FR: ours[EN_FR]}) == (
        len(general | specific["en"] | specific["fr"]) * per_neuron
    )


def test_full_and_layers_counts() -> None:
    model = build_tiny("tiny-llama").model
    total = sum(p.numel() for p in model.parameters())
    assert trainable_parameter_count(baselines.full(model, PAIRS)) == total
    attention = 64 * 64 + 64 * 32 + 64 * 32 + 64 * 64
    mlp = 3 * 64 * 128
    norms = 2 * 64
    assert trainable_parameter_count(baselines.layers(model, PAIRS, [1])) == (
        attention + mlp + norms
    )
    per_pair = baselines.layers(model, PAIRS, {EN_FR: [0], FR_ZH: [0, 2]})
    assert trainable_parameter_count(per_pair) == 2 * (attention + mlp + norms)


def test_layers_baseline_keeps_other_layers() -> None:
    model = build_tiny("tiny-bloom").model
    masks = baselines.layers(model, PAIRS, [2])
    before = snapshot(model)
    train(model, masks, steps=2)
    after = snapshot(model)
    for name, old in before.items():
        assert torch.equal(after[name], old) == (not name.startswith("transformer.h.2.")), name


def test_pair_specific_prefers_pair_keys() -> None:
    d = NeuronSet([[1]], d_mlp=4)
    specific = LanguageNeurons({"en": d, "fr": NeuronSet([[2]], d_mlp=4), "en-fr": d})
    assert baselines.pair_specific(specific, EN_FR) == d
    assert baselines.pair_specific(specific, ("fr", "en")).per_layer() == [2]


def test_masks_from_parameter_masks_helper_match_builders() -> None:
    model = build_tiny("tiny-qwen2").model
    general, _ = neurons_of(model)
    direct = {k: v for k, v in parameter_masks(model, general).items() if v.any()}
    built = baselines.lg(model, PAIRS, general)[EN_FR]
    assert direct.keys() == built.keys()
    assert all(torch.equal(direct[k], built[k]) for k in direct)


def test_with_learned_routing_gates() -> None:
    """The router sets its pair in on_pair; its gates train; masks still hold bit-exactly."""
    from lsn_mech.training.routing import ConditionalAwarenessRouting

    model = build_tiny("tiny-llama").model
    general, specific = neurons_of(model)
    routing = ConditionalAwarenessRouting(
        [0, 2], general, specific, car_formula=0.5, learned=True, pairs=PAIRS, d_model=64
    )
    gates_before = {k: v.clone() for k, v in routing.state_dict().items() if k.startswith("gates.")}
    masks = baselines.landermt(model, PAIRS, general, specific)
    before = snapshot(model)
    with routing.install(model):
        train(
            model, masks, steps=4, on_pair=routing.set_pair, extra_parameters=routing.parameters()
        )
    after = snapshot(model)
    for name, old in before.items():
        union = _union(masks, name, old)
        assert torch.equal(after[name][~union], old[~union]), name
    assert gates_before
    gates_after = routing.state_dict()
    assert all(not torch.equal(gates_after[k], v) for k, v in gates_before.items())
