"""The model's own unembedding and the residual at its input (kept for existing imports).

Both now live in `lsn_mech.models.runtime`, which owns running a model.
"""

from lsn_mech.models.runtime.capture import UNEMBED_INPUT_HOOKS, final_residual
from lsn_mech.models.runtime.loss import unembed

__all__ = ["UNEMBED_INPUT_HOOKS", "final_residual", "unembed"]
