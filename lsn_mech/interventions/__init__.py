"""Hook contexts that deactivate, set, scale or shift MLP neurons while they are active,
and the typed specs (kind, neurons, value, site) they are built from."""

from lsn_mech.interventions.contexts import (
    Intervention,
    activate,
    add,
    apply,
    compose,
    deactivate,
    scale,
    set_to,
)
from lsn_mech.interventions.edits import Edit
from lsn_mech.interventions.kinds import Add, NoIntervention, Scale, SetToStatistic, SetValue
from lsn_mech.interventions.mean_difference import MeanDifference
from lsn_mech.interventions.parse import (
    STEERING_SETTINGS,
    ParsedValue,
    parse_intervention,
    parse_value,
    steering_specs,
)
from lsn_mech.interventions.spec import (
    InterventionSpec,
    InterventionSpecError,
    UnknownInterventionError,
    kinds,
    register,
    spec_class,
)

__all__ = [
    "STEERING_SETTINGS",
    "Add",
    "Edit",
    "Intervention",
    "InterventionSpec",
    "InterventionSpecError",
    "MeanDifference",
    "NoIntervention",
    "ParsedValue",
    "Scale",
    "SetToStatistic",
    "SetValue",
    "UnknownInterventionError",
    "activate",
    "add",
    "apply",
    "compose",
    "deactivate",
    "kinds",
    "parse_intervention",
    "parse_value",
    "register",
    "scale",
    "set_to",
    "spec_class",
    "steering_specs",
]
