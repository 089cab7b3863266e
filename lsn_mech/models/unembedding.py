"""The model's own unembedding, applied to residuals taken at its input.

Perplexity and Taylor awareness both stop the forward pass at the unembedding input and
compute logits only where a target is, so the hook names and the projection live here,
below both of them.
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

from lsn_mech.models.protocol import HookedModel

UNEMBED_INPUT_HOOKS = ("unembed.hook_in", "ln_final.hook_normalized")
"""Hooks that carry the final, normalised residual stream, in order of preference."""


def unembed(model: HookedModel, hidden: Float[Tensor, "n d_model"]) -> Float[Tensor, "n vocab"]:
    """Logits for a flat batch of final residuals, through the model's own unembedding."""
    return model.unembed(hidden.unsqueeze(0)).squeeze(0)
