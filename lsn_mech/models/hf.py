"""A clean Hugging Face model from a TransformerLens bridge (or a copy of a plain one).

Booting a TransformerLens 4 bridge rewrites its Hugging Face model in place: submodules
become bridge wrappers and state-dict keys gain ``._original_component``. Training,
PEFT and ``save_pretrained`` need the model as Hugging Face built it, so this module
rebuilds one from the config and loads the weights with the infix stripped, checking
that every weight lands (a key that silently fails to load would leave random weights).
"""

from __future__ import annotations

import copy as copy_module

import torch
from transformers import AutoModelForCausalLM, PreTrainedModel

from lsn_mech.errors import LsnMechError
from lsn_mech.models.runtime.hf_bridge import BRIDGE_INFIX, as_hf, is_bridged, strip_bridge_infix

__all__ = [
    "BRIDGE_INFIX",
    "WeightTransferError",
    "inner_hf_model",
    "is_bridged",
    "plain_hf_model",
    "strip_bridge_infix",
]


class WeightTransferError(LsnMechError, RuntimeError):
    """Weights of one model could not all be placed into another."""


#: Kept under its old name: the bridge's HF model is `lsn_mech.models.runtime.as_hf`.
inner_hf_model = as_hf


def plain_hf_model(model: torch.nn.Module, *, copy: bool = False) -> PreTrainedModel:
    """An unbooted Hugging Face model with the weights of ``model``.

    Args:
        model: a TransformerLens bridge (from `lsn_mech.load_model`), a HF model that
            a bridge has rewritten, or a plain HF model.
        copy: for a plain HF model, return an independent copy instead of the model
            itself. A bridged model is always rebuilt (and so always a copy).

    The result is on the same device and dtype, in the same train/eval mode.

    Raises:
        WeightTransferError: a weight of the rebuilt model found no value, or a value
            found no weight (the message lists them).
    """
    hf = as_hf(model)
    if not is_bridged(hf):
        return _rebuild(hf) if copy else hf
    return _rebuild(hf)


def _rebuild(hf: PreTrainedModel) -> PreTrainedModel:
    """A fresh model of ``hf``'s config holding copies of its (infix-stripped) weights."""
    first = next(hf.parameters())
    config = copy_module.deepcopy(hf.config)
    attn = getattr(config, "_attn_implementation", None)
    kwargs = {"attn_implementation": attn} if attn else {}
    fresh = AutoModelForCausalLM.from_config(config, **kwargs)
    fresh = fresh.to(device=first.device, dtype=first.dtype)
    # A bridged state dict also lists the bridge's own aliases and derived tensors
    # (``mlp.in.weight``, split QKV, a zero ``lm_head.bias``): only the model's keys count.
    state = strip_bridge_infix(hf.state_dict())
    expected = fresh.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise WeightTransferError(
            f"Cannot rebuild a plain {type(fresh).__name__}: {len(missing)} weights have no "
            f"value in the source model (e.g. {missing[:5]}). The bridge may have processed "
            f"the weights (enable_compatibility_mode); load a fresh model with "
            f"lsn_mech.load_model."
        )
    for key, target in expected.items():
        value = state[key]
        if value.shape != target.shape:
            raise WeightTransferError(
                f"Weight {key!r} has shape {tuple(value.shape)} in the source model but "
                f"{tuple(target.shape)} in a fresh {type(fresh).__name__}; the bridge has "
                f"processed the weights. Load a fresh model with lsn_mech.load_model."
            )
    with torch.no_grad():
        for key, target in expected.items():
            target.copy_(state[key])
    fresh.train(hf.training)
    return fresh
