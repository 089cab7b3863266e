"""The model's own unembedding, applied to residuals taken at its input.

Perplexity and Taylor awareness both stop the forward pass at the unembedding input and
compute logits only where a target is, so the hook names and the projection live here,
below both of them.
"""

from __future__ import annotations

from typing import Any

from jaxtyping import Bool, Float, Int64
from torch import Tensor

from lsn_mech.errors import UnsupportedArchitectureError
from lsn_mech.models.protocol import HookedModel

UNEMBED_INPUT_HOOKS = ("unembed.hook_in", "ln_final.hook_normalized")
"""Hooks that carry the final, normalised residual stream, in order of preference."""


def unembed(model: HookedModel, hidden: Float[Tensor, "n d_model"]) -> Float[Tensor, "n vocab"]:
    """Logits for a flat batch of final residuals, through the model's own unembedding."""
    return model.unembed(hidden.unsqueeze(0)).squeeze(0)


class _Residual(Exception):
    def __init__(self, value: Tensor) -> None:
        super().__init__()
        self.value = value


def final_residual(
    model: HookedModel,
    input_ids: Int64[Tensor, "batch seq"],
    attention_mask: Bool[Tensor, "batch seq"],
) -> Float[Tensor, "batch seq d_model"]:
    """The normalised residual stream that enters the unembedding (the forward stops there)."""
    name = next((n for n in UNEMBED_INPUT_HOOKS if n in model.hook_dict), None)
    if name is None:
        raise UnsupportedArchitectureError(
            "The model exposes no hook at the unembedding input "
            f"({' or '.join(UNEMBED_INPUT_HOOKS)}); load it with lsn_mech.load_model."
        )

    def capture(activation: Tensor, hook: Any) -> None:
        raise _Residual(activation)

    with model.hooks(fwd_hooks=[(name, capture)]):
        try:
            model(input_ids, attention_mask=attention_mask.long())
        except _Residual as caught:
            return caught.value
    raise RuntimeError(f"The hook {name} did not fire during the forward pass.")  # pragma: no cover
