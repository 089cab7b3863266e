"""The built-in intervention kinds: none, set, scale, add, and set to a language's statistic.

``set`` / ``scale`` / ``add`` carry their value literally (a number, per-neuron values,
a ``[layer, d_mlp]`` tensor or a per-site mapping); ``statistic`` names a statistic of
a language (``"mean"``, ``"p90"``) that is read from the statistics it is applied with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor

from lsn_mech.interventions.edits import Edit, EditOp, check_literal
from lsn_mech.interventions.spec import (
    InterventionSpec,
    UnknownInterventionError,
    register,
    require_stats,
)
from lsn_mech.models.sites import Site
from lsn_mech.neurons import NeuronSet
from lsn_mech.stats.container import ActivationStats, LanguageStats
from lsn_mech.stats.percentiles import Estimate, parse_statistic, statistic

LiteralValue = float | int | Tensor | Mapping[str, Tensor]
"""A scalar, ``[len(neurons)]`` values in set order, a ``[layer, d_mlp]`` tensor, or a
per-site mapping of those (e.g. ``stats["fr"].mean``)."""


def _literal(spec: InterventionSpec, value: LiteralValue) -> None:
    """Check a literal value and store ints as floats, so ``0`` and ``0.0`` record alike."""
    if isinstance(value, (bool, LanguageStats)):
        raise UnknownInterventionError(
            f"A {spec.kind!r} spec takes a number, a tensor or a per-site mapping, not "
            f"{type(value).__name__}; for a language's statistic use "
            "SetToStatistic(neurons, language=..., statistic='mean')."
        )
    check_literal(value, f"A {spec.kind!r} spec")
    if isinstance(value, int):
        object.__setattr__(spec, "value", float(value))


@dataclasses.dataclass(frozen=True)
class _LiteralEdit(InterventionSpec):
    """A literal value applied by one elementwise operation.

    Owns the fields of set / scale / add (``neurons, value, site``, in that order), so
    the three kinds differ only in their ``kind`` and ``op``.
    """

    op: ClassVar[EditOp]
    neurons: NeuronSet
    value: LiteralValue
    site: Site | None = None

    def __post_init__(self) -> None:
        self._check_neurons()
        _literal(self, self.value)

    def edits(self, stats: ActivationStats | None = None) -> list[Edit]:
        return [Edit(self.op, self.neurons, self.value, site=self.site)]


@register
@dataclasses.dataclass(frozen=True)
class NoIntervention(InterventionSpec):
    """Leave the neurons alone: the ``"none"`` column of a table, recorded like the others."""

    kind: ClassVar[str] = "none"
    neurons: NeuronSet
    site: Site | None = None

    def __post_init__(self) -> None:
        self._check_neurons()

    def edits(self, stats: ActivationStats | None = None) -> list[Edit]:
        return []


@register
@dataclasses.dataclass(frozen=True)
class SetValue(_LiteralEdit):
    """``x ← value`` (``value=0.0``: Tang et al.'s deactivation)."""

    kind: ClassVar[str] = "set"
    op: ClassVar[EditOp] = "set"


@register
@dataclasses.dataclass(frozen=True)
class Scale(_LiteralEdit):
    """``x ← x · value``."""

    kind: ClassVar[str] = "scale"
    op: ClassVar[EditOp] = "scale"


@register
@dataclasses.dataclass(frozen=True)
class Add(_LiteralEdit):
    """``x ← x + value``."""

    kind: ClassVar[str] = "add"
    op: ClassVar[EditOp] = "add"


@register
@dataclasses.dataclass(frozen=True)
class SetToStatistic(InterventionSpec):
    """``x ← statistic of language`` per neuron (Tang et al.'s activation with ``"mean"``;
    Mondal et al.'s ``"p5"`` … ``"p95"``).

    Attributes:
        language: whose statistic is written.
        statistic: ``"mean"`` or a percentile ``"p<0…100>"``.
        read_site: where the statistic is read (default: the site written);
            ``read_site="mlp_pre"`` written at ``mlp_post`` is Mondal et al.'s reference code.
        estimate: ``"histogram"`` or ``"batch_mean"`` percentiles (`lsn_mech.stats.percentiles`).
    """

    kind: ClassVar[str] = "statistic"
    neurons: NeuronSet
    language: str
    statistic: str = "mean"
    read_site: Site | None = None
    estimate: Estimate = "histogram"
    site: Site | None = None

    def __post_init__(self) -> None:
        self._check_neurons()
        try:
            parse_statistic(self.statistic)
        except ValueError as error:
            raise UnknownInterventionError(str(error)) from None

    def edits(self, stats: ActivationStats | None = None) -> list[Edit]:
        stats = require_stats(self, stats)
        index = stats.language_index(self.language)
        read_site = self.read_site or self.write_site
        values = statistic(stats, self.statistic, read_site, self.estimate)[..., index]
        return [Edit("set", self.neurons, values, site=self.site)]
