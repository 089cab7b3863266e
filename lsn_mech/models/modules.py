"""Hugging Face module names of each MLP projection, per architecture.

Hook sites address neurons inside TransformerLens; training and PEFT address the same
neurons as rows and columns of Hugging Face weights. This table is the bridge between
the two: neuron ``j`` of layer ``l`` is output ``j`` of the gate/up (or first)
projection and input ``j`` of the down projection.
"""

from __future__ import annotations

from lsn_mech.errors import UnsupportedArchitectureError

_GATED = {
    "gate": "model.layers.{layer}.mlp.gate_proj",
    "up": "model.layers.{layer}.mlp.up_proj",
    "down": "model.layers.{layer}.mlp.down_proj",
}

MLP_MODULES: dict[str, dict[str, str]] = {
    # GPT-2 uses Conv1D: weight is [in, out], so neuron j is a *column* of c_fc.weight.
    "gpt2": {"up": "transformer.h.{layer}.mlp.c_fc", "down": "transformer.h.{layer}.mlp.c_proj"},
    "bloom": {
        "up": "transformer.h.{layer}.mlp.dense_h_to_4h",
        "down": "transformer.h.{layer}.mlp.dense_4h_to_h",
    },
    "llama": _GATED,
    "qwen2": _GATED,
    "mistral": _GATED,
    "gemma3_text": _GATED,
    "gemma3": {
        k: v.replace("model.layers", "model.language_model.layers") for k, v in _GATED.items()
    },
}


def mlp_module_names(model_type: str, layer: int) -> dict[str, str]:
    """``{"gate"?, "up", "down"}`` module names of ``layer`` for a HF ``model_type``."""
    try:
        table = MLP_MODULES[model_type]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"No MLP module map for model_type {model_type!r}; supported: "
            f"{', '.join(MLP_MODULES)}. Add its projection names to lsn_mech.models.modules."
        ) from None
    return {role: name.format(layer=layer) for role, name in table.items()}
