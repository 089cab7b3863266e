"""Accumulator classes by the name their config records, so saved statistics rebuild them.

Every accumulator lsn_mech ships is registered here at import of `lsn_mech.stats`, so
statistics from any source (collected, loaded, imported from LAPE files) merge in any
process. A new accumulator registers itself with `register_accumulator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lsn_mech.errors import LsnMechError
from lsn_mech.stats.accumulators import Accumulator, MomentAccumulator
from lsn_mech.stats.positive_counts import PositiveCountAccumulator
from lsn_mech.stats.quantiles import BatchQuantileAccumulator, QuantileAccumulator

ACCUMULATOR_TYPES: dict[str, type[Accumulator]] = {
    kind.name: kind
    for kind in (
        MomentAccumulator,
        QuantileAccumulator,
        BatchQuantileAccumulator,
        PositiveCountAccumulator,
    )
}
"""Every known accumulator class, keyed by its ``name`` (the ``"name"`` of its config)."""


class UnknownAccumulatorError(LsnMechError, KeyError):
    """Statistics name an accumulator class that is not registered in this process."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class AccumulatorNameTakenError(LsnMechError, ValueError):
    """Two accumulator classes claim the same ``name``."""


def register_accumulator(kind: type[Accumulator]) -> type[Accumulator]:
    """Register ``kind`` under its ``name`` (usable as a class decorator); returns it.

    Raises:
        AccumulatorNameTakenError: another class is already registered under that name.
    """
    known = ACCUMULATOR_TYPES.get(kind.name)
    if known is not None and known is not kind:
        raise AccumulatorNameTakenError(
            f"The accumulator name {kind.name!r} is taken by {known.__qualname__}; give "
            f"{kind.__qualname__} another `name`."
        )
    ACCUMULATOR_TYPES[kind.name] = kind
    return kind


def accumulator_type(name: str) -> type[Accumulator]:
    """The class registered as ``name``, or an error that lists the registered names."""
    try:
        return ACCUMULATOR_TYPES[name]
    except KeyError:
        known = ", ".join(sorted(ACCUMULATOR_TYPES))
        raise UnknownAccumulatorError(
            f"No accumulator named {name!r} is registered (known: {known}). Import or "
            f"define its class and register it with "
            f"lsn_mech.stats.register_accumulator(MyAccumulator) before loading or merging "
            f"statistics that use it."
        ) from None


def build_accumulator(config: Mapping[str, Any]) -> Accumulator:
    """Recreate an accumulator from the JSON config it recorded."""
    kind = accumulator_type(str(config["name"]))
    extra = {k: v for k, v in config.items() if k not in ("name", "sites")}
    return kind(tuple(config["sites"]), **extra)
