"""Hook contexts that deactivate, set, scale or shift MLP neurons while they are active."""

from lsn_mech.interventions.contexts import (
    Intervention,
    activate,
    add,
    compose,
    deactivate,
    scale,
    set_to,
)
from lsn_mech.interventions.edits import Edit

__all__ = ["Edit", "Intervention", "activate", "add", "compose", "deactivate", "scale", "set_to"]
