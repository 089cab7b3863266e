"""Trainable-mask builders for the methods of LANDeRMT's Tables 1–2, so one loop trains all.

Each builder returns ``{(src, tgt): {parameter name: bool mask}}`` for
`lsn_mech.training.selective.selective_finetune`:

| builder | trains, for each pair |
| --- | --- |
| `full` | every parameter |
| `layers` | every parameter of the selected decoder layers (attention, MLP, norms) |
| `lora` | the LoRA matrices of a PEFT model (returns the PEFT model too) |
| `lg` | rows/columns of the language-general neurons (same for every pair) |
| `ls` | rows/columns of the pair's language-specific neurons |
| `landermt` | general ∪ specific(src) ∪ specific(tgt) |

Neuron sets become parameter masks through `lsn_mech.peft.masks.parameter_masks`
(gate/up rows and biases, down columns).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from jaxtyping import Bool
from torch import Tensor, nn

from lsn_mech.errors import NeuronIndexError
from lsn_mech.models.modules import mlp_module_names
from lsn_mech.neurons import LanguageNeurons, NeuronSet
from lsn_mech.training.selective import (
    Pair,
    PairMasks,
    ParameterMasks,
    TrainingSetupError,
    trainable_parameter_count,
    unwrap,
)

NeuronMasks = Callable[[nn.Module, NeuronSet], Mapping[str, Bool[Tensor, "..."]]]

_GATED_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ATTENTION_MODULES: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn", "c_proj"),  # c_proj also names GPT-2's MLP down projection
    "bloom": ("query_key_value", "dense"),
    "llama": _GATED_ATTENTION,
    "qwen2": _GATED_ATTENTION,
    "mistral": _GATED_ATTENTION,
    "gemma3_text": _GATED_ATTENTION,
    "gemma3": _GATED_ATTENTION,
}

__all__ = [
    "ATTENTION_MODULES",
    "default_lora_targets",
    "full",
    "landermt",
    "layers",
    "lg",
    "lora",
    "ls",
    "pair_specific",
    "trainable_parameter_count",
]


def _model_type(model: nn.Module) -> str:
    return str(unwrap(model).config.model_type)


def _all_true(param: Tensor) -> Bool[Tensor, "..."]:
    """An all-True mask of ``param``'s shape that costs one byte (a broadcast view)."""
    return torch.ones((), dtype=torch.bool, device=param.device).expand(param.shape)


def _same_for_all(pairs: Sequence[Pair], masks: ParameterMasks) -> PairMasks:
    return {pair: masks for pair in pairs}


def full(hf_model: nn.Module, pairs: Sequence[Pair]) -> PairMasks:
    """Full finetuning: every parameter, every pair (tied tensors appear once)."""
    masks = {name: _all_true(p) for name, p in hf_model.named_parameters()}
    return _same_for_all(pairs, masks)


def _layer_prefix(model_type: str, layer: int) -> str:
    """``model.layers.3.`` from the MLP table (the decoder layer that owns the MLP)."""
    up = mlp_module_names(model_type, layer)["up"]
    return up.rsplit(".mlp.", 1)[0] + "."


def _layer_masks(hf_model: nn.Module, chosen: Sequence[int]) -> ParameterMasks:
    n_layers = int(unwrap(hf_model).config.num_hidden_layers)
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    if bad:
        raise NeuronIndexError(f"Layers {bad} out of range: the model has {n_layers} layers.")
    prefixes = tuple(_layer_prefix(_model_type(hf_model), layer) for layer in chosen)
    return {
        name: _all_true(p) for name, p in hf_model.named_parameters() if name.startswith(prefixes)
    }


def layers(
    hf_model: nn.Module,
    pairs: Sequence[Pair],
    selected_layers: Sequence[int] | Mapping[Pair, Sequence[int]],
) -> PairMasks:
    """The paper's "Layers" ablation: every parameter of the selected decoder layers.

    "Every parameter" is everything under the decoder layer's module (attention, MLP,
    layer norms); embeddings, the final norm and the unembedding stay frozen.
    ``selected_layers`` is one list for all pairs, or a list per pair.
    """
    if isinstance(selected_layers, Mapping):
        return {pair: _layer_masks(hf_model, selected_layers[pair]) for pair in pairs}
    return _same_for_all(pairs, _layer_masks(hf_model, list(selected_layers)))


def default_lora_targets(hf_model: nn.Module) -> list[str]:
    """Attention q, k, v, o and the MLP projections of the model's architecture."""
    model_type = _model_type(hf_model)
    mlp = [name.rsplit(".", 1)[-1] for name in mlp_module_names(model_type, 0).values()]
    return list(dict.fromkeys([*ATTENTION_MODULES.get(model_type, _GATED_ATTENTION), *mlp]))


def lora(
    hf_model: nn.Module,
    pairs: Sequence[Pair],
    *,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: Sequence[str] | None = None,
) -> tuple[nn.Module, PairMasks]:
    """The LoRA baseline: a PEFT model (wrapping ``hf_model``, changed in place) and
    all-True masks over its LoRA matrices, the same for every pair. Train the PEFT model."""
    from peft import LoraConfig, get_peft_model

    targets = list(target_modules) if target_modules is not None else default_lora_targets(hf_model)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        fan_in_fan_out=_model_type(hf_model) == "gpt2",  # GPT-2's Conv1D stores [in, out]
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(hf_model, config)
    masks = {name: _all_true(p) for name, p in peft_model.named_parameters() if "lora_" in name}
    if not masks:
        raise TrainingSetupError(
            f"LoRA matched no module among {targets}; pass target_modules that name linear "
            f"layers of this model."
        )
    return peft_model, _same_for_all(pairs, masks)


# ---------------------------------------------------------------------------- neurons


def _default_neuron_masks() -> NeuronMasks:
    from lsn_mech.peft.masks import parameter_masks

    return parameter_masks


def pair_specific(specific: LanguageNeurons, pair: Pair) -> NeuronSet:
    """Language-specific neurons of a pair: the set stored under ``"src-tgt"`` if there
    is one (neurons detected per pair, as in the paper), else specific(src) ∪ specific(tgt)."""
    src, tgt = pair
    key = f"{src}-{tgt}"
    return specific[key] if key in specific else specific[src] | specific[tgt]


class _Converter:
    """Neuron sets → parameter masks, each distinct set converted once."""

    def __init__(self, hf_model: nn.Module, neuron_masks: NeuronMasks | None) -> None:
        self.model = hf_model
        self.convert = neuron_masks or _default_neuron_masks()
        self.cache: dict[NeuronSet, ParameterMasks] = {}

    def __call__(self, neurons: NeuronSet) -> ParameterMasks:
        if neurons not in self.cache:
            masks = self.convert(self.model, neurons)
            self.cache[neurons] = {name: m for name, m in masks.items() if bool(m.any())}
        return self.cache[neurons]


def lg(
    hf_model: nn.Module,
    pairs: Sequence[Pair],
    general: NeuronSet,
    *,
    neuron_masks: NeuronMasks | None = None,
) -> PairMasks:
    """LANDeRMT-LG: only the language-general neurons, the same entries for every pair.

    ``neuron_masks`` turns a `NeuronSet` into parameter masks (default:
    `lsn_mech.peft.masks.parameter_masks`).
    """
    return _same_for_all(pairs, _Converter(hf_model, neuron_masks)(general))


def ls(
    hf_model: nn.Module,
    pairs: Sequence[Pair],
    specific: LanguageNeurons,
    *,
    neuron_masks: NeuronMasks | None = None,
) -> PairMasks:
    """LANDeRMT-LS: for each pair only its language-specific neurons (`pair_specific`)."""
    convert = _Converter(hf_model, neuron_masks)
    return {pair: convert(pair_specific(specific, pair)) for pair in pairs}


def landermt(
    hf_model: nn.Module,
    pairs: Sequence[Pair],
    general: NeuronSet,
    specific: LanguageNeurons,
    *,
    neuron_masks: NeuronMasks | None = None,
) -> PairMasks:
    """LANDeRMT: general ∪ the pair's specific neurons (`pair_specific`), per pair."""
    convert = _Converter(hf_model, neuron_masks)
    return {pair: convert(general | pair_specific(specific, pair)) for pair in pairs}
