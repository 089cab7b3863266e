"""Diff-of-means steering: add ``alpha · (mean[target] − mean[source])`` to the neurons.

Where `SetToStatistic` pins a neuron to the target language's mean (and so removes
what the token contributes), this shifts the neuron by the gap between the two
languages' means and keeps the token's own variation: the activation-addition
steering of representation engineering, restricted to a neuron set. This file is the
worked example of adding an intervention kind: one registered frozen dataclass.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from lsn_mech.interventions.edits import Edit
from lsn_mech.interventions.spec import (
    InterventionSpec,
    InterventionSpecError,
    register,
    require_stats,
)
from lsn_mech.models.sites import Site
from lsn_mech.neurons import NeuronSet
from lsn_mech.stats.container import ActivationStats


@register
@dataclasses.dataclass(frozen=True)
class MeanDifference(InterventionSpec):
    """``x ← x + alpha · (mean_target − mean_source)`` per neuron of the set.

    Attributes:
        source: the language steered away from.
        target: the language steered towards.
        alpha: the step (1: a neuron at the source's mean moves to the target's).
        read_site: where the means are read (default: the site written).
    """

    kind: ClassVar[str] = "mean-difference"
    neurons: NeuronSet
    source: str
    target: str
    alpha: float | int = 1.0
    read_site: Site | None = None
    site: Site | None = None

    def __post_init__(self) -> None:
        self._check_neurons()
        if isinstance(self.alpha, bool) or not math.isfinite(self.alpha):
            raise InterventionSpecError(f"alpha must be a finite number, got {self.alpha!r}.")
        object.__setattr__(self, "alpha", float(self.alpha))  # 2 and 2.0 record alike

    def edits(self, stats: ActivationStats | None = None) -> list[Edit]:
        stats = require_stats(self, stats)
        means = stats.mean(self.read_site or self.write_site)
        gap = means[..., stats.language_index(self.target)]
        gap = gap - means[..., stats.language_index(self.source)]
        return [Edit("add", self.neurons, self.alpha * gap, site=self.site)]
