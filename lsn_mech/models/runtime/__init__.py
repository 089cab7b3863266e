"""Running a model, with one owner for each piece of plumbing: capture of hook sites with
early stop (`capture`), the loss at target positions (`loss`), greedy generation
(`generate`) and the bridge ⇄ Hugging Face seam (`hf_bridge`). Every other module calls
these instead of writing its own hooks, loss or decoding loop."""

from lsn_mech.models.runtime.capture import (
    UNEMBED_INPUT_HOOKS,
    ActivationCallback,
    CaptureError,
    capture,
    final_residual,
    unembed_input_hook,
)
from lsn_mech.models.runtime.generate import (
    GenerationError,
    eos_token_ids,
    first_line,
    generate_lines,
    greedy_decode,
    left_pad,
    newline_token_ids,
    pad_id_for,
)
from lsn_mech.models.runtime.hf_bridge import (
    BRIDGE_INFIX,
    NotAHuggingFaceModelError,
    as_hf,
    has_hf,
    is_bridged,
    strip_bridge_infix,
    strip_bridge_name,
)
from lsn_mech.models.runtime.loss import (
    IGNORE_INDEX,
    LossArgumentError,
    chunked_cross_entropy,
    chunked_cross_entropy_sum,
    hf_unembed,
    next_token_labels,
    target_loss,
    target_nll,
    target_nll_sum,
    target_positions,
    target_tokens,
    unembed,
    unwrap_peft,
)

__all__ = [
    "BRIDGE_INFIX",
    "IGNORE_INDEX",
    "UNEMBED_INPUT_HOOKS",
    "ActivationCallback",
    "CaptureError",
    "GenerationError",
    "LossArgumentError",
    "NotAHuggingFaceModelError",
    "as_hf",
    "capture",
    "chunked_cross_entropy",
    "chunked_cross_entropy_sum",
    "eos_token_ids",
    "final_residual",
    "first_line",
    "generate_lines",
    "greedy_decode",
    "has_hf",
    "hf_unembed",
    "is_bridged",
    "left_pad",
    "newline_token_ids",
    "next_token_labels",
    "pad_id_for",
    "strip_bridge_infix",
    "strip_bridge_name",
    "target_loss",
    "target_nll",
    "target_nll_sum",
    "target_positions",
    "target_tokens",
    "unembed",
    "unembed_input_hook",
    "unwrap_peft",
]
