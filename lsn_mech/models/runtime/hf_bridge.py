"""Bridge ⇄ Hugging Face: the one place that unwraps a bridge and strips its key infix.

Booting a TransformerLens 4 bridge rewrites its Hugging Face model in place: each
wrapped submodule keeps the original module as ``_original_component``, so state-dict
keys and module names gain the infix ``._original_component``. Generation, PEFT, PV and
export all need the Hugging Face model and its clean names; they get both here:

```python
from lsn_mech.models.runtime import as_hf, strip_bridge_infix

hf = as_hf(model)                                  # a bridge's original_model, or model itself
clean = strip_bridge_infix(hf.state_dict())        # keys as a fresh HF model spells them
```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import torch
from transformers import PreTrainedModel

from lsn_mech.errors import LsnMechError

BRIDGE_INFIX = "._original_component"
"""What a TransformerLens bridge inserts into the names of the modules it wraps."""

_Value = TypeVar("_Value")


class NotAHuggingFaceModelError(LsnMechError, TypeError):
    """A model is neither a Hugging Face ``PreTrainedModel`` nor a bridge over one."""


def as_hf(model: torch.nn.Module) -> PreTrainedModel:
    """The Hugging Face model that runs: a bridge's ``original_model``, or ``model`` itself.

    A booted bridge's ``original_model`` is the same object the bridge runs, with the
    bridge's wrappers inside, so hooks (and hence interventions) on the bridge apply
    when it runs directly (e.g. through its ``generate``).

    Raises:
        NotAHuggingFaceModelError: ``model`` is neither (the message says what to pass).
    """
    if isinstance(model, PreTrainedModel):
        return model
    inner = getattr(model, "original_model", None)
    if isinstance(inner, PreTrainedModel):
        return inner
    raise NotAHuggingFaceModelError(
        f"Expected a Hugging Face PreTrainedModel or a TransformerLens bridge over one, got "
        f"{type(model).__name__}. Load models with lsn_mech.load_model or transformers."
    )


def has_hf(model: Any) -> bool:
    """Whether `as_hf` finds a Hugging Face model in ``model``."""
    return isinstance(model, PreTrainedModel) or isinstance(
        getattr(model, "original_model", None), PreTrainedModel
    )


def strip_bridge_name(name: str) -> str:
    """A module, parameter or state-dict name without the bridge's infix."""
    return name.replace(BRIDGE_INFIX, "")


def strip_bridge_infix(state_dict: Mapping[str, _Value]) -> dict[str, _Value]:
    """State-dict keys without TransformerLens's ``._original_component`` infix.

    On a collision the key that held the infix wins, whatever the order of the keys:
    it is the original Hugging Face module's own tensor, the one its forward uses. A
    key without the infix that strips to the same name is a bridge alias, and the
    bridge may have derived or processed it (split QKV, folded norms), so it loses.
    Keys of a plain Hugging Face model pass through unchanged.
    """
    clean: dict[str, _Value] = {}
    for key, value in state_dict.items():
        if BRIDGE_INFIX in key:
            clean.setdefault(strip_bridge_name(key), value)
    for key, value in state_dict.items():
        if BRIDGE_INFIX not in key:
            clean.setdefault(key, value)
    return clean


def is_bridged(hf_model: torch.nn.Module) -> bool:
    """True if a bridge has rewritten this HF model (its names carry the bridge infix)."""
    return any(BRIDGE_INFIX in name for name, _ in hf_model.named_parameters())
