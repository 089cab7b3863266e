"""Running a model: one owner for generation and the bridge ⇄ Hugging Face seam."""

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

__all__ = [
    "BRIDGE_INFIX",
    "GenerationError",
    "NotAHuggingFaceModelError",
    "as_hf",
    "eos_token_ids",
    "first_line",
    "generate_lines",
    "greedy_decode",
    "has_hf",
    "is_bridged",
    "left_pad",
    "newline_token_ids",
    "pad_id_for",
    "strip_bridge_infix",
    "strip_bridge_name",
]
