"""Running a model: one owner for capture of hook sites with early stop and for the loss
at target positions. Every other module calls these instead of writing its own hooks."""

from lsn_mech.models.runtime.capture import (
    UNEMBED_INPUT_HOOKS,
    ActivationCallback,
    CaptureError,
    capture,
    final_residual,
    unembed_input_hook,
)
from lsn_mech.models.runtime.loss import (
    IGNORE_INDEX,
    LossArgumentError,
    chunked_cross_entropy_sum,
    hf_unembed,
    next_token_labels,
    target_loss,
    target_nll_sum,
    target_positions,
    target_tokens,
    unembed,
    unwrap_peft,
)

__all__ = [
    "IGNORE_INDEX",
    "UNEMBED_INPUT_HOOKS",
    "ActivationCallback",
    "CaptureError",
    "LossArgumentError",
    "capture",
    "chunked_cross_entropy_sum",
    "final_residual",
    "hf_unembed",
    "next_token_labels",
    "target_loss",
    "target_nll_sum",
    "target_positions",
    "target_tokens",
    "unembed",
    "unembed_input_hook",
    "unwrap_peft",
]
