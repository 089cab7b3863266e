"""Argument check for models: a Hugging Face model, a PEFT model or another object passed
where a hooked model (a lsn_mech bridge) is needed is refused by name, with the fix.

Without it, such a model fails deep inside (``AttributeError: hook_dict``) or, worse, is
read as a model without MLP neurons.
"""

from __future__ import annotations

from typing import Any

from lsn_mech.errors import UnsupportedArchitectureError, WrongInputError


class NotAHookedModelError(WrongInputError, UnsupportedArchitectureError):
    """Something other than a hooked model (a bridge) was passed as the model.

    Also an `UnsupportedArchitectureError` (a ``ValueError``), which `hook_sites` raised
    for such objects before, so existing ``except`` clauses keep working.
    """


def _looks_like_lsn_object(value: Any) -> str | None:
    """The name of a lsn_mech data object (neurons, statistics) passed as the model."""
    name = type(value).__name__
    if name in {"NeuronSet", "LanguageNeurons", "ActivationStats", "LanguageStats"}:
        return name
    return None


def expect_hooked_model(model: Any, argument: str = "model", *, caller: str = "") -> Any:
    """``model`` if it has named hook points (``hook_dict``), else a `WrongInputError`.

    Objects that do have hook points are checked further by `hook_sites` (MLP sites).
    """
    if hasattr(model, "hook_dict"):
        return model
    where = f"{caller}: " if caller else ""
    swapped = _looks_like_lsn_object(model)
    if swapped:
        fix = (
            f"got a {swapped}; the model comes first, e.g. "
            "lsn_mech.deactivate(model, neurons['fr'])."
        )
    elif hasattr(model, "get_base_model"):
        fix = (
            "got a PEFT model; merge or drop the adapter (peft_model.merge_and_unload()) and "
            "wrap the result with lsn_mech.load_model(hf_model, tokenizer=tokenizer)."
        )
    elif hasattr(model, "config") and hasattr(model, "parameters"):
        fix = (
            f"got a Hugging Face {type(model).__name__}; wrap it with "
            "lsn_mech.load_model(hf_model, tokenizer=tokenizer)."
        )
    else:
        fix = f"got a {type(model).__name__}; load one with lsn_mech.load_model(name)."
    raise NotAHookedModelError(
        f"{where}{argument} must be a hooked model (a TransformerBridge from "
        f"lsn_mech.load_model); {fix}"
    )
